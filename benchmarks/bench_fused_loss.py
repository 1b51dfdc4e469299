r"""Peak memory and forward+backward time of the fused γ-PO loss against the unfused path (CPU).

Run: ``python -m benchmarks fused_loss`` (full: V = 32 000, T = 512, B = 2 pairs, H ∈ {256, 512};
a few minutes on 2 cores) or ``--quick`` (tiny sizes, seconds). Writes
``benchmarks/results/fused_loss.{md,json,png}``.

Variants (γ-SimPO with the released recipe, queue calibration, every token scored):

* ``unfused`` — :func:`gammapo_torch.fused_loss.unfused_gamma_po_loss`: ``[2B, T, V]`` logits →
  log-softmax → gather → :func:`gammapo_torch.gamma_po_loss` → autograd (the TRL-style path);
* ``fused`` — :func:`gammapo_torch.fused_loss.fused_gamma_po_loss` at the default chunk size, plus
  a sweep over chunk sizes;
* ``liger_simpo`` — Liger-Kernel's ``LigerFusedLinearSimPOLoss`` (constant-margin SimPO, its pure
  torch chunked implementation, ``compiled=False``, one pair per chunk) when ``liger_kernel`` is
  importable; otherwise the report says it did not run.

Measurement method.

* **Memory**: each variant runs in a **fresh subprocess**, so no allocator cache or earlier peak
  leaks between variants. Once the inputs (hidden states, LM head, labels, state) are built the
  worker records its resident set (``VmRSS`` from ``/proc/self/status``) and resets the kernel's
  peak-RSS counter (writing ``5`` to ``/proc/self/clear_refs``); after a warm-up and a second
  forward+backward step it reads the peak (``VmHWM``). **Peak extra memory = VmHWM − VmRSS after
  setup**: every byte the step touched (logits, softmax, gradients, ``W.grad``, allocator and
  library workspaces), the inputs excluded. Where ``clear_refs`` is not writable the baseline falls
  back to the setup's own peak (flagged ``peak_reset: false`` in the JSON).
* **Time**: all variants in one subprocess on shared inputs, torch limited to one thread (one
  warm-up step each), then ``rounds`` rounds of one forward+backward step per variant in rotated
  order. ``t`` is the step's CPU time (``time.process_time``; single-threaded, so it is the step's
  own work even when other jobs load the machine); wall time (``time.perf_counter``) is recorded
  too. The time ratio is the median over rounds of ``t_variant / t_unfused`` within the same round.
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

NAME = "fused_loss"
FULL = {"vocab": 32000, "seq": 512, "pairs": 2, "hiddens": (256, 512), "rounds": 7, "sweep": (256, 1024, 2048), "threads": 1}
QUICK = {"vocab": 2048, "seq": 64, "pairs": 2, "hiddens": (64,), "rounds": 2, "sweep": (), "liger": False, "mmap_rows": False, "threads": 1}


# ------------------------------------------------------------------------------------------------
# worker (runs in its own process)
def _inputs(spec: dict[str, Any]):
    import torch

    from gammapo_spec import GammaPOConfig

    import gammapo_torch as T

    torch.manual_seed(0)
    b, t, h, v = spec["pairs"], spec["seq"], spec["hidden"], spec["vocab"]
    hw = torch.randn(b, t, h).requires_grad_()
    hl = torch.randn(b, t, h).requires_grad_()
    w = (torch.randn(v, h) * h**-0.5).requires_grad_()
    yw, yl = torch.randint(0, v, (b, t)), torch.randint(0, v, (b, t))
    cfg = GammaPOConfig(loss="gamma-simpo")  # released Llama-3 recipe: β = 10, γ0/β = 0.4, τ = 10, queue
    return {"hw": hw, "hl": hl, "w": w, "yw": yw, "yl": yl, "cfg": cfg, "state": T.init_state(cfg, seed=0)}


def _loss_fn(x: dict[str, Any], variant: str, chunk: int | None):
    """A closure computing one variant's scalar loss on the inputs ``x`` (forward only)."""
    import torch

    from gammapo_torch.fused_loss import fused_gamma_po_loss, unfused_gamma_po_loss

    common = dict(chosen_hidden=x["hw"], rejected_hidden=x["hl"], weight=x["w"], chosen_labels=x["yw"], rejected_labels=x["yl"])
    if variant == "unfused":
        return lambda: unfused_gamma_po_loss(x["cfg"], x["state"], **common)[0].loss
    if variant == "fused":
        return lambda: fused_gamma_po_loss(x["cfg"], x["state"], **common, chunk_size=chunk)[0].loss
    if variant == "liger_simpo":
        from liger_kernel.chunked_loss import LigerFusedLinearSimPOLoss

        cfg = x["cfg"]
        liger = LigerFusedLinearSimPOLoss(beta=cfg.beta, gamma=cfg.gamma0, compute_nll_loss=False, compiled=False, chunk_size=1)
        target = torch.cat([x["yw"], x["yl"]])

        def loss():
            out = liger(x["w"], torch.cat([x["hw"], x["hl"]]), target)
            return out[0] if isinstance(out, tuple) else out

        return loss
    raise ValueError(variant)


