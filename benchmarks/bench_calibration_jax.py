r"""Per-call latency of one queue-mode calibration step: gammapo's JAX backend (jitted) vs the released code.

Run: ``python -m benchmarks.bench_calibration_jax [--quick] [--out DIR] [--repeats R] [--sync-dispatch | --single]``
(or ``python -m benchmarks calibration_jax``). Writes ``calibration_jax.md`` and ``.json`` in the results
folder (default ``benchmarks/results``).

The workload is the one of :mod:`benchmarks.bench_calibration_torch`: for a calibration set of M gaps
(M = 64, 256, 1024, 4096), n = M/4 current gaps, ``sample_size = M``, a full queue of
``max(2048, M)`` stored gaps; each step samples S = M − n stored gaps, runs K = 20 mirror iterations
on M gaps, keeps the n current margins and pushes them. Released Llama-3 recipe (β = 10, γ0 = 4,
τ = 10), float32. Contenders, timed interleaved in the same process (median over repeats of the mean
per call, with the interquartile range):

* ``released`` — :func:`benchmarks.released_baseline.released_calibrate` (the shared released-code
  stand-in, torch CPU, 1 thread): ``.tolist()`` of the gaps, ``random.sample`` from a Python list, a
  new tensor, a Python loop of small torch ops;
* ``gammapo jax jit`` — ``jax.jit(gammapo_jax.calibrate_step)`` on a :class:`gammapo_jax.QueueState`
  with the default solver (the minimiser, :mod:`gammapo_spec.kkt_solver`, as ``lax.fori_loop``\ s;
  hash sampling with ``lax.top_k``, the ring-buffer push), compiled once before timing and called with
  device arrays built once, each call ended by one ``jax.block_until_ready`` on its outputs;
* ``gammapo jax jit, released mirror`` — the same with ``solver="mirror"`` (the released arithmetic),
  whose CPU path is one XLA FFI custom call of the compiled C++ kernel (:mod:`gammapo_jax._cpu_kernel`);
* ``gammapo jax jit, released mirror, lax ops`` — the mirror step with the kernel off while tracing
  (``GAMMAPO_DISABLE_CPU_KERNEL=1``): the path GPU and TPU lowerings take;
* ``jit floor (inline)`` — a jitted ``h + 1`` with ``block_until_ready``: the fixed cost of calling
  a jitted function whose XLA cost estimate is under 1000 flops, which the CPU client runs in the
  calling thread;
* ``jit floor (queue-sized)`` — a jitted function with the step's inputs and outputs and a trivial
  body (``buffer + 0``, ``counters + 1``, ``h + 1``): above that estimate, so with JAX's default
  asynchronous CPU dispatch it runs on a worker thread; the difference to the inline floor is the
  thread hand-off that every non-trivial jitted call pays on this machine.

Two dispatch modes are measured, each in its own process with its own baseline: JAX's default
(``jax_cpu_enable_async_dispatch=True``), and ``--sync-dispatch``
(``jax.config.update("jax_cpu_enable_async_dispatch", False)`` before any JAX work: every program
runs in the calling thread). Without ``--single`` the default-mode run starts the second one as a
subprocess and writes both tables. ``ratio`` is the released median divided by the contender's
median (higher is better). CPU only: no GPU is lent to this task.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import random
import subprocess
import sys
import tempfile
import time
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import torch

import gammapo_jax as G
from benchmarks._perf_common import calls_per_block, machine_info, machine_line, markdown_table, stats, write_results
from benchmarks.released_baseline import released_calibrate
from gammapo_spec.config import GammaPOConfig

__all__ = ["main", "setup", "contenders", "time_interleaved", "verdict"]

SIZES = (64, 256, 1024, 4096)
QUICK_SIZES = (64, 256)
BETA, GAMMA_BETA_RATIO, TAU = 10.0, 0.4, 10.0  # the released Llama-3-8B-Instruct recipe
GAMMA0 = BETA * GAMMA_BETA_RATIO
#: The environment switch of the JAX CPU calibration kernel (read while tracing).
KERNEL_SWITCH = "GAMMAPO_DISABLE_CPU_KERNEL"
JAX_ROWS = ("gammapo jax jit", "gammapo jax jit, released mirror", "gammapo jax jit, released mirror, lax ops")


def setup(m: int, seed: int = 0) -> dict[str, Any]:
    """The config, a full JAX queue state, the same gaps as a Python-list queue, and current gaps.

    Example:
        >>> s = setup(64)
        >>> s["gaps"].shape, int(s["state"].size), len(s["queue"])
        ((16,), 2048, 2048)
    """
    n = max(m // 4, 1)
    capacity = max(2048, m)
    config = GammaPOConfig(
        loss="gamma-simpo", beta=BETA, gamma_beta_ratio=GAMMA_BETA_RATIO, tau=TAU, calibration="queue",
        queue_size=capacity, sample_size=m, check_values=False,
    )
    rng = np.random.default_rng(seed)
    history = (rng.normal(size=capacity) * 3.0).astype(np.float32)
    state = G.state_from_dict({"buffer": history, "size": capacity, "head": 0, "step": 0, "seed": seed},
                              dtype="float32")
    gaps = (rng.normal(size=n) * 3.0).astype(np.float32)
    return {"config": config, "state": state, "queue": history.astype(np.float64).tolist(), "rng": random.Random(seed),
            "gaps": jnp.asarray(gaps), "gaps_torch": torch.from_numpy(gaps), "n": n, "capacity": capacity}


def contenders(s: dict[str, Any]) -> dict[str, Callable[[], Any]]:
    """The timed callables for one size (each returns once its result is computed)."""
    config, state, gaps = s["config"], s["state"], s["gaps"]
    mirror = config.replace(solver="mirror")
    step = jax.jit(lambda st, h: G.calibrate_step(config, st, h))
    step_mirror = jax.jit(lambda st, h: G.calibrate_step(mirror, st, h))
    step_lax = jax.jit(lambda st, h: G.calibrate_step(mirror, st, h))
    previous = os.environ.get(KERNEL_SWITCH)
    os.environ[KERNEL_SWITCH] = "1"  # read while tracing: compile the lax-ops program now
    try:
        jax.block_until_ready(step_lax(state, gaps))
    finally:
        if previous is None:
            del os.environ[KERNEL_SWITCH]
        else:
            os.environ[KERNEL_SWITCH] = previous
    floor = jax.jit(lambda h: h + 1.0)
    floor_queue = jax.jit(lambda st, h: (h + 1.0, G.QueueState(buffer=st.buffer + 0.0, counters=st.counters + 1)))
    return {
        "released": lambda: released_calibrate(s["gaps_torch"], s["queue"], gamma0=GAMMA0, tau=TAU,
                                               sample_size=config.sample_size, capacity=s["capacity"], rng=s["rng"]),
        "gammapo jax jit": lambda: jax.block_until_ready(step(state, gaps)),
        "gammapo jax jit, released mirror": lambda: jax.block_until_ready(step_mirror(state, gaps)),
        "gammapo jax jit, released mirror, lax ops": lambda: jax.block_until_ready(step_lax(state, gaps)),
        "jit floor (inline)": lambda: floor(gaps).block_until_ready(),
        "jit floor (queue-sized)": lambda: jax.block_until_ready(floor_queue(state, gaps)),
    }


def time_interleaved(fns: dict[str, Callable[[], Any]], repeats: int, inner: int,
                     single: dict[str, list[float]] | None = None) -> dict[str, list[float]]:
    """Per-call seconds of each function: ``repeats`` rounds, each timing ``inner`` calls of every one in turn
    (the mean of the ``inner`` calls is one sample). With ``single``, every call's own time is appended there too."""
    samples: dict[str, list[float]] = {name: [] for name in fns}
    for fn in fns.values():  # warm-up (and compilation) outside the timed rounds
        for _ in range(3):
            fn()
    for _ in range(repeats):
        for name, fn in fns.items():
            start = last = time.perf_counter()
            for _ in range(inner):
                fn()
                if single is not None:
                    now = time.perf_counter()
                    single.setdefault(name, []).append(now - last)
                    last = now
            samples[name].append((time.perf_counter() - start) / inner)
    return samples


