r"""The γ-PO loss step on JAX arrays: rewards → calibrated margins (stop-gradient) → losses.

.. math::

    h_i = u_{w,i} - u_{l,i},\qquad \gamma = \operatorname{sg}(\texttt{calibrate}(h)),\qquad
    m_i = m^\text{base}_i + (\gamma_i - \gamma_0),\qquad
    \mathcal L = \frac1N \sum_i \ell(h_i - m_i) \;[+\, w_\text{sft}(-c_i/|y_w|)\ \text{SimPO}] .

The output is :class:`gammapo_spec.LossOutput`, registered here as a pytree (its ``metrics`` are
0-d arrays), so it can leave a ``jax.jit``-compiled function; ``chosen_rewards``,
``rejected_rewards``, ``gaps``, ``margins`` and ``metrics`` are ``stop_gradient``-ed, ``loss`` and
``losses`` carry the gradient.
"""

from __future__ import annotations

import functools
from typing import Any, Callable

import jax
import jax.numpy as jnp
from gammapo_spec.config import GammaPOConfig
from gammapo_spec.errors import InputError
from gammapo_spec.gamma_po import LossOutput
from gammapo_spec.validation import check_gaps_finite

from ._dtypes import concrete_all, to_jax
from ._losses import pair_losses, target_margins
from ._pytree import register_output
from ._rewards import DIFFERENTIABLE_FIELDS, cast_inputs, prepare_inputs, rewards_from_arrays
from ._state import QueueState, calibrate_core, check_state

__all__ = ["LossOutput", "loss_metrics", "loss_with_margins", "gamma_po_loss", "gamma_po_loss_and_grad"]


register_output(LossOutput)


def loss_metrics(chosen_rewards, rejected_rewards, margins) -> dict[str, jax.Array]:
    """TRL-style scalars as 0-d arrays (names and meanings of :func:`gammapo_spec.loss_metrics`)."""
    cw, rl, m = (jax.lax.stop_gradient(a) for a in (chosen_rewards, rejected_rewards, margins))
    return {
        "rewards/chosen": jnp.mean(cw),
        "rewards/rejected": jnp.mean(rl),
        "rewards/accuracies": jnp.mean((cw > rl).astype(cw.dtype)),
        "rewards/margins": jnp.mean(cw - rl),
        "margins/mean": jnp.mean(m),
        "margins/std": jnp.std(m),
        "margins/min": jnp.min(m),
        "margins/max": jnp.max(m),
    }


def _loss_from_arrays(config: GammaPOConfig, x: dict[str, jax.Array], m: jax.Array) -> LossOutput:
    u_w, u_l = rewards_from_arrays(config, x)
    h = u_w - u_l
    m = jax.lax.stop_gradient(m.astype(h.dtype))
    losses = pair_losses(config, h - m)
    if config.sft_weight > 0:
        c, lengths = x["chosen_logps"], x["chosen_lengths"]
        if config.sft_reduction == "token":  # mean over every chosen token of the batch
            losses = losses + config.sft_weight * (-c * c.shape[0] / jnp.sum(lengths))
        else:  # mean over pairs of each response's per-token NLL
            losses = losses + config.sft_weight * (-c / lengths)
    sg = jax.lax.stop_gradient
    return LossOutput(
        loss=jnp.mean(losses),
        losses=losses,
        margins=m,
        gaps=sg(h),
        chosen_rewards=sg(u_w),
        rejected_rewards=sg(u_l),
        metrics=loss_metrics(u_w, u_l, m),
    )


@functools.partial(jax.jit, static_argnums=(0, 3))
def _gamma_po_core(config: GammaPOConfig, state: QueueState | None, raw: dict[str, jax.Array], gather):
    """The traceable loss step on validated inputs (cast here, so autodiff sees the raw dtypes)."""
    x = cast_inputs(raw)
    n = x["chosen_logps"].shape[0]
    gamma = None
    if config.dynamic_margins:
        u_w, u_l = rewards_from_arrays(config, x)
        gamma, state = calibrate_core(config, state, u_w - u_l, gather)
    m = target_margins(
        config, n, gamma=gamma, chosen_lengths=x.get("chosen_lengths"), rejected_lengths=x.get("rejected_lengths")
    )
    return _loss_from_arrays(config, x, m), state