def _fwd_bwd(x: dict[str, Any], loss_fn) -> tuple[float, float, float]:
    """One forward+backward from cleared gradients: ``(wall seconds, CPU seconds, loss value)``."""
    for k in ("hw", "hl", "w"):
        x[k].grad = None
    start, cpu = time.perf_counter(), time.process_time()
    loss = loss_fn()
    loss.backward()
    return time.perf_counter() - start, time.process_time() - cpu, float(loss.detach())


def _key(variant: str, chunk: int | None) -> str:
    return variant if chunk is None else f"{variant}@{chunk}"


def worker(spec: dict[str, Any]) -> dict[str, Any]:
    """Run in a fresh process. ``mode="memory"``: one variant, peak extra RSS over a warm-up and a
    measured step. ``mode="time"``: all listed variants on shared inputs, ``rounds`` rounds of one
    step each in rotated order (after one warm-up step each). Returns a JSON-able dict."""
    import gc

    x = _inputs(spec)
    if spec["mode"] == "memory":
        loss_fn = _loss_fn(x, spec["variant"], spec["chunk"])
        gc.collect()
        baseline = status_kib("VmRSS")
        reset = reset_peak_rss()
        if not reset:
            baseline = status_kib("VmHWM")
        runs = [_fwd_bwd(x, loss_fn) for _ in range(2)]
        peak = status_kib("VmHWM")
        return {"peak_extra_mib": (peak - baseline) / 1024.0, "baseline_mib": baseline / 1024.0, "peak_reset": reset,
                "loss": runs[-1][1], "step_s": runs[-1][0]}
    import torch

    torch.set_num_threads(spec["threads"])
    fns = {_key(v, c): _loss_fn(x, v, c) for v, c in spec["variants"]}
    times: dict[str, list[float]] = {k: [] for k in fns}
    walls: dict[str, list[float]] = {k: [] for k in fns}
    losses = {k: _fwd_bwd(x, fn)[2] for k, fn in fns.items()}  # warm-up
    keys = list(fns)
    for r in range(spec["rounds"]):
        for k in keys[r % len(keys):] + keys[: r % len(keys)]:
            wall, cpu, _ = _fwd_bwd(x, fns[k])
            times[k].append(cpu)
            walls[k].append(wall)
    return {"times_s": times, "wall_s": walls, "loss": losses}


#: glibc option for the allocator-ablation rows: serve every buffer above 64 KiB by ``mmap`` (returned
#: to the OS on free) instead of glibc's dynamic threshold, which grows up to 32 MiB and then keeps
#: freed buffers below it in the heap.
MMAP_ENV = {"MALLOC_MMAP_THRESHOLD_": "65536"}