def agreement(s: dict[str, Any]) -> float:
    """Max |margins(JAX, float32) − margins(gammapo_spec, float64)| on this size's first step (a sanity check)."""
    import gammapo_spec

    d = G.state_to_dict(s["state"])
    want, _ = gammapo_spec.calibrate_step(s["config"], gammapo_spec.state_from_dict(d), np.asarray(s["gaps"], np.float64))
    got, _ = G.calibrate_step(s["config"], s["state"], s["gaps"])
    return float(np.max(np.abs(np.asarray(got, np.float64) - want)))


def _load() -> float:
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return float("nan")


def verdict(records: list[dict[str, Any]], target: float = 20.0, at: int = 256, mode: str = "") -> list[str]:
    """One line on the issue's target (≥ 20× the released path at 256 gaps on CPU) for the default path
    (``gammapo jax jit``), from the measured ratio (the median of per-block means; the per-call medians'
    ratio is given alongside)."""
    r = next((r for r in records if r["gaps"] == at and r["contender"] == "gammapo jax jit"), None)
    if r is None:
        return []
    met = "met" if r["ratio_vs_released"] >= target else "not met"
    where = f" ({mode})" if mode else ""
    call = f"; per-call medians: {r['per_call_ratio_vs_released']:.1f}×" if "per_call_ratio_vs_released" in r else ""
    return [f"Target ≥ {target:g}× the released path at {at} gaps on CPU{where}: **{met}** here "
            f"({r['ratio_vs_released']:.1f}×{call})."]


