"""Conformance of β-DPO (:mod:`gammapo_spec.beta_dpo`): one step's values, the kept subset (exactly the
reference's for the same state), the state update, gradients, checkpoint round trips and errors.

A backend provides β-DPO in its submodule ``beta_dpo`` with ``init_beta_dpo_state``, ``beta_dpo_step``,
``beta_dpo_loss_and_grad``, ``beta_dpo_state_to_dict`` and ``beta_dpo_state_from_dict``; a backend
without one skips these tests.

The statistics, selection scores and β are computed in float64 whatever the input dtype (for JAX:
under ``jax_enable_x64``, which these tests switch on), so the mask must equal the reference's exactly
and β, the new state's mean and std must agree to the float64 tolerance; the loss and per-pair losses
follow the input dtype's tolerance (scaled by ``1 + β·max|Δ|``).
"""

import numpy as np
import pytest
from hypothesis import given, note
from hypothesis import strategies as st

import gammapo_spec.beta_dpo as BD
from gammapo_conformance.adapters import assert_equal
from gammapo_conformance.strategies import dtypes, sizes

_FIELDS = ("chosen_logps", "rejected_logps", "ref_chosen_logps", "ref_rejected_logps")
PATTERNS = ("normal", "near_mean", "constant", "spread")


def _ops(conf):
    mod = conf.ad.module("beta_dpo")
    if mod is None:
        pytest.skip(f"backend {conf.ad.name!r} has no beta_dpo module")
    return mod


def make_logps(n: int, pattern: str, seed: int) -> dict[str, np.ndarray]:
    """Log-probs of n pairs: ``normal`` (gaps ~ N(0, 9)), ``near_mean`` (gaps within 1e-3 of each
    other), ``constant`` (every gap equal), ``spread`` (gaps up to ±1e3: weights underflow)."""
    rng = np.random.default_rng(seed)
    c, r, cr, rr = (-rng.uniform(5.0, 60.0, n) for _ in range(4))
    if pattern == "constant":
        c, r, cr, rr = (np.full(n, v) for v in (-12.25, -20.5, -13.0, -19.0))
    elif pattern == "near_mean":
        c = cr + (r - rr) + 0.5 + rng.uniform(0.0, 1e-3, n)
    elif pattern == "spread":
        c = c - rng.uniform(-1e3, 1e3, n)
    return dict(zip(_FIELDS, (c, r, cr, rr)))


@st.composite
def states(draw) -> BD.BetaDPOState:
    """A state: fresh (0, 0) or with drawn statistics, any step counter and seed."""
    if draw(st.booleans()):
        return BD.BetaDPOState(0.0, 0.0, draw(st.integers(0, 3)), draw(st.integers(0, 2**32 - 1)))
    return BD.BetaDPOState(draw(st.floats(-20, 20)), draw(st.sampled_from([0.0, 1e-3, 0.5, 3.0, 50.0])),
                           draw(st.integers(0, 2**40)), draw(st.integers(0, 2**32 - 1)))


@st.composite
def params(draw) -> dict:
    return dict(beta0=draw(st.sampled_from([1e-3, 0.05, 0.1, 0.5, 2.0])), alpha=draw(st.sampled_from([-1.0, 0.0, 0.6, 3.0])),
                rho=draw(st.sampled_from([0.1, 0.5, 0.8, 0.95, 1.0])), momentum=draw(st.sampled_from([0.0, 0.5, 0.9])))


def _run(conf, B, state, logps, dtype, kw):
    """(backend output, rounded float64 inputs) of one step, under float64 statistics."""
    with conf.ad.precision("float64"):  # JAX: x64 on, so the statistics are float64 (inputs keep dtype)
        bi, rounded = conf.ad.inputs(logps, dtype)
        out = B.beta_dpo_step(B.beta_dpo_state_from_dict(state.to_dict()), *(bi[k] for k in _FIELDS), **kw)
        got = {"loss": conf.ad.numpy(out.loss), "losses": conf.ad.numpy(out.losses), "mask": conf.ad.numpy(out.mask),
               "beta": conf.ad.numpy(out.beta), "gaps": conf.ad.numpy(out.gaps), "state": B.beta_dpo_state_to_dict(out.state)}
    return got, rounded


