"""Conformance of the alignment-potential ops (:mod:`gammapo_spec.alignment_potential`): values, the
top-fraction selection (count, order, tie-break), invariants and errors.

These ops are not in :data:`gammapo.protocol.SPEC_OPS`; a backend provides them in its submodule
``alignment_potential`` (``gammapo_torch.alignment_potential``, ``gammapo_jax.alignment_potential``).
A backend without one skips these tests.

Tolerances: z-scores are compared with the absolute tolerance scaled by their condition number
``1 + max|input| / std`` (the inputs' rounding relative to the spread), margins by ``1 + max|input|``.
"""

import numpy as np
import pytest
from hypothesis import given, note
from hypothesis import strategies as st

import gammapo_spec.alignment_potential as AP
from gammapo_conformance.adapters import assert_equal
from gammapo_conformance.strategies import ap_columns, dtypes, make_ap_columns

FRACTIONS = st.sampled_from([0.05, 0.1, 0.29, 0.4, 0.5, 0.75, 0.999, 1.0])
WEIGHTS = st.sampled_from([0.0, 0.5, 1.0, 2.0])


def _ops(conf):
    mod = conf.ad.module("alignment_potential")
    if mod is None:
        pytest.skip(f"backend {conf.ad.name!r} has no alignment_potential module")
    return mod


def _repro(conf, n, pattern, seed, dtype, call):
    return ("# reproduce:\nfrom gammapo_conformance.strategies import make_ap_columns\n"
            f"cols = make_ap_columns({n}, {pattern!r}, {seed})  # backend {conf.ad.name}, dtype {dtype}\n{call}")


def _z_scale(v: np.ndarray, magnitude: float) -> float:
    std = float(np.std(v))
    return 1.0 + (magnitude / std if std > 0 else 0.0)


def _cols(conf, cols, names, dtype):
    """Backend arrays of ``names`` in ``dtype`` (lengths as int lists) and the rounded float64 values."""
    out, rounded = conf.ad.inputs({k: cols[k] for k in names}, dtype)
    return out, rounded


@given(data=ap_columns(), dtype=dtypes())
def test_alignment_potential_zscore_values(conf, data, dtype):
    conf.example(dtype)
    B = _ops(conf)
    n, pattern, seed, cols = data
    note(_repro(conf, n, pattern, seed, dtype, "AP.zscore(cols['c'])"))
    with conf.ad.precision(dtype):
        bi, r = _cols(conf, cols, ["c"], dtype)
        want = AP.zscore(r["c"])
        conf.close(B.zscore(bi["c"]), want, dtype, "values", "zscore", scale=_z_scale(r["c"], float(np.max(np.abs(r["c"])))))


@given(data=ap_columns(), dtype=dtypes(), variant=st.sampled_from(AP.VARIANTS))
def test_alignment_potential_margins_values(conf, data, dtype, variant):
    conf.example(dtype)
    B = _ops(conf)
    n, pattern, seed, cols = data
    note(_repro(conf, n, pattern, seed, dtype, f"variant={variant!r}"))
    with conf.ad.precision(dtype):
        bi, r = _cols(conf, cols, ["sw", "sl", "c", "r", "cref", "rref", "lw", "ll"], dtype)
        conf.close(B.explicit_margin(bi["sw"], bi["sl"]), AP.explicit_margin(r["sw"], r["sl"]), dtype, "values",
                   "explicit_margin", scale=11.0)
        extra = ("lw", "ll") if variant == "reference-free" else ("cref", "rref")
        names = ("chosen_lengths", "rejected_lengths") if variant == "reference-free" else ("ref_chosen_logps", "ref_rejected_logps")
        got = B.implicit_margin(bi["c"], bi["r"], variant=variant, **{nm: bi[k] for nm, k in zip(names, extra)})
        want = AP.implicit_margin(r["c"], r["r"], variant=variant, **{nm: r[k] for nm, k in zip(names, extra)})
        conf.close(got, want, dtype, "values", "implicit_margin", scale=1.0 + 2.0 * float(np.max(np.abs(r["c"])) + np.max(np.abs(r["r"]))))


