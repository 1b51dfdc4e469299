r"""Alignment potential: which preference pairs are worth training on (Huang et al., ICML 2025).

Each pair :math:`(x, y_w, y_l)` has an *explicit* margin from a reward model or an annotator and an
*implicit* margin from the current model (``docs/theory/related.md``, "Alignment potential"):

.. math::

    \Delta_\text{ex} = s_w - s_l,
    \qquad
    \Delta_\text{im} =
    \begin{cases}
        \left|\, c/|y_w| - r/|y_l| \,\right| & \text{reference-free (length-normalised, SimPO-style)}\\[2pt]
        \left|\, (c - c_\text{ref}) - (r - r_\text{ref}) \,\right| & \text{reference-based (DPO log-ratio)}
    \end{cases}

and the alignment potential standardises both over the data set and subtracts:

.. math::

    \mathrm{AP}_i = z(\Delta_\text{ex})_i - w\, z(\Delta_\text{im})_i,
    \qquad z(v)_i = \frac{v_i - \bar v}{\operatorname{std}(v)},\quad w = 1 \text{ by default}.

A large AP means the annotator sees a clear preference that the model has not learnt yet. The
top fraction by AP is kept (0.4 in the released script).

Decisions fixed by this spec (alternatives named):

* ``std`` is the population standard deviation (``ddof=0``). A constant column (all values equal)
  standardises to all zeros: it carries no ranking information (the alternative, raising, would
  make a data set where every implicit margin is equal, e.g. before training, unusable).
* β does not appear: z-scores are invariant under :math:`v \mapsto a v + b` with :math:`a > 0`, so
  the implicit rewards' β (and any positive rescaling of the scores) cannot change AP.
* The explicit margin is the pair's score gap :math:`s_w - s_l`. The authors' code uses the spread of
  all scored responses of the prompt instead, offered as :func:`explicit_margin_spread`.
* The two baselines the paper compares against (``docs/theory/related.md``): ``"explicit-margin"`` scores a
  pair by :math:`\Delta_\text{ex}` (larger is better) and ``"implicit-margin"`` by
  :math:`-z(\Delta_\text{im})` (smaller implicit margin is better).
* Selection keeps :math:`k = \lfloor f N \rfloor` pairs (as ``int(len(data) * f)`` in the released
  script; computed with a 1e-9 guard so that e.g. 0.29 · 100 gives 29, not 28). Ties are broken
  deterministically: higher score first, then *earlier* pair first (a stable sort on ``-score``).
  The selected indices are returned in data-set order.
"""

from __future__ import annotations

import math

import numpy as np

from .errors import ConfigError, InputError
from .validation import check_finite, check_positive

__all__ = [
    "VARIANTS",
    "METRICS",
    "check_column_shape",
    "check_variant",
    "check_weight",
    "zscore",
    "explicit_margin",
    "explicit_margin_spread",
    "check_score_matrix",
    "implicit_margin",
    "alignment_potential",
    "selection_scores",
    "selection_size",
    "select_top_fraction",
]

#: The two ways of measuring the implicit margin.
VARIANTS = ("reference-free", "reference-based")
#: The selection metrics: alignment potential and the paper's two baselines.
METRICS = ("alignment-potential", "explicit-margin", "implicit-margin")


def check_column_shape(name: str, shape: tuple[int, ...], n: int | None = None) -> int:
    """Check one per-pair input's shape: 1-D, non-empty and, if ``n`` is given, of length ``n``.

    Shared by the backends so that they raise the reference's class and message.

    Returns:
        The number of pairs.

    Raises:
        InputError: naming ``name``.
    """
    shape = tuple(shape)
    if len(shape) != 1:
        raise InputError(f"{name} must be 1-D (one value per pair), got shape {shape}", field=name)
    if shape[0] == 0:
        raise InputError(f"{name} is empty: selection needs at least one pair", field=name)
    if n is not None and shape[0] != n:
        raise InputError(f"{name} has {shape[0]} pairs but the first input has {n}; all inputs need the same length", field=name)
    return shape[0]


