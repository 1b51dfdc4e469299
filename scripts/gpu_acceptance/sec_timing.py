"""Calibration per queue step at N = 256, 1024, 4096 gaps, every contender side by side in one process.

The workload is ``benchmarks.bench_calibration_torch``'s (n = N/4 current gaps, N − n sampled from a full
queue, the released recipe γ0 = 4, τ = 10, float32). Torch contenders are timed with CUDA events over
blocks of calls (median over interleaved rounds of the mean per call): the released per-step path
(host copy, ``random.sample``, a Python loop of small ops), the default solver eager / compiled /
replayed from a CUDA graph, the released mirror through the fused Triton kernel / torch ops / compiled /
CUDA graph, the Triton kernel alone on the N gaps, and two floors: an empty Triton kernel launch and a
one-element torch op. The JAX lax path (``jax.jit(gammapo_jax.calibrate_step)``, both solvers) is timed
by the wall clock around blocks ended by ``block_until_ready``. ``torch.compile`` contenders compile at
256 gaps only (each size would compile again, tens of seconds each). Without CUDA (dry run) the CPU is
timed at 64 gaps and the CUDA-only contenders are skipped.
"""

from __future__ import annotations

import os
import random

from ._child import NO_CUDA, cuda, interleaved, median
from ._workloads import graph_step

try:
    import triton

    @triton.jit
    def _empty_kernel(x_ptr):  # the floor: one launch that does nothing
        pass
except ImportError:  # pragma: no cover
    triton = None


def _without_triton(fn):
    def call():
        os.environ["GAMMAPO_DISABLE_TRITON"] = "1"
        try:
            return fn()
        finally:
            os.environ.pop("GAMMAPO_DISABLE_TRITON", None)
    return call


def _setup(m: int, device: str):
    from benchmarks.bench_calibration_torch import setup

    s = setup(m)
    s["state"] = type(s["state"])(*(t.to(device) for t in s["state"]))
    s["gaps"] = s["gaps"].to(device)
    return s


def _torch_contenders(s, on_cuda: bool, compiled: bool) -> dict:
    import torch

    import gammapo_torch as T
    from benchmarks.bench_calibration_torch import GAMMA0, TAU
    from benchmarks.released_baseline import released_calibrate
    from gammapo_torch import _triton_calibration as K

    config, state, gaps = s["config"], s["state"], s["gaps"]
    mirror = config.replace(solver="mirror")
    queue, rng, cap = list(s["queue"]), random.Random(0), s["capacity"]
    fns = {
        "released per-step path": lambda: released_calibrate(gaps, queue, gamma0=GAMMA0, tau=TAU, sample_size=config.sample_size,
                                                             capacity=cap, rng=rng),
        "default solver, eager": lambda: T.calibrate_step(config, state, gaps),
        "mirror, torch ops": _without_triton(lambda: T.calibrate_step(mirror, state, gaps)),
    }
    if on_cuda:
        calib = torch.cat([state.buffer[: config.sample_size - gaps.shape[0]], gaps]).contiguous()
        one = torch.zeros(1, device=gaps.device)
        fns["mirror, Triton kernel (step)"] = lambda: T.calibrate_step(mirror, state, gaps)
        fns["Triton kernel alone (N gaps)"] = lambda: K.mirror_margins_fused(calib, gamma0=GAMMA0, tau=TAU)
        fns["empty Triton kernel launch"] = lambda: _empty_kernel[(1,)](one)
        fns["one-element torch op"] = lambda: one.add_(1.0)
        for name, cfg in (("default solver, CUDA graph", config), ("mirror, CUDA graph", mirror)):
            try:
                graph = graph_step(cfg, state, gaps.shape[0])[0]
                fns[name] = graph.replay
            except Exception as exc:  # noqa: BLE001 - reported as that contender's error
                fns[name] = lambda exc=exc: (_ for _ in ()).throw(exc)
    if compiled:
        for name, cfg in (("default solver, torch.compile", config), ("mirror, torch.compile", mirror)):
            step = torch.compile(lambda st, h, cfg=cfg: T.calibrate_step(cfg, st, h), fullgraph=True, dynamic=False)
            fns[name] = lambda step=step: step(state, gaps)
    return fns


