r"""Alignment potential on torch tensors: the ops of :mod:`gammapo_spec.alignment_potential`.

.. math::

    \mathrm{AP} = z(s_w - s_l) - w\, z(\Delta_\text{im}),\qquad
    \Delta_\text{im} = |c/|y_w| - r/|y_l|| \;\text{or}\; |(c - c_\text{ref}) - (r - r_\text{ref})| .

Same names, arguments, errors (class and message) and tie-breaking as the reference. Dtype policy:
float64 inputs compute in float64, float32 in float32, half inputs in float32; integer inputs in
float64. Value checks (non-finite inputs, non-positive lengths) need a host sync; they run when
``check_values`` is true and are skipped under ``torch.compile``. Shape checks always run.

Example:
    >>> import torch
    >>> from gammapo_torch.alignment_potential import alignment_potential, select_top_fraction
    >>> ap = alignment_potential(torch.tensor([1.0, 3.0]), torch.tensor([2.0, 2.0]))
    >>> ap.tolist(), select_top_fraction(ap, 0.5).tolist()
    ([-1.0, 1.0], [1])
"""

from __future__ import annotations

from typing import Any

import torch
from gammapo_spec.alignment_potential import (
    METRICS,
    check_column_shape,
    check_score_matrix,
    check_variant,
    check_weight,
    selection_size,
)
from gammapo_spec.errors import ConfigError, InputError
from gammapo_spec.validation import check_finite, check_positive

from ._dtypes import as_tensor, compute_dtype
from ._validation import value_checks_active

__all__ = [
    "zscore",
    "explicit_margin",
    "explicit_margin_spread",
    "implicit_margin",
    "alignment_potential",
    "selection_scores",
    "select_top_fraction",
]


def _columns(names_values: dict[str, Any]) -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    n = None
    device = next((v.device for v in names_values.values() if isinstance(v, torch.Tensor)), None)
    for name, value in names_values.items():
        if value is None:
            raise InputError(f"{name} is needed but was not given", field=name)
        t = as_tensor(value, device)
        n = check_column_shape(name, tuple(t.shape), n)
        out[name] = t
    dt = compute_dtype(*out.values())
    return {k: v.to(dt) for k, v in out.items()}


def _finite(name: str, t: torch.Tensor, check_values: bool) -> None:
    if value_checks_active(check_values):
        check_finite(name, bool(torch.isfinite(t).all()))


def zscore(values, *, field: str = "values", check_values: bool = True) -> torch.Tensor:
    """:func:`gammapo_spec.alignment_potential.zscore` on a tensor (all zeros when constant)."""
    v = _columns({field: values})[field]
    _finite(field, v, check_values)
    constant = v.max() == v.min()
    one = torch.ones_like(v[0])
    # the reference's arithmetic: the centred values rescaled by their largest magnitude
    centred = v - v.mean()
    centred = centred / torch.where(constant, one, torch.max(torch.abs(centred)))
    std = torch.sqrt(torch.mean(centred * centred))
    return torch.where(constant, torch.zeros_like(v), centred / torch.where(constant, one, std))


def explicit_margin(chosen_scores, rejected_scores, *, check_values: bool = True) -> torch.Tensor:
    """:func:`gammapo_spec.alignment_potential.explicit_margin`: ``s_w - s_l``."""
    t = _columns({"chosen_scores": chosen_scores, "rejected_scores": rejected_scores})
    for name, v in t.items():
        _finite(name, v, check_values)
    return t["chosen_scores"] - t["rejected_scores"]


def explicit_margin_spread(scores, *, check_values: bool = True) -> torch.Tensor:
    """:func:`gammapo_spec.alignment_potential.explicit_margin_spread`: ``max - min`` of each row's
    scores, NaN marking a missing response (the value checks need a host sync)."""
    t = as_tensor(scores, scores.device if isinstance(scores, torch.Tensor) else None)
    check_score_matrix(tuple(t.shape), True, False)
    t = t.to(compute_dtype(t))
    missing = torch.isnan(t)
    if value_checks_active(check_values):
        check_score_matrix(tuple(t.shape), bool(((~missing).sum(dim=1) >= 2).all()), bool(torch.isinf(t).any()))
    inf = torch.full_like(t, float("inf"))
    return torch.where(missing, -inf, t).amax(dim=1) - torch.where(missing, inf, t).amin(dim=1)