def _column(name: str, values, n: int | None = None) -> np.ndarray:
    if values is None:
        raise InputError(f"{name} is needed but was not given", field=name)
    a = np.asarray(values, dtype=np.float64)
    check_column_shape(name, a.shape, n)
    return a


def check_variant(variant: str) -> None:
    """Raise :class:`ConfigError` (``field="variant"``) unless ``variant`` is one of :data:`VARIANTS`."""
    if variant not in VARIANTS:
        raise ConfigError(f"variant must be one of {list(VARIANTS)}, got {variant!r}", field="variant")


def zscore(values, *, field: str = "values") -> np.ndarray:
    r"""Standardise over the data set: :math:`z_i = (v_i - \bar v) / \operatorname{std}(v)`.

    ``std`` is the population standard deviation (``ddof=0``). A constant input (all values
    exactly equal) gives all zeros; the test is ``max == min``, not ``std == 0``, because the
    rounded mean of equal values can differ from them (``mean([0.1] * 3) != 0.1``), which would
    turn a constant column into ±1. The centred values are rescaled by their largest magnitude
    before squaring (z does not change), so spreads of 1e-300 or values of 1e300 standardise
    without underflow or overflow (the mean itself needs ``|v| < 1e307``).

    Args:
        values: ``[N]`` finite values, N ≥ 1.
        field: the argument name used in error messages.

    Returns:
        ``[N]`` float64 z-scores (mean 0 and, unless constant, population std 1).

    Raises:
        InputError: ``values`` is not 1-D, is empty or holds NaN/inf.

    Example:
        >>> from gammapo_spec.alignment_potential import zscore
        >>> zscore([1.0, 2.0, 3.0]).round(6).tolist()
        [-1.224745, 0.0, 1.224745]
        >>> zscore([5.0, 5.0]).tolist()
        [0.0, 0.0]
    """
    v = _column(field, values)
    check_finite(field, bool(np.all(np.isfinite(v))))
    if v.max() == v.min():
        return np.zeros_like(v)
    # z is invariant to positive rescaling: rescaling the centred values by their largest magnitude
    # keeps the variance from underflowing (spreads of 1e-300) or overflowing (values of 1e300)
    centred = v - v.mean()
    centred = centred / np.max(np.abs(centred))
    return centred / np.sqrt(np.mean(centred * centred))


def explicit_margin(chosen_scores, rejected_scores) -> np.ndarray:
    r"""The explicit margin :math:`\Delta_\text{ex} = s_w - s_l` (reward model or annotator scores).

    Args:
        chosen_scores, rejected_scores: ``[N]`` finite scores of the chosen / rejected response.

    Returns:
        ``[N]`` float64 margins.

    Raises:
        InputError: a missing, non-1-D, empty, mismatched or non-finite input (naming it).

    Example:
        >>> from gammapo_spec.alignment_potential import explicit_margin
        >>> explicit_margin([8.0, 6.5], [3.0, 6.0]).tolist()
        [5.0, 0.5]
    """
    sw = _column("chosen_scores", chosen_scores)
    sl = _column("rejected_scores", rejected_scores, sw.shape[0])
    check_finite("chosen_scores", bool(np.all(np.isfinite(sw))))
    check_finite("rejected_scores", bool(np.all(np.isfinite(sl))))
    return sw - sl


def check_score_matrix(shape: tuple[int, ...], ok_rows: bool, any_inf: bool) -> int:
    """Check the ``[N, K]`` score matrix of :func:`explicit_margin_spread` (shared by the backends):
    2-D with N ≥ 1, no ±inf, at least two scored (non-NaN) responses in every row. Returns N.

    Raises:
        InputError: otherwise (``field="scores"``).
    """
    if len(shape) != 2 or shape[0] < 1:
        raise InputError(f"scores must be a 2-D [N, K] array with N >= 1, got shape {tuple(shape)}", field="scores")
    if any_inf:
        raise InputError("scores contains infinite values (NaN marks a missing response)", field="scores")
    if not ok_rows:
        raise InputError("scores: every prompt needs at least two scored (non-NaN) responses", field="scores")
    return int(shape[0])


