"""Conformance of ``calibrate_step``: margins and the next state over several steps, errors."""

import numpy as np
from hypothesis import given, note
from hypothesis import strategies as st

import gammapo_spec as R
from gammapo_conformance.strategies import configs, queue_states
from gammapo_conformance.tolerances import tolerance
from gammapo_conformance.adapters import assert_close


def _dtype_of_state(conf, state) -> str:
    d = conf.B.state_to_dict(state)
    return "float64" if d is None or "64" in str(getattr(d["buffer"], "dtype", "float64")) else "float32"


def _replay(conf, config, seed, pushes):
    """Every step of ``pushes`` (then one of 3 gaps) on the backend against the spec from the same state:
    the margins and the whole next state, field by field (:meth:`Harness.queue_state`)."""
    with conf.ad.precision("float64"):
        state = conf.B.init_state(config, seed)
        dtype = _dtype_of_state(conf, state)
        # warm-up draws: held to float32 (as test_init_state: a backend may draw them in float32)
        conf.queue_state(state, R.init_state(config, seed), "float32", "init_state", scale=8.0)
        tol = tolerance(dtype, "calibration", solver=config.solver, tau=config.tau, gamma0=config.gamma0,
                        iters=config.iters)
        for step, gaps in enumerate(pushes + [np.array([0.5, -1.5, 2.0])]):
            # the reference calibrates on the backend's stored (possibly float32) queue
            ref = conf.ref_state(state, f"calibrate_step: state before step {step}")
            gamma, state = conf.B.calibrate_step(config, state, conf.ad.array(gaps, "float64"))
            rg, ref = R.calibrate_step(config, ref, gaps)
            assert_close(conf.ad.numpy(gamma), rg, tol, f"calibrate_step: margins at step {step}", 1 + config.gamma0)
            conf.queue_state(state, ref, dtype, f"calibrate_step: state after step {step}",
                             scale=1 + float(np.max(np.abs(gaps))))


@given(case=queue_states())
def test_calibrate_step_state_transitions(conf, case):
    config, seed, pushes = case
    conf.example("float64", config, pushes=len(pushes))
    note(f"config = R.{config!r}\nseed = {seed}\npushes = {[p.tolist() for p in pushes]!r}")
    _replay(conf, config, seed, pushes)


def _boundary_cases():
    """Queue states at their boundaries: filled exactly to capacity, wrapped by one, a batch larger
    than the queue, a warm-up that fills it (head 0), an empty queue, and sample sizes below the
    batch (nothing sampled), equal to and above the stored count (everything sampled)."""
    cases = []
    for cap in (1, 4, 7):
        for warm in sorted({0, cap // 2, cap}):
            for sample in sorted({1, 3, cap + 3, 3 * cap + 5}):
                cfg = R.GammaPOConfig(loss="gamma-dpo", queue_size=cap, queue_warmup=warm, sample_size=sample,
                                      gamma_beta_ratio=1.0, beta=1.0, tau=1.0)
                rng = np.random.default_rng(cap * 100 + warm * 10 + sample)
                fill = cap - warm
                plans = [[fill, 1, cap], [cap + 3], [1, 1, 1]] if fill else [[1, cap], [cap + 3]]
                for plan in plans:
                    cases.append((cfg, cap + warm, [rng.normal(scale=3.0, size=k) for k in plan]))
    return cases


BOUNDARY = _boundary_cases()


@given(which=st.integers(0, len(BOUNDARY) - 1))
def test_calibrate_step_queue_boundaries(conf, which):
    config, seed, pushes = BOUNDARY[which]
    conf.example("float64", config, capacity=config.queue_size)
    note(f"config = R.{config!r}\nseed = {seed}\npushes = {[p.tolist() for p in pushes]!r}")
    _replay(conf, config, seed, pushes)


@given(config=configs(losses=("gamma-dpo", "gamma-simpo"), calibration=("batch",)), seed=st.integers(0, 2**31))
def test_calibrate_step_batch_mode(conf, config, seed):
    conf.example()
    gaps = np.random.default_rng(seed).normal(scale=3.0, size=1 + seed % 50)
    with conf.ad.precision("float64"):
        gamma, state = conf.B.calibrate_step(config, None, conf.ad.array(gaps, "float64"))
    assert state is None, "batch mode must return state None"
    rg, _ = R.calibrate_step(config, None, gaps)
    conf.close(gamma, rg, "float64", "calibration", "calibrate_step (batch)", scale=1 + config.gamma0,
               solver=config.solver, tau=config.tau, gamma0=config.gamma0, iters=config.iters)


def _bad_state_dicts():
    good = R.state_to_dict(R.init_state(R.GammaPOConfig(loss="gamma-dpo", queue_size=8), 1))
    cases = [("missing " + k, {kk: v for kk, v in good.items() if kk != k}) for k in good]
    for k, v in (("buffer", np.zeros((2, 4))), ("buffer", np.zeros(0)), ("size", 9), ("size", -1), ("head", 8),
                 ("head", -1), ("step", -1), ("seed", 2**32), ("seed", -1), ("buffer", np.full(8, np.nan)),
                 ("buffer", np.full(8, np.inf)), ("size", 2.5), ("step", float("nan"))):
        cases.append((f"{k}={np.asarray(v).tolist() if np.ndim(v) == 0 else np.shape(v)}", {**good, k: v}))
    return cases


@given(case=st.sampled_from(_bad_state_dicts()))
def test_calibrate_step_state_from_dict_errors(conf, case):
    """A checkpoint dict the spec rejects is rejected with the spec's error and field (values the
    spec accepts are not part of this test)."""
    from gammapo_conformance.adapters import raised

    what, bad = case
    conf.example()
    if raised(lambda: R.state_from_dict(bad)) is None:
        return
    with conf.ad.precision("float64"):
        conf.same_error(lambda: R.state_from_dict(bad), lambda: conf.B.state_from_dict(bad), f"state_from_dict ({what})")


@given(which=st.sampled_from(["none_for_queue", "state_for_batch", "capacity", "gaps_2d", "gaps_empty", "gaps_nan",
                              "gaps_posinf", "gaps_neginf"]))
def test_calibrate_step_errors(conf, which):
    conf.example()
    queue = R.GammaPOConfig(loss="gamma-dpo", queue_size=8)
    batch = R.GammaPOConfig(loss="gamma-dpo", calibration="batch")
    gaps = np.array([1.0, 2.0])
    with conf.ad.precision("float64"):
        if which == "none_for_queue":
            cfg, bs, rs = queue, None, None
        elif which == "state_for_batch":
            cfg, bs, rs = batch, conf.B.init_state(queue), R.init_state(queue)
        elif which == "capacity":
            other = R.GammaPOConfig(loss="gamma-dpo", queue_size=4, queue_warmup=0)
            cfg, bs, rs = queue, conf.B.init_state(other), R.init_state(other)
        else:
            cfg, bs, rs = queue, conf.B.init_state(queue), R.init_state(queue)
            gaps = {"gaps_2d": gaps[:, None], "gaps_empty": gaps[:0], "gaps_nan": np.array([np.nan]),
                    "gaps_posinf": np.array([0.5, np.inf]), "gaps_neginf": np.array([-np.inf, 1.0])}[which]
        g = conf.ad.array(gaps, "float64")
        conf.same_error(lambda: R.calibrate_step(cfg, rs, gaps), lambda: conf.B.calibrate_step(cfg, bs, g), which)