@given(n=sizes(max_size=1024), pattern=st.sampled_from(PATTERNS), seed=st.integers(0, 2**31 - 1), state=states(),
       kw=params(), dtype=dtypes())
def test_beta_dpo_step_values(conf, n, pattern, seed, state, kw, dtype):
    conf.example(dtype)
    B = _ops(conf)
    note(f"# reproduce: logps = make_logps({n}, {pattern!r}, {seed}); state = BD.{state!r}; kw = {kw}; dtype {dtype}")
    got, rounded = _run(conf, B, state, make_logps(n, pattern, seed), dtype, kw)
    want = BD.beta_dpo_step(state, *(rounded[k] for k in _FIELDS), **kw)
    assert_equal(got["mask"], want.mask, "beta_dpo_step: kept subset (mask) vs the reference's")
    conf.close(got["beta"], want.beta, "float64", "values", "beta")
    scale = 1.0 + float(np.max(np.abs(want.gaps)))
    conf.close(got["gaps"], want.gaps, dtype, "values", "gaps", scale=1.0 + max(float(np.max(np.abs(rounded[k]))) for k in _FIELDS))
    conf.close(got["state"]["gap_mean"], want.state.gap_mean, "float64", "values", "state.gap_mean", scale=scale)
    conf.close(got["state"]["gap_std"], want.state.gap_std, "float64", "values", "state.gap_std", scale=scale)
    # the step counter is compared modulo 2**32 (the keys use it so; JAX stores it as uint32)
    assert int(got["state"]["step"]) % 2**32 == want.state.step % 2**32 and int(got["state"]["seed"]) == want.state.seed
    lscale = 1.0 + want.beta * scale
    conf.close(got["loss"], want.loss, dtype, "values", "loss", scale=lscale)
    conf.close(got["losses"], want.losses, dtype, "values", "losses", scale=lscale)


@given(n=sizes(max_size=256), seed=st.integers(0, 2**31 - 1), state=states(), kw=params())
def test_beta_dpo_step_invariants(conf, n, seed, state, kw):
    """Checks that do not use the reference's implementation: kept count, β floor, the state formula."""
    conf.example()
    B = _ops(conf)
    logps = make_logps(n, "normal", seed)
    got, rounded = _run(conf, B, state, logps, "float64", kw)
    k = max(1, min(n, int(np.floor(kw["rho"] * n + 1e-9))))
    assert set(np.unique(got["mask"])) <= {0.0, 1.0} and got["mask"].sum() == k, f"kept {got['mask'].sum()} of {n}, want {k}"
    assert got["beta"] >= 1e-3
    gaps = (rounded["chosen_logps"] - rounded["ref_chosen_logps"]) - (rounded["rejected_logps"] - rounded["ref_rejected_logps"])
    mu = kw["momentum"]
    s = float(np.std(gaps, ddof=1)) if n > 1 and gaps.max() != gaps.min() else 0.0
    np.testing.assert_allclose(got["state"]["gap_mean"], mu * state.gap_mean + (1 - mu) * gaps.mean(), rtol=1e-10, atol=1e-10 * (1 + np.abs(gaps).max()))
    np.testing.assert_allclose(got["state"]["gap_std"], mu * state.gap_std + (1 - mu) * s, rtol=1e-10, atol=1e-10 * (1 + np.abs(gaps).max()))
    kept_mean = float(np.sum(gaps * got["mask"]) / k)
    beta = max(1e-3, kw["beta0"] * (1 + kw["alpha"] * (kept_mean - got["state"]["gap_mean"])))
    np.testing.assert_allclose(got["beta"], beta, rtol=1e-9, atol=1e-12)


