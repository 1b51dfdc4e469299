r"""Conformance of ``calibrate_margins``: values, mean = γ0, permutation equivariance, τ → ∞, errors, and the
default solver's rank consistency (margins monotone in the gaps, KKT conditions met) when no solver is named."""

import numpy as np
from hypothesis import given, note
from hypothesis import strategies as st

import gammapo_spec as R
from gammapo_conformance._harness import repro
from gammapo_conformance.strategies import dtypes, sizes, taus

SOLVERS = st.sampled_from(["mirror", "exact"])
GAMMA0S = st.sampled_from([0.0, 0.05, 1.0, 4.0, 100.0])


@st.composite
def gap_sets(draw, max_size=4096):
    """Calibration sets: normal gaps of a drawn scale, with ties and extreme values mixed in."""
    n = draw(sizes(max_size))
    seed = draw(st.integers(0, 2**31 - 1))
    rng = np.random.default_rng(seed)
    h = rng.normal(scale=draw(st.sampled_from([1e-3, 1.0, 30.0])), size=n)
    kind = draw(st.sampled_from(["plain", "ties", "extreme"]))
    if kind == "ties":
        h = np.round(h, 1)
    elif kind == "extreme" and n > 1:
        h[0] = 1e4
    return h


@given(gaps=gap_sets(), gamma0=GAMMA0S, tau=taus(), solver=SOLVERS, iters=st.integers(1, 30), dtype=dtypes())
def test_calibrate_margins_values(conf, gaps, gamma0, tau, solver, iters, dtype):
    conf.example(dtype)
    note(repro(conf.ad.name, "calibrate_margins", R.GammaPOConfig(), dtype,
               f"gaps = np.array({gaps.tolist()!r})\nkw = dict(gamma0={gamma0!r}, tau={tau!r}, solver={solver!r}, iters={iters})"))
    with conf.ad.precision(dtype):
        g = conf.ad.array(gaps, dtype)
        got = conf.B.calibrate_margins(g, gamma0=gamma0, tau=tau, solver=solver, iters=iters)
        ref = R.calibrate_margins(conf.ad.numpy(g), gamma0=gamma0, tau=tau, solver=solver, iters=iters)
        conf.close(got, ref, dtype, "calibration", "calibrate_margins", scale=1.0 + gamma0, solver=solver, tau=tau,
                   gamma0=gamma0, iters=iters)


@given(gaps=gap_sets(max_size=1024), gamma0=st.sampled_from([0.05, 0.25, 1.0]), where=st.floats(0.0, 1.0),
       iters=st.integers(2, 30))
def test_calibrate_margins_mirror_steps(conf, gaps, gamma0, where, iters):
    """The mirror arithmetic step by step, where every update moves the margins and rounding is not
    amplified: τ < 0.5 (step η = 1) and κ = γ0²/(8τ) ≤ 0.5 (the linearised update contracts).

    Elsewhere the iterate has either settled (one update more or less changes nothing visible) or,
    with κ > 0.5, may amplify rounding so much that the values test can only hold it to a loose bound
    (see ``tolerances.py``); here float64 backends agree with the reference to ~9e-15.
    """
    conf.example()
    low = max(1e-3, gamma0 * gamma0 / 4.0)  # κ ≤ 0.5
    tau = float(low * (0.4999 / low) ** where)  # log-uniform in [low, 0.5)
    note(repro(conf.ad.name, "calibrate_margins", R.GammaPOConfig(), "float64",
               f"gaps = np.array({gaps.tolist()!r})\nkw = dict(gamma0={gamma0!r}, tau={tau!r}, solver='mirror', iters={iters})"))
    with conf.ad.precision("float64"):
        g = conf.ad.array(gaps, "float64")
        got = conf.B.calibrate_margins(g, gamma0=gamma0, tau=tau, solver="mirror", iters=iters)
        ref = R.calibrate_margins(conf.ad.numpy(g), gamma0=gamma0, tau=tau, solver="mirror", iters=iters)
        conf.close(got, ref, "float64", "calibration", "calibrate_margins (mirror steps)", scale=1.0 + gamma0,
                   solver="mirror", tau=tau, gamma0=gamma0, iters=iters)


@given(gaps=gap_sets(), gamma0=GAMMA0S, tau=taus(), solver=SOLVERS)
def test_calibrate_margins_mean_is_gamma0(conf, gaps, gamma0, tau, solver):
    conf.example()
    with conf.ad.precision("float64"):
        m = conf.ad.numpy(conf.B.calibrate_margins(conf.ad.array(gaps, "float64"), gamma0=gamma0, tau=tau, solver=solver))
    assert abs(m.mean() - gamma0) <= 1e-9 * (1 + gamma0), f"mean margin {m.mean()!r} != gamma0 {gamma0!r}"
    assert np.all(m >= -1e-12 * (1 + gamma0)), "margins must be >= 0"


