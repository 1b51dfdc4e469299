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


@given(case=queue_states())
def test_calibrate_step_state_transitions(conf, case):
    config, seed, pushes = case
    conf.example()
    note(f"config = R.{config!r}\nseed = {seed}\npushes = {[p.tolist() for p in pushes]!r}")
    with conf.ad.precision("float64"):
        state = conf.B.init_state(config, seed)
        ref = R.init_state(config, seed)
        dtype = _dtype_of_state(conf, state)
        tol = tolerance(dtype, "calibration", solver=config.solver, tau=config.tau, gamma0=config.gamma0,
                        iters=config.iters)
        for step, gaps in enumerate(pushes + [np.array([0.5, -1.5, 2.0])]):
            # the reference calibrates on the backend's stored (possibly float32) queue
            ref = R.state_from_dict({**conf.ad.state(state), "buffer": conf.ad.state(state)["buffer"]})
            gamma, state = conf.B.calibrate_step(config, state, conf.ad.array(gaps, "float64"))
            rg, ref = R.calibrate_step(config, ref, gaps)
            assert_close(conf.ad.numpy(gamma), rg, tol, f"calibrate_step: margins at step {step}", 1 + config.gamma0)
            got = conf.ad.state(state)
            want = R.state_to_dict(ref)
            for k in ("size", "head", "step", "seed"):
                assert got[k] == want[k], f"calibrate_step: state.{k} at step {step}: {got[k]} != reference {want[k]}"
            assert_close(got["buffer"], want["buffer"], tolerance(dtype, "values"), f"calibrate_step: buffer at step {step}",
                         1 + float(np.max(np.abs(gaps))))


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


@given(which=st.sampled_from(["none_for_queue", "state_for_batch", "capacity", "gaps_2d", "gaps_empty", "gaps_nan"]))
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
            gaps = {"gaps_2d": gaps[:, None], "gaps_empty": gaps[:0], "gaps_nan": np.array([np.nan])}[which]
        g = conf.ad.array(gaps, "float64")
        conf.same_error(lambda: R.calibrate_step(cfg, rs, gaps), lambda: conf.B.calibrate_step(cfg, bs, g), which)
