"""A JAX + optax training loop with γ-SimPO in queue mode: a jitted step, explicit state, a checkpoint.

The same toy "policy" as the PyTorch tab (its summed log-probs are the parameters) and the same
plain SGD (``optax.sgd``), so the two print the same numbers; any optax optimiser plugs in the same way.
"""

import jax

jax.config.update("jax_enable_x64", True)  # float64, to match the PyTorch tab digit for digit

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402

import gammapo  # noqa: E402

B = gammapo.get_backend("jax")
cfg = gammapo.GammaPOConfig(loss="gamma-simpo", beta=2.0, gamma_beta_ratio=0.5, tau=5.0,
                            calibration="queue", queue_size=128, sample_size=32)
rng = np.random.default_rng(0)
init_c, init_r = rng.normal(-30.0, 3.0, 64), rng.normal(-30.0, 3.0, 64)
len_c, len_r = jnp.asarray(rng.integers(10, 30, 64)), jnp.asarray(rng.integers(10, 30, 64))

params = {"chosen": jnp.asarray(init_c), "rejected": jnp.asarray(init_r)}
state = B.init_state(cfg, seed=0, dtype=jnp.float64)  # the queue: a pytree, returned, never mutated
tx = optax.sgd(2000.0)
opt_state = tx.init(params)


@jax.jit
def train_step(params, opt_state, state, i):
    idx = 16 * (i % 4) + jnp.arange(16)  # four batches of 16 pairs

    def loss_fn(p):
        out, new_state = B.gamma_po_loss(cfg, state, chosen_logps=p["chosen"][idx],
                                         rejected_logps=p["rejected"][idx],
                                         chosen_lengths=len_c[idx], rejected_lengths=len_r[idx])
        return out.loss, (out, new_state)

    grads, (out, new_state) = jax.grad(loss_fn, has_aux=True)(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, new_state, out


for i in range(12):
    params, opt_state, state, out = train_step(params, opt_state, state, i)
    if i % 4 == 3:  # after each pass over the four batches
        print(f"step {i:2d}  loss {float(out.loss):.4f}  accuracy {float(out.metrics['rewards/accuracies']):.3f}  "
              f"margins {float(out.margins.min()):.3f}..{float(out.margins.max()):.3f}")

# Checkpoint: the state is plain data; state_to_dict / state_from_dict restore it bit for bit.
resumed = B.state_from_dict(B.state_to_dict(state))
assert all(bool(jnp.array_equal(a, b)) for a, b in zip(jax.tree.leaves(resumed), jax.tree.leaves(state)))
print("queue size", int(state.size), "step", int(state.step))
