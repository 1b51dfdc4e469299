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

Measurement method. Each measurement runs in a **fresh subprocess** so that no allocator cache or
earlier peak leaks between variants. After building the inputs (hidden states, LM head, labels,
state) the worker records its resident set (``VmRSS`` from ``/proc/self/status``) and resets the
kernel's peak-RSS counter (writing ``5`` to ``/proc/self/clear_refs``); after one warm-up and
``iters`` timed forward+backward steps it reads the peak (``VmHWM``). **Peak extra memory = VmHWM −
VmRSS at setup**: every byte the step touched (logits, softmax, gradients, ``W.grad``, allocator
and library workspaces), with the inputs excluded. Where ``clear_refs`` is not writable the
baseline falls back to the setup's own peak (reported). Time is the median wall time of the timed
steps (``time.perf_counter``); variants run interleaved, in rotated order, ``reps`` times, and the
reported ratios are the medians over repetitions of the per-repetition ratio fused/unfused.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from typing import Any, Sequence

from benchmarks._perf_common import machine_info, machine_line, markdown_table, stats, write_results

NAME = "fused_loss"
FULL = {"vocab": 32000, "seq": 512, "pairs": 2, "hiddens": (256, 512), "reps": 3, "iters": 3, "chunks": (256, 1024, 2048)}
QUICK = {"vocab": 2048, "seq": 64, "pairs": 2, "hiddens": (64,), "reps": 1, "iters": 1, "chunks": ()}


# ------------------------------------------------------------------------------------------------
# worker (runs in its own process)
def _status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def _reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _build(spec: dict[str, Any]):
    import torch

    import gammapo_torch as T
    from gammapo_spec import GammaPOConfig
    from gammapo_torch.fused_loss import fused_gamma_po_loss, unfused_gamma_po_loss

    torch.manual_seed(0)
    b, t, h, v = spec["pairs"], spec["seq"], spec["hidden"], spec["vocab"]
    hw = torch.randn(b, t, h).requires_grad_()
    hl = torch.randn(b, t, h).requires_grad_()
    w = (torch.randn(v, h) * h**-0.5).requires_grad_()
    yw, yl = torch.randint(0, v, (b, t)), torch.randint(0, v, (b, t))
    cfg = GammaPOConfig(loss="gamma-simpo")  # released Llama-3 recipe: β = 10, γ0/β = 0.4, τ = 10, queue
    state = T.init_state(cfg, seed=0)
    variant = spec["variant"]
    if variant == "unfused":
        def loss():
            out, _ = unfused_gamma_po_loss(cfg, state, chosen_hidden=hw, rejected_hidden=hl, weight=w,
                                           chosen_labels=yw, rejected_labels=yl)
            return out.loss
    elif variant == "fused":
        def loss():
            out, _ = fused_gamma_po_loss(cfg, state, chosen_hidden=hw, rejected_hidden=hl, weight=w,
                                         chosen_labels=yw, rejected_labels=yl, chunk_size=spec["chunk"])
            return out.loss
    elif variant == "liger_simpo":
        from liger_kernel.chunked_loss import LigerFusedLinearSimPOLoss

        liger = LigerFusedLinearSimPOLoss(beta=cfg.beta, gamma=cfg.gamma0, compute_nll_loss=False, compiled=False, chunk_size=1)
        target = torch.cat([yw, yl])

        def loss():
            out = liger(w, torch.cat([hw, hl]), target)
            return out[0] if isinstance(out, tuple) else out
    else:
        raise ValueError(variant)
    return loss, (hw, hl, w)


def worker(spec: dict[str, Any]) -> dict[str, Any]:
    """Measure one variant in this process (see the module docstring); returns a JSON-able dict."""
    import gc

    import torch

    loss_fn, params = _build(spec)
    gc.collect()
    baseline = _status_kib("VmRSS")
    reset = _reset_peak()
    if not reset:
        baseline = _status_kib("VmHWM")
    times, value = [], None
    for i in range(1 + spec["iters"]):
        for p in params:
            p.grad = None
        start = time.perf_counter()
        loss = loss_fn()
        loss.backward()
        elapsed = time.perf_counter() - start
        value = float(loss)
        if i > 0:
            times.append(elapsed)
        del loss
    peak = _status_kib("VmHWM")
    return {
        "peak_extra_mib": (peak - baseline) / 1024.0,
        "baseline_mib": baseline / 1024.0,
        "peak_reset": reset,
        "time_s": stats(times)["median"],
        "times_s": times,
        "loss": value,
        "threads": torch.get_num_threads(),
    }


