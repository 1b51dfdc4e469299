r"""Is γ-PO's mechanism active? Diagnostics of the calibrated margins on pairs whose flipped labels are known.

γ-PO gives each pair a target margin :math:`\gamma_i` from the calibration problem; a pair whose
implicit reward gap :math:`h_i` is small (or negative) gets a *smaller* margin, so a flipped pair —
which the policy should not learn — should get a small :math:`\gamma_i` and, through the loss's
gradient weight :math:`w_i = \sigma(m_i - h_i)` (the sigmoid family, :math:`|\ell'(h_i - m_i)|`), a
smaller share of the update. On the embedded task the flipped pairs are known, so this can be
measured (:func:`margin_diagnostics`):

* ``auc_flipped`` — the AUC of :math:`-\gamma` for "this pair is flipped": 1 when every flipped pair
  has a smaller margin than every clean one, 0.5 for no information (:func:`auc`);
* ``gamma_cv`` — :math:`\operatorname{std}(\gamma)/\operatorname{mean}(\gamma)`, how far the margins
  move relative to their mean :math:`\gamma_0`;
* ``log_spread`` and ``spread_bound`` — the realised :math:`\max_b \log(\gamma_\max/\gamma_\min)` over
  the calibration sets against its bound :math:`\gamma_0/\tau` (the KKT conditions of the calibration
  problem: at these settings the margins can move at most this far);
* ``gamma0_over_gap`` — :math:`\gamma_0` relative to the gap scale, the median :math:`|h|`;
* ``flipped_weight_share`` vs ``flipped_weight_share_base`` — the flipped pairs' share of the total
  gradient weight with the calibrated margins and with the base loss's margin at the same gaps
  (:func:`flipped_weight_share`). γ-PO helps only if the first is clearly below the second.

Example:
    >>> import numpy as np
    >>> flipped = np.array([True, False, False, True])
    >>> auc(flipped.astype(float), flipped), auc(-flipped.astype(float), flipped), auc(np.zeros(4), flipped)
    (1.0, 0.0, 0.5)
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["auc", "gradient_weights", "flipped_weight_share", "calibrate_in_sets", "margin_diagnostics"]


def auc(scores, positive) -> float:
    r"""Area under the ROC curve of ``scores`` for the boolean labels ``positive``:
    :math:`P(s^+ > s^-) + \tfrac12 P(s^+ = s^-)` over all (positive, negative) pairs (Mann–Whitney, ties
    at mid-rank). NaN when either class is empty.

    Example:
        >>> auc([0.1, 0.4, 0.35, 0.8], [False, False, True, True])
        0.75
    """
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(positive, dtype=bool)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(s, kind="mergesort")
    ranks = np.empty(s.size)
    sorted_s = s[order]
    # mid-ranks of tied values (1-based)
    bounds = np.flatnonzero(np.diff(sorted_s)) + 1
    starts = np.concatenate([[0], bounds])
    ends = np.concatenate([bounds, [s.size]])
    for a, b in zip(starts, ends):
        ranks[order[a:b]] = 0.5 * (a + b + 1)
    u = ranks[y].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


def gradient_weights(gaps, margins) -> np.ndarray:
    r"""Per-pair gradient weight :math:`w_i = \sigma(m_i - h_i) = |\ell'(h_i - m_i)|` of the sigmoid loss
    (DPO, SimPO, R-DPO and their γ- variants)."""
    from gammapo_spec.numerics import sigmoid

    return sigmoid(np.asarray(margins, dtype=np.float64) - np.asarray(gaps, dtype=np.float64))


def flipped_weight_share(weights, flipped) -> float:
    r""":math:`\sum_{i \in \text{flipped}} w_i / \sum_i w_i`, the flipped pairs' share of the update.

    Example:
        >>> flipped_weight_share([1.0, 1.0, 2.0], [True, False, False])
        0.25
    """
    w = np.asarray(weights, dtype=np.float64)
    f = np.asarray(flipped, dtype=bool)
    total = float(w.sum())
    return float(w[f].sum() / total) if total > 0 else float("nan")


def calibrate_in_sets(gaps, *, gamma0: float, tau: float, solver: str, set_size: int) -> tuple[np.ndarray, float]:
    """Calibrated margins of ``gaps`` taken ``set_size`` at a time (in order; the last set may be smaller)
    by the spec's :func:`~gammapo_spec.calibration.calibrate_margins`, and the largest realised
    ``log(γmax/γmin)`` of a set."""
    from gammapo_spec.calibration import calibrate_margins

    h = np.asarray(gaps, dtype=np.float64)
    gamma = np.empty_like(h)
    spread = 0.0
    for start in range(0, h.size, set_size):
        g = calibrate_margins(h[start:start + set_size], gamma0=gamma0, tau=tau, solver=solver)
        gamma[start:start + set_size] = g
        if g.size > 1 and g.min() > 0:
            spread = max(spread, float(np.log(g.max() / g.min())))
    return gamma, spread


def margin_diagnostics(gaps, flipped, *, gamma0: float, tau: float, solver: str, base_margin: float,
                       set_size: int = 32) -> dict[str, Any]:
    r"""The diagnostics of the module docstring for training pairs with gaps ``gaps`` (reward units, β
    included) and known flip flags, calibrated in sets of ``set_size`` (the training batch).

    ``base_margin`` is the base loss's target margin (0 for DPO, :math:`\gamma_0` for SimPO); the
    γ- variant's margin is :math:`m_i = \text{base} + \gamma_i - \gamma_0`.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> flipped = rng.random(256) < 0.2
        >>> h = np.where(flipped, -1.0, 1.0) + 0.1 * rng.standard_normal(256)
        >>> d = margin_diagnostics(h, flipped, gamma0=1.0, tau=1.0, solver="exact", base_margin=0.0)
        >>> d["auc_flipped"], d["log_spread"] <= d["spread_bound"], d["flipped_weight_share"] < d["flipped_weight_share_base"]
        (1.0, True, True)
    """
    h = np.asarray(gaps, dtype=np.float64)
    f = np.asarray(flipped, dtype=bool)
    gamma, spread = calibrate_in_sets(h, gamma0=gamma0, tau=tau, solver=solver, set_size=set_size)
    m_gamma = base_margin + gamma - gamma0
    m_base = np.full_like(h, base_margin)
    median_gap = float(np.median(np.abs(h)))
    return {
        "pairs": int(h.size),
        "flipped": int(f.sum()),
        "auc_flipped": auc(-gamma, f),
        "auc_flipped_gap": auc(-h, f),
        "gamma_mean": float(gamma.mean()),
        "gamma_cv": float(gamma.std() / gamma.mean()) if gamma.mean() > 0 else float("nan"),
        "log_spread": spread,
        "spread_bound": gamma0 / tau if tau > 0 else float("inf"),
        "kappa": gamma0**2 / (8.0 * tau),
        "median_abs_gap": median_gap,
        "gamma0_over_gap": gamma0 / median_gap if median_gap > 0 else float("inf"),
        "flipped_weight_share": flipped_weight_share(gradient_weights(h, m_gamma), f),
        "flipped_weight_share_base": flipped_weight_share(gradient_weights(h, m_base), f),
        "flipped_share_of_pairs": float(f.mean()) if f.size else float("nan"),
    }
