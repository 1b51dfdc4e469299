"""Smoke test of benchmarks.bench_calibration_jax: every contender runs, timings and the verdict line are well formed."""

from __future__ import annotations

import numpy as np

from benchmarks import bench_calibration_jax as B


def test_bench_calibration_jax_contenders_and_verdict():
    s = B.setup(64)
    fns = B.contenders(s)
    assert set(fns) == {"released", "gammapo jax jit", "jit floor (inline)", "jit floor (queue-sized)"}
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