def _jax_contenders(m: int) -> dict:
    import jax

    import gammapo_jax as G
    from benchmarks.bench_calibration_jax import setup

    s = setup(m)
    config, state, gaps = s["config"], s["state"], s["gaps"]
    step = jax.jit(lambda st, h: G.calibrate_step(config, st, h))
    step_mirror = jax.jit(lambda st, h: G.calibrate_step(config.replace(solver="mirror"), st, h))
    floor = jax.jit(lambda h: h + 1.0)
    return {"jax lax jit, default solver": lambda: jax.block_until_ready(step(state, gaps)),
            "jax lax jit, mirror": lambda: jax.block_until_ready(step_mirror(state, gaps)),
            "jax jit floor (h + 1)": lambda: jax.block_until_ready(floor(gaps))}


def _record(rec, results: dict, errors: dict, m: int, rows: list) -> None:
    for name, values in results.items():
        rec.measure(f"calib.{name}.{m}", median(values))
        rows.append([m, name, f"{median(values):.1f}", f"{min(values):.1f}–{max(values):.1f}", len(values)])
    for name, err in errors.items():
        rows.append([m, name, "error", err[:120], 0])


def run(rec, dry: bool) -> None:
    import torch

    on_cuda = cuda()
    device = "cuda" if on_cuda else "cpu"
    sizes = (64,) if dry else (256, 1024, 4096)
    repeats, inner, warm = (2, 1, 1) if dry else (15, 20, 3)
    rows: list = []
    header = ["gaps N", "contender", "median µs/step", "range µs", "rounds"]
    torch.set_num_threads(1 if dry else torch.get_num_threads())
    if not on_cuda:
        rec.skip("CUDA-only contenders (Triton, CUDA graphs, empty kernel)")
    for m in sizes:
        with rec.part(f"torch contenders at {m} gaps") as p:
            results, errors = interleaved(_torch_contenders(_setup(m, device), on_cuda, compiled=False), repeats, inner, on_cuda,
                                          warm=warm)
            _record(rec, results, errors, m, rows)
            p["detail"] = ", ".join(f"{k} {median(v):.1f} µs" for k, v in results.items())
            if errors:
                p["status"], p["detail"] = "fail", f"{len(errors)} contenders failed: {errors}"[:500]
            rec.table("Calibration per step", header, rows)
    for m in sizes:
        with rec.part(f"jax lax jit at {m} gaps") as p:
            results, errors = interleaved(_jax_contenders(m), repeats, inner, on_cuda, wall=True, warm=warm)
            _record(rec, results, errors, m, rows)
            p["detail"] = ", ".join(f"{k} {median(v):.1f} µs" for k, v in results.items())
            if errors:
                p["status"], p["detail"] = "fail", f"{errors}"[:500]
            rec.table("Calibration per step", header, rows)
    m = sizes[0]
    with rec.part(f"torch.compile contenders at {m} gaps") as p:
        if dry:
            p["status"] = "skipped: dry run (compiling takes longer than the whole dry run)"
        else:
            fns = _torch_contenders(_setup(m, device), on_cuda, compiled=True)
            fns = {k: v for k, v in fns.items() if "compile" in k or k == "default solver, eager"}
            results, errors = interleaved(fns, repeats, inner, on_cuda)
            _record(rec, {k: v for k, v in results.items() if "compile" in k}, errors, m, rows)
            p["detail"] = ", ".join(f"{k} {median(v):.1f} µs" for k, v in results.items())
            if errors:
                p["status"], p["detail"] = "fail", f"{errors}"[:500]
        rec.table("Calibration per step", header, rows)
    if not on_cuda:
        rec.measure("calib.note", NO_CUDA)