def explicit_margin_spread(scores) -> np.ndarray:
    r"""The explicit margin as the spread of *all* scored responses of each prompt (the authors' code).

    .. math:: \Delta_\text{ex} = \max_k s_{k} - \min_k s_{k}

    over the responses k of the prompt that have a score (four in UltraFeedback). The default
    :func:`explicit_margin` is the score gap :math:`s_w - s_l` of the pair that is trained on; the two
    agree when the pair is the best and the worst response. The released alignment-potential
    metric uses the spread; pass its result as ``explicit_margins`` to reproduce it.

    Decision: the pair's gap stays the default — it is a property of the pair being selected, and it
    needs no scores of responses the data set does not contain.

    Args:
        scores: ``[N, K]`` scores, NaN where a prompt has fewer than K responses; every row needs at
            least two scores.

    Returns:
        ``[N]`` float64 non-negative margins.

    Raises:
        InputError: not 2-D, empty, an infinite score, or a row with fewer than two scores
            (``field="scores"``).

    Example:
        >>> from gammapo_spec.alignment_potential import explicit_margin_spread
        >>> explicit_margin_spread([[8.0, 6.5, 3.0, float("nan")], [7.0, 7.5, 2.0, 5.0]]).tolist()
        [5.0, 5.5]
    """
    if scores is None:
        raise InputError("scores is needed but was not given", field="scores")
    a = np.asarray(scores, dtype=np.float64)
    ok = a.ndim == 2 and bool(np.all(np.sum(~np.isnan(a), axis=1) >= 2))
    check_score_matrix(a.shape, ok, bool(np.any(np.isinf(a))))
    return np.nanmax(a, axis=1) - np.nanmin(a, axis=1)


def implicit_margin(
    chosen_logps,
    rejected_logps,
    *,
    variant: str = "reference-free",
    chosen_lengths=None,
    rejected_lengths=None,
    ref_chosen_logps=None,
    ref_rejected_logps=None,
) -> np.ndarray:
    r"""The model's implicit margin :math:`\Delta_\text{im}` (absolute value, see the module docs).

    * ``"reference-free"``: :math:`|c/|y_w| - r/|y_l||`; needs the lengths, refuses references.
    * ``"reference-based"``: :math:`|(c - c_\text{ref}) - (r - r_\text{ref})|`; needs the
      reference log-probs, refuses lengths.

    Args:
        chosen_logps, rejected_logps: ``[N]`` summed log-probs :math:`c, r` under the current model.
        variant: ``"reference-free"`` (default) or ``"reference-based"``.
        chosen_lengths, rejected_lengths: ``[N]`` response lengths in tokens, finite and > 0.
        ref_chosen_logps, ref_rejected_logps: ``[N]`` reference-model log-probs.

    Returns:
        ``[N]`` float64 non-negative margins.

    Raises:
        ConfigError: unknown ``variant``.
        InputError: a needed input missing, an unusable one given, a shape mismatch, a non-finite
            log-prob or a length that is not finite and > 0 (``field`` names the argument).

    Example:
        >>> from gammapo_spec.alignment_potential import implicit_margin
        >>> implicit_margin([-4.0, -9.0], [-9.0, -3.0], chosen_lengths=[2, 3],
        ...                 rejected_lengths=[3, 1]).tolist()
        [1.0, 0.0]
        >>> implicit_margin([-4.0], [-9.0], variant="reference-based",
        ...                 ref_chosen_logps=[-5.0], ref_rejected_logps=[-7.0]).tolist()
        [3.0]
    """
    check_variant(variant)
    c = _column("chosen_logps", chosen_logps)
    n = c.shape[0]
    r = _column("rejected_logps", rejected_logps, n)
    if variant == "reference-free":
        needed, unused = ("chosen_lengths", "rejected_lengths"), ("ref_chosen_logps", "ref_rejected_logps")
    else:
        needed, unused = ("ref_chosen_logps", "ref_rejected_logps"), ("chosen_lengths", "rejected_lengths")
    given = {
        "chosen_lengths": chosen_lengths,
        "rejected_lengths": rejected_lengths,
        "ref_chosen_logps": ref_chosen_logps,
        "ref_rejected_logps": ref_rejected_logps,
    }
    for name in unused:
        if given[name] is not None:
            raise InputError(f"variant {variant!r} does not use {name}; pass {list(needed)}", field=name)
    for name in needed:
        if given[name] is None:
            raise InputError(f"variant {variant!r} needs {name}, which was not given", field=name)
    a, b = (_column(name, given[name], n) for name in needed)
    check_finite("chosen_logps", bool(np.all(np.isfinite(c))))
    check_finite("rejected_logps", bool(np.all(np.isfinite(r))))
    if variant == "reference-free":
        check_positive(needed[0], bool(np.all(np.isfinite(a) & (a > 0))))
        check_positive(needed[1], bool(np.all(np.isfinite(b) & (b > 0))))
        return np.abs(c / a - r / b)
    check_finite(needed[0], bool(np.all(np.isfinite(a))))
    check_finite(needed[1], bool(np.all(np.isfinite(b))))
    return np.abs((c - a) - (r - b))


