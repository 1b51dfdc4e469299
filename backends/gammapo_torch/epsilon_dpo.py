r"""ε-DPO on torch tensors: the ops of :mod:`gammapo_spec.epsilon_dpo`, with a chunked token op.

.. math::

    z^\pm = z^\pi \pm \varepsilon (z^\pi - z^\text{ref}),\quad
    s_i = \operatorname{sign\text{-}test}(\rho_i, \rho^+_i, \rho^-_i),\quad
    \beta_i = \frac{\beta}{1+\varepsilon s_i},\quad
    \mathcal L = \tfrac1N \textstyle\sum_i \ell\big(\beta_i[(c_i - c_{\text{ref},i}) - (r_i - r_{\text{ref},i})] - m_i\big),

and after each optimiser step :math:`\beta \leftarrow \beta/(1 + \varepsilon\,\overline{s})`.

Same names, arguments and errors (class and message) as the reference.

**The token op is chunked.** :func:`epsilon_sequence_logps` walks the sequence dimension ``chunk_size``
positions at a time, so the perturbed logits :math:`z^\pm` exist only as ``[B, chunk, V]`` values
in two work buffers allocated once and reused (logsumexp computed in place), never as ``[B, T, V]``:
the extra memory is
:math:`O(B\cdot\text{chunk}\cdot V)` instead of the :math:`2\,B T V` of materialising ``logits±``.
It is one ``torch.autograd.Function``: the forward keeps only the per-token logsumexp ``[B, T]``,
and the backward writes :math:`g_b\,m_{bt}(e_{y} - \operatorname{softmax}(z_{bt}))` straight into the
gradient tensor, chunk by chunk (autograd through a chunked ``log_softmax`` would instead save every
chunk's output, i.e. ``[B, T, V]`` again). **Only** ``logps`` **carries a gradient** (to the policy
logits); ``logps_plus`` / ``logps_minus`` are marked non-differentiable: they decide :math:`s_i`,
which is a constant for the gradient, as in the reference. The reference logits get no gradient.

Dtype policy: float64 logits compute in float64, float32 in float32, bfloat16/float16 logits are read
chunk by chunk and computed in float32 (outputs float32; the gradient is returned in the logits'
dtype). Value checks (labels in range, a scored token in every row, finite logits, finite log-probs)
need a host sync; they run when ``check_values`` is true (one sync per call, the finite-logit test
folded into the chunk loop) and are skipped under ``torch.compile``. Shape checks always run.

**Distributed.** :func:`epsilon_update_beta` sums ``step_sum`` and ``step_count`` over the ranks
(one ``all_reduce`` of a 2-vector) when ``torch.distributed`` is initialised with more than one rank,
so every rank applies the same update: the mean of s over the global accumulated batch (ranks may
hold different numbers of pairs). Nothing else communicates.

Example:
    >>> import torch
    >>> from gammapo_torch.epsilon_dpo import epsilon_sequence_logps, epsilon_steps
    >>> z = torch.log(torch.tensor([[[0.5, 0.25, 0.25]]], dtype=torch.float64))
    >>> z_ref = torch.log(torch.tensor([[[0.25, 0.5, 0.25]]], dtype=torch.float64))
    >>> [round(float(v[0]), 6) for v in epsilon_sequence_logps(z, z_ref, torch.tensor([[0]]), epsilon=0.5)]
    [-0.693147, -0.472222, -0.99588]
"""

from __future__ import annotations

from typing import Any, NamedTuple

import torch
import torch.distributed as dist

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

from ._dtypes import as_tensor, compute_dtype
from ._validation import value_checks_active