def _run_worker(spec: dict[str, Any]) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "benchmarks.bench_fused_loss", "--worker", json.dumps(spec)]
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=root)
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

    liger_missing = _liger_available()
    variants = [("unfused", None), ("fused", DEFAULT_CHUNK_SIZE)] + ([("liger_simpo", None)] if liger_missing is None else [])
    runs: list[dict[str, Any]] = []
    for hidden in sizes["hiddens"]:
        base = {k: sizes[k] for k in ("vocab", "seq", "pairs", "iters")} | {"hidden": hidden}
        for rep in range(sizes["reps"]):
            order = variants[rep % len(variants):] + variants[: rep % len(variants)]
            for variant, chunk in order:
                spec = base | {"variant": variant, "chunk": chunk}
                result = _run_worker(spec) | {"spec": spec, "rep": rep}
                runs.append(result)
                log(f"  H={hidden} rep {rep} {variant:12s} chunk={chunk}: "
                    + (result.get("error") or f"{result['peak_extra_mib']:.0f} MiB, {result['time_s']:.2f} s"))
        for chunk in sizes["chunks"]:
            spec = base | {"variant": "fused", "chunk": chunk, "sweep": True}
            result = _run_worker(spec) | {"spec": spec, "rep": 0}
            runs.append(result)
            log(f"  H={hidden} sweep fused chunk={chunk}: "
                + (result.get("error") or f"{result['peak_extra_mib']:.0f} MiB, {result['time_s']:.2f} s"))
    return {"runs": runs, "liger_missing": liger_missing, "default_chunk": DEFAULT_CHUNK_SIZE}


