r"""Alignment potential on JAX arrays: the ops of :mod:`gammapo_spec.alignment_potential`.

.. math::

    \mathrm{AP} = z(s_w - s_l) - w\, z(\Delta_\text{im}),\qquad
    \Delta_\text{im} = |c/|y_w| - r/|y_l|| \;\text{or}\; |(c - c_\text{ref}) - (r - r_\text{ref})| .

Same names, arguments, errors (class and message) and tie-breaking as the reference. Dtype policy as
in :mod:`gammapo_jax._dtypes` (float64 needs ``jax_enable_x64``). Value checks run on concrete
values and are skipped under ``jax.jit``; shape checks always run. ``fraction``, ``metric``,
``variant`` and ``weight`` are Python values (static under ``jit``).

Example:
    >>> import jax.numpy as jnp
    >>> from gammapo_jax.alignment_potential import alignment_potential, select_top_fraction
    >>> ap = alignment_potential(jnp.array([1.0, 3.0]), jnp.array([2.0, 2.0]))
    >>> ap.tolist(), select_top_fraction(ap, 0.5).tolist()
    ([-1.0, 1.0], [1])
"""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp
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

from ._dtypes import compute_dtype, concrete_all, to_jax

__all__ = [
    "zscore",
    "explicit_margin",
    "explicit_margin_spread",
    "implicit_margin",
    "alignment_potential",
    "selection_scores",
    "select_top_fraction",
]


def _columns(names_values: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    n = None
    for name, value in names_values.items():
        if value is None:
            raise InputError(f"{name} is needed but was not given", field=name)
        a = to_jax(value)
        n = check_column_shape(name, tuple(a.shape), n)
        out[name] = a
    dt = compute_dtype(*out.values())
    return {k: v.astype(dt) for k, v in out.items()}


def _finite(name: str, a, check_values: bool) -> None:
    if check_values:
        ok = concrete_all(lambda: jnp.all(jnp.isfinite(a)))
        if ok is not None:
            check_finite(name, ok)


def _positive(name: str, a, check_values: bool) -> None:
    if check_values:
        ok = concrete_all(lambda: jnp.all(jnp.isfinite(a) & (a > 0)))
        if ok is not None:
            check_positive(name, ok)


def zscore(values, *, field: str = "values", check_values: bool = True):
    """:func:`gammapo_spec.alignment_potential.zscore` on an array (all zeros when constant)."""
    v = _columns({field: values})[field]
    _finite(field, v, check_values)
    constant = v.max() == v.min()
    one = jnp.ones_like(v[0])
    # the reference's arithmetic: the centred values rescaled by their largest magnitude
    centred = v - v.mean()
    centred = centred / jnp.where(constant, one, jnp.max(jnp.abs(centred)))
    std = jnp.sqrt(jnp.mean(centred * centred))
    return jnp.where(constant, jnp.zeros_like(v), centred / jnp.where(constant, one, std))


def explicit_margin(chosen_scores, rejected_scores, *, check_values: bool = True):
    """:func:`gammapo_spec.alignment_potential.explicit_margin`: ``s_w - s_l``."""
    t = _columns({"chosen_scores": chosen_scores, "rejected_scores": rejected_scores})
    for name, v in t.items():
        _finite(name, v, check_values)
    return t["chosen_scores"] - t["rejected_scores"]


def explicit_margin_spread(scores, *, check_values: bool = True):
    """:func:`gammapo_spec.alignment_potential.explicit_margin_spread`: ``max - min`` of each row's
    scores, NaN marking a missing response (value checks on concrete values only)."""
    a = to_jax(scores)
    check_score_matrix(tuple(a.shape), True, False)
    a = a.astype(compute_dtype(a))
    missing = jnp.isnan(a)
    if check_values:
        rows = concrete_all(lambda: jnp.all(jnp.sum(~missing, axis=1) >= 2))
        finite = concrete_all(lambda: ~jnp.any(jnp.isinf(a)))
        if rows is not None and finite is not None:
            check_score_matrix(tuple(a.shape), rows, not finite)
    return jnp.where(missing, -jnp.inf, a).max(axis=1) - jnp.where(missing, jnp.inf, a).min(axis=1)


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
):
    """:func:`gammapo_spec.alignment_potential.implicit_margin` on arrays."""
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
        n = check_column_shape(name, tuple(jnp.shape(value)), n)
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
        _positive(needed[0], a, check_values)
        _positive(needed[1], b, check_values)
        return jnp.abs(c / a - r / b)
    _finite(needed[0], a, check_values)
    _finite(needed[1], b, check_values)
    return jnp.abs((c - a) - (r - b))


def alignment_potential(explicit_margins, implicit_margins, *, weight: float = 1.0, check_values: bool = True):
    """:func:`gammapo_spec.alignment_potential.alignment_potential`: ``z(Δex) - w z(Δim)``."""
    w = check_weight(weight)
    t = _columns({"explicit_margins": explicit_margins, "implicit_margins": implicit_margins})
    return (zscore(t["explicit_margins"], field="explicit_margins", check_values=check_values)
            - w * zscore(t["implicit_margins"], field="implicit_margins", check_values=check_values))


def selection_scores(metric: str, *, explicit_margins=None, implicit_margins=None, weight: float = 1.0,
                     check_values: bool = True):
    """:func:`gammapo_spec.alignment_potential.selection_scores` on arrays."""
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


def select_top_fraction(scores, fraction: float, *, check_values: bool = True):
    """:func:`gammapo_spec.alignment_potential.select_top_fraction`: int indices, ascending.

    Higher score first, ties to the lower index (a stable argsort of ``-scores``); ``k`` depends on
    the static shape only, so this works under ``jax.jit`` with ``fraction`` static.
    """
    s = _columns({"scores": scores})["scores"]
    _finite("scores", s, check_values)
    k = selection_size(s.shape[0], fraction)
    order = jnp.argsort(-s, stable=True)
    return jnp.sort(order[:k])
