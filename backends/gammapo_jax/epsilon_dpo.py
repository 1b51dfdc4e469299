r"""ε-DPO on JAX arrays: the ops of :mod:`gammapo_spec.epsilon_dpo`, jit-able, with a chunked token op.

.. math::

    z^\pm = z^\pi \pm \varepsilon (z^\pi - z^\text{ref}),\quad
    \beta_i = \frac{\beta}{1+\varepsilon s_i},\quad
    \mathcal L = \tfrac1N \textstyle\sum_i \ell\big(\beta_i[(c_i - c_{\text{ref},i}) - (r_i - r_{\text{ref},i})] - m_i\big),
    \quad \beta \leftarrow \beta/(1 + \varepsilon\,\overline{s}) \text{ after each optimiser step}.

Same names, arguments and errors (class and message) as the reference. Dtype policy as in
:mod:`gammapo_jax._dtypes` (float64 needs ``jax_enable_x64``; half logits compute in float32).

**The token op is chunked**: :func:`epsilon_sequence_logps` runs a ``lax.fori_loop`` over
``chunk_size``-position slices of the sequence (``lax.dynamic_slice``, plus one static remainder slice),
so :math:`z^\pm` exist only as ``[B, chunk, V]`` values. Its gradient is a ``jax.custom_vjp``: the
forward keeps the per-token logsumexp ``[B, T]`` as its only residual and the backward recomputes the
softmax chunk by chunk, writing each into its slice of the gradient (differentiating the loop
directly would store every chunk's softmax). Only
``logps`` is differentiable; ``logps_plus`` / ``logps_minus`` pass through ``lax.stop_gradient``
(they decide :math:`s_i`, a constant for the gradient). ``epsilon``, ``chunk_size`` and the other
hyper-parameters are Python values (static under ``jit``).

Value checks (labels in range, a scored token in every row, finite inputs, step values) run on
concrete values and are skipped under ``jax.jit``; shape checks always run. In data-parallel training
(``shard_map``/``pmap``) pass ``axis_name`` to :func:`epsilon_update_beta` to sum the counters over it.

Example:
    >>> import jax.numpy as jnp
    >>> from gammapo_jax.epsilon_dpo import epsilon_sequence_logps
    >>> z = jnp.log(jnp.array([[[0.5, 0.25, 0.25]]]))
    >>> z_ref = jnp.log(jnp.array([[[0.25, 0.5, 0.25]]]))
    >>> [round(float(v[0]), 5) for v in epsilon_sequence_logps(z, z_ref, jnp.array([[0]]), epsilon=0.5)]
    [-0.69315, -0.47222, -0.99588]
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

from gammapo_spec.epsilon_dpo import (
    IGNORE_INDEX,
    EpsilonDPOOutput,
    SequenceLogps,
    check_beta,
    check_epsilon,
    check_label_smoothing,
    check_pair_columns,
    check_steps_values,
    check_token_shapes,
    epsilon_state_from_dict as _spec_state_from_dict,
    epsilon_state_to_dict as _spec_state_to_dict,
)
from gammapo_spec.epsilon_tokens import _check_integer_labels, _check_labels_in_range, _check_rows_nonempty
from gammapo_spec.errors import InputError
from gammapo_spec.validation import check_finite

from ._dtypes import HALF_DTYPES, compute_dtype, concrete_all, to_jax
from ._pytree import register_output

__all__ = [
    "EpsilonDPOState",
    "SequenceLogps",
    "EpsilonDPOOutput",
    "default_chunk_size",
    "epsilon_sequence_logps",
    "epsilon_steps",
    "epsilon_betas",
    "epsilon_dpo_gaps",
    "epsilon_dpo_loss",
    "init_epsilon_state",
    "epsilon_accumulate",
    "epsilon_update_beta",
    "epsilon_state_to_dict",
    "epsilon_state_from_dict",
]

CHUNK_ELEMENTS = 1 << 22


register_output(EpsilonDPOOutput)  # a jitted step may return it


def default_chunk_size(batch: int, vocab: int) -> int:
    """Sequence positions per chunk: ``max(1, 2**22 // (B·V))``."""
    return max(1, CHUNK_ELEMENTS // max(1, batch * vocab))


def _acc(dtype) -> jnp.dtype:
    dt = jnp.dtype(dtype)
    return jnp.dtype(jnp.float32) if dt in HALF_DTYPES else dt


# --- the token op ------------------------------------------------------------------------------------
def _chunk_sums(z, r, y, m, eps):
    """Per-row sums over one ``[B, c, V]`` chunk: (logp, logp+, logp-), and the chunk's logsumexp."""
    acc = _acc(z.dtype)
    z = z.astype(acc)
    d = (z - r.astype(acc)) * eps
    mf = m.astype(acc)
    lse = jax.nn.logsumexp(z, axis=-1)

    def tok(zz, l):
        return ((jnp.take_along_axis(zz, y[..., None], axis=-1)[..., 0] - l) * mf).sum(1)

    zp, zm = z + d, z - d
    sums = jnp.stack([tok(z, lse), tok(zp, jax.nn.logsumexp(zp, axis=-1)), tok(zm, jax.nn.logsumexp(zm, axis=-1))])
    return sums, lse


def _slices(T: int, chunk: int) -> tuple[int, int]:
    n_full = T // chunk
    return n_full, T - n_full * chunk


def _forward(p, q, y, m, eps, chunk):
    B, T, _ = p.shape
    acc = _acc(p.dtype)
    n_full, rem = _slices(T, chunk)
    sums = jnp.zeros((3, B), acc)
    lse = jnp.zeros((B, T), acc)
    if n_full:
        def body(i, carry):
            total, lse = carry
            cut = functools.partial(lax.dynamic_slice_in_dim, start_index=i * chunk, slice_size=chunk, axis=1)
            s, l = _chunk_sums(cut(p), cut(q), cut(y), cut(m), eps)
            return total + s, lax.dynamic_update_slice_in_dim(lse, l, i * chunk, axis=1)

        sums, lse = lax.fori_loop(0, n_full, body, (sums, lse))
    if rem:
        t0 = n_full * chunk
        s, l = _chunk_sums(p[:, t0:], q[:, t0:], y[:, t0:], m[:, t0:], eps)
        sums, lse = sums + s, lse.at[:, t0:].set(l)
    return sums, lse


@functools.partial(jax.custom_vjp, nondiff_argnums=(4, 5))
def _logps(p, q, y, m, eps, chunk):
    return _forward(p, q, y, m, eps, chunk)[0]


def _logps_fwd(p, q, y, m, eps, chunk):
    sums, lse = _forward(p, q, y, m, eps, chunk)
    return sums, (p, y, m, lse)


def _logps_bwd(eps, chunk, res, g_sums):
    p, y, m, lse = res
    B, T, V = p.shape
    acc = lse.dtype
    g = g_sums[0].astype(acc)[:, None] * m.astype(acc)  # [B, T]: only logps carries a gradient

    def grad_chunk(z, l, yy, gg):
        soft = jnp.exp(z.astype(acc) - l[..., None])
        onehot = jax.nn.one_hot(yy, V, dtype=acc)
        return (gg[..., None] * (onehot - soft)).astype(p.dtype)

    n_full, rem = _slices(T, chunk)
    grad = jnp.zeros(p.shape, p.dtype)
    if n_full:  # each chunk written into its slice of the gradient (in place inside the loop)
        def body(i, grad):
            cut = functools.partial(lax.dynamic_slice_in_dim, start_index=i * chunk, slice_size=chunk, axis=1)
            return lax.dynamic_update_slice_in_dim(grad, grad_chunk(cut(p), cut(lse), cut(y), cut(g)), i * chunk, axis=1)

        grad = lax.fori_loop(0, n_full, body, grad)
    if rem:
        t0 = n_full * chunk
        grad = grad.at[:, t0:].set(grad_chunk(p[:, t0:], lse[:, t0:], y[:, t0:], g[:, t0:]))
    return grad, None, None, None


_logps.defvjp(_logps_fwd, _logps_bwd)


def epsilon_sequence_logps(policy_logits, ref_logits, labels, mask=None, *, epsilon: float,
                           chunk_size: int | None = None, check_values: bool = True) -> SequenceLogps:
    r""":func:`gammapo_spec.epsilon_dpo.epsilon_sequence_logps`, chunked over the sequence (module docs).

    Returns:
        :class:`~gammapo_spec.epsilon_dpo.SequenceLogps` of ``[B]`` arrays; only ``logps`` is differentiable.
    """
    eps = check_epsilon(epsilon)
    p, q, y = to_jax(policy_logits), to_jax(ref_logits), to_jax(labels)
    mk = None if mask is None else to_jax(mask)
    _, _, vocab = check_token_shapes(p.shape, q.shape, y.shape, None if mk is None else mk.shape)
    _check_integer_labels(bool(jnp.issubdtype(y.dtype, jnp.integer)))
    m = (y != IGNORE_INDEX) if mk is None else (mk != 0)
    if check_values:
        ok = concrete_all(lambda: jnp.all(~m | ((y >= 0) & (y < vocab))))
        if ok is not None:
            _check_labels_in_range(ok, vocab)
            _check_rows_nonempty(bool(jnp.all(m.any(axis=1))))
            check_finite("policy_logits", bool(jnp.all(jnp.isfinite(p))))
            check_finite("ref_logits", bool(jnp.all(jnp.isfinite(q))))
    chunk = default_chunk_size(p.shape[0], vocab) if chunk_size is None else int(chunk_size)
    if chunk < 1:
        raise InputError(f"chunk_size must be >= 1, got {chunk_size!r}", field="chunk_size")
    y = jnp.where(m, y, 0).astype(jnp.int32)
    if not jnp.issubdtype(p.dtype, jnp.floating):
        p = p.astype(compute_dtype(p))
    sums = _logps(p, q.astype(p.dtype), y, m, eps, chunk)
    return SequenceLogps(sums[0], lax.stop_gradient(sums[1]), lax.stop_gradient(sums[2]))


# --- pair-level ops ------------------------------------------------------------------------------------
_STEP_FIELDS = ("chosen_logps", "rejected_logps", "chosen_logps_plus", "rejected_logps_plus",
                "chosen_logps_minus", "rejected_logps_minus")
_PAIR_FIELDS = ("chosen_logps", "rejected_logps", "ref_chosen_logps", "ref_rejected_logps")


def _columns(names, values, check_values: bool) -> dict[str, Any]:
    for name, value in zip(names, values):
        if value is None:
            raise InputError(f"{name} is needed but was not given", field=name)
    a = {name: to_jax(v) for name, v in zip(names, values)}
    check_pair_columns({k: tuple(v.shape) for k, v in a.items()})
    dt = compute_dtype(*a.values())
    a = {k: v.astype(dt) for k, v in a.items()}
    if check_values:
        for name, v in a.items():
            ok = concrete_all(lambda v=v: jnp.all(jnp.isfinite(v)))
            if ok is not None:
                check_finite(name, ok)
    return a


def epsilon_steps(chosen_logps, rejected_logps, chosen_logps_plus, rejected_logps_plus, chosen_logps_minus,
                  rejected_logps_minus, *, check_values: bool = True):
    """:func:`gammapo_spec.epsilon_dpo.epsilon_steps`: ``[N]`` integers in {-1, 0, +1} (no gradient)."""
    a = _columns(_STEP_FIELDS, (chosen_logps, rejected_logps, chosen_logps_plus, rejected_logps_plus,
                                chosen_logps_minus, rejected_logps_minus), check_values)
    a = {k: lax.stop_gradient(v) for k, v in a.items()}
    rho = a["chosen_logps"] - a["rejected_logps"]
    rho_p = a["chosen_logps_plus"] - a["rejected_logps_plus"]
    rho_m = a["chosen_logps_minus"] - a["rejected_logps_minus"]
    up = (rho_p > rho) & (rho > rho_m)
    down = (rho_m > rho) & (rho > rho_p)
    return up.astype(jnp.int32) - down.astype(jnp.int32)


def _steps(steps, n: int, check_values: bool):
    if steps is None:
        raise InputError("steps is needed but was not given", field="steps")
    s = to_jax(steps)
    if tuple(s.shape) != (n,):
        raise InputError(f"steps must be [N] = ({n},), got shape {tuple(s.shape)}", field="steps")
    if check_values:
        ok = concrete_all(lambda: jnp.all((s == -1) | (s == 0) | (s == 1)))
        if ok is not None:
            check_steps_values(ok)
    return s


def _beta_value(beta, check_values: bool):
    if isinstance(beta, jax.Array):
        if check_values:
            ok = concrete_all(lambda: jnp.isfinite(beta) & (beta > 0))
            if ok is not None:
                check_beta(float(beta))
        return lax.stop_gradient(beta)
    return check_beta(beta)


def epsilon_betas(beta, steps, epsilon: float, *, check_values: bool = True):
    """:func:`gammapo_spec.epsilon_dpo.epsilon_betas`: ``β / (1 + ε s)``."""
    eps = check_epsilon(epsilon)
    b = _beta_value(beta, check_values)
    s = to_jax(steps)
    check_pair_columns({"steps": tuple(s.shape)})
    s = _steps(s, s.shape[0], check_values)
    dt = compute_dtype(b) if isinstance(b, jax.Array) else compute_dtype()
    return b / (1.0 + eps * s.astype(dt))


def _pair(chosen_logps, rejected_logps, ref_chosen_logps, ref_rejected_logps, steps, margins, b, eps, check_values):
    a = _columns(_PAIR_FIELDS, (chosen_logps, rejected_logps, ref_chosen_logps, ref_rejected_logps), check_values)
    c = a["chosen_logps"]
    n = c.shape[0]
    s = _steps(steps, n, check_values)
    if margins is None:
        m = jnp.zeros(n, c.dtype)
    else:
        m = to_jax(margins)
        if tuple(m.shape) != (n,):
            raise InputError(f"margins must be [N] = ({n},), got shape {tuple(m.shape)}", field="margins")
        if check_values:
            ok = concrete_all(lambda: jnp.all(jnp.isfinite(m)))
            if ok is not None:
                check_finite("margins", ok)
        m = lax.stop_gradient(m).astype(c.dtype)
    bb = b.astype(c.dtype) if isinstance(b, jax.Array) else b
    return a, bb / (1.0 + eps * s.astype(c.dtype)), m


def epsilon_dpo_gaps(chosen_logps, rejected_logps, ref_chosen_logps, ref_rejected_logps, steps, *, beta,
                     epsilon: float, check_values: bool = True):
    r""":func:`gammapo_spec.epsilon_dpo.epsilon_dpo_gaps`: :math:`h_i`."""
    eps = check_epsilon(epsilon)
    b = _beta_value(beta, check_values)
    a, betas, _ = _pair(chosen_logps, rejected_logps, ref_chosen_logps, ref_rejected_logps, steps, None, b, eps,
                        check_values)
    return betas * ((a["chosen_logps"] - a["ref_chosen_logps"]) - (a["rejected_logps"] - a["ref_rejected_logps"]))


def epsilon_dpo_loss(chosen_logps, rejected_logps, ref_chosen_logps, ref_rejected_logps, steps, *, beta,
                     epsilon: float, label_smoothing: float = 0.0, margins=None,
                     check_values: bool = True) -> EpsilonDPOOutput:
    """:func:`gammapo_spec.epsilon_dpo.epsilon_dpo_loss` on arrays (``beta`` a float or a 0-d array)."""
    eps = check_epsilon(epsilon)
    b = _beta_value(beta, check_values)
    ls = check_label_smoothing(label_smoothing)
    a, betas, m = _pair(chosen_logps, rejected_logps, ref_chosen_logps, ref_rejected_logps, steps, margins, b, eps,
                        check_values)
    cw = betas * (a["chosen_logps"] - a["ref_chosen_logps"])
    rl = betas * (a["rejected_logps"] - a["ref_rejected_logps"])
    h = cw - rl
    z = h - m
    losses = (1.0 - ls) * jax.nn.softplus(-z) + ls * jax.nn.softplus(z)
    return EpsilonDPOOutput(losses.mean(), losses, betas, h, lax.stop_gradient(cw), lax.stop_gradient(rl))


# --- the β state ----------------------------------------------------------------------------------------
class EpsilonDPOState(NamedTuple):
    """The ε-DPO state as 0-d arrays (a pytree); ``epsilon`` is a Python float."""

    beta: Any
    epsilon: float
    step_sum: Any
    step_count: Any
    updates: Any


def init_epsilon_state(beta: float, epsilon: float) -> EpsilonDPOState:
    """A fresh state (β in the default float dtype: float64 under x64)."""
    b, eps = check_beta(beta), check_epsilon(epsilon)
    zero = jnp.zeros((), jnp.int32)
    return EpsilonDPOState(jnp.asarray(b, compute_dtype()), eps, zero, zero, zero)


def epsilon_accumulate(state: EpsilonDPOState, steps, *, check_values: bool = True) -> EpsilonDPOState:
    """:func:`gammapo_spec.epsilon_dpo.epsilon_accumulate`."""
    s = to_jax(steps)
    n = check_pair_columns({"steps": tuple(s.shape)})
    s = _steps(s, n, check_values)
    return state._replace(step_sum=state.step_sum + s.astype(jnp.int32).sum(), step_count=state.step_count + n)


def epsilon_update_beta(state: EpsilonDPOState, *, axis_name: Any = None) -> EpsilonDPOState:
    """:func:`gammapo_spec.epsilon_dpo.epsilon_update_beta`; with ``axis_name`` the counters are ``psum``-ed."""
    total = state.step_sum.astype(state.beta.dtype)
    count = state.step_count.astype(state.beta.dtype)
    if axis_name is not None:
        total, count = lax.psum(total, axis_name), lax.psum(count, axis_name)
    mean = jnp.where(count > 0, total / jnp.maximum(count, 1.0), 0.0)
    beta = jnp.where(count > 0, state.beta / (1.0 + state.epsilon * mean), state.beta)
    zero = jnp.zeros_like(state.step_sum)
    return EpsilonDPOState(beta, state.epsilon, zero, zero, state.updates + 1)


def epsilon_state_to_dict(state: EpsilonDPOState) -> dict[str, Any]:
    """The state as plain Python numbers."""
    from gammapo_spec.epsilon_dpo import EpsilonDPOState as SpecState

    return _spec_state_to_dict(SpecState(float(state.beta), state.epsilon, int(state.step_sum),
                                         int(state.step_count), int(state.updates)))


def epsilon_state_from_dict(data: Any) -> EpsilonDPOState:
    """Rebuild a state from :func:`epsilon_state_to_dict` (same checks and errors as the reference)."""
    s = _spec_state_from_dict(data)
    i32 = functools.partial(jnp.asarray, dtype=jnp.int32)
    return EpsilonDPOState(jnp.asarray(s.beta, compute_dtype()), s.epsilon, i32(s.step_sum), i32(s.step_count),
                           i32(s.updates))
