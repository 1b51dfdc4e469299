r"""β-DPO: DPO with a batch-level dynamic β and Gaussian data filtering (Wu et al., NeurIPS 2024).

β-DPO (arXiv 2407.08639, code ``github.com/junkangwu/beta-DPO``) is a baseline of the γ-PO paper.
Per pair the *reward discrepancy* is the DPO log-ratio gap

.. math::

    \Delta_i = (c_i - c^\text{ref}_i) - (r_i - r^\text{ref}_i).

The state carries a running mean :math:`M_0` and a running standard deviation :math:`\sigma` of
:math:`\Delta`. One step on a batch of N pairs:

1. **update the running statistics first** (momentum :math:`\mu = 0.9`):
   :math:`M_0 \leftarrow \mu M_0 + (1-\mu)\,\overline{\Delta}`,
   :math:`\sigma \leftarrow \mu\sigma + (1-\mu)\,s(\Delta)`, with :math:`s` the sample standard
   deviation (``ddof=1``; 0 when N = 1 or when all gaps are equal);
2. **filter**: keep :math:`k = \max(1, \lfloor \rho N \rfloor)` pairs (ρ = 0.8), drawn without
   replacement with probability proportional to the Gaussian weight
   :math:`w_i = \exp\!\big(-\tfrac12 ((\Delta_i - M_0)/\sigma)^2\big)`; the mask :math:`m_i \in \{0,1\}`
   marks them;
3. **batch β**: :math:`\beta = \max\!\big(\beta_\min,\; \beta_0\,[1 + \alpha\,(\bar\Delta_\text{kept} - M_0)]\big)`,
   with :math:`\bar\Delta_\text{kept}` the mean gap of the kept pairs and :math:`\beta_\min = 10^{-3}`;
4. **loss**: :math:`L = \frac1k \sum_i m_i\,\bigl(-\log\sigma(\beta\,\Delta_i)\bigr)`.

β, the mask and the statistics are constants for the gradient (stop-gradient), so
:math:`\partial L/\partial \Delta_i = -\frac{m_i}{k}\,\beta\,\sigma(-\beta\Delta_i)` and
:math:`\partial\Delta_i/\partial(c_i, r_i, c^\text{ref}_i, r^\text{ref}_i) = (1, -1, -1, 1)`.

Decisions, and where they follow the released code (``trainers.py``, ``preference_loss`` with
``mode_loss == "beta_DPO"`` and ``update_and_sync_tensor_mean``):

* **Units of Δ** — the code's: the *unscaled* log-ratio gap (``A_gap``), not the paper's
  :math:`M_i = \beta_0\Delta_i`. The filter is invariant to that scale (:math:`M_0` and σ scale with
  it); β is not: the paper's α equals the code's α divided by β0. Keeping the code's units keeps its
  published settings (``loss.beta=0.1 loss.a=0.6 loss.mode_weight=0.2``) meaningful.
* **Order** — the code's: the statistics are updated with the current batch (all N pairs, not only
  the kept ones) *before* they are used for the weights and for β.
* **Initial state** — the code's: :math:`M_0 = \sigma = 0` (no bias correction, so after the first
  step :math:`M_0 = 0.1\,\overline\Delta`). Only training steps update the state (the released code
  also updates it on evaluation batches; that is a side effect we do not copy).
* **Sample std** — the code's ``Tensor.std()`` (``ddof=1``). For N = 1 the code gets NaN; here 0.
  A batch of equal gaps (``max == min``) has std exactly 0: the rounded formula can give ~1e-17
  (the mean of equal values need not equal them), whose size would depend on the summation order
  and, on the first step (σ = 0), decide the whole Gaussian filter.
* **σ = 0** (all gaps so far equal, e.g. the first step when the policy is the reference): the code
  divides 0 by 0 and ``torch.multinomial`` fails; here every weight is 1 (uniform sampling).
* **β for the kept mean** — the code's: the mean over the *kept* pairs (``A[sample_index]``), minus the
  *updated* :math:`M_0`, and ``clamp(min=1e-3)`` (an absolute floor, ``beta_min``).
* **k** — the code's ``int(N * (1 - mode_weight))`` is :math:`\lfloor \rho N\rfloor` (here with a
  1e-9 guard, as :func:`~gammapo_spec.alignment_potential.selection_size`), but at least 1: for k = 0
  the code's β is the mean of nothing (NaN).
* **Loss reduction** — the code's: the masked sum divided by the number kept (k).
* **Sampling** — the code uses ``torch.multinomial(w, k, replacement=False)`` with the global torch
  RNG. Here the same distribution (successive draws proportional to w among the pairs left) is drawn
  with the Gumbel-top-k trick from the portable counter-based hash of :mod:`gammapo_spec.random`, so
  it is a pure function of the state: ``u = uniform24(slot_keys(stream_key(seed, STREAM_BETA_DPO,
  step), N))``, :math:`g_i = -\log(-\log u_i)`, score :math:`s_i = \log w_i + g_i =
  -\tfrac12 z_i^2 + g_i`, keep the k largest scores (ties: lower index first). Working with
  :math:`\log w_i` also means weights that would underflow to 0 (the code's multinomial then fails)
  still rank correctly. Every backend computes the statistics, scores and β in float64 (JAX: when
  ``jax_enable_x64`` is on), so the mask is the reference's for the same state and inputs (their
  float64 reductions may round differently in the last bit, which matters only for two scores
  equal to ~1e-16; the conformance suite checks the mask for exact equality).
* **Distributed training** — the code gathers Δ from all ranks for the statistics and the filter;
  the spec's step sees whatever gaps it is given, and a data-parallel step is defined as this step on
  the concatenated batch of all ranks (rank order), each rank keeping its own pairs' mask and losses.
  The torch backend does that gather itself under ``torch.distributed`` (its loss on a rank is
  world_size · its kept losses / k, so the ranks' mean is this loss); the JAX backend does it inside
  ``shard_map``/``pmap`` when given ``gather=AxisGather("data")`` (same loss convention).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Mapping

import numpy as np

from .config import BetaDPOConfig
from .errors import StateError
from .numerics import sigmoid, softplus
from .random import MASK32, slot_keys, stream_key, uniform24
from .validation import check_finite, check_same_length_1d

__all__ = [
    "STREAM_BETA_DPO",
    "BetaDPOState",
    "BetaDPOOutput",
    "init_beta_dpo_state",
    "check_beta_dpo_params",
    "keep_count",
    "reward_discrepancy",
    "update_statistics",
    "gaussian_log_weights",
    "gumbel_noise",
    "select_pairs",
    "batch_beta",
    "masked_loss",
    "masked_loss_grad",
    "beta_dpo_step",
    "beta_dpo_loss_and_grad",
    "beta_dpo_state_to_dict",
    "beta_dpo_state_from_dict",
]

#: The stream constant of β-DPO's sampling keys (distinct from the queue's streams).
STREAM_BETA_DPO = 0x6B2F_0A57

_LOGP_FIELDS = ("chosen_logps", "rejected_logps", "ref_chosen_logps", "ref_rejected_logps")


@dataclasses.dataclass(frozen=True)
class BetaDPOState:
    """The running statistics of β-DPO and the counter of its sampling keys.

    Attributes:
        gap_mean: :math:`M_0`, the running mean of the gaps Δ (0 initially).
        gap_std: σ, the running standard deviation of the gaps (0 initially, ≥ 0).
        step: number of steps taken (the counter of the sampling keys).
        seed: 32-bit seed of the sampling keys.
    """

    gap_mean: float
    gap_std: float
    step: int
    seed: int

    def to_dict(self) -> dict[str, Any]:
        """A plain dict (Python floats and ints) for checkpoints; :meth:`from_dict` restores it bit for bit."""
        return {"gap_mean": float(self.gap_mean), "gap_std": float(self.gap_std), "step": int(self.step), "seed": int(self.seed)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "BetaDPOState":
        """Rebuild a state from :meth:`to_dict`'s output.

        Raises:
            StateError: a missing key or a bad value, naming the field.
        """
        for key in ("gap_mean", "gap_std", "step", "seed"):
            if key not in data:
                raise StateError(f"beta-dpo state lacks {key!r}", field=key)
        mean, std = float(np.asarray(data["gap_mean"])), float(np.asarray(data["gap_std"]))
        if not math.isfinite(mean):
            raise StateError(f"gap_mean must be finite, got {mean!r}", field="gap_mean")
        if not (math.isfinite(std) and std >= 0.0):
            raise StateError(f"gap_std must be finite and >= 0, got {std!r}", field="gap_std")
        step, seed = int(np.asarray(data["step"])), int(np.asarray(data["seed"]))
        if step < 0:
            raise StateError(f"step must be >= 0, got {step}", field="step")
        if not 0 <= seed <= MASK32:
            raise StateError(f"seed must be in [0, 2**32), got {seed}", field="seed")
        return cls(gap_mean=mean, gap_std=std, step=step, seed=seed)


@dataclasses.dataclass(frozen=True)
class BetaDPOOutput:
    """What one :func:`beta_dpo_step` returns.

    Attributes:
        loss: the scalar loss L.
        losses: ``[N]`` per-pair :math:`-\\log\\sigma(\\beta\\Delta_i)` (also for the pairs filtered out).
        mask: ``[N]`` float64, 1 for the kept pairs, 0 otherwise.
        beta: the batch β.
        gaps: ``[N]`` the gaps Δ.
        state: the new state (statistics updated, step + 1).
    """

    loss: float
    losses: np.ndarray
    mask: np.ndarray
    beta: float
    gaps: np.ndarray
    state: BetaDPOState


def init_beta_dpo_state(seed: int = 0) -> BetaDPOState:
    """The initial state: :math:`M_0 = \\sigma = 0`, step 0 (as the released code).

    Raises:
        StateError: a seed outside ``[0, 2**32)`` (field ``"seed"``).

    Example:
        >>> from gammapo_spec.beta_dpo import init_beta_dpo_state
        >>> init_beta_dpo_state(7).to_dict()
        {'gap_mean': 0.0, 'gap_std': 0.0, 'step': 0, 'seed': 7}
    """
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= int(seed) <= MASK32:
        raise StateError(f"seed must be an integer in [0, 2**32), got {seed!r}", field="seed")
    return BetaDPOState(gap_mean=0.0, gap_std=0.0, step=0, seed=int(seed))


def check_beta_dpo_params(beta0, alpha, rho, momentum, beta_min) -> tuple[float, float, float, float, float]:
    """Validate the hyper-parameters (as :class:`~gammapo_spec.config.BetaDPOConfig` does); returns them as floats.

    Raises:
        ConfigError: ``beta0 <= 0``, non-finite ``alpha``, ``rho`` outside (0, 1], ``momentum``
            outside [0, 1) or ``beta_min <= 0`` (``field`` names it).
    """
    c = BetaDPOConfig(beta0=beta0, alpha=alpha, rho=rho, momentum=momentum, beta_min=beta_min)
    return c.beta0, c.alpha, c.rho, c.momentum, c.beta_min


def keep_count(n: int, rho: float) -> int:
    r"""How many of n pairs the filter keeps: :math:`\max(1, \lfloor \rho n + 10^{-9} \rfloor)`, at most n.

    Example:
        >>> from gammapo_spec.beta_dpo import keep_count
        >>> keep_count(10, 0.8), keep_count(4, 0.8), keep_count(1, 0.8), keep_count(5, 1.0)
        (8, 3, 1, 5)
    """
    return min(int(n), max(1, int(math.floor(float(rho) * int(n) + 1e-9))))


def check_logp_shapes(shapes: Mapping[str, tuple[int, ...]]) -> int:
    """Check the four log-prob inputs: 1-D, non-empty, same length. Returns N.

    Raises:
        InputError: naming the first offending argument.
    """
    return check_same_length_1d(shapes, _LOGP_FIELDS, unit="step")


def reward_discrepancy(chosen_logps, rejected_logps, ref_chosen_logps, ref_rejected_logps) -> np.ndarray:
    r"""The gaps :math:`\Delta_i = (c_i - c^\text{ref}_i) - (r_i - r^\text{ref}_i)` (float64).

    Raises:
        InputError: a non-1-D, empty, mismatched or non-finite input (naming it).

    Example:
        >>> from gammapo_spec.beta_dpo import reward_discrepancy
        >>> reward_discrepancy([-4.0], [-9.0], [-5.0], [-7.0]).tolist()
        [3.0]
    """
    arrays = {k: np.asarray(v, dtype=np.float64) for k, v in
              zip(_LOGP_FIELDS, (chosen_logps, rejected_logps, ref_chosen_logps, ref_rejected_logps))}
    check_logp_shapes({k: a.shape for k, a in arrays.items()})
    for k, a in arrays.items():
        check_finite(k, bool(np.all(np.isfinite(a))))
    c, r, cr, rr = arrays.values()
    return (c - cr) - (r - rr)


def update_statistics(state: BetaDPOState, gaps: np.ndarray, momentum: float = 0.9) -> tuple[float, float]:
    r"""The updated :math:`(M_0, \sigma)`: :math:`\mu M_0 + (1-\mu)\bar\Delta` and :math:`\mu\sigma + (1-\mu)s(\Delta)`.

    :math:`s` is the sample standard deviation (``ddof=1``), 0 for a single gap or equal gaps.

    Example:
        >>> from gammapo_spec.beta_dpo import init_beta_dpo_state, update_statistics
        >>> [round(v, 12) for v in update_statistics(init_beta_dpo_state(), [1.0, 3.0])]
        [0.2, 0.141421356237]
    """
    g = np.asarray(gaps, dtype=np.float64)
    mean = float(np.mean(g))
    std = float(np.std(g, ddof=1)) if g.shape[0] > 1 and g.max() != g.min() else 0.0
    mu = float(momentum)
    return mu * state.gap_mean + (1.0 - mu) * mean, mu * state.gap_std + (1.0 - mu) * std


def gaussian_log_weights(gaps, mean: float, std: float) -> np.ndarray:
    r""":math:`\log w_i = -\tfrac12 ((\Delta_i - M_0)/\sigma)^2`; all zeros (uniform) when σ = 0.

    Example:
        >>> from gammapo_spec.beta_dpo import gaussian_log_weights
        >>> gaussian_log_weights([0.0, 1.0, 3.0], 1.0, 2.0).tolist()
        [-0.125, -0.0, -0.5]
        >>> gaussian_log_weights([0.0, 5.0], 1.0, 0.0).tolist()
        [0.0, 0.0]
    """
    g = np.asarray(gaps, dtype=np.float64)
    if std == 0.0:
        return np.zeros_like(g)
    with np.errstate(over="ignore"):
        z = (g - mean) / std
        return -0.5 * (z * z)


def gumbel_noise(state: BetaDPOState, n: int) -> np.ndarray:
    r"""The step's ``[n]`` Gumbel draws :math:`g_i = -\log(-\log u_i)`, u from the portable hash.

    :math:`u = \texttt{uniform24}(\texttt{slot\_keys}(\texttt{stream\_key}(\text{seed},
    \texttt{STREAM\_BETA\_DPO}, \text{step}), n))`, all in (0, 1), so every g is finite.
    """
    key = stream_key(int(state.seed), STREAM_BETA_DPO, int(state.step) & MASK32)
    u = uniform24(slot_keys(key, n))
    return -np.log(-np.log(u))


def select_pairs(log_weights, noise, k: int) -> np.ndarray:
    """The ``[N]`` 0/1 mask of the k largest scores ``log_weights + noise`` (ties: lower index first).

    Example:
        >>> from gammapo_spec.beta_dpo import select_pairs
        >>> select_pairs([0.0, -1.0, 0.0, -5.0], [0.0, 0.0, 0.0, 0.0], 2).tolist()
        [1.0, 0.0, 1.0, 0.0]
    """
    s = np.asarray(log_weights, dtype=np.float64) + np.asarray(noise, dtype=np.float64)
    order = np.argsort(-s, kind="stable")
    mask = np.zeros(s.shape[0], dtype=np.float64)
    mask[order[:k]] = 1.0
    return mask


def batch_beta(gaps, mask, gap_mean: float, *, beta0: float, alpha: float, beta_min: float = 1e-3) -> float:
    r""":math:`\max(\beta_\min, \beta_0 [1 + \alpha(\bar\Delta_\text{kept} - M_0)])`.

    Example:
        >>> from gammapo_spec.beta_dpo import batch_beta
        >>> round(batch_beta([1.0, 3.0, 9.0], [1.0, 1.0, 0.0], 1.0, beta0=0.1, alpha=0.5), 12)
        0.15
    """
    g, m = np.asarray(gaps, dtype=np.float64), np.asarray(mask, dtype=np.float64)
    kept_mean = float(np.sum(g * m) / np.sum(m))
    return max(float(beta_min), float(beta0) * (1.0 + float(alpha) * (kept_mean - float(gap_mean))))


def masked_loss(gaps, mask, beta: float) -> float:
    r""":math:`L = \frac{1}{\sum_i m_i}\sum_i m_i\,\operatorname{softplus}(-\beta\Delta_i)` (β, m constants).

    Example:
        >>> from gammapo_spec.beta_dpo import masked_loss
        >>> round(masked_loss([0.0, 50.0], [1.0, 0.0], 0.1), 12)  # log 2
        0.69314718056
    """
    g, m = np.asarray(gaps, dtype=np.float64), np.asarray(mask, dtype=np.float64)
    return float(np.sum(m * softplus(-float(beta) * g)) / np.sum(m))


def masked_loss_grad(gaps, mask, beta: float) -> np.ndarray:
    r""":math:`\partial L/\partial\Delta_i = -\frac{m_i}{\sum_j m_j}\,\beta\,\sigma(-\beta\Delta_i)`."""
    g, m = np.asarray(gaps, dtype=np.float64), np.asarray(mask, dtype=np.float64)
    return -(m / np.sum(m)) * float(beta) * sigmoid(-float(beta) * g)


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
) -> BetaDPOOutput:
    r"""One β-DPO step (see the module docstring for the maths and the decisions).

    Args:
        state: the carried :class:`BetaDPOState` (from :func:`init_beta_dpo_state`).
        chosen_logps, rejected_logps: ``[N]`` policy log-probs :math:`c, r`.
        ref_chosen_logps, ref_rejected_logps: ``[N]`` reference log-probs.
        beta0: the base :math:`\beta_0 > 0`.
        alpha: the scaling α of β (finite; 0 gives β = β0).
        rho: the fraction of pairs kept, in (0, 1].
        momentum: μ of the running statistics, in [0, 1).
        beta_min: the floor of β, > 0.

    Returns:
        A :class:`BetaDPOOutput` (loss, per-pair losses, mask, β, gaps, new state).

    Raises:
        ConfigError: a bad hyper-parameter (naming it).
        InputError: a non-1-D, empty, mismatched or non-finite log-prob input (naming it).
        StateError: ``state`` is not a :class:`BetaDPOState` (field ``"state"``).

    Example:
        >>> from gammapo_spec.beta_dpo import beta_dpo_step, init_beta_dpo_state
        >>> out = beta_dpo_step(init_beta_dpo_state(0), [-1.0, -2.0], [-3.0, -2.0],
        ...                     [-2.0, -2.0], [-2.0, -2.0], beta0=0.1, alpha=0.5, rho=1.0)
        >>> out.gaps.tolist(), out.mask.tolist(), round(out.beta, 12)
        ([2.0, 0.0], [1.0, 1.0], 0.145)
        >>> out.state.to_dict()["step"], round(out.state.gap_mean, 12)
        (1, 0.1)
    """
    b0, a, r, mu, bmin = check_beta_dpo_params(beta0, alpha, rho, momentum, beta_min)
    if not isinstance(state, BetaDPOState):
        raise StateError(f"state must be a BetaDPOState, got {type(state).__name__}", field="state")
    gaps = reward_discrepancy(chosen_logps, rejected_logps, ref_chosen_logps, ref_rejected_logps)
    n = gaps.shape[0]
    mean, std = update_statistics(state, gaps, mu)
    mask = select_pairs(gaussian_log_weights(gaps, mean, std), gumbel_noise(state, n), keep_count(n, r))
    beta = batch_beta(gaps, mask, mean, beta0=b0, alpha=a, beta_min=bmin)
    losses = softplus(-beta * gaps)
    loss = float(np.sum(mask * losses) / np.sum(mask))
    new_state = BetaDPOState(gap_mean=mean, gap_std=std, step=state.step + 1, seed=state.seed)
    return BetaDPOOutput(loss=loss, losses=losses, mask=mask, beta=beta, gaps=gaps, state=new_state)


def beta_dpo_state_to_dict(state: BetaDPOState) -> dict[str, Any]:
    """``state.to_dict()``: the backend-independent checkpoint form (every backend has this function)."""
    return state.to_dict()


def beta_dpo_state_from_dict(data: Mapping[str, Any]) -> BetaDPOState:
    """:meth:`BetaDPOState.from_dict` (every backend has this function, returning its own state type).

    Raises:
        StateError: a missing key or a bad value, naming the field.
    """
    return BetaDPOState.from_dict(data)


def beta_dpo_loss_and_grad(state: BetaDPOState, chosen_logps, rejected_logps, ref_chosen_logps, ref_rejected_logps,
                           **kwargs) -> tuple[BetaDPOOutput, dict[str, np.ndarray]]:
    r"""One step and the gradient of its loss with respect to the four log-prob inputs.

    With β and the mask held constant, :math:`g = \partial L/\partial\Delta` (:func:`masked_loss_grad`)
    and the gradients are :math:`(g, -g, -g, g)` for ``chosen_logps``, ``rejected_logps``,
    ``ref_chosen_logps``, ``ref_rejected_logps``. Backends return their autodiff gradients.

    Args:
        state, chosen_logps, rejected_logps, ref_chosen_logps, ref_rejected_logps, **kwargs: as
            :func:`beta_dpo_step`.

    Returns:
        ``(output, grads)`` with ``grads`` keyed by the input names (float64 arrays).

    Example:
        >>> from gammapo_spec.beta_dpo import beta_dpo_loss_and_grad, init_beta_dpo_state
        >>> out, grads = beta_dpo_loss_and_grad(init_beta_dpo_state(), [0.0], [0.0], [0.0], [0.0], beta0=0.5)
        >>> grads["chosen_logps"].tolist(), grads["rejected_logps"].tolist()
        ([-0.25], [0.25])
    """
    out = beta_dpo_step(state, chosen_logps, rejected_logps, ref_chosen_logps, ref_rejected_logps, **kwargs)
    g = masked_loss_grad(out.gaps, out.mask, out.beta)
    return out, dict(zip(_LOGP_FIELDS, (g, -g, -g, g)))