@given(gaps=gap_sets(max_size=256), gamma0=GAMMA0S, tau=taus(), solver=SOLVERS)
def test_calibrate_margins_permutation_equivariance(conf, gaps, gamma0, tau, solver):
    conf.example()
    perm = np.random.default_rng(len(gaps)).permutation(len(gaps))
    with conf.ad.precision("float64"):
        a = conf.ad.numpy(conf.B.calibrate_margins(conf.ad.array(gaps, "float64"), gamma0=gamma0, tau=tau, solver=solver))
        b = conf.ad.numpy(conf.B.calibrate_margins(conf.ad.array(gaps[perm], "float64"), gamma0=gamma0, tau=tau, solver=solver))
    np.testing.assert_allclose(a[perm], b, rtol=1e-9, atol=1e-9 * (1 + gamma0), err_msg="not permutation-equivariant")


@given(gaps=gap_sets(max_size=256), gamma0=GAMMA0S, solver=SOLVERS)
def test_calibrate_margins_large_tau_limit(conf, gaps, gamma0, solver):
    """τ → ∞: the entropy term dominates and every margin is γ0."""
    conf.example()
    with conf.ad.precision("float64"):
        m = conf.ad.numpy(conf.B.calibrate_margins(conf.ad.array(gaps, "float64"), gamma0=gamma0, tau=1e9, solver=solver))
    np.testing.assert_allclose(m, gamma0, rtol=1e-6, atol=1e-6, err_msg="tau -> inf must give gamma0 for every pair")


@given(gaps=gap_sets(max_size=1024), gamma0=st.sampled_from([0.05, 1.0, 4.0, 20.0]), tau=st.floats(-2.0, 2.0).map(lambda e: float(10.0**e)))
def test_calibrate_margins_default_solver_is_rank_consistent(conf, gaps, gamma0, tau):
    """With no solver named, a backend returns the minimiser: margins monotone in the gaps (the KKT
    conditions force a larger margin for a larger gap), mean γ0, the reference's values, and the KKT
    residual of the spec. A backend whose default is still the released mirror arithmetic fails here
    (its iterate is not monotone for κ = γ0²/(8τ) > 0.5)."""
    conf.example()
    note(repro(conf.ad.name, "calibrate_margins", R.GammaPOConfig(), "float64",
               f"gaps = np.array({gaps.tolist()!r})\nkw = dict(gamma0={gamma0!r}, tau={tau!r})"))
    with conf.ad.precision("float64"):
        m = conf.ad.numpy(conf.B.calibrate_margins(conf.ad.array(gaps, "float64"), gamma0=gamma0, tau=tau))
    order = np.argsort(gaps, kind="stable")
    drop = float(np.max(-np.diff(m[order]), initial=0.0))
    assert drop <= 1e-9 * gamma0, f"a larger gap got a smaller margin (by {drop:.3g}): not the minimiser"
    ref = R.calibrate_margins(gaps, gamma0=gamma0, tau=tau)
    conf.close(m, ref, "float64", "calibration", "calibrate_margins (default solver)", scale=1.0 + gamma0,
               solver="exact", tau=tau, gamma0=gamma0)
    if np.all(m > 0):
        residual = R.kkt_residual(gaps, m, gamma0=gamma0, tau=tau)
        assert residual <= 1e-7 * (1.0 + gamma0), f"KKT residual {residual:.3g}: not the minimiser"


BAD_ARGS = [
    dict(gamma0=-1.0), dict(tau=0.0), dict(tau=-2.0), dict(tau=float("inf")), dict(solver="newton"),
    dict(iters=0), dict(gamma0=float("nan")),
]


@given(bad=st.sampled_from(BAD_ARGS + ["2d", "empty", "nan"]))
def test_calibrate_margins_errors(conf, bad):
    conf.example()
    kw = dict(gamma0=1.0, tau=1.0, solver="mirror", iters=5)
    gaps = np.array([1.0, -2.0, 0.5])
    if isinstance(bad, dict):
        kw.update(bad)
    elif bad == "2d":
        gaps = gaps[:, None]
    elif bad == "empty":
        gaps = gaps[:0]
    else:
        gaps = np.array([1.0, np.nan])
    note(f"gaps={gaps.tolist()}, kw={kw}")
    with conf.ad.precision("float64"):
        g = conf.ad.array(gaps, "float64")
        conf.same_error(lambda: R.calibrate_margins(gaps, **kw), lambda: conf.B.calibrate_margins(g, **kw),
                        "calibrate_margins")