def _summarise(sizes: dict[str, Any], measured: dict[str, Any]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    rows, sweep = [], []
    ok = [r for r in measured["runs"] if "error" not in r]
    for hidden in sizes["hiddens"]:
        main = [r for r in ok if r["spec"]["hidden"] == hidden and not r["spec"].get("sweep")]
        unfused = {r["rep"]: r for r in main if r["spec"]["variant"] == "unfused"}
        for variant in ("unfused", "fused", "liger_simpo"):
            these = [r for r in main if r["spec"]["variant"] == variant]
            if not these:
                continue
            paired = [(r, unfused[r["rep"]]) for r in these if r["rep"] in unfused]
            rows.append({
                "hidden": hidden,
                "variant": variant,
                "chunk": these[0]["spec"]["chunk"],
                "peak_mib": stats(r["peak_extra_mib"] for r in these),
                "time_s": stats(r["time_s"] for r in these),
                "mem_ratio": stats(a["peak_extra_mib"] / b["peak_extra_mib"] for a, b in paired) if paired else None,
                "time_ratio": stats(a["time_s"] / b["time_s"] for a, b in paired) if paired else None,
                "loss": these[0]["loss"],
            })
        ref = next((r for r in rows if r["hidden"] == hidden and r["variant"] == "unfused"), None)
        for r in (x for x in ok if x["spec"]["hidden"] == hidden and x["spec"].get("sweep")):
            sweep.append({
                "hidden": hidden,
                "chunk": r["spec"]["chunk"],
                "peak_mib": r["peak_extra_mib"],
                "time_s": r["time_s"],
                "mem_ratio": r["peak_extra_mib"] / ref["peak_mib"]["median"] if ref else None,
                "time_ratio": r["time_s"] / ref["time_s"]["median"] if ref else None,
            })
    return rows, sweep


def _fmt(s: dict[str, float] | None, digits: int = 2) -> str:
    if s is None:
        return "—"
    return f"{s['median']:.{digits}f} [{s['min']:.{digits}f}, {s['max']:.{digits}f}]"


def _report(sizes, measured, rows, sweep, machine, quick: bool) -> list[str]:
    lines = [
        "# Fused γ-PO loss: peak memory and forward+backward time (CPU)",
        "",
        f"Machine: {machine_line(machine)}. No GPU was available for this run: no GPU numbers are reported.",
        "",
        f"Sizes: V = {sizes['vocab']}, T = {sizes['seq']}, B = {sizes['pairs']} pairs (2B = {2 * sizes['pairs']} sequences, "
        f"{2 * sizes['pairs'] * sizes['seq']} scored tokens), float32, γ-SimPO (β = 10, γ0/β = 0.4, τ = 10, queue "
        f"calibration). {sizes['reps']} interleaved repetitions × (1 warm-up + {sizes['iters']} timed steps)."
        + (" **Quick mode: tiny sizes, not the target configuration.**" if quick else ""),
        "",
        "Method: each measurement in a fresh subprocess; peak extra memory = peak RSS (VmHWM, reset via "
        "`/proc/self/clear_refs` after setup) − RSS after setup (inputs, LM head and state excluded; "
        "`W.grad`, logits, softmax buffers and workspaces included). Time: median wall time of the timed "
        "fwd+bwd steps. Ratios: median over repetitions of the per-repetition ratio to `unfused` "
        "(cells: median [min, max]).",
        "",
    ]
    table = []
    for r in rows:
        table.append([
            r["hidden"], r["variant"], r["chunk"] or "—", _fmt(r["peak_mib"], 0), _fmt(r["mem_ratio"], 3),
            _fmt(r["time_s"]), _fmt(r["time_ratio"], 3), f"{r['loss']:.6f}",
        ])
    lines += markdown_table(["H", "variant", "chunk", "peak extra MiB", "memory / unfused", "fwd+bwd s", "time / unfused", "loss"], table)
    if sweep:
        lines += ["", "Chunk-size sweep of the fused path (one run each; ratios against the unfused median above):", ""]
        lines += markdown_table(
            ["H", "chunk", "peak extra MiB", "memory / unfused", "fwd+bwd s", "time / unfused"],
            [[s["hidden"], s["chunk"], f"{s['peak_mib']:.0f}", f"{s['mem_ratio']:.3f}", f"{s['time_s']:.2f}", f"{s['time_ratio']:.3f}"] for s in sweep],
        )
    lines += ["", "Targets (issue 9): fused peak ≤ 35% of unfused, fwd+bwd time ≤ 1.3× unfused."]
    for r in rows:
        if r["variant"] == "fused" and r["mem_ratio"] and r["time_ratio"]:
            m, t = r["mem_ratio"]["median"], r["time_ratio"]["median"]
            lines.append(
                f"- H = {r['hidden']}: memory {100 * m:.1f}% of unfused ({'met' if m <= 0.35 else 'NOT met'}), "
                f"time {t:.2f}× ({'met' if t <= 1.3 else 'NOT met'})."
            )
    if measured["liger_missing"]:
        lines += ["", f"Liger-Kernel's fused SimPO loss did not run here: {measured['liger_missing']}."]
    else:
        lines += [
            "",
            "`liger_simpo` is Liger-Kernel's `LigerFusedLinearSimPOLoss` (constant margin γ0, no calibration; its "
            "chunked loss is plain torch, run with `compiled=False` and one pair per chunk, so each chunk still "
            "holds the [2, T, V] logits of one pair). Its loss differs from the γ-SimPO rows because the margins "
            "differ (constant vs calibrated).",
        ]
    errors = [r for r in measured["runs"] if "error" in r]
    if errors:
        lines += ["", "Runs that failed:"] + [f"- {r['spec']}: {r['error']}" for r in errors]
    return lines


def _plot(rows, path) -> str | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    hiddens = sorted({r["hidden"] for r in rows})
    variants = [v for v in ("unfused", "fused", "liger_simpo") if any(r["variant"] == v for r in rows)]
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.5))
    width = 0.8 / max(len(variants), 1)
    for i, v in enumerate(variants):
        xs = [j + i * width for j in range(len(hiddens))]
        get = lambda key: [next((r[key]["median"] for r in rows if r["hidden"] == h and r["variant"] == v), 0) for h in hiddens]  # noqa: E731
        axes[0].bar(xs, get("peak_mib"), width, label=v)
        axes[1].bar(xs, get("time_s"), width, label=v)
    for ax, title in zip(axes, ("peak extra memory (MiB)", "fwd+bwd time (s)")):
        ax.set_xticks([j + width * (len(variants) - 1) / 2 for j in range(len(hiddens))], [f"H={h}" for h in hiddens])
        ax.set_title(title)
    axes[0].legend()
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
    parser.add_argument("--reps", type=int, default=None, help="interleaved repetitions")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker is not None:
        print(json.dumps(worker(json.loads(args.worker))))
        return 0
    sizes = dict(QUICK if args.quick else FULL)
    if args.reps:
        sizes["reps"] = args.reps
    machine = machine_info()
    print(f"[{NAME}] {machine_line(machine)}", flush=True)
    measured = _measure(sizes, lambda s: print(s, flush=True))
    rows, sweep = _summarise(sizes, measured)
    lines = _report(sizes, measured, rows, sweep, machine, args.quick)
    data = {"machine": machine, "sizes": sizes, "quick": args.quick, "rows": rows, "sweep": sweep, **measured}
    paths = write_results(NAME, args.out, lines, data)
    png = _plot(rows, paths[0].with_suffix(".png"))
    print("\n".join(lines[-8:]))
    print(f"[{NAME}] wrote {', '.join(map(str, paths + ([png] if png else [])))}")
    return 1 if any("error" in r for r in measured["runs"]) else 0


if __name__ == "__main__":
    sys.exit(main())
