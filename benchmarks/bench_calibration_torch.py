r"""Per-call latency of one queue-mode calibration step: gammapo's torch backend vs the released code.

Run: ``python -m benchmarks.bench_calibration_torch [--quick] [--out DIR] [--threads T] [--no-compile]``
(or ``python -m benchmarks calibration_torch``). Writes ``calibration_torch.md`` and ``.json`` in the
results folder (default ``benchmarks/results``).

What one call does, for a calibration set of M gaps (M = 64, 256, 1024, 4096): n = M/4 current gaps,
``sample_size = M``, a full queue of ``max(2048, M)`` stored gaps (the released capacity is 2048), so
each step samples S = M − n stored gaps, calibrates on M gaps with K = 20 mirror iterations, keeps the
margins of the n current gaps and pushes them. Hyper-parameters: the released Llama-3 recipe
(β = 10, γ0 = 4, τ = 10); float32 gaps. The contenders, timed in the same process, interleaved
(each repeat times a block of calls of every contender in turn), reported as the median over repeats
of the mean per call, with the interquartile range:

* ``released`` — :func:`benchmarks.released_baseline.released_calibrate`: ``.tolist()`` of the gaps,
  ``random.sample`` from a Python list, a new tensor, a Python loop of small torch ops;
* ``gammapo eager`` — :func:`gammapo_torch.calibrate_step` (``check_values=False``), what a user gets
  by default on CPU: hash sampling and the ring-buffer push as torch ops, the default solver (the
  minimiser, :mod:`gammapo_spec.kkt_solver`) as one call of the compiled C++ kernel of
  :mod:`gammapo_torch._cpu_calibration`;
* ``gammapo eager, released mirror`` — the same with ``solver="mirror"`` (the released arithmetic):
  the whole step (sampling, mirror iterations, push) is one kernel call;
* ``gammapo eager, torch ops`` — the same call with that kernel turned off
  (``GAMMAPO_DISABLE_CPU_KERNEL=1``, set and reset around each call: ~1 µs of the time): the
  op-by-op tensor path (masked mirror solver), which is what runs on CUDA or without a C++ compiler;
* ``gammapo compiled`` — :func:`gammapo_torch.calibrate_step` under ``torch.compile(fullgraph=True)``
  (inductor fuses the tensor path);
* ``compile call floor`` — a compiled function that only adds 1 to the gaps: the fixed cost of
  calling any compiled function on this machine (dynamo guards, AOT wrappers), for reading the row above.

``ratio`` is the released median divided by the contender's median (higher is better). Only the CPU
is measured: no GPU is lent to this task, so no CUDA or Triton numbers are claimed here.
"""

from __future__ import annotations

import argparse
import os
import random
import time
from typing import Any, Callable, Sequence

import torch

import gammapo_torch as T
from benchmarks._perf_common import calls_per_block, machine_info, machine_line, markdown_table, stats, write_results
from benchmarks.released_baseline import released_calibrate
from gammapo_spec.config import GammaPOConfig

__all__ = ["main", "setup", "time_interleaved", "verdict"]

SIZES = (64, 256, 1024, 4096)
QUICK_SIZES = (64, 256)
BETA, GAMMA_BETA_RATIO, TAU = 10.0, 0.4, 10.0  # the released Llama-3-8B-Instruct recipe
GAMMA0 = BETA * GAMMA_BETA_RATIO