@given(n=sizes(max_size=64), seed=st.integers(0, 2**31 - 1), state=states(), kw=params(), dtype=dtypes())
def test_beta_dpo_gradients(conf, n, seed, state, kw, dtype):
    conf.example(dtype)
    B = _ops(conf)
    with conf.ad.precision("float64"):
        bi, rounded = conf.ad.inputs(make_logps(n, "normal", seed), dtype)
        out, grads = B.beta_dpo_loss_and_grad(B.beta_dpo_state_from_dict(state.to_dict()), *(bi[k] for k in _FIELDS), **kw)
        got = {k: conf.ad.numpy(v) for k, v in grads.items()}
    want_out, want = BD.beta_dpo_loss_and_grad(state, *(rounded[k] for k in _FIELDS), **kw)
    for k in _FIELDS:
        conf.close(got[k], want[k], dtype, "gradients", f"d loss / d {k}", scale=want_out.beta / want_out.mask.sum())


@given(seed=st.integers(0, 2**31 - 1), cut=st.integers(1, 4))
def test_beta_dpo_state_round_trip(conf, seed, cut):
    """Five steps with a checkpoint (dict) after ``cut`` steps equal five uninterrupted steps, and the
    backend's states match the reference's."""
    conf.example()
    B = _ops(conf)
    batches = [make_logps(16, "normal", seed + i) for i in range(5)]
    with conf.ad.precision("float64"):
        a = b = B.init_beta_dpo_state(seed % 2**32)
        ref = BD.init_beta_dpo_state(seed % 2**32)
        for i, logps in enumerate(batches):
            bi, _ = conf.ad.inputs(logps, "float64")
            args = [bi[k] for k in _FIELDS]
            if i == cut:
                b = B.beta_dpo_state_from_dict(B.beta_dpo_state_to_dict(b))
            oa, ob = B.beta_dpo_step(a, *args), B.beta_dpo_step(b, *args)
            oref = BD.beta_dpo_step(ref, *(logps[k] for k in _FIELDS))
            assert_equal(conf.ad.numpy(oa.mask), oref.mask, f"step {i}: mask of the uninterrupted run")
            assert_equal(conf.ad.numpy(ob.mask), oref.mask, f"step {i}: mask of the resumed run")
            assert float(conf.ad.numpy(oa.loss)) == float(conf.ad.numpy(ob.loss)), f"step {i}: resumed run differs"
            a, b, ref = oa.state, ob.state, oref.state
        da, db = B.beta_dpo_state_to_dict(a), B.beta_dpo_state_to_dict(b)
    assert da == db
    assert (da["step"], da["seed"]) == (ref.step, ref.seed)
    np.testing.assert_allclose([da["gap_mean"], da["gap_std"]], [ref.gap_mean, ref.gap_std], rtol=1e-10, atol=1e-12)


def _bad_cases():
    ok = make_logps(4, "normal", 0)
    args = [ok[k] for k in _FIELDS]
    cases = [("config", {"beta0": 0.0}), ("config", {"beta0": -1.0}), ("config", {"rho": 0.0}), ("config", {"rho": 1.5}),
             ("config", {"alpha": float("nan")}), ("config", {"momentum": 1.0}), ("config", {"beta_min": 0.0})]
    out = [(what, args, kw) for what, kw in cases]
    for i, k in enumerate(_FIELDS):
        bad = list(args)
        bad[i] = np.where(np.arange(4) == 1, np.nan, args[i])
        out.append((f"nan {k}", bad, {}))
        bad = list(args)
        bad[i] = args[i][:3]
        out.append((f"mismatch {k}", bad, {}))
        bad = list(args)
        bad[i] = args[i].reshape(2, 2)
        out.append((f"2-D {k}", bad, {}))
    out.append(("empty", [a[:0] for a in args], {}))
    return out


@given(case=st.sampled_from(_bad_cases()))
def test_beta_dpo_errors(conf, case):
    conf.example()
    B = _ops(conf)
    what, args, kw = case
    with conf.ad.precision("float64"):
        conf.same_error(lambda: BD.beta_dpo_step(BD.init_beta_dpo_state(), *args, **kw),
                        lambda: B.beta_dpo_step(B.init_beta_dpo_state(), *(conf.ad.array(a, "float64") for a in args), **kw),
                        f"beta_dpo_step ({what})")