def check_weight(weight: float) -> float:
    """Return ``weight`` as a float; :class:`ConfigError` (``field="weight"``) unless finite and ≥ 0."""
    try:
        w = float(weight)
    except (TypeError, ValueError):
        raise ConfigError(f"weight must be a finite number >= 0, got {weight!r}", field="weight") from None
    if not (math.isfinite(w) and w >= 0.0):
        raise ConfigError(f"weight must be a finite number >= 0, got {weight!r}", field="weight")
    return w


def alignment_potential(explicit_margins, implicit_margins, *, weight: float = 1.0) -> np.ndarray:
    r"""The alignment potential :math:`\mathrm{AP} = z(\Delta_\text{ex}) - w\, z(\Delta_\text{im})`.

    Args:
        explicit_margins: ``[N]`` :math:`\Delta_\text{ex}` (see :func:`explicit_margin`).
        implicit_margins: ``[N]`` :math:`\Delta_\text{im}` (see :func:`implicit_margin`).
        weight: :math:`w \ge 0`, the weight of the implicit term (1 in the paper).

    Returns:
        ``[N]`` float64 alignment potentials (mean 0 over the data set).

    Raises:
        ConfigError: ``weight`` is not a finite number ≥ 0.
        InputError: a non-1-D, empty, mismatched or non-finite input.

    Example:
        >>> from gammapo_spec.alignment_potential import alignment_potential
        >>> alignment_potential([1.0, 3.0], [2.0, 2.0]).tolist()
        [-1.0, 1.0]
        >>> alignment_potential([1.0, 1.0, 4.0], [0.0, 3.0, 0.0], weight=0.5).round(6).tolist()
        [-0.353553, -1.414214, 1.767767]
    """
    w = check_weight(weight)
    ex = _column("explicit_margins", explicit_margins)
    im = _column("implicit_margins", implicit_margins, ex.shape[0])
    return zscore(ex, field="explicit_margins") - w * zscore(im, field="implicit_margins")