def implicit_margin(
    chosen_logps,
    rejected_logps,
    *,
    variant: str = "reference-free",
    chosen_lengths=None,
    rejected_lengths=None,
    ref_chosen_logps=None,
    ref_rejected_logps=None,
    check_values: bool = True,
) -> torch.Tensor:
    """:func:`gammapo_spec.alignment_potential.implicit_margin` on tensors."""
    check_variant(variant)
    if variant == "reference-free":
        needed, unused = ("chosen_lengths", "rejected_lengths"), ("ref_chosen_logps", "ref_rejected_logps")
    else:
        needed, unused = ("ref_chosen_logps", "ref_rejected_logps"), ("chosen_lengths", "rejected_lengths")
    given = {"chosen_lengths": chosen_lengths, "rejected_lengths": rejected_lengths,
             "ref_chosen_logps": ref_chosen_logps, "ref_rejected_logps": ref_rejected_logps}
    n = None
    for name, value in (("chosen_logps", chosen_logps), ("rejected_logps", rejected_logps)):
        if value is None:
            raise InputError(f"{name} is needed but was not given", field=name)
        n = check_column_shape(name, tuple(as_tensor(value).shape), n)
    for name in unused:
        if given[name] is not None:
            raise InputError(f"variant {variant!r} does not use {name}; pass {list(needed)}", field=name)
    for name in needed:
        if given[name] is None:
            raise InputError(f"variant {variant!r} needs {name}, which was not given", field=name)
    t = _columns({"chosen_logps": chosen_logps, "rejected_logps": rejected_logps, **{k: given[k] for k in needed}})
    c, r, a, b = (t[k] for k in ("chosen_logps", "rejected_logps") + needed)
    _finite("chosen_logps", c, check_values)
    _finite("rejected_logps", r, check_values)
    if variant == "reference-free":
        if value_checks_active(check_values):
            check_positive(needed[0], bool((torch.isfinite(a) & (a > 0)).all()))
            check_positive(needed[1], bool((torch.isfinite(b) & (b > 0)).all()))
        return torch.abs(c / a - r / b)
    _finite(needed[0], a, check_values)
    _finite(needed[1], b, check_values)
    return torch.abs((c - a) - (r - b))


def alignment_potential(explicit_margins, implicit_margins, *, weight: float = 1.0, check_values: bool = True) -> torch.Tensor:
    """:func:`gammapo_spec.alignment_potential.alignment_potential`: ``z(Δex) - w z(Δim)``."""
    w = check_weight(weight)
    t = _columns({"explicit_margins": explicit_margins, "implicit_margins": implicit_margins})
    return (zscore(t["explicit_margins"], field="explicit_margins", check_values=check_values)
            - w * zscore(t["implicit_margins"], field="implicit_margins", check_values=check_values))


def selection_scores(metric: str, *, explicit_margins=None, implicit_margins=None, weight: float = 1.0,
                     check_values: bool = True) -> torch.Tensor:
    """:func:`gammapo_spec.alignment_potential.selection_scores` on tensors."""
    if metric not in METRICS:
        raise ConfigError(f"metric must be one of {list(METRICS)}, got {metric!r}", field="metric")
    if metric == "alignment-potential":
        check_weight(weight)
        return alignment_potential(*_columns({"explicit_margins": explicit_margins, "implicit_margins": implicit_margins}).values(),
                                   weight=weight, check_values=check_values)
    if metric == "explicit-margin":
        ex = _columns({"explicit_margins": explicit_margins})["explicit_margins"]
        _finite("explicit_margins", ex, check_values)
        return ex
    return -zscore(_columns({"implicit_margins": implicit_margins})["implicit_margins"], field="implicit_margins",
                   check_values=check_values)


def select_top_fraction(scores, fraction: float, *, check_values: bool = True) -> torch.Tensor:
    """:func:`gammapo_spec.alignment_potential.select_top_fraction`: int64 indices, ascending.

    Higher score first, ties to the lower index (a stable sort on ``-scores``).
    """
    s = _columns({"scores": scores})["scores"]
    _finite("scores", s, check_values)
    k = selection_size(s.shape[0], fraction)
    order = torch.sort(-s, stable=True).indices
    return torch.sort(order[:k]).values.to(torch.int64)
