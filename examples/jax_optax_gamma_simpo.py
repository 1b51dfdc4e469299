r"""γ-SimPO training with JAX, Equinox and optax: a complete, jitted training step.

A tiny causal "language model" (embedding → MLP → vocabulary logits, an :mod:`equinox` module)
is trained on a synthetic preference batch. One step:

1. summed log-probs of the chosen and rejected responses,
   :math:`c = \sum_t \log \pi_\theta(y^w_t \mid \cdot)`, :math:`r = \sum_t \log \pi_\theta(y^l_t \mid \cdot)`;
2. the γ-SimPO loss :math:`\frac1N\sum_i -\log\sigma\big(\beta c_i/|y^w_i| - \beta r_i/|y^l_i| - \gamma_i\big)`
   with per-pair margins γ calibrated on a queue of recent gaps
   (:func:`gammapo_jax.gamma_po_loss`; the margins are stop-gradient);
3. an optax AdamW update. The queue state is part of the carried training state: the step is a
   pure function, jitted once (no retrace across steps).

Run: ``python examples/jax_optax_gamma_simpo.py [--steps N]`` (prints the loss per step).
Needs ``jax``, ``optax``, ``equinox`` (tested with jax 0.10.2, optax 0.2.8, equinox 0.13.8).
"""

from __future__ import annotations

import argparse

import equinox as eqx
import jax
import jax.numpy as jnp
import optax

import gammapo_jax as G
from gammapo_spec import GammaPOConfig

VOCAB, HIDDEN, SEQ, PAIRS = 32, 32, 12, 8


class TinyLM(eqx.Module):
    """Next-token logits from the previous token only (a bigram MLP): enough to learn preferences."""

    embed: eqx.nn.Embedding
    mlp: eqx.nn.MLP

    def __init__(self, key: jax.Array):
        k1, k2 = jax.random.split(key)
        self.embed = eqx.nn.Embedding(VOCAB, HIDDEN, key=k1)
        self.mlp = eqx.nn.MLP(HIDDEN, VOCAB, HIDDEN, depth=1, key=k2)

    def __call__(self, tokens: jax.Array) -> jax.Array:
        """``[T]`` tokens → ``[T-1, V]`` log-probs of tokens 1..T-1."""
        h = jax.vmap(self.embed)(tokens[:-1])
        return jax.nn.log_softmax(jax.vmap(self.mlp)(h), axis=-1)


def sequence_logps(model: TinyLM, tokens: jax.Array, mask: jax.Array) -> jax.Array:
    """Summed log-probs of the response tokens: ``[N, T]`` tokens, ``[N, T]`` 0/1 mask → ``[N]``."""

    def one(tok, m):
        lp = model(tok)
        return jnp.sum(jnp.take_along_axis(lp, tok[1:, None], axis=-1)[:, 0] * m[1:])

    return jax.vmap(one)(tokens, mask)


def make_batch(key: jax.Array) -> dict[str, jax.Array]:
    """Synthetic pairs: chosen responses use even tokens, rejected ones odd tokens; random lengths."""
    kw, kl, kn = jax.random.split(key, 3)
    chosen = 2 * jax.random.randint(kw, (PAIRS, SEQ), 0, VOCAB // 2)
    rejected = 2 * jax.random.randint(kl, (PAIRS, SEQ), 0, VOCAB // 2) + 1
    lengths = jax.random.randint(kn, (2, PAIRS), 4, SEQ + 1)
    pos = jnp.arange(SEQ)
    return {"chosen": chosen, "rejected": rejected,
            "chosen_mask": (pos[None] < lengths[0][:, None]).astype(jnp.float32),
            "rejected_mask": (pos[None] < lengths[1][:, None]).astype(jnp.float32)}


def make_train_step(config: GammaPOConfig, optimizer: optax.GradientTransformation):
    """The jitted step ``(model, opt_state, gamma_state, batch) -> (model, opt_state, gamma_state, loss)``."""

    def loss_fn(model, gamma_state, batch):
        c = sequence_logps(model, batch["chosen"], batch["chosen_mask"])
        r = sequence_logps(model, batch["rejected"], batch["rejected_mask"])
        out, new_state = G.gamma_po_loss(
            config, gamma_state, chosen_logps=c, rejected_logps=r,
            chosen_lengths=batch["chosen_mask"][:, 1:].sum(1),
            rejected_lengths=batch["rejected_mask"][:, 1:].sum(1),
        )
        return out.loss, (new_state, out)

    @eqx.filter_jit
    def train_step(model, opt_state, gamma_state, batch):
        (loss, (gamma_state, _)), grads = eqx.filter_value_and_grad(loss_fn, has_aux=True)(model, gamma_state, batch)
        updates, opt_state = optimizer.update(grads, opt_state, eqx.filter(model, eqx.is_array))
        model = eqx.apply_updates(model, updates)
        return model, opt_state, gamma_state, loss

    return train_step


def train(steps: int = 10, seed: int = 0, verbose: bool = True) -> list[float]:
    """Train for ``steps`` steps on one fixed synthetic batch; returns the losses."""
    config = GammaPOConfig(loss="gamma-simpo", beta=2.0, gamma_beta_ratio=0.5, tau=1.0, calibration="queue",
                           queue_size=64, sample_size=24, queue_warmup=8)
    key_model, key_batch = jax.random.split(jax.random.PRNGKey(seed))
    model = TinyLM(key_model)
    optimizer = optax.adamw(3e-2)
    opt_state = optimizer.init(eqx.filter(model, eqx.is_array))
    gamma_state = G.init_state(config, seed=seed)
    batch = make_batch(key_batch)
    train_step = make_train_step(config, optimizer)
    losses = []
    for step in range(steps):
        model, opt_state, gamma_state, loss = train_step(model, opt_state, gamma_state, batch)
        losses.append(float(loss))
        if verbose:
            print(f"step {step:2d}  loss {losses[-1]:.4f}  queue size {int(gamma_state.size)}")
    return losses


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=10)
    train(parser.parse_args(argv).steps)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
