r"""ε-DPO: per-pair KL-penalty control by perturbing the policy (Lee et al., arXiv 2502.13177).

DPO's β sets how far the policy may move from the reference. ε-DPO decides, for each pair, whether a
slightly smaller or larger β would fit better, using only logits already computed. At the token level
(before the log-softmax; docs page *Related methods*, ``docs/theory/related.md``, "ε-DPO"):

.. math::

    z^+ = (1+\varepsilon)\,z^\pi - \varepsilon\,z^\text{ref},\qquad
    z^- = (1-\varepsilon)\,z^\pi + \varepsilon\,z^\text{ref},

and :math:`\log\pi^\pm(y)` are the sequence log-probs of the labels under :math:`\operatorname{log\_softmax}(z^\pm)`
(:math:`z^+` extrapolates away from the reference: the policy trained with :math:`\beta/(1+\varepsilon)`;
:math:`z^-` interpolates toward it: :math:`\beta/(1-\varepsilon)`). With the log-ratios
:math:`\rho = c - r`, :math:`\rho^\pm = c^\pm - r^\pm` of a pair (chosen c, rejected r),

.. math::

    s_i = \begin{cases} +1 & \rho^+_i > \rho_i > \rho^-_i \\ -1 & \rho^-_i > \rho_i > \rho^+_i \\ 0 & \text{otherwise}\end{cases},
    \qquad \beta_i = \frac{\beta}{1 + \varepsilon s_i},

.. math::

    h_i = \beta_i\big[(c_i - c_{\text{ref},i}) - (r_i - r_{\text{ref},i})\big],\qquad
    \ell_i = (1-\varepsilon_\text{ls})\operatorname{softplus}(-(h_i - m_i)) + \varepsilon_\text{ls}\operatorname{softplus}(h_i - m_i),
    \qquad \mathcal L = \tfrac1N\textstyle\sum_i \ell_i,

and after every optimiser step the global β moves with the batch's mean step,

.. math:: \beta \leftarrow \beta \,/\, \big(1 + \varepsilon\,\overline{s}\big),\qquad
   \overline{s} = \text{mean of } s \text{ over every pair since the last update (all micro-batches, all ranks)}.

Decisions fixed by this spec (alternatives named):

* **Token convention.** The caller aligns logits and labels: ``logits[b, t]`` scores ``labels[b, t]``
  (shift causal-LM logits by one before calling). The tokens that count are given by ``mask``
  ``[B, T]`` (bool or 0/1); with ``mask=None`` they are the labels ``!= -100`` (:data:`IGNORE_INDEX`,
  TRL's convention). Labels outside the mask are ignored and may hold anything; labels inside it
  must lie in ``[0, V)``. A row without any counted token raises (a sequence log-prob of 0 would
  silently count as a perfect prediction).
* **Label smoothing** is the cDPO form :math:`-\varepsilon_\text{ls}\log\sigma(-(h - m))`, the same as
  :mod:`gammapo_spec.losses`. The released ε-DPO code's smoothing branch uses :math:`+h` in both
  terms (:math:`-(1-\varepsilon_\text{ls})\log\sigma(h) - \varepsilon_\text{ls}\log\sigma(h)`), which
  is plain DPO whatever the smoothing; read as a sign slip, not offered.
* **Rewards** are :math:`\beta_i(c_i - c_{\text{ref},i})` and :math:`\beta_i(r_i - r_{\text{ref},i})`
  (the per-pair β that the loss uses), so ``chosen - rejected`` is the gap :math:`h_i`.
* **Gradient.** :math:`s_i` (and so :math:`\beta_i`) is a constant for the gradient: the perturbed
  log-probs only decide it. :math:`\partial\mathcal L/\partial c_i = \beta_i\,\ell'(h_i - m_i)/N`
  (:func:`epsilon_dpo_grad`).
* **Arithmetic of the perturbation.** :math:`z^\pm` are computed as :math:`z^\pi \pm \varepsilon(z^\pi - z^\text{ref})`
  (algebraically the same). Where the policy equals the reference (the first step of every run) this
  gives exactly :math:`z^\pi`, so :math:`\rho^\pm = \rho` and :math:`s = 0`; the literal
  :math:`(1+\varepsilon)z^\pi - \varepsilon z^\text{ref}` rounds differently from :math:`z^\pi` and
  lets the last bit of rounding decide :math:`s = \pm 1` (found by a Hypothesis property here).
* **Ties** (any two of :math:`\rho^+, \rho, \rho^-` equal) give :math:`s_i = 0`: the strict
  inequalities as written. With :math:`\varepsilon` so small that :math:`z^\pm` round to :math:`z^\pi`,
  every :math:`s_i` is 0 and ε-DPO is DPO.
* **The β update** uses the mean over *pairs*, accumulated across micro-batches and summed over ranks
  (:func:`epsilon_accumulate`, :func:`epsilon_update_beta`); ranks may hold different numbers of
  pairs. An update with nothing accumulated leaves β unchanged. The state carries ε, so a saved
  state (:func:`epsilon_state_to_dict`) continues exactly.
* **With γ-PO** (``gamma-epsilon-dpo``): the per-pair margin is :math:`m_i = \gamma_i - \gamma_0`, with
  γ calibrated (stop-gradient) on the ε-DPO gaps :math:`h_i` computed *with the per-pair*
  :math:`\beta_i`, and :math:`\gamma_0 = \beta\cdot\text{gamma\_beta\_ratio}` with the *current* global β,
  so the margins stay in the units of the gaps as β drifts. This is γ-DPO's rule
  (``docs/theory/losses.md``, "The target margin"): DPO's zero margin is kept on average. Two passes: :func:`epsilon_dpo_gaps`,
  then :func:`epsilon_dpo_loss` with ``margins``.

Example:
    >>> import numpy as np
    >>> from gammapo_spec.epsilon_dpo import epsilon_steps, epsilon_betas
    >>> s = epsilon_steps([-3.0, -3.0, -3.0], [-5.0, -5.0, -5.0],
    ...                   [-2.0, -3.5, -3.0], [-5.0, -5.0, -5.0], [-4.0, -2.5, -3.0], [-5.0, -5.0, -5.0])
    >>> s.tolist(), epsilon_betas(0.1, s, 0.25).round(6).tolist()
    ([1, -1, 0], [0.08, 0.133333, 0.1])
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

import numpy as np

from .epsilon_tokens import (  # the token-level op, re-exported here (ε-DPO's namespace for every backend)
    IGNORE_INDEX,
    SequenceLogps,
    check_token_shapes,
    epsilon_sequence_logps,
    sequence_logps_vjp,
    token_mask,
)
from .errors import ConfigError, InputError, StateError
from .hyperparams import check_beta, check_epsilon, check_label_smoothing
from .numerics import sigmoid, softplus
from .validation import check_finite

__all__ = [
    "IGNORE_INDEX",
    "EpsilonDPOState",
    "EpsilonDPOOutput",
    "SequenceLogps",
    "check_epsilon",
    "check_beta",
    "check_label_smoothing",
    "check_token_shapes",
    "check_pair_columns",
    "check_steps_values",
    "token_mask",
    "epsilon_sequence_logps",
    "sequence_logps_vjp",
    "epsilon_steps",
    "epsilon_betas",
    "epsilon_dpo_gaps",
    "epsilon_dpo_loss",
    "epsilon_dpo_grad",
    "init_epsilon_state",
    "epsilon_accumulate",
    "epsilon_update_beta",
    "epsilon_state_to_dict",
    "epsilon_state_from_dict",
]

_PAIR_FIELDS = ("chosen_logps", "rejected_logps", "ref_chosen_logps", "ref_rejected_logps")
_STEP_FIELDS = ("chosen_logps", "rejected_logps", "chosen_logps_plus", "rejected_logps_plus",
                "chosen_logps_minus", "rejected_logps_minus")


# --- pair-level ops ------------------------------------------------------------------------------------
def check_pair_columns(shapes: Mapping[str, tuple[int, ...]]) -> int:
    """Check per-pair inputs (in the order given): each 1-D, non-empty, all of one length N.

    Returns:
        N.

    Raises:
        InputError: naming the first bad argument.

    Example:
        >>> check_pair_columns({"chosen_logps": (3,), "rejected_logps": (3,)})
        3
    """
    n = None
    first = None
    for name, shape in shapes.items():
        shape = tuple(shape)
        if len(shape) != 1:
            raise InputError(f"{name} must be 1-D (one value per pair), got shape {shape}", field=name)
        if shape[0] == 0:
            raise InputError(f"{name} is empty: a batch needs at least one pair", field=name)
        if n is None:
            n, first = shape[0], name
        elif shape[0] != n:
            raise InputError(f"{name} has {shape[0]} pairs but {first} has {n}; all inputs need the same length",
                             field=name)
    assert n is not None
    return n


def check_steps_values(ok: bool) -> None:
    """Raise :class:`InputError` (``field="steps"``) unless every step is -1, 0 or +1 (``ok``)."""
    if not ok:
        raise InputError("steps must hold only -1, 0 or +1", field="steps")


def _columns(names: tuple[str, ...], values: tuple) -> dict[str, np.ndarray]:
    for name, value in zip(names, values):
        if value is None:
            raise InputError(f"{name} is needed but was not given", field=name)
    arrays = {name: np.asarray(value, dtype=np.float64) for name, value in zip(names, values)}
    check_pair_columns({k: a.shape for k, a in arrays.items()})
    for name, a in arrays.items():
        check_finite(name, bool(np.all(np.isfinite(a))))
    return arrays


def epsilon_steps(chosen_logps, rejected_logps, chosen_logps_plus, rejected_logps_plus,
                  chosen_logps_minus, rejected_logps_minus) -> np.ndarray:
    r"""The per-pair step :math:`s_i \in \{-1, 0, +1\}` (see the module docs; strict inequalities).

    Args:
        chosen_logps, rejected_logps: ``[N]`` policy log-probs c, r.
        chosen_logps_plus, rejected_logps_plus: ``[N]`` log-probs under :math:`z^+`.
        chosen_logps_minus, rejected_logps_minus: ``[N]`` log-probs under :math:`z^-`.

    Returns:
        ``[N]`` int64 steps.

    Raises:
        InputError: a missing, non-1-D, empty, mismatched or non-finite input.

    Example:
        >>> epsilon_steps([-1.0], [-2.0], [-0.5], [-2.0], [-1.5], [-2.0]).tolist()
        [1]
    """
    a = _columns(_STEP_FIELDS, (chosen_logps, rejected_logps, chosen_logps_plus, rejected_logps_plus,
                                chosen_logps_minus, rejected_logps_minus))
    rho = a["chosen_logps"] - a["rejected_logps"]
    rho_p = a["chosen_logps_plus"] - a["rejected_logps_plus"]
    rho_m = a["chosen_logps_minus"] - a["rejected_logps_minus"]
    up = (rho_p > rho) & (rho > rho_m)
    down = (rho_m > rho) & (rho > rho_p)
    return up.astype(np.int64) - down.astype(np.int64)


def _steps_array(steps, n: int) -> np.ndarray:
    if steps is None:
        raise InputError("steps is needed but was not given", field="steps")
    s = np.asarray(steps)
    if s.shape != (n,):
        raise InputError(f"steps must be [N] = ({n},), got shape {s.shape}", field="steps")
    s = s.astype(np.float64)
    check_steps_values(bool(np.all((s == -1.0) | (s == 0.0) | (s == 1.0))))
    return s


def epsilon_betas(beta: float, steps, epsilon: float) -> np.ndarray:
    r"""The per-pair :math:`\beta_i = \beta / (1 + \varepsilon s_i)`.

    Args:
        beta: β > 0; steps: ``[N]`` values in {-1, 0, +1}; epsilon: ε in (0, 1).

    Returns:
        ``[N]`` float64.

    Raises:
        ConfigError: bad ``beta`` or ``epsilon``.
        InputError: ``steps`` not 1-D, empty, or holding other values.

    Example:
        >>> epsilon_betas(1.0, [1, 0, -1], 0.5).tolist()
        [0.6666666666666666, 1.0, 2.0]
    """
    b, eps = check_beta(beta), check_epsilon(epsilon)
    s = np.asarray(steps)
    check_pair_columns({"steps": s.shape})
    s = _steps_array(s, s.shape[0])
    return b / (1.0 + eps * s)


def _pair_inputs(chosen_logps, rejected_logps, ref_chosen_logps, ref_rejected_logps, steps, margins):
    a = _columns(_PAIR_FIELDS, (chosen_logps, rejected_logps, ref_chosen_logps, ref_rejected_logps))
    n = a["chosen_logps"].shape[0]
    s = _steps_array(steps, n)
    if margins is None:
        m = np.zeros(n)
    else:
        m = np.asarray(margins, dtype=np.float64)
        if m.shape != (n,):
            raise InputError(f"margins must be [N] = ({n},), got shape {m.shape}", field="margins")
        check_finite("margins", bool(np.all(np.isfinite(m))))
    return a, s, m


def epsilon_dpo_gaps(chosen_logps, rejected_logps, ref_chosen_logps, ref_rejected_logps, steps, *,
                     beta: float, epsilon: float) -> np.ndarray:
    r"""The ε-DPO gaps :math:`h_i = \beta_i[(c_i - c_{\text{ref},i}) - (r_i - r_{\text{ref},i})]`.

    This is the calibration set of ``gamma-epsilon-dpo`` (module docs).

    Example:
        >>> epsilon_dpo_gaps([-1.0], [-3.0], [-2.0], [-2.0], [1], beta=1.0, epsilon=0.25).tolist()
        [1.6]
    """
    b, eps = check_beta(beta), check_epsilon(epsilon)
    a, s, _ = _pair_inputs(chosen_logps, rejected_logps, ref_chosen_logps, ref_rejected_logps, steps, None)
    betas = b / (1.0 + eps * s)
    return betas * ((a["chosen_logps"] - a["ref_chosen_logps"]) - (a["rejected_logps"] - a["ref_rejected_logps"]))


@dataclasses.dataclass(frozen=True)
class EpsilonDPOOutput:
    """What :func:`epsilon_dpo_loss` returns.

    Attributes:
        loss: the scalar batch loss (mean of ``losses``).
        losses: ``[N]`` per-pair losses.
        betas: ``[N]`` per-pair :math:`\\beta_i`.
        gaps: ``[N]`` :math:`h_i` (before the margin).
        chosen_rewards, rejected_rewards: ``[N]`` :math:`\\beta_i(c - c_\\text{ref})`, :math:`\\beta_i(r - r_\\text{ref})`.
        steps: ``[N]`` the steps :math:`s_i` the loss used, filled in by :func:`gammapo_spec.step`
            (``None`` from :func:`epsilon_dpo_loss`, which is given them).
    """

    loss: Any
    losses: Any
    betas: Any
    gaps: Any
    chosen_rewards: Any
    rejected_rewards: Any
    steps: Any = None


def epsilon_dpo_loss(chosen_logps, rejected_logps, ref_chosen_logps, ref_rejected_logps, steps, *,
                     beta: float, epsilon: float, label_smoothing: float = 0.0, margins=None) -> EpsilonDPOOutput:
    r"""The ε-DPO loss: DPO with per-pair :math:`\beta_i` and an optional per-pair margin.

    .. math::

        \mathcal L = \frac1N\sum_i (1-\varepsilon_\text{ls})\operatorname{softplus}(-(h_i - m_i))
        + \varepsilon_\text{ls}\operatorname{softplus}(h_i - m_i).

    Args:
        chosen_logps, rejected_logps: ``[N]`` policy log-probs c, r.
        ref_chosen_logps, ref_rejected_logps: ``[N]`` reference log-probs.
        steps: ``[N]`` :math:`s_i` from :func:`epsilon_steps`.
        beta: the current global β > 0; epsilon: ε in (0, 1).
        label_smoothing: :math:`\varepsilon_\text{ls} \in [0, 0.5)` (cDPO form).
        margins: ``[N]`` per-pair margins :math:`m_i` (default 0); for γ-PO, :math:`\gamma_i - \gamma_0`.

    Returns:
        :class:`EpsilonDPOOutput` (float64).

    Raises:
        ConfigError: bad ``beta``, ``epsilon`` or ``label_smoothing``.
        InputError: a missing, non-1-D, empty, mismatched or non-finite input, or bad ``steps``.

    Example:
        >>> out = epsilon_dpo_loss([-1.0, -2.0], [-3.0, -2.0], [-2.0, -2.0], [-2.0, -2.0], [1, 0],
        ...                        beta=1.0, epsilon=0.25)
        >>> out.betas.tolist(), out.gaps.tolist(), round(float(out.loss), 6)
        ([0.8, 1.0], [1.6, 0.0], 0.438524)
    """
    b, eps = check_beta(beta), check_epsilon(epsilon)
    ls = check_label_smoothing(label_smoothing)
    a, s, m = _pair_inputs(chosen_logps, rejected_logps, ref_chosen_logps, ref_rejected_logps, steps, margins)
    betas = b / (1.0 + eps * s)
    cw = betas * (a["chosen_logps"] - a["ref_chosen_logps"])
    rl = betas * (a["rejected_logps"] - a["ref_rejected_logps"])
    h = cw - rl
    z = h - m
    losses = (1.0 - ls) * softplus(-z) + ls * softplus(z)
    return EpsilonDPOOutput(float(np.mean(losses)), losses, betas, h, cw, rl)


def epsilon_dpo_grad(chosen_logps, rejected_logps, ref_chosen_logps, ref_rejected_logps, steps, *,
                     beta: float, epsilon: float, label_smoothing: float = 0.0, margins=None) -> dict[str, np.ndarray]:
    r"""The analytic gradient of :func:`epsilon_dpo_loss` (steps and margins held constant).

    .. math::

        \frac{\partial\mathcal L}{\partial(c_i, r_i, c_{\text{ref},i}, r_{\text{ref},i})}
        = \frac{\beta_i\,\ell'(z_i)}{N}(1, -1, -1, 1),\qquad
        \ell'(z) = -(1-\varepsilon_\text{ls})\sigma(-z) + \varepsilon_\text{ls}\sigma(z).

    Returns:
        ``{"chosen_logps": …, "rejected_logps": …, "ref_chosen_logps": …, "ref_rejected_logps": …}``,
        each ``[N]`` float64.

    Example:
        >>> g = epsilon_dpo_grad([0.0], [0.0], [0.0], [0.0], [0], beta=2.0, epsilon=0.1)
        >>> float(g["chosen_logps"][0]), float(g["rejected_logps"][0])
        (-1.0, 1.0)
    """
    out = epsilon_dpo_loss(chosen_logps, rejected_logps, ref_chosen_logps, ref_rejected_logps, steps,
                           beta=beta, epsilon=epsilon, label_smoothing=label_smoothing, margins=margins)
    ls = float(label_smoothing)
    m = np.zeros_like(out.gaps) if margins is None else np.asarray(margins, dtype=np.float64)
    z = out.gaps - m
    dz = (-(1.0 - ls) * sigmoid(-z) + ls * sigmoid(z)) * out.betas / z.shape[0]
    return {"chosen_logps": dz, "rejected_logps": -dz, "ref_chosen_logps": -dz, "ref_rejected_logps": dz}


# --- the global β and its update ---------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class EpsilonDPOState:
    """The global β of ε-DPO and the steps accumulated since the last optimiser step.

    Attributes:
        beta: the current global β > 0.
        epsilon: ε in (0, 1).
        step_sum: :math:`\\sum s_i` over the pairs accumulated since the last update.
        step_count: the number of those pairs.
        updates: the number of β updates taken (optimiser steps).
    """

    beta: float
    epsilon: float
    step_sum: int = 0
    step_count: int = 0
    updates: int = 0


def init_epsilon_state(beta: float, epsilon: float) -> EpsilonDPOState:
    """A fresh state (nothing accumulated).

    Raises:
        ConfigError: bad ``beta`` or ``epsilon``.

    Example:
        >>> init_epsilon_state(0.1, 0.01)
        EpsilonDPOState(beta=0.1, epsilon=0.01, step_sum=0, step_count=0, updates=0)
    """
    return EpsilonDPOState(check_beta(beta), check_epsilon(epsilon))


def epsilon_accumulate(state: EpsilonDPOState, steps) -> EpsilonDPOState:
    r"""Add a micro-batch's steps: ``step_sum += Σ s``, ``step_count += N``.

    Example:
        >>> epsilon_accumulate(init_epsilon_state(1.0, 0.5), [1, 1, 0, -1]).step_sum
        1
    """
    s = np.asarray(steps)
    n = check_pair_columns({"steps": s.shape})
    s = _steps_array(s, n)
    return dataclasses.replace(state, step_sum=state.step_sum + int(np.sum(s)), step_count=state.step_count + n)


def epsilon_update_beta(state: EpsilonDPOState) -> EpsilonDPOState:
    r"""After an optimiser step: :math:`\beta \leftarrow \beta/(1 + \varepsilon\,\overline{s})`, accumulators reset.

    :math:`\overline{s}` = ``step_sum / step_count``; with nothing accumulated β is unchanged (the
    update counter still advances). In data-parallel training sum ``step_sum`` and ``step_count``
    over the ranks first.

    Example:
        >>> st = epsilon_update_beta(epsilon_accumulate(init_epsilon_state(1.0, 0.5), [1, 1, 0, -1]))
        >>> st.beta, st.step_sum, st.step_count, st.updates
        (0.8888888888888888, 0, 0, 1)
    """
    beta = state.beta
    if state.step_count > 0:
        beta = beta / (1.0 + state.epsilon * (state.step_sum / state.step_count))
    return EpsilonDPOState(beta, state.epsilon, 0, 0, state.updates + 1)


def epsilon_state_to_dict(state: EpsilonDPOState) -> dict[str, Any]:
    """The state as plain Python numbers (for a checkpoint).

    Example:
        >>> epsilon_state_to_dict(init_epsilon_state(0.1, 0.01))
        {'beta': 0.1, 'epsilon': 0.01, 'step_sum': 0, 'step_count': 0, 'updates': 0}
    """
    return {"beta": float(state.beta), "epsilon": float(state.epsilon), "step_sum": int(state.step_sum),
            "step_count": int(state.step_count), "updates": int(state.updates)}


def _scalar(value: Any) -> Any:
    """A 0-d array (a checkpoint's NumPy value) as the Python number it holds; anything else unchanged."""
    return value.item() if getattr(value, "ndim", None) == 0 and hasattr(value, "item") else value


def epsilon_state_from_dict(data: Mapping[str, Any]) -> EpsilonDPOState:
    """Rebuild a state saved by :func:`epsilon_state_to_dict`.

    Raises:
        StateError: a missing key, a β or ε out of its domain, or negative / inconsistent counters
            (``field`` names the key).

    Example:
        >>> epsilon_state_from_dict({'beta': 0.1, 'epsilon': 0.01, 'step_sum': 0, 'step_count': 0, 'updates': 3}).updates
        3
    """
    if not isinstance(data, Mapping):
        raise StateError(f"an epsilon-DPO state must be a mapping, got {type(data).__name__}", field="state")
    for key in ("beta", "epsilon", "step_sum", "step_count", "updates"):
        if key not in data:
            raise StateError(f"epsilon-DPO state has no {key!r}", field=key)
    try:
        beta, eps = check_beta(_scalar(data["beta"])), check_epsilon(_scalar(data["epsilon"]))
    except ConfigError as exc:
        raise StateError(str(exc), field=exc.field) from None
    counters = {}
    for key in ("step_sum", "step_count", "updates"):
        v = data[key]
        if isinstance(v, bool) or not float(v).is_integer():
            raise StateError(f"{key} must be an integer, got {v!r}", field=key)
        counters[key] = int(v)
    if counters["step_count"] < 0 or counters["updates"] < 0:
        raise StateError("step_count and updates must be >= 0", field="step_count")
    if abs(counters["step_sum"]) > counters["step_count"]:
        raise StateError(f"|step_sum| = {abs(counters['step_sum'])} exceeds step_count = {counters['step_count']}",
                         field="step_sum")
    return EpsilonDPOState(beta, eps, counters["step_sum"], counters["step_count"], counters["updates"])