def setup(m: int, seed: int = 0) -> dict[str, Any]:
    """Everything one size needs: the config, a full torch state, a full Python-list queue, current gaps.

    Example:
        >>> s = setup(64)
        >>> s["gaps"].shape, int(s["state"].size), len(s["queue"])
        (torch.Size([16]), 2048, 2048)
    """
    n = max(m // 4, 1)
    capacity = max(2048, m)
    config = GammaPOConfig(
        loss="gamma-simpo", beta=BETA, gamma_beta_ratio=GAMMA_BETA_RATIO, tau=TAU, calibration="queue",
        queue_size=capacity, sample_size=m, check_values=False,
    )
    g = torch.Generator().manual_seed(seed)
    history = torch.randn(capacity, generator=g) * 3.0
    state = T.init_state(config, seed=seed)
    # fill the queue through the public step so the state is a real one (size == capacity)
    for chunk in history.split(512):
        _, state = T.calibrate_step(config.replace(sample_size=1), state, chunk)
    rng = random.Random(seed)
    return {
        "config": config,
        "state": state,
        "queue": history.tolist(),
        "rng": rng,
        "gaps": torch.randn(n, generator=g) * 3.0,
        "n": n,
        "capacity": capacity,
    }


def time_interleaved(fns: dict[str, Callable[[], Any]], repeats: int, inner: int) -> dict[str, list[float]]:
    """Per-call seconds of each function: ``repeats`` rounds, each timing ``inner`` calls of every one in turn."""
    samples: dict[str, list[float]] = {name: [] for name in fns}
    for fn in fns.values():  # warm-up (and compilation) outside the timed rounds
        for _ in range(3):
            fn()
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            for _ in range(inner):
                fn()
            samples[name].append((time.perf_counter() - start) / inner)
    return samples


def _without_kernel(fn: Callable[..., Any], *args: Any) -> Any:
    """``fn(*args)`` with the CPU kernel turned off (the op-by-op tensor path)."""
    previous = os.environ.get("GAMMAPO_DISABLE_CPU_KERNEL")
    os.environ["GAMMAPO_DISABLE_CPU_KERNEL"] = "1"
    try:
        return fn(*args)
    finally:
        if previous is None:
            del os.environ["GAMMAPO_DISABLE_CPU_KERNEL"]
        else:
            os.environ["GAMMAPO_DISABLE_CPU_KERNEL"] = previous


def contenders(s: dict[str, Any], compile_it: bool) -> dict[str, Callable[[], Any]]:
    config, state, gaps, queue = s["config"], s["state"], s["gaps"], s["queue"]
    mirror = config.replace(solver="mirror")

    def step(st, h):
        return T.calibrate_step(config, st, h)

    fns: dict[str, Callable[[], Any]] = {
        "released": lambda: released_calibrate(
            gaps, queue, gamma0=GAMMA0, tau=TAU, sample_size=config.sample_size, capacity=s["capacity"], rng=s["rng"]
        ),
        "gammapo eager": lambda: step(state, gaps),
        "gammapo eager, torch ops": lambda: _without_kernel(step, state, gaps),
        "gammapo eager, released mirror": lambda: T.calibrate_step(mirror, state, gaps),
    }
    if compile_it:
        compiled = torch.compile(step, fullgraph=True, dynamic=False)
        floor = torch.compile(lambda h: h + 1.0, fullgraph=True, dynamic=False)
        fns["gammapo compiled"] = lambda: compiled(state, gaps)
        fns["compile call floor"] = lambda: floor(gaps)
    return fns


def check_agreement(s: dict[str, Any], fns: dict[str, Callable[[], Any]]) -> float:
    """Largest difference between the margins of the gammapo contenders (they must agree to float32 rounding)."""
    eager, _ = fns["gammapo eager"]()
    others = [fns[name]()[0] for name in ("gammapo eager, torch ops", "gammapo compiled") if name in fns]
    return max((float((eager - other).abs().max()) for other in others), default=0.0)


def _load() -> float:
    """The 1-minute load average (``nan`` where the OS has none)."""
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return float("nan")


def verdict(records: list[dict[str, Any]], target: float = 20.0, at: int = 256) -> list[str]:
    """One line on the issue's target (≥ 20× the released path at 256 gaps on CPU), from the measured ratios."""
    best = max((r for r in records if r["gaps"] == at and r["contender"].startswith("gammapo")),
               key=lambda r: r["ratio_vs_released"], default=None)
    if best is None:
        return []
    met = "met" if best["ratio_vs_released"] >= target else "not met"
    return [f"Target ≥ {target:g}× the released path at {at} gaps on CPU: **{met}** here "
            f"(best: {best['contender']}, {best['ratio_vs_released']:.1f}×)."]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; print the table; write ``calibration_torch.md`` / ``.json``. Returns 0."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_calibration_torch", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="sizes 64 and 256, few repeats (a smoke test)")
    parser.add_argument("--out", default=None, help="results folder (default benchmarks/results)")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1: tiny problems)")
    parser.add_argument("--no-compile", action="store_true", help="skip the torch.compile contender")
    parser.add_argument("--repeats", type=int, default=None, help="interleaved rounds per size")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    sizes = QUICK_SIZES if args.quick else SIZES
    repeats = args.repeats or (5 if args.quick else 25)
    machine = machine_info()
    gpu_note = (
        "No GPU is lent to this task: CPU only; the CUDA path and the Triton kernel are not timed here."
        if not torch.cuda.is_available()
        else "A GPU is present but this benchmark times the CPU path only."
    )
    print(f"Machine: {machine_line(machine)}; torch threads {torch.get_num_threads()}")
    print(gpu_note, flush=True)

    load_before = _load()
    rows, records = [], []
    for m in sizes:
        s = setup(m)
        fns = contenders(s, compile_it=not args.no_compile)
        t0 = time.perf_counter()
        agreement = check_agreement(s, fns)  # also compiles
        compile_s = time.perf_counter() - t0
        inner = 3 if args.quick else calls_per_block(m)
        samples = time_interleaved(fns, repeats, inner)
        summary = {name: stats(v) for name, v in samples.items()}
        base = summary["released"]["median"]
        for name, st in summary.items():
            ratio = base / st["median"]
            rows.append([m, s["n"], name, f"{st['median'] * 1e6:.1f}", f"{st['q1'] * 1e6:.1f}–{st['q3'] * 1e6:.1f}",
                         "—" if name in ("released", "compile call floor") else f"{ratio:.1f}×"])
            records.append({"gaps": m, "current": s["n"], "contender": name, "ratio_vs_released": ratio,
                            **{f"{k}_us": v * 1e6 for k, v in st.items() if k != "n"}, "repeats": st["n"], "inner": inner})
            print(" | ".join(str(c) for c in rows[-1]), flush=True)
        print(f"  (M={m}: the gammapo contenders' margins differ by at most {agreement:.1e}; compile+first calls {compile_s:.1f} s)")

    header = ["gaps M", "current n", "contender", "median µs/call", "IQR µs", "speed-up vs released"]
    md = [
        "# Calibration latency: gammapo torch vs the released code's per-step path",
        "",
        f"Machine: {machine_line(machine)}; torch threads: {torch.get_num_threads()}.",
        gpu_note,
        "",
        "One queue-mode calibration step per call (sample M − n stored gaps, K = 20 mirror iterations on M gaps,",
        "push n gaps), float32, γ0 = 4, τ = 10. Contenders interleaved in one run; median over "
        f"{repeats} repeats of the mean per call over a block of calls (100 calls up to 256 gaps, 50 up to 1024, 20 "
        "above: the VM's slow first call after other work is amortised, `benchmarks._perf_common.calls_per_block`), "
        "with its interquartile range. `gammapo eager` is the default CPU path",
        "(one call of the compiled C++ kernel of `gammapo_torch._cpu_calibration`); `gammapo eager, torch ops` is the",
        "op-by-op tensor path with that kernel off (what runs on CUDA or without a C++ compiler); `gammapo compiled` is",
        "`torch.compile(fullgraph=True)` of the step (inductor fuses the tensor path). `compile call floor` is a compiled no-op:",
        "the fixed cost of calling any compiled function here. Produced by "
        f"`python -m benchmarks.bench_calibration_torch{' --quick' if args.quick else ''}`.",
        f"Load average (1 min) before / after the run: {load_before:.1f} / {_load():.1f} on {machine['cores']} cores "
        "(a shared machine: absolute times are inflated by other work; the interleaved ratios are the result).",
        "",
        *markdown_table(header, rows),
        "",
        *verdict(records),
    ]
    data = {"machine": machine, "threads": torch.get_num_threads(), "quick": args.quick, "gpu_note": gpu_note,
            "config": {"gamma0": GAMMA0, "tau": TAU, "iters": 20, "dtype": "float32"}, "results": records,
            "load_average_before": load_before, "verdict": verdict(records)}
    for path in write_results("calibration_torch", args.out, md, data):
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
