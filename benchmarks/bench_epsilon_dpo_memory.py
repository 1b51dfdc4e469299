r"""ε-DPO's token op: peak memory and forward+backward time, chunked against naive (CPU, torch).

Run: ``python -m benchmarks epsilon_dpo_memory`` (full: B = 2 sequences, T = 512, V = 32 000, float32;
a minute or two on 2 cores) or ``--quick`` (tiny sizes, seconds). Writes
``benchmarks/results/epsilon_dpo_memory.{md,json}``.

The op: sequence log-probs of the labels under the policy logits and under the perturbed logits
:math:`z^\pm = z \pm \varepsilon(z - z_\text{ref})` (``gammapo_spec.epsilon_dpo``). One step = the op's
forward on ``[B, T, V]`` policy and reference logits (inputs, built before the measurement) and the
backward of ``logps.sum()`` to the policy logits. Variants:

* ``naive`` — :func:`gammapo_torch.epsilon_dpo.naive_epsilon_sequence_logps`: materialises ``z±`` and
  three ``[B, T, V]`` log-softmaxes, autograd through the first;
* ``chunked@c`` — :func:`gammapo_torch.epsilon_dpo.epsilon_sequence_logps` with ``c`` sequence
  positions per chunk (the default chunk, and a sweep).

Method (that of ``bench_fused_loss``). **Memory**: each variant in a fresh subprocess; after the inputs
are built the worker records its resident set (``VmRSS``) and resets the kernel's peak-RSS counter
(``/proc/self/clear_refs``); after a warm-up and a second step it reads the peak (``VmHWM``). Peak extra
memory = VmHWM − VmRSS after setup (it includes the ``[B, T, V]`` gradient of the policy logits, which
every variant must produce: its size is reported alongside). **Time**: all variants in one subprocess,
torch on one thread, one warm-up each, then ``rounds`` rounds in rotated order; CPU time per step
(``time.process_time``), median and the median of per-round ratios to ``naive``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from typing import Any, Sequence

from benchmarks._perf_common import (
    machine_info, machine_line, markdown_table, reset_peak_rss, stats, status_kib, write_results,
)

NAME = "epsilon_dpo_memory"
FULL = {"batch": 2, "seq": 512, "vocab": 32000, "epsilon": 0.01, "rounds": 5, "sweep": (16, 128), "threads": 1}
QUICK = {"batch": 2, "seq": 64, "vocab": 2048, "epsilon": 0.01, "rounds": 2, "sweep": (8,), "threads": 1}


def _inputs(spec: dict[str, Any]) -> dict[str, Any]:
    import torch

    torch.manual_seed(0)
    b, t, v = spec["batch"], spec["seq"], spec["vocab"]
    policy = torch.randn(b, t, v).requires_grad_()
    ref = policy.detach() + 0.1 * torch.randn(b, t, v)
    labels = torch.randint(0, v, (b, t))
    mask = torch.ones(b, t, dtype=torch.bool)
    return {"policy": policy, "ref": ref, "labels": labels, "mask": mask}


def _op(x: dict[str, Any], variant: str, chunk: int | None, eps: float):
    from gammapo_torch.epsilon_dpo import epsilon_sequence_logps, naive_epsilon_sequence_logps

    args = (x["policy"], x["ref"], x["labels"], x["mask"])
    if variant == "naive":
        return lambda: naive_epsilon_sequence_logps(*args, epsilon=eps)
    return lambda: epsilon_sequence_logps(*args, epsilon=eps, chunk_size=chunk, check_values=False)


def _step(x: dict[str, Any], op) -> tuple[float, float, list[float]]:
    x["policy"].grad = None
    start, cpu = time.perf_counter(), time.process_time()
    out = op()
    out.logps.sum().backward()
    values = [float(v.detach().sum()) for v in out]
    return time.perf_counter() - start, time.process_time() - cpu, values


def _key(variant: str, chunk: int | None) -> str:
    return variant if chunk is None else f"{variant}@{chunk}"


def worker(spec: dict[str, Any]) -> dict[str, Any]:
    """Fresh process: ``mode="memory"`` (one variant, peak extra RSS) or ``mode="time"`` (all variants)."""
    import gc

    import torch

    torch.set_num_threads(spec["threads"])
    x = _inputs(spec)
    if spec["mode"] == "memory":
        op = _op(x, spec["variant"], spec["chunk"], spec["epsilon"])
        gc.collect()
        baseline = status_kib("VmRSS")
        reset = reset_peak_rss()
        if not reset:
            baseline = status_kib("VmHWM")
        runs = [_step(x, op) for _ in range(2)]
        peak = status_kib("VmHWM")
        return {"peak_extra_mib": (peak - baseline) / 1024.0, "baseline_mib": baseline / 1024.0,
                "peak_reset": reset, "values": runs[-1][2], "step_s": runs[-1][0]}
    ops = {_key(v, c): _op(x, v, c, spec["epsilon"]) for v, c in spec["variants"]}
    values = {k: _step(x, op)[2] for k, op in ops.items()}  # warm-up
    times: dict[str, list[float]] = {k: [] for k in ops}
    keys = list(ops)
    for r in range(spec["rounds"]):
        for k in keys[r % len(keys):] + keys[: r % len(keys)]:
            times[k].append(_step(x, ops[k])[1])
    return {"times_s": times, "values": values}


def _run_worker(spec: dict[str, Any]) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "benchmarks.bench_epsilon_dpo_memory", "--worker", json.dumps(spec)]
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=root)
    if proc.returncode != 0:
        return {"error": (proc.stderr.strip().splitlines() or ["?"])[-1]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _measure(sizes: dict[str, Any], log) -> dict[str, Any]:
    from gammapo_torch.epsilon_dpo import default_chunk_size

    default = default_chunk_size(sizes["batch"], sizes["vocab"])
    variants = [("naive", None), ("chunked", default)] + [("chunked", c) for c in sizes["sweep"] if c != default]
    base = {k: sizes[k] for k in ("batch", "seq", "vocab", "epsilon", "threads")}
    memory = []
    for variant, chunk in variants:
        result = _run_worker(base | {"mode": "memory", "variant": variant, "chunk": chunk})
        memory.append(result | {"key": _key(variant, chunk)})
        log(f"  memory {_key(variant, chunk):14s}: " + (result.get("error") or f"{result['peak_extra_mib']:.0f} MiB extra"))
    timing = _run_worker(base | {"mode": "time", "variants": variants, "rounds": sizes["rounds"]})
    if "error" in timing:
        log(f"  timing: {timing['error']}")
    return {"memory": memory, "timing": timing, "default_chunk": default, "variants": [_key(*v) for v in variants]}


def _summarise(measured: dict[str, Any]) -> list[dict[str, Any]]:
    mem = {m["key"]: m for m in measured["memory"] if "error" not in m}
    times = measured["timing"].get("times_s", {})
    rows = []
    for key in measured["variants"]:
        t = times.get(key)
        ratios = [a / b for a, b in zip(t, times["naive"])] if t and times.get("naive") else None
        rows.append({
            "key": key,
            "peak_mib": mem[key]["peak_extra_mib"] if key in mem else None,
            "mem_ratio": mem[key]["peak_extra_mib"] / mem["naive"]["peak_extra_mib"] if key in mem and "naive" in mem else None,
            "time_s": stats(t) if t else None,
            "time_ratio": stats(ratios)["median"] if ratios else None,
            "values": measured["timing"].get("values", {}).get(key),
        })
    return rows


def _report(sizes, measured, rows, machine, quick: bool) -> list[str]:
    b, t, v = sizes["batch"], sizes["seq"], sizes["vocab"]
    tensor_mib = b * t * v * 4 / 2**20
    lines = [
        "# ε-DPO token op: peak memory and forward+backward time, chunked vs naive (CPU)",
        "",
        f"Machine: {machine_line(machine)}." + (" **Quick mode (tiny sizes): not a measurement.**" if quick else ""),
        f"Sizes: B = {b} sequences, T = {t}, V = {v}, float32, ε = {sizes['epsilon']}; one `[B, T, V]` tensor = "
        f"{tensor_mib:.0f} MiB (the policy-logit gradient every variant produces is one of them). "
        f"Default chunk: {measured['default_chunk']} positions.",
        "",
        "Method: memory = peak RSS (VmHWM, reset via /proc/self/clear_refs) minus RSS after building the inputs, "
        "each variant in a fresh subprocess, over a warm-up and a measured step; time = CPU time of one "
        f"forward+backward on 1 thread, median of {sizes['rounds']} rotated rounds (after a warm-up), ratio = "
        "median of per-round ratios to `naive`.",
        "",
    ]
    lines += markdown_table(
        ["variant", "peak extra MiB", "memory / naive", "fwd+bwd CPU s (median [min–max])", "time / naive"],
        [[r["key"],
          "—" if r["peak_mib"] is None else f"{r['peak_mib']:.0f}",
          "—" if r["mem_ratio"] is None else f"{r['mem_ratio']:.2f}",
          "—" if r["time_s"] is None else f"{r['time_s']['median']:.3f} [{r['time_s']['min']:.3f}–{r['time_s']['max']:.3f}]",
          "—" if r["time_ratio"] is None else f"{r['time_ratio']:.2f}"] for r in rows],
    )
    vals = [r["values"] for r in rows if r["values"]]
    if len(vals) > 1:
        worst = max(abs(a - b) / max(1.0, abs(b)) for r in vals[1:] for a, b in zip(r, vals[0]))
        lines += ["", f"All variants compute the same sums of (logp, logp+, logp−): largest relative difference {worst:.1e}."]
    errors = [m for m in measured["memory"] if "error" in m] + ([measured["timing"]] if "error" in measured["timing"] else [])
    if errors:
        lines += ["", "Errors: " + "; ".join(str(e.get("error")) for e in errors)]
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; returns 0 (1 when a variant failed). ``--quick``: tiny sizes; ``--out DIR``."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_epsilon_dpo_memory",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes (seconds), for smoke tests")
    parser.add_argument("--out", default=None, help="results folder (default benchmarks/results)")
    parser.add_argument("--rounds", type=int, default=None, help="timing rounds per variant")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker is not None:
        print(json.dumps(worker(json.loads(args.worker))))
        return 0
    sizes = dict(QUICK if args.quick else FULL)
    if args.rounds:
        sizes["rounds"] = args.rounds
    machine = machine_info()
    print(f"[{NAME}] {machine_line(machine)}", flush=True)
    measured = _measure(sizes, lambda s: print(s, flush=True))
    rows = _summarise(measured)
    lines = _report(sizes, measured, rows, machine, args.quick)
    data = {"machine": machine, "sizes": sizes, "quick": args.quick, "rows": rows, **measured}
    paths = write_results(NAME, args.out, lines, data)
    print("\n".join(lines[-(len(rows) + 4):]))
    print(f"[{NAME}] wrote {', '.join(map(str, paths))}")
    errors = [m for m in measured["memory"] if "error" in m] or ("error" in measured["timing"])
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