def measure(args) -> dict[str, Any]:
    """Time every contender at every size in this process; returns the rows, records and run facts."""
    torch.set_num_threads(1)
    sizes = QUICK_SIZES if args.quick else SIZES
    repeats = args.repeats or (5 if args.quick else 25)
    load_before = _load()
    rows, records = [], []
    for m in sizes:
        s = setup(m)
        fns = contenders(s)
        t0 = time.perf_counter()
        diff = agreement(s)
        fns["gammapo jax jit"]()  # compile
        compile_s = time.perf_counter() - t0
        inner = 3 if args.quick else calls_per_block(m)
        single: dict[str, list[float]] = {}
        summary = {name: stats(v) for name, v in time_interleaved(fns, repeats, inner, single).items()}
        per_call = {name: stats(v)["median"] for name, v in single.items()}
        base = summary["released"]["median"]
        for name, st in summary.items():
            ratio = base / st["median"]
            ratio_call = per_call["released"] / per_call[name]
            jax_row = name in JAX_ROWS
            rows.append([m, s["n"], name, f"{st['median'] * 1e6:.0f}", f"{st['q1'] * 1e6:.0f}–{st['q3'] * 1e6:.0f}",
                         f"{ratio:.1f}×" if jax_row else "—", f"{per_call[name] * 1e6:.0f}",
                         f"{ratio_call:.1f}×" if jax_row else "—"])
            records.append({"gaps": m, "current": s["n"], "contender": name, "ratio_vs_released": ratio,
                            "per_call_median_us": per_call[name] * 1e6, "per_call_ratio_vs_released": ratio_call,
                            **{f"{k}_us": v * 1e6 for k, v in st.items() if k != "n"}, "repeats": st["n"], "inner": inner})
            print(" | ".join(str(c) for c in rows[-1]), flush=True)
        print(f"  (M={m}: |JAX f32 − spec f64| margins ≤ {diff:.1e}; eager check + compile {compile_s:.1f} s)", flush=True)
    return {"rows": rows, "records": records, "repeats": repeats, "load_before": load_before, "load_after": _load(),
            "async_dispatch": bool(jax.config.values["jax_cpu_enable_async_dispatch"])}


def _mode_name(async_dispatch: bool) -> str:
    return "default async CPU dispatch" if async_dispatch else "jax_cpu_enable_async_dispatch=False"


