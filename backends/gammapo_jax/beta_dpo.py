r"""β-DPO on JAX arrays: :mod:`gammapo_spec.beta_dpo`, jit-able, with the state as a pytree.

.. math::

    \Delta_i = (c_i - c^\text{ref}_i) - (r_i - r^\text{ref}_i),\quad
    \beta = \max\!\big(\beta_\min, \beta_0[1 + \alpha(\bar\Delta_\text{kept} - M_0)]\big),\quad
    L = \tfrac1k \textstyle\sum_i m_i \operatorname{softplus}(-\beta\Delta_i),

with :math:`M_0, \sigma` updated (momentum 0.9) *before* use and the kept pairs drawn by Gumbel-top-k
on :math:`-\tfrac12((\Delta_i - M_0)/\sigma)^2` from the portable hash (see the spec module);
``jax.random`` is not used, so the subset is the reference's for the same state.

Precision: the loss is computed in the inputs' compute dtype (half → float32). The statistics,
selection scores and β are computed in the widest float JAX has enabled: float64 under
``jax_enable_x64`` (then the subset equals the reference's, as in the torch backend), else float32
(then scores within float32 rounding of each other may order differently from the reference).

``beta_dpo_step`` is jit-able with the hyper-parameters as static Python floats
(``jax.jit(partial(beta_dpo_step, beta0=..., ...))``); the finite-value checks run only on concrete
(eager) values. The state is a :class:`BetaDPOState` ``NamedTuple`` of 0-dim arrays.

Data parallelism: inside ``shard_map``/``pmap`` pass ``gather=AxisGather("data")`` (the hook the γ-PO
loss takes). The gaps of every shard are all-gathered in axis order, the statistics, the kept subset
and β are those of the global batch (every shard computes the same state), each shard returns its own
pairs' ``losses``, ``mask`` and ``gaps``, and ``loss`` = P · Σ(own kept losses) / k_global for P
shards, so the mean over the axis (``lax.pmean``, what data-parallel gradient averaging optimises) is
the single-process loss on the concatenated batch, as in the torch backend under ``torch.distributed``.

Example:
    >>> import jax.numpy as jnp
    >>> from gammapo_jax.beta_dpo import beta_dpo_step, init_beta_dpo_state
    >>> out = beta_dpo_step(init_beta_dpo_state(0), jnp.array([-1.0, -2.0]), jnp.array([-3.0, -2.0]),
    ...                     jnp.array([-2.0, -2.0]), jnp.array([-2.0, -2.0]), beta0=0.1, alpha=0.5, rho=1.0)
    >>> out.mask.tolist(), round(float(out.beta), 6), int(out.state.step)
    ([1.0, 1.0], 0.145, 1)
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, NamedTuple

import jax
import jax.numpy as jnp
from gammapo_spec import beta_dpo as _spec
from gammapo_spec.errors import InputError, StateError
from gammapo_spec.validation import check_finite

from ._dtypes import compute_dtype, concrete_all, default_float, to_jax
from ._hash import slot_keys, stream_key

__all__ = ["BetaDPOState", "BetaDPOOutput", "init_beta_dpo_state", "beta_dpo_step", "beta_dpo_loss_and_grad",
           "state_to_dict", "state_from_dict", "beta_dpo_state_to_dict", "beta_dpo_state_from_dict"]

_FIELDS = ("chosen_logps", "rejected_logps", "ref_chosen_logps", "ref_rejected_logps")


class BetaDPOState(NamedTuple):
    """The spec's state as 0-dim arrays: ``gap_mean``, ``gap_std`` (widest enabled float),
    ``step``, ``seed`` (uint32; the step counter is taken modulo 2**32, as the keys use it)."""

    gap_mean: jax.Array
    gap_std: jax.Array
    step: jax.Array
    seed: jax.Array


class BetaDPOOutput(NamedTuple):
    """``loss`` (0-dim), ``losses`` ``[N]``, ``mask`` ``[N]`` (0/1, compute dtype), ``beta`` (0-dim,
    statistics dtype), ``gaps`` ``[N]``, ``state`` (the next :class:`BetaDPOState`)."""

    loss: jax.Array
    losses: jax.Array
    mask: jax.Array
    beta: jax.Array
    gaps: jax.Array
    state: BetaDPOState


def state_from_dict(data: Mapping[str, Any]) -> BetaDPOState:
    """A state from the spec's dict (validated as the spec does; raises its ``StateError``)."""
    s = _spec.BetaDPOState.from_dict(data)
    ft = default_float()
    return BetaDPOState(
        gap_mean=jnp.asarray(s.gap_mean, dtype=ft), gap_std=jnp.asarray(s.gap_std, dtype=ft),
        step=jnp.asarray(s.step & 0xFFFFFFFF, dtype=jnp.uint32), seed=jnp.asarray(s.seed, dtype=jnp.uint32),
    )


def state_to_dict(state: BetaDPOState) -> dict[str, Any]:
    """The spec's dict (Python floats and ints), for checkpoints."""
    return {"gap_mean": float(state.gap_mean), "gap_std": float(state.gap_std),
            "step": int(state.step), "seed": int(state.seed)}


def init_beta_dpo_state(seed: int = 0) -> BetaDPOState:
    """The initial state (:func:`gammapo_spec.beta_dpo.init_beta_dpo_state`); raises its ``StateError``."""
    return state_from_dict(_spec.init_beta_dpo_state(seed).to_dict())