@given(gaps=gap_sets(max_size=256), gamma0=st.sampled_from([0.5, 1.0, 2.0]), solver=SOLVERS,
       dtype=st.sampled_from(["bfloat16", "float16", "float32"]), seed=st.integers(0, 3))
def test_calibrate_margins_compute_dtype(conf, gaps, gamma0, solver, dtype, seed):
    """The dtype policy: half-precision gaps are calibrated in float32 and returned as float32. On
    well-conditioned settings (τ ∈ [1, 4], κ = γ0²/(8τ) ≤ 0.5, K = 5) the margins meet float32's
    tolerance, which arithmetic in half precision cannot (it rounds to ~4e-3 relative)."""
    conf.example(dtype, solver=solver)
    tau = (1.0, 1.5, 2.5, 4.0)[seed]
    gaps = np.clip(gaps, -30.0, 30.0)
    with conf.ad.precision(dtype):
        g = conf.ad.array(gaps, dtype)
        got = conf.B.calibrate_margins(g, gamma0=gamma0, tau=tau, solver=solver, iters=5)
        ref = R.calibrate_margins(conf.ad.numpy(g), gamma0=gamma0, tau=tau, solver=solver, iters=5)
        conf.close(got, ref, "float32", "calibration", f"calibrate_margins ({dtype} gaps, float32 compute)",
                   scale=1.0 + gamma0, solver=solver, tau=tau, gamma0=gamma0, iters=5)
    d = str(getattr(got, "dtype", "?"))
    if isinstance(got, np.ndarray) and d == "float64":
        return  # a NumPy reference-style backend computes in float64 for every input (documented)
    assert "float32" in d, f"calibrate_margins returned dtype {d} for {dtype} gaps; the dtype policy says float32"


@given(n=st.integers(1, 9), where=st.integers(0, 8), solver=SOLVERS, gamma0=GAMMA0S,
       bad=st.sampled_from([np.nan, np.inf, -np.inf]))
def test_calibrate_margins_non_finite_unchecked(conf, n, where, solver, gamma0, bad):
    """``check_values=False``: a non-finite gap is not an error and is not repaired; the margins are
    the spec's (NaN where the spec's are NaN), and with the check on, the same gaps raise."""
    conf.example(solver=solver)
    gaps = np.random.default_rng(n).normal(size=n)
    gaps[where % n] = bad
    with conf.ad.precision("float64"):
        g = conf.ad.array(gaps, "float64")
        with np.errstate(all="ignore"):
            ref = R.calibrate_margins(gaps, gamma0=gamma0, tau=1.0, solver=solver, iters=5, check_values=False)
        got = conf.B.calibrate_margins(g, gamma0=gamma0, tau=1.0, solver=solver, iters=5, check_values=False)
        conf.close(got, ref, "float64", "calibration", "calibrate_margins (non-finite gap, check_values=False)",
                   scale=1.0 + gamma0, solver=solver, tau=1.0, gamma0=gamma0, iters=5)
        conf.same_error(lambda: R.calibrate_margins(gaps, gamma0=gamma0, tau=1.0, solver=solver),
                        lambda: conf.B.calibrate_margins(g, gamma0=gamma0, tau=1.0, solver=solver),
                        "calibrate_margins (non-finite gap)")


@given(n=st.integers(1, 64), value=st.sampled_from([-3.0, 0.0, 2.5, 1e3]), gamma0=GAMMA0S, tau=taus(), solver=SOLVERS)
def test_calibrate_margins_degenerate_sets(conf, n, value, gamma0, tau, solver):
    """N = 1 and all-equal gaps: every margin is γ0 (the calibration set carries no ranking)."""
    conf.example(solver=solver, n=1 if n == 1 else "2+")
    with conf.ad.precision("float64"):
        m = conf.ad.numpy(conf.B.calibrate_margins(conf.ad.array(np.full(n, value), "float64"), gamma0=gamma0,
                                                   tau=tau, solver=solver, iters=5))
    ref = R.calibrate_margins(np.full(n, value), gamma0=gamma0, tau=tau, solver=solver, iters=5)
    conf.close(m, ref, "float64", "calibration", "calibrate_margins (equal gaps)", scale=1.0 + gamma0, solver=solver,
               tau=tau, gamma0=gamma0, iters=5)
    np.testing.assert_allclose(m, gamma0, rtol=1e-9, atol=1e-9, err_msg="equal gaps: every margin must be gamma0")