__all__ = [
    "EpsilonDPOState",
    "SequenceLogps",
    "EpsilonDPOOutput",
    "default_chunk_size",
    "epsilon_sequence_logps",
    "naive_epsilon_sequence_logps",
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

_HALF = (torch.bfloat16, torch.float16)
#: Elements per ``[B, chunk, V]`` buffer the default chunk size aims at (16 MiB in float32).
CHUNK_ELEMENTS = 1 << 22


def _acc(dtype: torch.dtype) -> torch.dtype:
    return torch.float32 if dtype in _HALF else dtype


def default_chunk_size(batch: int, vocab: int) -> int:
    """Sequence positions per chunk: ``max(1, 2**22 // (B·V))`` (a ``[B, chunk, V]`` buffer of ~4M elements)."""
    return max(1, CHUNK_ELEMENTS // max(1, batch * vocab))


# --- the token op ------------------------------------------------------------------------------------
def _logsumexp_(buf: torch.Tensor) -> torch.Tensor:
    """Logsumexp over the last axis that overwrites ``buf`` (no temporary ``[B, chunk, V]`` buffer)."""
    top = buf.amax(dim=-1, keepdim=True)
    top = torch.where(torch.isfinite(top), top, torch.zeros_like(top))
    return buf.sub_(top).exp_().sum(dim=-1).log_() + top.squeeze(-1)


class _EpsilonLogps(torch.autograd.Function):
    """Forward: chunked sums of log-probs under z, z+ and z-; backward: chunked gradient of the first.

    Memory: the forward allocates two ``[B, chunk, V]`` work buffers once (plus a float32 copy of each
    chunk for half inputs) and reuses them for every chunk; the backward writes into the gradient
    tensor directly. Nothing updates the inputs in place.
    """

    @staticmethod
    def forward(ctx, policy, ref, labels, mask, eps, chunk, check):  # noqa: D102
        acc = _acc(policy.dtype)
        B, T, V = policy.shape
        c = min(chunk, T)
        lse = torch.empty(B, T, dtype=acc, device=policy.device)
        sums = torch.zeros(3, B, dtype=acc, device=policy.device)
        finite = []
        m = mask.to(acc)
        work_d = torch.empty(B, c, V, dtype=acc, device=policy.device)  # ε(z − z_ref)
        work_z = torch.empty(B, c, V, dtype=acc, device=policy.device)  # z, z+, z− in turn, consumed in place
        for t0 in range(0, T, c):
            t1 = min(T, t0 + c)
            z = policy[:, t0:t1].to(acc)  # may be the input itself: read only
            d, zz = work_d[:, : t1 - t0], work_z[:, : t1 - t0]
            y = labels[:, t0:t1, None]
            mc = m[:, t0:t1]
            torch.sub(z, ref[:, t0:t1].to(acc), out=d).mul_(eps)  # as the reference: d = ε(z − z_ref)
            if check:
                finite.append(torch.isfinite(z).all() & torch.isfinite(d).all())
            zz.copy_(z)
            lse[:, t0:t1] = _logsumexp_(zz)
            sums[0] += ((z.gather(-1, y).squeeze(-1) - lse[:, t0:t1]) * mc).sum(1)
            for k, op in ((1, torch.add), (2, torch.sub)):  # z+ = z + d, then z− = z − d
                op(z, d, out=zz)
                target = zz.gather(-1, y).squeeze(-1)
                sums[k] += ((target - _logsumexp_(zz)) * mc).sum(1)
            del z
        del work_d, work_z
        ctx.save_for_backward(policy, labels, m, lse)
        ctx.chunk = c
        logps, plus, minus = sums.unbind(0)
        all_finite = torch.stack(finite).all() if finite else torch.ones((), dtype=torch.bool, device=policy.device)
        ctx.mark_non_differentiable(plus, minus, all_finite)
        return logps, plus, minus, all_finite

    @staticmethod
    def backward(ctx, grad_logps, _gp, _gm, _gf):  # noqa: D102
        policy, labels, m, lse = ctx.saved_tensors
        if grad_logps is None or not ctx.needs_input_grad[0]:
            return None, None, None, None, None, None, None
        acc = lse.dtype
        grad = torch.empty_like(policy)
        g = grad_logps.to(acc)[:, None] * m  # [B, T]: g_b m_bt
        for t0 in range(0, policy.shape[1], ctx.chunk):
            t1 = min(policy.shape[1], t0 + ctx.chunk)
            # g m (e_y − softmax(z)), computed in the gradient's own slice (a float32 buffer for half inputs)
            gz = grad[:, t0:t1] if grad.dtype == acc else torch.empty(grad[:, t0:t1].shape, dtype=acc, device=grad.device)
            torch.sub(policy[:, t0:t1].to(acc), lse[:, t0:t1, None], out=gz).exp_()
            gz.mul_(-g[:, t0:t1, None])
            gz.scatter_add_(-1, labels[:, t0:t1, None], g[:, t0:t1, None])
            if gz.dtype != grad.dtype:
                grad[:, t0:t1] = gz
            del gz
        return grad, None, None, None, None, None, None


def _token_inputs(policy_logits, ref_logits, labels, mask, check_values: bool):
    p = as_tensor(policy_logits)
    q = as_tensor(ref_logits, p.device)
    y = as_tensor(labels, p.device)
    mk = None if mask is None else as_tensor(mask, p.device)
    _, _, vocab = check_token_shapes(tuple(p.shape), tuple(q.shape), tuple(y.shape),
                                     None if mk is None else tuple(mk.shape))
    _check_integer_labels(not (y.is_floating_point() or y.is_complex() or y.dtype == torch.bool))
    m = (y != IGNORE_INDEX) if mk is None else (mk != 0)
    if value_checks_active(check_values):
        ok = torch.stack([(~m | ((y >= 0) & (y < vocab))).all(), m.any(dim=1).all()]).tolist()
        _check_labels_in_range(ok[0], vocab)
        _check_rows_nonempty(ok[1])
    y = torch.where(m, y, torch.zeros_like(y)).to(torch.int64)
    return p, q, y, m, vocab


def epsilon_sequence_logps(policy_logits, ref_logits, labels, mask=None, *, epsilon: float,
                           chunk_size: int | None = None, check_values: bool = True) -> SequenceLogps:
    r""":func:`gammapo_spec.epsilon_dpo.epsilon_sequence_logps`, chunked over the sequence (module docs).

    Args:
        policy_logits, ref_logits: ``[B, T, V]`` (aligned with ``labels``).
        labels: ``[B, T]`` integer ids; mask: ``[B, T]`` or ``None`` (then ``labels != -100``).
        epsilon: ε in (0, 1).
        chunk_size: sequence positions per chunk (default :func:`default_chunk_size`).
        check_values: run the value checks (one host sync).

    Returns:
        :class:`~gammapo_spec.epsilon_dpo.SequenceLogps` of ``[B]`` tensors; only ``logps`` has a gradient.

    Raises:
        ConfigError, InputError: as the reference (same class and message).
    """
    eps = check_epsilon(epsilon)
    p, q, y, m, vocab = _token_inputs(policy_logits, ref_logits, labels, mask, check_values)
    chunk = default_chunk_size(p.shape[0], vocab) if chunk_size is None else int(chunk_size)
    if chunk < 1:
        raise InputError(f"chunk_size must be >= 1, got {chunk_size!r}", field="chunk_size")
    check = value_checks_active(check_values)
    logps, plus, minus, finite = _EpsilonLogps.apply(p, q, y, m, eps, chunk, check)
    if check and not bool(finite):
        check_finite("policy_logits", bool(torch.isfinite(p).all()))
        check_finite("ref_logits", False)
    return SequenceLogps(logps, plus, minus)


def naive_epsilon_sequence_logps(policy_logits, ref_logits, labels, mask=None, *, epsilon: float) -> SequenceLogps:
    """The unchunked baseline: materialises ``logits±`` ``[B, T, V]`` and uses autograd (benchmarks, tests).

    Same arithmetic as the reference; no value checks.
    """
    eps = check_epsilon(epsilon)
    p, q, y, m, _ = _token_inputs(policy_logits, ref_logits, labels, mask, False)
    z = p.to(_acc(p.dtype))
    d = (z - q.to(z.dtype)) * eps
    out = []
    for k, zz in enumerate((z, z + d, z - d)):
        tok = torch.log_softmax(zz, dim=-1).gather(-1, y[..., None]).squeeze(-1)
        s = (tok * m.to(tok.dtype)).sum(1)
        out.append(s if k == 0 else s.detach())
    return SequenceLogps(*out)


# --- pair-level ops ------------------------------------------------------------------------------------
_STEP_FIELDS = ("chosen_logps", "rejected_logps", "chosen_logps_plus", "rejected_logps_plus",
                "chosen_logps_minus", "rejected_logps_minus")
_PAIR_FIELDS = ("chosen_logps", "rejected_logps", "ref_chosen_logps", "ref_rejected_logps")


def _columns(names, values, check_values: bool) -> dict[str, torch.Tensor]:
    for name, value in zip(names, values):
        if value is None:
            raise InputError(f"{name} is needed but was not given", field=name)
    device = next((v.device for v in values if isinstance(v, torch.Tensor)), None)
    t = {name: as_tensor(v, device) for name, v in zip(names, values)}
    check_pair_columns({k: tuple(v.shape) for k, v in t.items()})
    dt = compute_dtype(*t.values())
    t = {k: v.to(dt) for k, v in t.items()}
    if value_checks_active(check_values):
        oks = torch.stack([torch.isfinite(v).all() for v in t.values()]).tolist()
        for name, ok in zip(t, oks):
            check_finite(name, ok)
    return t


def epsilon_steps(chosen_logps, rejected_logps, chosen_logps_plus, rejected_logps_plus, chosen_logps_minus,
                  rejected_logps_minus, *, check_values: bool = True) -> torch.Tensor:
    """:func:`gammapo_spec.epsilon_dpo.epsilon_steps`: ``[N]`` int64 in {-1, 0, +1} (no gradient)."""
    a = _columns(_STEP_FIELDS, (chosen_logps, rejected_logps, chosen_logps_plus, rejected_logps_plus,
                                chosen_logps_minus, rejected_logps_minus), check_values)
    a = {k: v.detach() for k, v in a.items()}
    rho = a["chosen_logps"] - a["rejected_logps"]
    rho_p = a["chosen_logps_plus"] - a["rejected_logps_plus"]
    rho_m = a["chosen_logps_minus"] - a["rejected_logps_minus"]
    up = (rho_p > rho) & (rho > rho_m)
    down = (rho_m > rho) & (rho > rho_p)
    return up.to(torch.int64) - down.to(torch.int64)


def _steps(steps, n: int, device, check_values: bool) -> torch.Tensor:
    if steps is None:
        raise InputError("steps is needed but was not given", field="steps")
    s = as_tensor(steps, device)
    if tuple(s.shape) != (n,):
        raise InputError(f"steps must be [N] = ({n},), got shape {tuple(s.shape)}", field="steps")
    if value_checks_active(check_values):
        check_steps_values(bool(((s == -1) | (s == 0) | (s == 1)).all()))
    return s


def _beta_value(beta, check_values: bool):
    """β as a float (checked) or a 0-dim tensor (checked when value checks run: one sync)."""
    if isinstance(beta, torch.Tensor):
        if value_checks_active(check_values):
            check_beta(float(beta))
        return beta.detach()
    return check_beta(beta)


def epsilon_betas(beta, steps, epsilon: float, *, check_values: bool = True) -> torch.Tensor:
    """:func:`gammapo_spec.epsilon_dpo.epsilon_betas`: ``β / (1 + ε s)`` (float64, or β's float dtype)."""
    eps = check_epsilon(epsilon)
    b = _beta_value(beta, check_values)
    s = as_tensor(steps, b.device if isinstance(b, torch.Tensor) else None)
    check_pair_columns({"steps": tuple(s.shape)})
    s = _steps(s, s.shape[0], s.device, check_values)
    dt = b.dtype if isinstance(b, torch.Tensor) and b.is_floating_point() else torch.float64
    return b / (1.0 + eps * s.to(dt))


def _pair(chosen_logps, rejected_logps, ref_chosen_logps, ref_rejected_logps, steps, margins, beta, eps,
          check_values):
    a = _columns(_PAIR_FIELDS, (chosen_logps, rejected_logps, ref_chosen_logps, ref_rejected_logps), check_values)
    c = a["chosen_logps"]
    n = c.shape[0]
    s = _steps(steps, n, c.device, check_values)
    if margins is None:
        m = torch.zeros(n, dtype=c.dtype, device=c.device)
    else:
        m = as_tensor(margins, c.device)
        if tuple(m.shape) != (n,):
            raise InputError(f"margins must be [N] = ({n},), got shape {tuple(m.shape)}", field="margins")
        if value_checks_active(check_values):
            check_finite("margins", bool(torch.isfinite(m).all()))
        m = m.detach().to(c.dtype)
    b = beta.to(device=c.device, dtype=c.dtype) if isinstance(beta, torch.Tensor) else beta
    betas = b / (1.0 + eps * s.to(c.dtype))
    return a, betas, m


def epsilon_dpo_gaps(chosen_logps, rejected_logps, ref_chosen_logps, ref_rejected_logps, steps, *, beta,
                     epsilon: float, check_values: bool = True) -> torch.Tensor:
    r""":func:`gammapo_spec.epsilon_dpo.epsilon_dpo_gaps`: :math:`h_i` (differentiable in the log-probs)."""
    eps = check_epsilon(epsilon)
    b = _beta_value(beta, check_values)
    a, betas, _ = _pair(chosen_logps, rejected_logps, ref_chosen_logps, ref_rejected_logps, steps, None, b, eps,
                        check_values)
    return betas * ((a["chosen_logps"] - a["ref_chosen_logps"]) - (a["rejected_logps"] - a["ref_rejected_logps"]))


def epsilon_dpo_loss(chosen_logps, rejected_logps, ref_chosen_logps, ref_rejected_logps, steps, *, beta,
                     epsilon: float, label_smoothing: float = 0.0, margins=None,
                     check_values: bool = True) -> EpsilonDPOOutput:
    r""":func:`gammapo_spec.epsilon_dpo.epsilon_dpo_loss` on tensors.

    ``beta`` may be a float or a 0-dim tensor (the state's β; no host sync unless value checks run).
    The loss and the per-pair losses carry the gradient; ``betas`` (from the constant steps), the
    margins (detached) and the rewards (detached, like TRL's) do not.
    """
    eps = check_epsilon(epsilon)
    b = _beta_value(beta, check_values)
    ls = check_label_smoothing(label_smoothing)
    a, betas, m = _pair(chosen_logps, rejected_logps, ref_chosen_logps, ref_rejected_logps, steps, margins, b,
                        eps, check_values)
    cw = betas * (a["chosen_logps"] - a["ref_chosen_logps"])
    rl = betas * (a["rejected_logps"] - a["ref_rejected_logps"])
    h = cw - rl
    z = h - m
    losses = (1.0 - ls) * torch.nn.functional.softplus(-z) + ls * torch.nn.functional.softplus(z)
    return EpsilonDPOOutput(losses.mean(), losses, betas, h, cw.detach(), rl.detach())


# --- the β state ----------------------------------------------------------------------------------------
class EpsilonDPOState(NamedTuple):
    """:class:`gammapo_spec.epsilon_dpo.EpsilonDPOState` as 0-dim tensors on one device (ε a float).

    Attributes:
        beta: float64 β. step_sum, step_count, updates: int64 counters. epsilon: the Python float ε.
    """

    beta: torch.Tensor
    epsilon: float
    step_sum: torch.Tensor
    step_count: torch.Tensor
    updates: torch.Tensor


def init_epsilon_state(beta: float, epsilon: float, *, device: Any = None) -> EpsilonDPOState:
    """A fresh state on ``device`` (float64 β, int64 counters at 0)."""
    b, eps = check_beta(beta), check_epsilon(epsilon)
    zero = torch.zeros((), dtype=torch.int64, device=device)
    return EpsilonDPOState(torch.tensor(b, dtype=torch.float64, device=device), eps, zero, zero.clone(), zero.clone())


def epsilon_accumulate(state: EpsilonDPOState, steps, *, check_values: bool = True) -> EpsilonDPOState:
    """:func:`gammapo_spec.epsilon_dpo.epsilon_accumulate` (on the device, no sync without value checks)."""
    s = as_tensor(steps, state.beta.device)
    n = check_pair_columns({"steps": tuple(s.shape)})
    s = _steps(s, n, s.device, check_values)
    return state._replace(step_sum=state.step_sum + s.to(torch.int64).sum(), step_count=state.step_count + n)


def epsilon_update_beta(state: EpsilonDPOState, *, process_group: Any = None) -> EpsilonDPOState:
    r""":func:`gammapo_spec.epsilon_dpo.epsilon_update_beta`, with the counters summed over the ranks.

    With ``torch.distributed`` initialised (more than one rank in ``process_group``) ``step_sum`` and
    ``step_count`` are all-reduced (sum) first, so every rank applies the global mean. No host sync.
    """
    counts = torch.stack([state.step_sum, state.step_count]).to(torch.float64)
    if dist.is_available() and dist.is_initialized() and dist.get_world_size(process_group) > 1:
        dist.all_reduce(counts, op=dist.ReduceOp.SUM, group=process_group)
    total, count = counts[0], counts[1]
    mean = torch.where(count > 0, total / torch.clamp(count, min=1.0), torch.zeros_like(total))
    beta = torch.where(count > 0, state.beta / (1.0 + state.epsilon * mean), state.beta)
    zero = torch.zeros_like(state.step_sum)
    return EpsilonDPOState(beta, state.epsilon, zero, zero.clone(), state.updates + 1)


def epsilon_state_to_dict(state: EpsilonDPOState) -> dict[str, Any]:
    """The state as plain Python numbers (reads the tensors back: checkpoint time only)."""
    from gammapo_spec.epsilon_dpo import EpsilonDPOState as SpecState

    return _spec_state_to_dict(SpecState(float(state.beta), state.epsilon, int(state.step_sum),
                                         int(state.step_count), int(state.updates)))


def epsilon_state_from_dict(data: Any, *, device: Any = None) -> EpsilonDPOState:
    """Rebuild a state from :func:`epsilon_state_to_dict` (same checks and errors as the reference)."""
    s = _spec_state_from_dict(data)

    def i64(v):
        return torch.tensor(v, dtype=torch.int64, device=device)

    return EpsilonDPOState(torch.tensor(s.beta, dtype=torch.float64, device=device), s.epsilon, i64(s.step_sum),
                           i64(s.step_count), i64(s.updates))
