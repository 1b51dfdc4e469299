r"""The γ-PO loss: rewards → (calibrated) margins → per-pair losses, its gradient, and its output type.

One step of :func:`gamma_po_loss`:

.. math::

    h_i = u_{w,i} - u_{l,i} \;\;(\text{see } \texttt{reward\_gap}),\qquad
    \gamma = \texttt{calibrate}(h)\;\;(\text{stop-gradient}),\qquad
    m_i = m^\text{base}_i + (\gamma_i - \gamma_0),

.. math::

    \mathcal L = \frac1N \sum_i \ell(h_i - m_i) \;[+\; \tfrac1N\textstyle\sum_i t_i\ \text{for SimPO's NLL term, see}\ \texttt{sft\_terms}].

Its gradient with respect to the log-prob inputs (:func:`loss_vjp`), margins held constant:

.. math::

    \frac{\partial \mathcal L}{\partial h_i} = \frac{\ell'(h_i - m_i)}{N},\qquad
    \frac{\partial h_i}{\partial(c_i, r_i, c_{\text{ref},i}, r_{\text{ref},i})} = \beta\,(1, -1, -1, 1)
    \;\text{(reference-based)},\qquad
    \frac{\partial h_i}{\partial(c_i, r_i)} = \beta\,(1/|y_w|, -1/|y_l|)\;\text{(SimPO)},

plus :math:`-w_\text{sft}/(N|y_w|)` on :math:`c_i` for SimPO's NLL term (:math:`-w_\text{sft}/\sum_j|y_{w,j}|`
with ``sft_reduction="token"``). Lengths get no gradient.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

import numpy as np

from .config import GammaPOConfig
from .losses import pair_loss_derivative, pair_losses, sft_terms, sft_terms_grad, target_margins
from .rewards import _rewards_from_arrays, prepare_inputs
from .state import QueueState, calibrate_step, check_state
from .validation import check_gaps_finite

__all__ = ["LossOutput", "gamma_po_loss", "loss_with_margins", "loss_vjp", "loss_metrics"]


@dataclasses.dataclass(frozen=True)
class LossOutput:
    """What a γ-PO loss step returns (arrays are the backend's own; here float64 NumPy).

    Attributes:
        loss: the scalar batch loss (mean of ``losses``).
        losses: ``[N]`` per-pair losses.
        margins: ``[N]`` per-pair target margins m actually used (constants for the gradient).
        gaps: ``[N]`` reward gaps h.
        chosen_rewards, rejected_rewards: ``[N]`` implicit rewards (detached in every backend).
        metrics: TRL-style scalars (see :func:`loss_metrics`).
    """

    loss: Any
    losses: Any
    margins: Any
    gaps: Any
    chosen_rewards: Any
    rejected_rewards: Any
    metrics: Mapping[str, Any]


def loss_metrics(chosen_rewards, rejected_rewards, margins) -> dict[str, float]:
    """Scalars to log: ``rewards/chosen``, ``rewards/rejected``, ``rewards/accuracies``, ``rewards/margins``
    (TRL's names and meanings: means over the batch; accuracy counts h > 0) and ``margins/mean``,
    ``margins/std`` (population), ``margins/min``, ``margins/max`` of the target margins.

    Example:
        >>> m = loss_metrics([1.0, -1.0], [0.0, 0.0], [0.5, 1.5])
        >>> m["rewards/accuracies"], m["margins/mean"], m["margins/std"]
        (0.5, 1.0, 0.5)
    """
    cw = np.asarray(chosen_rewards, dtype=np.float64)
    rl = np.asarray(rejected_rewards, dtype=np.float64)
    m = np.asarray(margins, dtype=np.float64)
    return {
        "rewards/chosen": float(cw.mean()),
        "rewards/rejected": float(rl.mean()),
        "rewards/accuracies": float(np.mean(cw > rl)),
        "rewards/margins": float(np.mean(cw - rl)),
        "margins/mean": float(m.mean()),
        "margins/std": float(m.std()),
        "margins/min": float(m.min()),
        "margins/max": float(m.max()),
    }


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
    r"""The loss for given target margins m (no calibration, no state): :math:`\frac1N\sum_i \ell(h_i - m_i)`.

    This is the second half of :func:`gamma_po_loss`, for callers that computed the margins
    themselves (a fused two-pass kernel, a custom calibration, a fixed margin schedule).

    Args:
        config: the loss configuration.
        margins: ``[N]`` target margins (e.g. :func:`~gammapo_spec.target_margins`).
        chosen_logps …: as :func:`gamma_po_loss`.

    Returns:
        A :class:`LossOutput`.

    Raises:
        InputError: bad inputs, or margins of another shape than the batch (field ``"margins"``).
    """
    x = prepare_inputs(
        config,
        chosen_logps=chosen_logps,
        rejected_logps=rejected_logps,
        ref_chosen_logps=ref_chosen_logps,
        ref_rejected_logps=ref_rejected_logps,
        chosen_lengths=chosen_lengths,
        rejected_lengths=rejected_lengths,
    )
    m = _check_margins(margins, x["chosen_logps"].shape[0])
    return _loss_from_arrays(config, x, m)


def _check_margins(margins, n: int) -> np.ndarray:
    from .errors import InputError

    m = np.asarray(margins, dtype=np.float64)
    if m.shape != (n,):
        raise InputError(f"margins must have shape ({n},), got {m.shape}", field="margins")
    return m


def _loss_from_arrays(config: GammaPOConfig, x: dict[str, np.ndarray], m: np.ndarray) -> LossOutput:
    u_w, u_l = _rewards_from_arrays(config, x)
    h = u_w - u_l
    losses = pair_losses(config, h - m)
    if config.sft_weight > 0:
        losses = losses + sft_terms(config, x["chosen_logps"], x["chosen_lengths"])
    return LossOutput(
        loss=float(np.mean(losses)),
        losses=losses,
        margins=m,
        gaps=h,
        chosen_rewards=u_w,
        rejected_rewards=u_l,
        metrics=loss_metrics(u_w, u_l, m),
    )


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
) -> tuple[LossOutput, QueueState | None]:
    r"""One loss step: gaps, calibrated margins (for ``gamma-*`` losses), per-pair losses, next state.

    Implements the equations of this module's docstring. For losses without the ``gamma-`` prefix
    the margins are the base margins and no calibration runs.

    Args:
        config: the loss configuration.
        state: the calibration state from :func:`~gammapo_spec.init_state` (``None`` when the config
            carries none: batch mode or constant margins).
        chosen_logps, rejected_logps: ``[N]`` summed policy log-probs of the responses.
        ref_chosen_logps, ref_rejected_logps: ``[N]`` reference log-probs (reference-based losses).
        chosen_lengths, rejected_lengths: ``[N]`` response lengths in tokens (SimPO, R-DPO).

    Returns:
        ``(output, new_state)``: a :class:`LossOutput` and the state for the next step.

    Raises:
        InputError: a missing, unexpected, mismatched, empty or non-finite input; non-positive lengths;
            (with ``check_values``) finite inputs whose reward gaps overflow (field ``"gaps"``, see
            :func:`~gammapo_spec.validation.check_gaps_finite`).
        StateError: a state that does not fit the config.

    Example:
        >>> from gammapo_spec import GammaPOConfig, init_state, gamma_po_loss
        >>> cfg = GammaPOConfig(loss="gamma-simpo", beta=2.0, gamma_beta_ratio=0.5, tau=1.0,
        ...                     calibration="batch")
        >>> out, state = gamma_po_loss(cfg, init_state(cfg), chosen_logps=[-4.0, -8.0],
        ...                            rejected_logps=[-9.0, -6.0], chosen_lengths=[2, 4],
        ...                            rejected_lengths=[3, 3])
        >>> round(out.loss, 6), [round(float(v), 6) for v in out.margins], state is None
        (0.773046, [1.189818, 0.810182], True)

    References:
        Sun et al., *Robust Preference Optimization via Dynamic Target Margins*, ACL 2025 Findings
        (arXiv:2506.03690), Algorithms 1 and 2.
    """
    check_state(config, state)
    x = prepare_inputs(
        config,
        chosen_logps=chosen_logps,
        rejected_logps=rejected_logps,
        ref_chosen_logps=ref_chosen_logps,
        ref_rejected_logps=ref_rejected_logps,
        chosen_lengths=chosen_lengths,
        rejected_lengths=rejected_lengths,
    )
    n = x["chosen_logps"].shape[0]
    gamma = None
    if config.check_values or config.dynamic_margins:
        u_w, u_l = _rewards_from_arrays(config, x)
        if config.check_values:
            check_gaps_finite(bool(np.all(np.isfinite(u_w - u_l))))
    if config.dynamic_margins:
        gamma, state = calibrate_step(config, state, u_w - u_l)
    m = target_margins(
        config, n, gamma=gamma, chosen_lengths=x.get("chosen_lengths"), rejected_lengths=x.get("rejected_lengths")
    )
    return _loss_from_arrays(config, x, m), state


def loss_vjp(
    config: GammaPOConfig,
    margins,
    *,
    chosen_logps,
    rejected_logps,
    ref_chosen_logps=None,
    ref_rejected_logps=None,
    chosen_lengths=None,
    rejected_lengths=None,
    cotangent: float = 1.0,
) -> dict[str, np.ndarray]:
    r"""The gradient of ``cotangent · loss`` with respect to each log-prob input, margins held constant.

    The analytic vector-Jacobian product of :func:`loss_with_margins` (equations in this module's
    docstring). It is what every backend's autodiff must reproduce for :func:`gamma_po_loss`, since
    the calibrated margins are stop-gradient.

    Returns:
        A dict from input name (``chosen_logps``, ``rejected_logps`` and, for reference-based losses,
        ``ref_chosen_logps``, ``ref_rejected_logps``) to its ``[N]`` gradient.

    Example:
        >>> import numpy as np
        >>> from gammapo_spec import GammaPOConfig, loss_vjp
        >>> g = loss_vjp(GammaPOConfig(loss="dpo", beta=1.0), [0.0], chosen_logps=[0.0],
        ...              rejected_logps=[0.0], ref_chosen_logps=[0.0], ref_rejected_logps=[0.0])
        >>> {k: float(v[0]) for k, v in g.items()}
        {'chosen_logps': -0.5, 'rejected_logps': 0.5, 'ref_chosen_logps': 0.5, 'ref_rejected_logps': -0.5}
    """
    x = prepare_inputs(
        config,
        chosen_logps=chosen_logps,
        rejected_logps=rejected_logps,
        ref_chosen_logps=ref_chosen_logps,
        ref_rejected_logps=ref_rejected_logps,
        chosen_lengths=chosen_lengths,
        rejected_lengths=rejected_lengths,
    )
    n = x["chosen_logps"].shape[0]
    m = _check_margins(margins, n)
    u_w, u_l = _rewards_from_arrays(config, x)
    dh = float(cotangent) * pair_loss_derivative(config, (u_w - u_l) - m) / n
    beta = config.beta
    if config.reference_free:
        grads = {
            "chosen_logps": dh * beta / x["chosen_lengths"],
            "rejected_logps": -dh * beta / x["rejected_lengths"],
        }
        if config.sft_weight > 0:
            grads["chosen_logps"] = grads["chosen_logps"] + float(cotangent) * sft_terms_grad(
                config, x["chosen_lengths"]
            )
        return grads
    return {
        "chosen_logps": dh * beta,
        "rejected_logps": -dh * beta,
        "ref_chosen_logps": -dh * beta,
        "ref_rejected_logps": dh * beta,
    }