def selection_scores(
    metric: str,
    *,
    explicit_margins=None,
    implicit_margins=None,
    weight: float = 1.0,
) -> np.ndarray:
    r"""The score a metric ranks pairs by (larger = keep first).

    * ``"alignment-potential"``: :math:`z(\Delta_\text{ex}) - w\, z(\Delta_\text{im})`;
    * ``"explicit-margin"`` (baseline): :math:`\Delta_\text{ex}`;
    * ``"implicit-margin"`` (baseline): :math:`-z(\Delta_\text{im})`.

    Args:
        metric: one of :data:`METRICS`.
        explicit_margins: ``[N]``; needed by the alignment potential and the explicit baseline.
        implicit_margins: ``[N]``; needed by the alignment potential and the implicit baseline.
        weight: the alignment potential's :math:`w` (ignored by the baselines).

    Returns:
        ``[N]`` float64 scores.

    Raises:
        ConfigError: unknown ``metric`` or a bad ``weight``.
        InputError: a margin the metric needs is missing or unusable.

    Example:
        >>> from gammapo_spec.alignment_potential import selection_scores
        >>> selection_scores("explicit-margin", explicit_margins=[2.0, 5.0]).tolist()
        [2.0, 5.0]
        >>> selection_scores("implicit-margin", implicit_margins=[1.0, 3.0]).tolist()
        [1.0, -1.0]
    """
    if metric not in METRICS:
        raise ConfigError(f"metric must be one of {list(METRICS)}, got {metric!r}", field="metric")
    if metric == "alignment-potential":
        check_weight(weight)
        ex = _column("explicit_margins", explicit_margins)
        return alignment_potential(ex, _column("implicit_margins", implicit_margins, ex.shape[0]), weight=weight)
    if metric == "explicit-margin":
        ex = _column("explicit_margins", explicit_margins)
        check_finite("explicit_margins", bool(np.all(np.isfinite(ex))))
        return ex
    return -zscore(_column("implicit_margins", implicit_margins), field="implicit_margins")


def selection_size(n: int, fraction: float) -> int:
    r"""How many of ``n`` pairs a top-``fraction`` selection keeps: :math:`k = \lfloor f n \rfloor`.

    The floor is taken of :math:`f n + 10^{-9}`, so a product that is an integer in exact arithmetic
    but falls just below it in floating point (0.29 · 100 = 28.999…) is not rounded down.

    Args:
        n: the number of pairs, ≥ 0.
        fraction: :math:`f \in (0, 1]`.

    Returns:
        k, with 0 ≤ k ≤ n.

    Raises:
        ConfigError: ``fraction`` is not a number in (0, 1] (``field="fraction"``).

    Example:
        >>> from gammapo_spec.alignment_potential import selection_size
        >>> selection_size(10, 0.4), selection_size(100, 0.29), selection_size(3, 0.5)
        (4, 29, 1)
    """
    try:
        f = float(fraction)
    except (TypeError, ValueError):
        raise ConfigError(f"fraction must be a number in (0, 1], got {fraction!r}", field="fraction") from None
    if not (0.0 < f <= 1.0):
        raise ConfigError(f"fraction must be a number in (0, 1], got {fraction!r}", field="fraction")
    return min(int(n), int(math.floor(f * int(n) + 1e-9)))


def select_top_fraction(scores, fraction: float) -> np.ndarray:
    r"""The indices of the top ``fraction`` of pairs by score, in data-set order.

    Keeps :math:`k =` :func:`selection_size` ``(N, fraction)`` pairs: the k first in the order
    "higher score first, then lower index first" (so ties never depend on the sort algorithm or the
    platform), returned sorted ascending so that the subset keeps the data set's order.

    Args:
        scores: ``[N]`` finite scores (larger = keep first), N ≥ 1.
        fraction: in (0, 1].

    Returns:
        ``[k]`` int64 indices, ascending.

    Raises:
        ConfigError: ``fraction`` outside (0, 1].
        InputError: ``scores`` not 1-D, empty or non-finite.

    Example:
        >>> from gammapo_spec.alignment_potential import select_top_fraction
        >>> select_top_fraction([0.5, 2.0, 0.5, 1.0], 0.75).tolist()
        [0, 1, 3]
        >>> select_top_fraction([1.0, 1.0, 1.0, 1.0], 0.5).tolist()
        [0, 1]
    """
    s = _column("scores", scores)
    check_finite("scores", bool(np.all(np.isfinite(s))))
    k = selection_size(s.shape[0], fraction)
    order = np.argsort(-s, kind="stable")
    return np.sort(order[:k]).astype(np.int64)