@given(data=ap_columns(), dtype=dtypes(), weight=WEIGHTS, metric=st.sampled_from(AP.METRICS))
def test_alignment_potential_scores_values(conf, data, dtype, weight, metric):
    conf.example(dtype)
    B = _ops(conf)
    n, pattern, seed, cols = data
    ex = AP.explicit_margin(cols["sw"], cols["sl"])
    im = AP.implicit_margin(cols["c"], cols["r"], chosen_lengths=cols["lw"], rejected_lengths=cols["ll"])
    note(_repro(conf, n, pattern, seed, dtype, f"metric={metric!r}, weight={weight}; margins from reference-free"))
    with conf.ad.precision(dtype):
        bi, r = conf.ad.inputs({"ex": ex, "im": im}, dtype)
        scale = 1.0 + _z_scale(r["ex"], float(np.max(np.abs(r["ex"])))) + weight * _z_scale(r["im"], float(np.max(np.abs(r["im"]))))
        if metric == "alignment-potential":
            conf.close(B.alignment_potential(bi["ex"], bi["im"], weight=weight),
                       AP.alignment_potential(r["ex"], r["im"], weight=weight), dtype, "values", "alignment_potential", scale=scale)
        got = B.selection_scores(metric, explicit_margins=bi["ex"], implicit_margins=bi["im"], weight=weight)
        want = AP.selection_scores(metric, explicit_margins=r["ex"], implicit_margins=r["im"], weight=weight)
        conf.close(got, want, dtype, "values", f"selection_scores[{metric}]", scale=scale)


@given(data=ap_columns(), dtype=dtypes(), fraction=FRACTIONS, col=st.sampled_from(["sw", "c"]))
def test_alignment_potential_select_top_fraction(conf, data, dtype, fraction, col):
    conf.example(dtype)
    B = _ops(conf)
    n, pattern, seed, cols = data
    note(_repro(conf, n, pattern, seed, dtype, f"AP.select_top_fraction(cols[{col!r}], {fraction})"))
    with conf.ad.precision(dtype):
        bi, r = _cols(conf, cols, [col], dtype)
        got = conf.ad.numpy(B.select_top_fraction(bi[col], fraction)).astype(np.int64)
    want = AP.select_top_fraction(r[col], fraction)
    k = AP.selection_size(n, fraction)
    assert got.shape == (k,), f"select_top_fraction kept {got.shape[0]} pairs, the spec keeps floor(f*N) = {k}"
    assert_equal(got, want, "select_top_fraction: kept indices")
    # invariants, independent of the reference's implementation: ascending, and the kept pairs are the top k
    # in the order (higher score, then lower index)
    s = r[col]
    assert np.all(np.diff(got) > 0), "indices are not in data-set order"
    if 0 < k < n:
        kept = np.zeros(n, bool)
        kept[got] = True
        worst_kept = min(got, key=lambda i: (s[i], -i))
        best_dropped = max(np.flatnonzero(~kept), key=lambda i: (s[i], -i))
        assert (s[worst_kept], -worst_kept) > (s[best_dropped], -best_dropped), "tie-break or top-k violated"


@given(data=ap_columns(max_size=64), shift=st.sampled_from([-7.0, 0.0, 13.0]), factor=st.sampled_from([0.5, 1.0, 4.0]))
def test_alignment_potential_affine_invariance(conf, data, shift, factor):
    """AP does not change when a column is rescaled by a power of two and shifted by a small integer
    (exact in float64), e.g. β of the implicit rewards."""
    conf.example()
    B = _ops(conf)
    n, pattern, seed, cols = data
    ex = AP.explicit_margin(cols["sw"], cols["sl"])
    im = AP.implicit_margin(cols["c"], cols["r"], variant="reference-based", ref_chosen_logps=cols["cref"],
                            ref_rejected_logps=cols["rref"])
    with conf.ad.precision("float64"):
        a = conf.ad.numpy(B.alignment_potential(conf.ad.array(ex, "float64"), conf.ad.array(im, "float64")))
        b = conf.ad.numpy(B.alignment_potential(conf.ad.array(ex * factor + shift, "float64"), conf.ad.array(im * factor, "float64")))
    np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-9 * _z_scale(ex, 20.0),
                               err_msg="alignment potential changed under a positive affine map")