@given(key=st.sampled_from(["gap_mean", "gap_std", "step", "seed", "missing"]))
def test_beta_dpo_state_errors(conf, key):
    conf.example()
    B = _ops(conf)
    good = BD.init_beta_dpo_state().to_dict()
    bad = {k: v for k, v in good.items() if k != "step"} if key == "missing" else \
        {**good, key: {"gap_mean": float("nan"), "gap_std": -1.0, "step": -1, "seed": 2**32}[key]}
    with conf.ad.precision("float64"):
        conf.same_error(lambda: BD.beta_dpo_state_from_dict(bad), lambda: B.beta_dpo_state_from_dict(bad), f"state ({key})")
        conf.same_error(lambda: BD.init_beta_dpo_state(-1), lambda: B.init_beta_dpo_state(-1), "init_beta_dpo_state(-1)")


GUARDS = [(n, pattern) for n in (1, 2, 3, 5, 10, 100) for pattern in ("constant", "near_mean", "normal")]


@given(which=st.integers(0, len(GUARDS) - 1), state=states(), kw=params())
def test_beta_dpo_degenerate_sizes(conf, which, state, kw):
    """Kept count at its guards — N = 1, ρN just below 1 (the floor of 1), ρN an integer in exact
    arithmetic (0.8·5, 0.29·100: the 1e-9 guard), ρ = 1 — and zero spread (equal gaps): the mask
    (exactly ``keep_count(n, rho)`` pairs, the spec's), β, the losses, the loss and every field of the
    new state equal the spec's."""
    n, pattern = GUARDS[which]
    conf.example("float64", n=n, pattern=pattern)
    for rho in sorted({0.1, 0.29, 0.5, 0.57, 0.8, 1.0, 1.0 / n, min(1.0, 1.0 / n + 1e-12), max(1e-3, 1.0 / n - 1e-6)}):
        _check_guard(conf, n, rho, pattern, which, state, {**kw, "rho": rho})


def _check_guard(conf, n, rho, pattern, which, state, kw):
    B = _ops(conf)
    got, rounded = _run(conf, B, state, make_logps(n, pattern, which), "float64", kw)
    want = BD.beta_dpo_step(state, *(rounded[k] for k in _FIELDS), **kw)
    assert got["mask"].sum() == BD.keep_count(n, rho), (
        f"beta_dpo_step kept {got['mask'].sum():g} of {n} pairs at rho={rho!r}; the spec keeps {BD.keep_count(n, rho)}")
    assert_equal(got["mask"], want.mask, f"beta_dpo_step (n={n}, rho={rho!r}, {pattern}): mask")
    _compare_step(conf, got, want, rounded, "float64", f"beta_dpo_step (n={n}, rho={rho!r}, {pattern})")


def _compare_step(conf, got, want, rounded, dtype, what):
    """Every field of a β-DPO step output and of its new state against the spec's."""
    scale = 1.0 + float(np.max(np.abs(want.gaps)))
    conf.close(got["beta"], want.beta, "float64", "values", f"{what}: beta")
    conf.close(got["gaps"], want.gaps, dtype, "values", f"{what}: gaps",
               scale=1.0 + max(float(np.max(np.abs(rounded[k]))) for k in _FIELDS))
    st_want = BD.beta_dpo_state_to_dict(want.state)
    if set(got["state"]) != set(st_want):
        raise AssertionError(f"{what}: the backend's state dict has keys {sorted(got['state'])}, the spec's {sorted(st_want)}")
    conf.close(got["state"]["gap_mean"], want.state.gap_mean, "float64", "values", f"{what}: state.gap_mean", scale=scale)
    conf.close(got["state"]["gap_std"], want.state.gap_std, "float64", "values", f"{what}: state.gap_std", scale=scale)
    assert int(got["state"]["step"]) % 2**32 == want.state.step % 2**32, f"{what}: state.step {got['state']['step']} != {want.state.step}"
    assert int(got["state"]["seed"]) == want.state.seed, f"{what}: state.seed {got['state']['seed']} != {want.state.seed}"
    lscale = 1.0 + want.beta * scale
    conf.close(got["losses"], want.losses, dtype, "values", f"{what}: losses", scale=lscale)
    conf.close(got["loss"], want.loss, dtype, "values", f"{what}: loss", scale=lscale)