def _run_worker(spec: dict[str, Any], env: dict[str, str] | None = None) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "benchmarks.bench_fused_loss", "--worker", json.dumps(spec)]
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=root, env={**os.environ, **(env or {})})
    if proc.returncode != 0:
        return {"error": (proc.stderr.strip().splitlines() or ["?"])[-1]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


# ------------------------------------------------------------------------------------------------
def _liger_available() -> str | None:
    """``None`` when Liger's chunked SimPO loss imports, else the reason it does not."""
    try:
        from liger_kernel.chunked_loss import LigerFusedLinearSimPOLoss  # noqa: F401
    except Exception as exc:  # noqa: BLE001 - any import failure means "cannot run here"
        return f"{type(exc).__name__}: {exc}"
    return None


def _measure(sizes: dict[str, Any], log) -> dict[str, Any]:
    from gammapo_torch.fused_loss import DEFAULT_CHUNK_SIZE

    liger_missing = _liger_available() if sizes.get("liger", True) else "not run in quick mode"
    variants = [("unfused", None), ("fused", DEFAULT_CHUNK_SIZE)]
    variants += [("liger_simpo", None)] if liger_missing is None else []
    variants += [("fused", c) for c in sizes["sweep"] if c != DEFAULT_CHUNK_SIZE]
    memory, timing = [], []
    for hidden in sizes["hiddens"]:
        base = {k: sizes[k] for k in ("vocab", "seq", "pairs")} | {"hidden": hidden}
        for variant, chunk in variants:
            result = _run_worker(base | {"mode": "memory", "variant": variant, "chunk": chunk})
            memory.append(result | {"hidden": hidden, "key": _key(variant, chunk)})
            log(f"  H={hidden} memory {_key(variant, chunk):16s}: "
                + (result.get("error") or f"{result['peak_extra_mib']:.0f} MiB extra (step {result['step_s']:.2f} s)"))
        for variant, chunk in variants if sizes.get("mmap_rows", True) else ():
            if variant != "fused":
                continue
            key = _key(variant, chunk) + " (mmap)"
            result = _run_worker(base | {"mode": "memory", "variant": variant, "chunk": chunk}, MMAP_ENV)
            memory.append(result | {"hidden": hidden, "key": key})
            log(f"  H={hidden} memory {key:16s}: " + (result.get("error") or f"{result['peak_extra_mib']:.0f} MiB extra"))
        result = _run_worker(base | {"mode": "time", "variants": variants, "rounds": sizes["rounds"], "threads": sizes["threads"]})
        timing.append(result | {"hidden": hidden})
        if "error" in result:
            log(f"  H={hidden} timing: {result['error']}")
        else:
            log(f"  H={hidden} timing medians: "
                + ", ".join(f"{k} {stats(t)['median']:.2f} s" for k, t in result["times_s"].items()))
    return {"memory": memory, "timing": timing, "liger_missing": liger_missing, "default_chunk": DEFAULT_CHUNK_SIZE}


def _summarise(sizes: dict[str, Any], measured: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for hidden in sizes["hiddens"]:
        mem = {m["key"]: m for m in measured["memory"] if m["hidden"] == hidden and "error" not in m}
        timing = next((t for t in measured["timing"] if t["hidden"] == hidden and "error" not in t), None)
        times = timing["times_s"] if timing else {}
        walls = timing["wall_s"] if timing else {}
        keys = list(dict.fromkeys(list(mem) + list(times)))
        for key in keys:
            t = times.get(key)
            base_t = times.get("unfused")
            rows.append({
                "hidden": hidden,
                "key": key,
                "peak_mib": mem[key]["peak_extra_mib"] if key in mem else None,
                "mem_ratio": mem[key]["peak_extra_mib"] / mem["unfused"]["peak_extra_mib"] if key in mem and "unfused" in mem else None,
                "time_s": stats(t) if t else None,
                "time_ratio": stats(a / b for a, b in zip(t, base_t)) if t and base_t else None,
                "wall_ratio": stats(a / b for a, b in zip(walls[key], walls["unfused"])) if t and base_t else None,
                "loss": timing["loss"].get(key) if timing else mem.get(key, {}).get("loss"),
            })
    return rows


def _fmt(s: dict[str, float] | None, digits: int = 2) -> str:
    if s is None:
        return "—"
    return f"{s['median']:.{digits}f} [{s['min']:.{digits}f}, {s['max']:.{digits}f}]"


def _report(sizes, measured, rows, machine, quick: bool) -> list[str]:
    default = f"fused@{measured['default_chunk']}"
    lines = [
        "# Fused γ-PO loss: peak memory and forward+backward time (CPU)",
        "",
        f"Machine: {machine_line(machine)}. No GPU was available for this run: no GPU numbers are reported.",
        "",
        f"Sizes: V = {sizes['vocab']}, T = {sizes['seq']}, B = {sizes['pairs']} pairs (2B = {2 * sizes['pairs']} sequences, "
        f"{2 * sizes['pairs'] * sizes['seq']} scored tokens, no padding), float32, γ-SimPO (β = 10, γ0/β = 0.4, τ = 10, "
        "queue calibration)." + (" **Quick mode: tiny sizes, not the target configuration.**" if quick else ""),
        "",
        "Method. *Memory*: each variant in a fresh subprocess; peak extra memory = peak RSS (VmHWM, reset through "
        "`/proc/self/clear_refs` once the inputs are built) − RSS at that point, over a warm-up and a second "
        "fwd+bwd step (inputs, LM head and state excluded; `W.grad`, logits, softmax buffers, allocator and "
        "library workspaces included). *Time*: all variants in one subprocess on shared inputs, torch limited to "
        f"{sizes['threads']} thread, one warm-up step each, then {sizes['rounds']} rounds of one fwd+bwd step per "
        "variant in rotated order; t = CPU time of the step (`time.process_time`: on this shared, busy machine the "
        "CPU time of a single-threaded step is the step's own work, while wall time also counts other jobs); time "
        "ratio = median over rounds of t_variant / t_unfused in the same round; the wall-time ratio is listed too "
        "(cells: median [min, max]).",
        "",
    ]
    table = []
    for r in rows:
        table.append([
            r["hidden"], r["key"],
            "—" if r["peak_mib"] is None else f"{r['peak_mib']:.0f}",
            "—" if r["mem_ratio"] is None else f"{r['mem_ratio']:.3f}",
            _fmt(r["time_s"]), _fmt(r["time_ratio"], 3), _fmt(r.get("wall_ratio"), 3),
            "—" if r["loss"] is None else f"{r['loss']:.6f}",
        ])
    lines += markdown_table(
        ["H", "variant@chunk", "peak extra MiB", "memory / unfused", "fwd+bwd CPU s", "time / unfused", "wall time / unfused", "loss"],
        table,
    )
    lines += ["", f"Targets (issue 9), default chunk ({default}): fused peak ≤ 35% of unfused, fwd+bwd time ≤ 1.3× unfused."]
    for r in rows:
        if r["key"] == default and r["mem_ratio"] is not None and r["time_ratio"] is not None:
            m, t = r["mem_ratio"], r["time_ratio"]["median"]
            lines.append(
                f"- H = {r['hidden']}: memory {100 * m:.1f}% of unfused ({'met' if m <= 0.35 else 'NOT met'}), "
                f"time {t:.2f}× ({'met' if t <= 1.3 else 'NOT met'})."
            )
    if any(r["key"].endswith("(mmap)") for r in rows):
        lines += [
            "",
            "Rows marked `(mmap)` are a memory-only ablation of the allocator: the same fused run with "
            f"`{' '.join(f'{k}={v}' for k, v in MMAP_ENV.items())}`, so that glibc returns every freed chunk buffer "
            "to the OS. With glibc's default dynamic threshold (up to 32 MiB), chunk buffers smaller than that "
            "(chunk × V × 4 bytes < 32 MiB, e.g. chunk 256 at V = 32k) stay in the heap after they are freed and "
            "fragment it, so a smaller chunk can show a *larger* peak RSS; buffers above 32 MiB are always mmap'd.",
        ]
    lines += [
        "",
        "The fused path computes the logits twice (pass 1 for the log-probs, pass 2 in backward), one more "
        "[tokens × H × V] product than the unfused path, and in exchange never allocates the [2B, T, V] logits, "
        "their log-softmax or its gradient.",
    ]
    if measured["liger_missing"]:
        lines += ["", f"Liger-Kernel's fused SimPO loss did not run here: {measured['liger_missing']}."]
    else:
        lines += [
            "",
            "`liger_simpo` is Liger-Kernel's `LigerFusedLinearSimPOLoss` (liger-kernel, constant margin γ0, no "
            "calibration; its chunked loss is plain torch, run with `compiled=False` and one pair per chunk, so "
            "each chunk holds the [2, T, V] logits of one pair). Its loss differs from the γ-SimPO rows because "
            "the margins differ (constant vs calibrated).",
        ]
    errors = [m for m in measured["memory"] + measured["timing"] if "error" in m]
    if errors:
        lines += ["", "Runs that failed:"] + [f"- H = {e['hidden']} {e.get('key', 'timing')}: {e['error']}" for e in errors]
    return lines


def _plot(rows, path) -> str | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    hiddens = sorted({r["hidden"] for r in rows})
    keys = list(dict.fromkeys(r["key"] for r in rows))
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    width = 0.8 / max(len(keys), 1)
    for i, k in enumerate(keys):
        xs = [j + i * width for j in range(len(hiddens))]
        pick = [next((r for r in rows if r["hidden"] == h and r["key"] == k), None) for h in hiddens]
        axes[0].bar(xs, [(r["peak_mib"] or 0) if r else 0 for r in pick], width, label=k)
        axes[1].bar(xs, [r["time_s"]["median"] if r and r["time_s"] else 0 for r in pick], width, label=k)
    for ax, title in zip(axes, ("peak extra memory (MiB)", "fwd+bwd CPU time, 1 thread, median (s)")):
        ax.set_xticks([j + width * (len(keys) - 1) / 2 for j in range(len(hiddens))], [f"H={h}" for h in hiddens])
        ax.set_title(title)
    axes[0].legend(fontsize=7)
    fig.suptitle("γ-SimPO loss from hidden states, CPU (no GPU)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return str(path)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; returns 0 (or 1 when a variant failed). ``--quick``: tiny sizes; ``--out DIR``."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_fused_loss", description=__doc__.splitlines()[0])
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
    rows = _summarise(sizes, measured)
    lines = _report(sizes, measured, rows, machine, args.quick)
    data = {"machine": machine, "sizes": sizes, "quick": args.quick, "rows": rows, **measured}
    paths = write_results(NAME, args.out, lines, data)
    png = _plot(rows, paths[0].with_suffix(".png"))
    print("\n".join(line for line in lines if line.startswith("- H =")))
    print(f"[{NAME}] wrote {', '.join(map(str, paths + ([png] if png else [])))}")
    return 1 if any("error" in r for r in measured["memory"] + measured["timing"]) else 0


if __name__ == "__main__":
    sys.exit(main())