def _bad_cases():
    two = [1.0, 2.0]
    return [
        ("zscore", lambda M, a: M.zscore(a([[1.0, 2.0]]))),
        ("zscore", lambda M, a: M.zscore(a([]))),
        ("zscore", lambda M, a: M.zscore(a([1.0, np.nan]))),
        ("explicit_margin", lambda M, a: M.explicit_margin(a(two), a([1.0]))),
        ("explicit_margin", lambda M, a: M.explicit_margin(a(two), a([1.0, np.inf]))),
        ("implicit_margin", lambda M, a: M.implicit_margin(a(two), a(two), variant="nope", chosen_lengths=[1, 1], rejected_lengths=[1, 1])),
        ("implicit_margin", lambda M, a: M.implicit_margin(a(two), a(two), chosen_lengths=[1, 1])),
        ("implicit_margin", lambda M, a: M.implicit_margin(a(two), a(two), chosen_lengths=[1, 1], rejected_lengths=[1, 0])),
        ("implicit_margin", lambda M, a: M.implicit_margin(a(two), a(two), chosen_lengths=[1, 1], rejected_lengths=[1, 1],
                                                           ref_chosen_logps=a(two))),
        ("implicit_margin", lambda M, a: M.implicit_margin(a(two), a(two), variant="reference-based", ref_chosen_logps=a(two),
                                                           ref_rejected_logps=a([0.0, np.nan]))),
        ("implicit_margin", lambda M, a: M.implicit_margin(a(two), a([1.0, 2.0, 3.0]), chosen_lengths=[1, 1], rejected_lengths=[1, 1])),
        ("alignment_potential", lambda M, a: M.alignment_potential(a(two), a(two), weight=-1.0)),
        ("alignment_potential", lambda M, a: M.alignment_potential(a(two), a([1.0]))),
        ("alignment_potential", lambda M, a: M.alignment_potential(a([np.nan, 1.0]), a(two))),
        ("selection_scores", lambda M, a: M.selection_scores("best", explicit_margins=a(two))),
        ("selection_scores", lambda M, a: M.selection_scores("explicit-margin")),
        ("selection_scores", lambda M, a: M.selection_scores("implicit-margin", implicit_margins=a([1.0, np.nan]))),
        ("selection_scores", lambda M, a: M.selection_scores("alignment-potential", explicit_margins=a(two), implicit_margins=a(two), weight=float("nan"))),
        ("select_top_fraction", lambda M, a: M.select_top_fraction(a(two), 0.0)),
        ("select_top_fraction", lambda M, a: M.select_top_fraction(a(two), 1.5)),
        ("select_top_fraction", lambda M, a: M.select_top_fraction(a([1.0, np.nan]), 0.5)),
        ("select_top_fraction", lambda M, a: M.select_top_fraction(a([]), 0.5)),
    ]


@given(case=st.sampled_from(_bad_cases()))
def test_alignment_potential_errors(conf, case):
    conf.example()
    B = _ops(conf)
    what, call = case
    with conf.ad.precision("float64"):
        conf.same_error(lambda: call(AP, lambda v: np.asarray(v, dtype=np.float64)),
                        lambda: call(B, lambda v: conf.ad.array(v, "float64")), what)


def _fractions(n: int) -> list[float]:
    """Fractions whose ⌊fN⌋ is 0, 1, N − 1 or N, and products that fall just below an integer in
    floating point (0.29·100 = 28.999…, 0.57·100, 0.58·100)."""
    return sorted({0.05, 1.0 / n, min(1.0, 1.0 / n + 1e-6), max(1e-3, 1.0 / n - 1e-6), 0.29, 0.5, 0.57, 0.58,
                   (n - 1) / n if n > 1 else 1.0, 0.999, 1.0})


DEGENERATE = [(n, pattern) for n in (1, 2, 3, 7, 20, 100) for pattern in ("constant", "ties", "normal")]


@given(which=st.integers(0, len(DEGENERATE) - 1), weight=WEIGHTS)
def test_alignment_potential_degenerate_sizes(conf, which, weight):
    """Degenerate sizes: N = 1, zero standard deviation (constant columns: z-scores 0), ties, and a
    kept count ⌊fN + 1e-9⌋ at 0 or N or at a product that rounds below an integer: z-scores, scores
    and the kept indices equal the spec's exactly (as many pairs, the same ones)."""
    n, pattern = DEGENERATE[which]
    conf.example("float64", n=n, pattern=pattern)
    B = _ops(conf)
    cols = {k: v for k, v in make_ap_columns(n, pattern, which).items()}
    ex = AP.explicit_margin(cols["sw"], cols["sl"])
    im = AP.implicit_margin(cols["c"], cols["r"], chosen_lengths=cols["lw"], rejected_lengths=cols["ll"])
    with conf.ad.precision("float64"):
        a = lambda v: conf.ad.array(v, "float64")  # noqa: E731
        conf.close(B.zscore(a(ex)), AP.zscore(ex), "float64", "values", "zscore (degenerate)", scale=_z_scale(ex, 11.0))
        got = B.alignment_potential(a(ex), a(im), weight=weight)
        want = AP.alignment_potential(ex, im, weight=weight)
        conf.close(got, want, "float64", "values", "alignment_potential (degenerate)",
                   scale=1.0 + _z_scale(ex, 11.0) + weight * _z_scale(im, float(np.max(np.abs(im)))))
        for col, fraction in ((c, f) for c in (cols["sw"], ex) for f in _fractions(n)):
            kept = conf.ad.numpy(B.select_top_fraction(a(col), fraction)).astype(np.int64)
            want = AP.select_top_fraction(col, fraction)
            assert kept.shape == want.shape, (f"select_top_fraction(N={n}, f={fraction!r}) kept {kept.shape[0]} pairs, "
                                              f"the spec keeps floor(f*N + 1e-9) = {want.shape[0]}")
            assert_equal(kept, want, f"select_top_fraction(N={n}, f={fraction!r})")