def gamma_po_loss(
    config: GammaPOConfig,
    state: QueueState | None,
    *,
    chosen_logps,
    rejected_logps,
    ref_chosen_logps=None,
    ref_rejected_logps=None,
    chosen_lengths=None,
    rejected_lengths=None,
    gather: Callable[[jax.Array], tuple[jax.Array, Any]] | None = None,
) -> tuple[LossOutput, QueueState | None]:
    r"""One loss step (:func:`gammapo_spec.gamma_po_loss`): gaps, calibrated margins, losses, next state.

    Pure: returns the new state instead of mutating. Works under ``jax.jit`` (``config`` and
    ``gather`` static; a jitted step never retraces across steps), ``jax.grad`` /
    ``jax.value_and_grad`` (of ``out.loss``; margins are stop-gradient) and ``jax.vmap``.

    Args:
        config: the loss configuration (hashable, hence a static argument).
        state: from :func:`init_state` (``None`` for batch mode or constant margins).
        chosen_logps, rejected_logps: ``[N]`` summed policy log-probs.
        ref_chosen_logps, ref_rejected_logps: ``[N]`` reference log-probs (reference-based losses).
        chosen_lengths, rejected_lengths: ``[N]`` response lengths (SimPO, R-DPO).
        gather: data-parallel hook, e.g. ``AxisGather("data")`` inside ``shard_map``/``pmap``:
            calibration uses every shard's gaps (in axis order) and each shard gets the margins of
            its own pairs; ``out.loss`` and ``out.metrics`` stay per-shard (reduce them with
            ``lax.pmean`` as usual).

    Returns:
        ``(LossOutput, new_state)``; ``LossOutput`` is a pytree of arrays.

    Raises:
        InputError, StateError: as the reference (value checks only on concrete inputs).

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from gammapo_spec import GammaPOConfig
        >>> import gammapo_jax as G
        >>> cfg = GammaPOConfig(loss="gamma-simpo", beta=2.0, gamma_beta_ratio=0.5, tau=1.0, calibration="batch")
        >>> step = jax.jit(lambda c, r: G.gamma_po_loss(cfg, None, chosen_logps=c, rejected_logps=r,
        ...                chosen_lengths=jnp.array([2, 4]), rejected_lengths=jnp.array([3, 3]))[0].loss)
        >>> round(float(step(jnp.array([-4.0, -8.0]), jnp.array([-9.0, -6.0]))), 5)
        0.77305
    """
    state = check_state(config, state)
    raw = prepare_inputs(
        config,
        chosen_logps=chosen_logps,
        rejected_logps=rejected_logps,
        ref_chosen_logps=ref_chosen_logps,
        ref_rejected_logps=ref_rejected_logps,
        chosen_lengths=chosen_lengths,
        rejected_lengths=rejected_lengths,
    )
    out, new_state = _gamma_po_core(config, state, raw, gather)
    if config.check_values:  # the spec's overflow policy (eagerly; skipped under jit, as the input checks)
        ok = concrete_all(lambda: jnp.all(jnp.isfinite(out.gaps)))
        if ok is not None:
            check_gaps_finite(ok)
    return out, new_state


def loss_with_margins(
    config: GammaPOConfig,
    margins,
    *,
    chosen_logps,
    rejected_logps,
    ref_chosen_logps=None,
    ref_rejected_logps=None,
    chosen_lengths=None,
    rejected_lengths=None,
) -> LossOutput:
    r"""The loss for given target margins (:func:`gammapo_spec.loss_with_margins`): :math:`\frac1N\sum_i \ell(h_i - m_i)`.

    ``margins`` are treated as constants (stop-gradient).

    Raises:
        InputError: bad inputs, or margins of another shape than the batch (field ``"margins"``).

    Example:
        >>> import jax.numpy as jnp
        >>> from gammapo_spec import GammaPOConfig
        >>> from gammapo_jax import loss_with_margins
        >>> out = loss_with_margins(GammaPOConfig(loss="dpo", beta=1.0), jnp.zeros(1), chosen_logps=jnp.zeros(1),
        ...     rejected_logps=jnp.zeros(1), ref_chosen_logps=jnp.zeros(1), ref_rejected_logps=jnp.zeros(1))
        >>> round(float(out.loss), 6)
        0.693147
    """
    raw = prepare_inputs(
        config,
        chosen_logps=chosen_logps,
        rejected_logps=rejected_logps,
        ref_chosen_logps=ref_chosen_logps,
        ref_rejected_logps=ref_rejected_logps,
        chosen_lengths=chosen_lengths,
        rejected_lengths=rejected_lengths,
    )
    n = raw["chosen_logps"].shape[0]
    m = to_jax(margins)
    if tuple(m.shape) != (n,):
        raise InputError(f"margins must have shape ({n},), got {tuple(m.shape)}", field="margins")
    return _loss_from_arrays(config, cast_inputs(raw), m)


def gamma_po_loss_and_grad(
    config: GammaPOConfig, state: QueueState | None, *, gather=None, **inputs: Any
) -> tuple[LossOutput, QueueState | None, dict[str, jax.Array]]:
    """:func:`gamma_po_loss` plus ``jax.grad`` of ``output.loss`` w.r.t. each log-prob input.

    Inputs are validated eagerly first (so the value checks run even though autodiff traces).

    Returns:
        ``(output, new_state, grads)``; ``grads`` has the keys of :func:`gammapo_spec.loss_vjp`
        (``chosen_logps``, ``rejected_logps`` and, for reference-based losses, ``ref_*``), each
        in its input's dtype.

    Example:
        >>> import jax.numpy as jnp
        >>> from gammapo_spec import GammaPOConfig
        >>> from gammapo_jax import gamma_po_loss_and_grad
        >>> z = jnp.zeros(1)
        >>> _, _, g = gamma_po_loss_and_grad(GammaPOConfig(loss="dpo", beta=1.0), None, chosen_logps=z,
        ...                                  rejected_logps=z, ref_chosen_logps=z, ref_rejected_logps=z)
        >>> {k: float(v[0]) for k, v in g.items()}
        {'chosen_logps': -0.5, 'rejected_logps': 0.5, 'ref_chosen_logps': 0.5, 'ref_rejected_logps': -0.5}
    """
    state = check_state(config, state)
    raw = prepare_inputs(config, **inputs)
    wrt = {k: raw[k] for k in DIFFERENTIABLE_FIELDS if k in raw}

    def loss_fn(diff):
        out, new_state = _gamma_po_core(config, state, {**raw, **diff}, gather)
        return out.loss, (out, new_state)

    (_, (out, new_state)), grads = jax.value_and_grad(loss_fn, has_aux=True)(wrt)
    return out, new_state, {k: grads[k] for k in wrt}  # the reference's key order