def _section(run: dict[str, Any], cores: Any) -> list[str]:
    header = ["gaps M", "current n", "contender", "median µs/call", "IQR µs", "speed-up vs released",
              "per-call median µs", "per-call speed-up"]
    mode = _mode_name(run["async_dispatch"])
    return [
        f"### {mode}",
        "",
        f"Load average (1 min) before / after: {run['load_before']:.1f} / {run['load_after']:.1f} on {cores} cores "
        f"(median over {run['repeats']} repeats).",
        "",
        *markdown_table(header, run["rows"]),
        "",
        *verdict(run["records"], mode=mode),
        "",
    ]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; print the tables; write ``calibration_jax.md`` / ``.json``. Returns 0."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_calibration_jax", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="sizes 64 and 256, few repeats (a smoke test)")
    parser.add_argument("--out", default=None, help="results folder (default benchmarks/results)")
    parser.add_argument("--repeats", type=int, default=None, help="interleaved rounds per size")
    parser.add_argument("--sync-dispatch", action="store_true",
                        help="set jax_cpu_enable_async_dispatch=False first (implies --single)")
    parser.add_argument("--single", action="store_true", help="measure this process's dispatch mode only")
    args = parser.parse_args(argv)
    if args.sync_dispatch:
        jax.config.update("jax_cpu_enable_async_dispatch", False)  # before any JAX computation
    machine = machine_info()
    gpu_note = "No GPU is lent to this task: CPU only (jax backend: " + jax.default_backend() + ")."
    print(f"Machine: {machine_line(machine)} [{_mode_name(not args.sync_dispatch)}]", flush=True)
    runs = [measure(args)]
    if not (args.single or args.sync_dispatch):
        with tempfile.TemporaryDirectory() as tmp:
            cmd = [sys.executable, "-m", "benchmarks.bench_calibration_jax", "--sync-dispatch", "--out", tmp]
            cmd += ["--quick"] if args.quick else []
            cmd += ["--repeats", str(args.repeats)] if args.repeats else []
            subprocess.run(cmd, check=True)
            runs.append(json.loads((pathlib.Path(tmp) / "calibration_jax.json").read_text())["runs"][0])
    flags = (" --quick" if args.quick else "") + (" --sync-dispatch" if args.sync_dispatch else "") + (
        " --single" if args.single else "")
    md = [
        "# Calibration latency: gammapo JAX (jit) vs the released code's per-step path",
        "",
        f"Machine: {machine_line(machine)}; torch threads (baseline): {torch.get_num_threads()}.",
        gpu_note,
        "",
        "One queue-mode calibration step per call (sample M − n stored gaps, calibrate M gaps,",
        "push n gaps), float32, γ0 = 4, τ = 10. Baseline: `benchmarks.released_baseline.released_calibrate` "
        "(host `.tolist()`, `random.sample`, new tensor, Python loop of torch ops).",
        "Contenders interleaved in one process per dispatch mode, each mode with its own baseline; median of the mean "
        "per call over the repeats, with its IQR (a block is 100 calls up to 256 gaps, 50 up to 1024, 20 above, so that "
        "the VM's slow first call after other work is amortised: `benchmarks._perf_common.calls_per_block`; a block's "
        "mean still includes the stalls a shared machine adds); "
        "`per-call` columns: the median of every single call's time (robust to those stalls). "
        "`gammapo jax jit` is the default path (the default solver, the minimiser, as lax loops); "
        "`gammapo jax jit, released mirror` is the released arithmetic (one XLA FFI call of the compiled C++ kernel "
        "per step on CPU); `..., lax ops` is that step with the kernel off (the path GPU/TPU lowerings take). "
        "JAX calls go to a function compiled beforehand, with device arrays "
        "built once, and end with one `block_until_ready`. `jit floor (inline)` is a jitted `h + 1` (under XLA:CPU's "
        "1000-flop estimate, so it runs in the calling thread); `jit floor (queue-sized)` has the step's inputs and "
        "outputs and a trivial body (above it: a worker thread under the default asynchronous dispatch).",
        f"Produced by `python -m benchmarks.bench_calibration_jax{flags}`. Shared machine: absolute times are "
        "inflated and jumpy; the interleaved ratios are the result.",
        "",
    ]
    for run in runs:
        md += _section(run, machine["cores"])
    data = {"machine": machine, "quick": args.quick, "gpu_note": gpu_note, "baseline": "benchmarks.released_baseline.released_calibrate",
            "config": {"gamma0": GAMMA0, "tau": TAU, "iters": 20, "dtype": "float32"},
            "runs": [{**run, "mode": _mode_name(run["async_dispatch"]),
                      "verdict": verdict(run["records"], mode=_mode_name(run["async_dispatch"]))} for run in runs],
            "results": runs[0]["records"], "load_average_before": runs[0]["load_before"],
            "verdict": [line for run in runs for line in verdict(run["records"], mode=_mode_name(run["async_dispatch"]))]}
    for path in write_results("calibration_jax", args.out, md, data):
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
