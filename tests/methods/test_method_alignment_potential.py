"""gammapo_spec.alignment_potential: fixed values from a hand calculation, properties, errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gammapo_spec import ConfigError, InputError
from gammapo_spec.alignment_potential import (
    alignment_potential,
    explicit_margin,
    implicit_margin,
    select_top_fraction,
    selection_scores,
    selection_size,
    zscore,
)

# --- fixed values, computed by hand -------------------------------------------------------------
# Four pairs. Scores (s_w, s_l): (9, 3), (7, 6), (8, 2), (5, 4)  ->  Δex = [6, 1, 6, 1]
#   mean 3.5, deviations ±2.5, population std 2.5   ->  z(Δex) = [1, -1, 1, -1]
# Reference-free implicit margin |c/len_w - r/len_l| with
#   c = [-10, -6, -20, -8], len_w = [5, 3, 4, 2]  -> c/len_w = [-2, -2, -5, -4]
#   r = [-12, -9, -10, -6], len_l = [4, 3, 2, 3]  -> r/len_l = [-3, -3, -5, -2]
#   Δim = [1, 1, 0, 2], mean 1, deviations [0, 0, -1, 1], std sqrt(2/4) = 1/√2
#   z(Δim) = [0, 0, -√2, √2]
# AP (w = 1) = [1, -1, 1 + √2, -1 - √2]
SW, SL = [9.0, 7.0, 8.0, 5.0], [3.0, 6.0, 2.0, 4.0]
C, LW = [-10.0, -6.0, -20.0, -8.0], [5.0, 3.0, 4.0, 2.0]
R, LL = [-12.0, -9.0, -10.0, -6.0], [4.0, 3.0, 2.0, 3.0]
S2 = math.sqrt(2.0)


def test_explicit_margin_fixed_values():
    assert explicit_margin(SW, SL).tolist() == [6.0, 1.0, 6.0, 1.0]


def test_zscore_fixed_values():
    np.testing.assert_allclose(zscore([6.0, 1.0, 6.0, 1.0]), [1.0, -1.0, 1.0, -1.0], rtol=0, atol=1e-15)
    np.testing.assert_allclose(zscore([1.0, 1.0, 0.0, 2.0]), [0.0, 0.0, -S2, S2], rtol=0, atol=1e-15)


def test_zscore_constant_column_is_zero():
    assert zscore([3.0, 3.0, 3.0]).tolist() == [0.0, 0.0, 0.0]
    assert zscore([7.0]).tolist() == [0.0]


def test_implicit_margin_reference_free_fixed_values():
    im = implicit_margin(C, R, chosen_lengths=LW, rejected_lengths=LL)
    assert im.tolist() == [1.0, 1.0, 0.0, 2.0]


def test_implicit_margin_reference_based_fixed_values():
    # (c - c_ref) - (r - r_ref) with c_ref = [-9, -6, -25, -8], r_ref = [-10, -9, -10, -4]
    #   c - c_ref = [-1, 0, 5, 0];  r - r_ref = [-2, 0, 0, -2];  difference [1, 0, 5, 2]
    im = implicit_margin(C, R, variant="reference-based", ref_chosen_logps=[-9.0, -6.0, -25.0, -8.0],
                         ref_rejected_logps=[-10.0, -9.0, -10.0, -4.0])
    assert im.tolist() == [1.0, 0.0, 5.0, 2.0]


def test_implicit_margin_is_absolute():
    # swapping chosen and rejected flips the sign of the difference, not of the margin
    a = implicit_margin(C, R, chosen_lengths=LW, rejected_lengths=LL)
    b = implicit_margin(R, C, chosen_lengths=LL, rejected_lengths=LW)
    assert a.tolist() == b.tolist()


def test_alignment_potential_fixed_values():
    ap = alignment_potential(explicit_margin(SW, SL), implicit_margin(C, R, chosen_lengths=LW, rejected_lengths=LL))
    np.testing.assert_allclose(ap, [1.0, -1.0, 1.0 + S2, -1.0 - S2], rtol=0, atol=1e-14)


def test_alignment_potential_weight_zero_is_zscored_explicit_margin():
    ap = alignment_potential([6.0, 1.0, 6.0, 1.0], [1.0, 1.0, 0.0, 2.0], weight=0.0)
    np.testing.assert_allclose(ap, [1.0, -1.0, 1.0, -1.0], rtol=0, atol=1e-15)


def test_selection_scores_baselines_fixed_values():
    ex, im = [6.0, 1.0, 6.0, 1.0], [1.0, 1.0, 0.0, 2.0]
    assert selection_scores("explicit-margin", explicit_margins=ex).tolist() == ex
    np.testing.assert_allclose(selection_scores("implicit-margin", implicit_margins=im), [0.0, 0.0, S2, -S2], atol=1e-15)
    np.testing.assert_allclose(
        selection_scores("alignment-potential", explicit_margins=ex, implicit_margins=im, weight=2.0),
        [1.0, -1.0, 1.0 + 2 * S2, -1.0 - 2 * S2],
        atol=1e-14,
    )


def test_select_top_fraction_fixed_values_and_metrics_disagree():
    ex, im = [6.0, 1.0, 6.0, 1.0], [1.0, 1.0, 0.0, 2.0]
    # AP = [1, -1, 2.41, -2.41] -> top half = pairs 0 and 2
    ap = selection_scores("alignment-potential", explicit_margins=ex, implicit_margins=im)
    assert select_top_fraction(ap, 0.5).tolist() == [0, 2]
    # implicit baseline -z(Δim) = [0, 0, 1.41, -1.41] -> pair 2, then the tie 0 vs 1 goes to 0
    assert select_top_fraction(selection_scores("implicit-margin", implicit_margins=im), 0.5).tolist() == [0, 2]
    # explicit baseline ties 0/2 and 1/3: top quarter keeps the earlier of the tied best
    assert select_top_fraction(ex, 0.25).tolist() == [0]
    assert select_top_fraction(ex, 0.75).tolist() == [0, 1, 2]


def test_selection_size_values():
    assert [selection_size(10, f) for f in (0.1, 0.4, 0.5, 0.99, 1.0)] == [1, 4, 5, 9, 10]
    assert selection_size(100, 0.29) == 29  # 0.29 * 100 = 28.999999999999996 in floating point
    assert selection_size(3, 0.2) == 0
    assert selection_size(0, 0.5) == 0


# --- properties -----------------------------------------------------------------------------------
finite = st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False)
vectors = st.lists(finite, min_size=2, max_size=40)


@settings(max_examples=60, deadline=None)
@given(vectors, st.floats(1e-3, 1e3), st.floats(-1e3, 1e3))
def test_zscore_invariant_under_positive_affine_maps(v, a, b):
    v = np.asarray(v)
    if np.ptp(v) < 1e-3:  # near-constant columns are all rounding noise
        return
    np.testing.assert_allclose(zscore(a * v + b), zscore(v), rtol=0, atol=1e-6)


@settings(max_examples=60, deadline=None)
@given(vectors)
def test_zscore_has_mean_zero_and_unit_std(v):
    v = np.asarray(v)
    z = zscore(v)
    assert abs(z.mean()) < 1e-9
    if np.ptp(v) > 1e-3:
        assert abs(z.std() - 1.0) < 1e-9


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 200), st.floats(1e-6, 1.0), st.data())
def test_select_top_fraction_size_is_exact(n, fraction, data):
    scores = data.draw(st.lists(st.integers(-3, 3).map(float), min_size=n, max_size=n))
    idx = select_top_fraction(scores, fraction)
    assert len(idx) == selection_size(n, fraction) == math.floor(fraction * n + 1e-9)
    assert len(set(idx.tolist())) == len(idx), "an index was selected twice"
    assert idx.tolist() == sorted(idx.tolist())
    # every kept pair scores at least as high as every dropped one
    kept = set(idx.tolist())
    s = np.asarray(scores)
    if kept and len(kept) < n:
        assert s[list(kept)].min() >= max(s[i] for i in range(n) if i not in kept)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(finite, finite, finite, finite), min_size=2, max_size=30, unique_by=lambda t: t[0]), st.randoms())
def test_alignment_potential_is_permutation_equivariant(rows, rnd):
    ex = np.array([r[0] - r[1] for r in rows])
    im = np.abs(np.array([r[2] - r[3] for r in rows]))
    perm = list(range(len(rows)))
    rnd.shuffle(perm)
    ap = alignment_potential(ex, im)
    ap_p = alignment_potential(ex[perm], im[perm])
    np.testing.assert_allclose(ap_p, ap[perm], rtol=1e-9, atol=1e-9)


@settings(max_examples=40, deadline=None)
@given(st.lists(finite, min_size=1, max_size=30, unique=True), st.floats(0.01, 1.0), st.randoms())
def test_select_top_fraction_selects_the_same_pairs_after_a_permutation(scores, fraction, rnd):
    """With distinct scores the selected *set* does not depend on the order of the data set."""
    perm = list(range(len(scores)))
    rnd.shuffle(perm)
    a = set(select_top_fraction(scores, fraction).tolist())
    b = {perm[i] for i in select_top_fraction([scores[p] for p in perm], fraction).tolist()}
    assert a == b


def test_select_top_fraction_breaks_ties_by_index():
    assert select_top_fraction([1.0, 2.0, 2.0, 2.0, 0.0], 0.4).tolist() == [1, 2]
    assert select_top_fraction([0.0] * 6, 0.5).tolist() == [0, 1, 2]


def test_beta_does_not_change_alignment_potential():
    ex = explicit_margin(SW, SL)
    im = implicit_margin(C, R, chosen_lengths=LW, rejected_lengths=LL)
    np.testing.assert_allclose(alignment_potential(ex, 2.5 * im), alignment_potential(ex, im), atol=1e-14)


# --- errors ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("call", "cls", "field"),
    [
        (lambda: zscore([1.0, float("nan")]), InputError, "values"),
        (lambda: zscore([]), InputError, "values"),
        (lambda: zscore([[1.0, 2.0]]), InputError, "values"),
        (lambda: explicit_margin([1.0, 2.0], [1.0]), InputError, "rejected_scores"),
        (lambda: explicit_margin([1.0, float("inf")], [1.0, 1.0]), InputError, "chosen_scores"),
        (lambda: explicit_margin(None, [1.0]), InputError, "chosen_scores"),
        (lambda: implicit_margin([1.0], [1.0], variant="simpo"), ConfigError, "variant"),
        (lambda: implicit_margin([1.0], [1.0], chosen_lengths=[1.0]), InputError, "rejected_lengths"),
        (lambda: implicit_margin([1.0], [1.0], chosen_lengths=[0.0], rejected_lengths=[1.0]), InputError, "chosen_lengths"),
        (lambda: implicit_margin([1.0], [1.0], chosen_lengths=[1.0], rejected_lengths=[1.0], ref_chosen_logps=[1.0]),
         InputError, "ref_chosen_logps"),
        (lambda: implicit_margin([1.0], [1.0], variant="reference-based", ref_chosen_logps=[1.0]), InputError, "ref_rejected_logps"),
        (lambda: implicit_margin([1.0], [1.0], variant="reference-based", ref_chosen_logps=[1.0], ref_rejected_logps=[1.0],
                                 chosen_lengths=[1.0]), InputError, "chosen_lengths"),
        (lambda: implicit_margin([float("nan")], [1.0], chosen_lengths=[1.0], rejected_lengths=[1.0]), InputError, "chosen_logps"),
        (lambda: alignment_potential([1.0, 2.0], [1.0, 2.0], weight=-1.0), ConfigError, "weight"),
        (lambda: alignment_potential([1.0, 2.0], [1.0, 2.0], weight=float("nan")), ConfigError, "weight"),
        (lambda: alignment_potential([1.0, 2.0], [1.0]), InputError, "implicit_margins"),
        (lambda: selection_scores("random"), ConfigError, "metric"),
        (lambda: selection_scores("explicit-margin"), InputError, "explicit_margins"),
        (lambda: selection_scores("implicit-margin", explicit_margins=[1.0]), InputError, "implicit_margins"),
        (lambda: select_top_fraction([1.0, 2.0], 0.0), ConfigError, "fraction"),
        (lambda: select_top_fraction([1.0, 2.0], 1.5), ConfigError, "fraction"),
        (lambda: select_top_fraction([1.0, 2.0], "half"), ConfigError, "fraction"),
        (lambda: select_top_fraction([1.0, float("nan")], 0.5), InputError, "scores"),
    ],
)
def test_alignment_potential_bad_input_raises_named_error(call, cls, field):
    with pytest.raises(cls) as info:
        call()
    assert info.value.field == field, f"error names {info.value.field!r}, expected {field!r}: {info.value}"


@pytest.mark.parametrize("value", [0.1, 1 / 3, 0.7, -2.9])
@pytest.mark.parametrize("n", [2, 3, 7, 11])
def test_zscore_constant_column_is_zero_despite_a_rounded_mean(value, n):
    # mean([0.1] * 3) != 0.1 in floating point: a std == 0 test would give ±1 here
    assert zscore([value] * n).tolist() == [0.0] * n


@pytest.mark.parametrize("v", [[0.0, 4.34e-304], [1e300, -1e300, 5e299], [1.0, 1.0 + 2**-51, 1.0 + 2**-50], [-1e-310, 0.0, 1e-310]])
def test_zscore_extreme_scales_neither_underflow_nor_overflow(v):
    z = zscore(v)
    assert np.all(np.isfinite(z)), z
    assert abs(z.mean()) < 1e-12 and abs(z.std() - 1.0) < 1e-12