def beta_dpo_step(
    state: BetaDPOState,
    chosen_logps,
    rejected_logps,
    ref_chosen_logps,
    ref_rejected_logps,
    *,
    beta0: float = 0.1,
    alpha: float = 0.6,
    rho: float = 0.8,
    momentum: float = 0.9,
    beta_min: float = 1e-3,
    gather: Callable[[jax.Array], tuple[jax.Array, Any]] | None = None,
) -> BetaDPOOutput:
    """:func:`gammapo_spec.beta_dpo.beta_dpo_step` on JAX arrays (same arguments, errors and subset).

    Differentiate ``out.loss`` (e.g. with ``jax.grad`` of a function returning it): gradients flow
    through the gaps only; β, the mask and the statistics are ``stop_gradient``. ``gather``: the
    data-parallel hook ``gather(local_gaps) -> (global_gaps, offset)``, e.g. ``AxisGather("data")``
    inside ``shard_map`` (module docstring); ``None``: this batch alone.

    Raises:
        ConfigError, InputError, StateError: as the reference, same class and message.
    """
    b0, a, r, mu, bmin = _spec.check_beta_dpo_params(beta0, alpha, rho, momentum, beta_min)
    if not isinstance(state, BetaDPOState):
        raise StateError(f"state must be a BetaDPOState, got {type(state).__name__}", field="state")
    xs = [to_jax(v) for v in (chosen_logps, rejected_logps, ref_chosen_logps, ref_rejected_logps)]
    n = _spec.check_logp_shapes({k: tuple(x.shape) for k, x in zip(_FIELDS, xs)})
    for name, x in zip(_FIELDS, xs):
        ok = concrete_all(lambda x=x: jnp.all(jnp.isfinite(x)))
        if ok is not None:
            check_finite(name, ok)
    dt = compute_dtype(*xs)
    c, rj, cr, rr = (x.astype(dt) for x in xs)
    gaps = (c - cr) - (rj - rr)

    ft = default_float()
    c64, r64, cr64, rr64 = (jax.lax.stop_gradient(x).astype(ft) for x in xs)
    g64 = (c64 - cr64) - (r64 - rr64)
    n_local, offset = n, 0
    if gather is not None:
        g64, offset = gather(g64)
        n = int(g64.shape[0])  # the global batch from here on (n_local · shards)
        if n % n_local:
            raise InputError(f"gather returned {n} gaps for {n_local} local pairs: not a whole number of shards", field="gather")
    zero = jnp.zeros((), ft)
    # equal gaps: std exactly 0, as the reference (max == min, not the rounded formula)
    batch_std = jnp.where(g64.max() == g64.min(), zero, jnp.std(g64, ddof=1)) if n > 1 else zero
    mean = mu * jnp.asarray(state.gap_mean, ft) + (1.0 - mu) * jnp.mean(g64)
    std = mu * jnp.asarray(state.gap_std, ft) + (1.0 - mu) * batch_std
    zero_std = std == 0.0
    z = (g64 - mean) / jnp.where(zero_std, jnp.ones_like(std), std)
    log_w = jnp.where(zero_std, jnp.zeros_like(z), -0.5 * (z * z))
    keys = slot_keys(stream_key(state.seed, _spec.STREAM_BETA_DPO, state.step), n)
    u = ((keys >> jnp.uint32(8)).astype(ft) + 0.5) / float(1 << 24)
    scores = log_w - jnp.log(-jnp.log(u))
    k = _spec.keep_count(n, r)
    order = jnp.argsort(-scores, stable=True)
    mask_f = jnp.zeros(n, ft).at[order[:k]].set(1.0)
    kept_mean = jnp.sum(g64 * mask_f) / jnp.sum(mask_f)
    beta = jnp.maximum(bmin, b0 * (1.0 + a * (kept_mean - mean)))
    beta, mask_f, mean, std = (jax.lax.stop_gradient(v) for v in (beta, mask_f, mean, std))
    new_state = BetaDPOState(gap_mean=mean, gap_std=std, step=jnp.asarray(state.step, jnp.uint32) + jnp.uint32(1),
                             seed=jnp.asarray(state.seed, jnp.uint32))

    if gather is not None:
        mask_f = jax.lax.dynamic_slice_in_dim(mask_f, offset, n_local)
    mask = mask_f.astype(dt)
    z_loss = -beta.astype(dt) * gaps
    losses = jnp.logaddexp(z_loss, jnp.zeros_like(z_loss))
    loss = jnp.sum(mask * losses) * (n // n_local) / k  # shards · own kept sum / k (one shard: sum / k)
    return BetaDPOOutput(loss=loss, losses=losses, mask=mask, beta=beta, gaps=gaps, state=new_state)


#: The spec's names of the two dict functions.
beta_dpo_state_to_dict = state_to_dict
beta_dpo_state_from_dict = state_from_dict


def beta_dpo_loss_and_grad(state: BetaDPOState, chosen_logps, rejected_logps, ref_chosen_logps, ref_rejected_logps,
                           **kwargs) -> tuple[BetaDPOOutput, dict[str, jax.Array]]:
    """One step and ``jax.grad`` of its loss w.r.t. the four log-prob inputs
    (:func:`gammapo_spec.beta_dpo.beta_dpo_loss_and_grad`)."""
    xs = [to_jax(v) for v in (chosen_logps, rejected_logps, ref_chosen_logps, ref_rejected_logps)]

    def f(*a):
        out = beta_dpo_step(state, *a, **kwargs)
        return out.loss, out

    (_, out), grads = jax.value_and_grad(f, argnums=(0, 1, 2, 3), has_aux=True)(*xs)
    return out, dict(zip(_FIELDS, grads))
