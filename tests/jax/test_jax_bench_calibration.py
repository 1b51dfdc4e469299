"""Smoke test of benchmarks.bench_calibration_jax: every contender runs, timings and the verdict line are well formed."""

from __future__ import annotations

import os

import jax
import numpy as np

import gammapo_jax as G
from benchmarks import bench_calibration_jax as B
from gammapo_jax import _cpu_kernel as K


def test_bench_calibration_jax_contenders_and_verdict():
    s = B.setup(64)
    fns = B.contenders(s)
    assert set(fns) == {"released", "gammapo jax jit", "gammapo jax jit, released mirror",
                        "gammapo jax jit, released mirror, lax ops", "jit floor (inline)", "jit floor (queue-sized)"}
    assert s["config"].solver == "exact"  # the default contender runs the default solver
    # the released-mirror contender is the kernel's one custom call
    mirror = s["config"].replace(solver="mirror")
    text = str(jax.make_jaxpr(lambda st, h: G.calibrate_step(mirror, st, h))(s["state"], s["gaps"]))
    assert "gammapo_queue_step_f32" in text or K.load() is None
    assert os.environ.get(B.KERNEL_SWITCH) is None, "the benchmark left the kernel switch set"
    single: dict[str, list[float]] = {}
    samples = B.time_interleaved(fns, repeats=2, inner=2, single=single)
    assert all(len(v) == 2 and min(v) > 0 for v in samples.values())
    assert all(len(single[k]) == 4 for k in fns)
    assert B.agreement(s) < 1e-4  # float32 JAX vs float64 spec margins on the first step
    rec = [{"gaps": 256, "contender": "gammapo jax jit", "ratio_vs_released": 21.0, "per_call_ratio_vs_released": 25.0}]
    (line,) = B.verdict(rec, mode="m")
    assert "**met**" in line and "(m)" in line and "21.0×" in line and "25.0×" in line
    assert B.verdict([{"gaps": 64, "contender": "released", "ratio_vs_released": 1.0}]) == []
    assert np.isfinite(B._load()) or np.isnan(B._load())
