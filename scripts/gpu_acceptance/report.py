"""The targets and the Markdown report, from the sections' measurements.

Each target reads named measurements; its verdict is ``pass``, ``FAIL``, ``missing`` (the section did
not produce it: see the section's parts) or, in a dry run, ``pending (no GPU run)``.
"""

from __future__ import annotations

from typing import Any, Callable

#: The calibration contenders that are the default solver (the target applies to the best of them).
DEFAULT_SOLVER = ("default solver, eager", "default solver, torch.compile", "default solver, CUDA graph")
GAMMAPO = DEFAULT_SOLVER + ("mirror, Triton kernel (step)", "mirror, torch ops", "mirror, torch.compile",
                            "mirror, CUDA graph")
FLOOR = "empty Triton kernel launch"


def _best(m: dict, names, n: int = 256) -> tuple[str, float] | None:
    got = [(k, m[f"calib.{k}.{n}"]) for k in names if f"calib.{k}.{n}" in m]
    return min(got, key=lambda kv: kv[1]) if got else None


def _calib_abs(m):
    best = _best(m, DEFAULT_SOLVER)
    return None if best is None else (best[1], f"{best[1]:.1f} µs ({best[0]})", best[1] <= 50.0)


def _calib_floor(m):
    best, floor = _best(m, GAMMAPO), m.get(f"calib.{FLOOR}.256")
    if best is None or floor is None:
        return None
    r = best[1] / floor
    return r, f"{r:.2f}× ({best[0]} {best[1]:.1f} µs / floor {floor:.1f} µs)", r <= 3.0


def _zero(key):
    def check(m):
        if key not in m:
            return None
        return m[key], f"{m[key]} syncs", m[key] == 0
    return check


def _flag(key, text):
    def check(m):
        if key not in m:
            return None
        return m[key], text(m[key]), bool(m[key])
    return check


def _graph(key):
    def check(m):
        if key not in m:
            return None
        return m[key], f"replay equals eager steps (margins within {m[key]:.1e})", m[key] <= 1e-5
    return check


def _suite(name, device_key, on_gpu):
    """A pytest section: passed, and run on the GPU (``on_gpu(device)``)."""
    def check(m):
        if f"{name}.status" not in m:
            return None
        counts, dev = m.get(f"{name}.counts", {}), m.get(device_key, "?")
        text = f"{counts.get('PASSED', 0)} passed, {counts.get('FAILED', 0) + counts.get('ERROR', 0)} failed on {dev}"
        if m.get(f"{name}.timed_out"):
            text += " (stopped at its time budget: the tests not reached are not counted)"
        return m[f"{name}.status"], text, m[f"{name}.status"] == "ok" and on_gpu(dev)
    return check


def _fused(kind, t):
    def check(m):
        key = f"fused.{t}"
        if kind == "memory" and f"{key}.mem_ratio" in m:
            r = m[f"{key}.mem_ratio"]
            return r, f"{100 * r:.1f}% of unfused", r <= 0.25
        if kind == "time" and f"{key}.time_ratio" in m:
            r = m[f"{key}.time_ratio"]
            return r, f"{r:.2f}× unfused", r <= 1.3
        if kind == "liger" and f"{key}.liger_mem_ratio" in m:
            mem, tim = m[f"{key}.liger_mem_ratio"], m[f"{key}.liger_time_ratio"]
            return mem, f"memory {mem:.2f}×, time {tim:.2f}× Liger's", mem < 1.0 and tim <= 1.1
        return None
    return check


def _trainer(m):
    if "trainer.overhead_vs_trl" not in m:
        return None
    r = m["trainer.overhead_vs_trl"]
    extra = m.get("trainer.overhead_vs_simpo")
    text = f"{100 * r:+.2f}% vs TRL's SimPO" + (f" ({100 * extra:+.2f}% vs gammapo's SimPO)" if extra is not None else "")
    return r, text, r <= 0.02


#: (target, check): ``check(measurements)`` gives ``(value, text, passed)`` or None when missing.
TARGETS: list[tuple[str, Callable[[dict], Any]]] = [
    ("tests/torch/test_torch_cuda.py passes on CUDA", _suite("cuda_tests", "env.gpu", lambda d: d not in ("?", "no GPU"))),
    ("conformance suite, torch backend on CUDA", _suite("conformance_torch", "conformance_torch.device", lambda d: d == "cuda")),
    ("conformance suite, JAX backend on the GPU", _suite("conformance_jax", "conformance_jax.device", lambda d: d == "gpu")),
    ("Triton kernel chosen on CUDA and within tolerance of the spec", _flag("triton.ok", lambda v: "yes" if v else "no")),
    ("calibration ≤ 50 µs per step at 256 gaps (default solver)", _calib_abs),
    ("calibration within 3× of the empty-kernel floor at 256 gaps", _calib_floor),
    ("zero host syncs: queue steps, default solver", _zero("sync.queue steps (exact)")),
    ("zero host syncs: queue steps, released mirror", _zero("sync.queue steps (mirror)")),
    ("zero host syncs: fused loss forward+backward", _zero("sync.fused loss fwd+bwd")),
    ("zero host syncs: GammaPOTrainer.compute_loss", _zero("sync.GammaPOTrainer.compute_loss")),
    ("calibration replays from a CUDA graph (default solver)", _graph("graph.exact.max_diff")),
    ("calibration replays from a CUDA graph (mirror)", _graph("graph.mirror.max_diff")),
    *[(f"fused loss peak memory ≤ 25% of unfused (V = 128k, T = {t})", _fused("memory", t)) for t in (1024, 2048)],
    *[(f"fused loss time ≤ 1.3× unfused (V = 128k, T = {t})", _fused("time", t)) for t in (1024, 2048)],
    *[(f"fused loss ahead of Liger's SimPO on memory at equal time (T = {t})", _fused("liger", t)) for t in (1024, 2048)],
    ("γ-SimPO step overhead over TRL's SimPO step ≤ 2%", _trainer),
    *[(f"GammaPOTrainer under {what}, 1 process: equals the unwrapped run, checkpoint complete",
       _flag(f"parallel.{arm}.ok", lambda v: "yes" if v else "no"))
      for arm, what in (("fsdp2", "accelerate FSDP2"), ("zero2", "DeepSpeed ZeRO-2"), ("zero3", "DeepSpeed ZeRO-3"))],
]


def evaluate(measurements: dict, dry: bool) -> list[dict]:
    rows = []
    for name, check in TARGETS:
        try:
            got = check(measurements)
        except Exception as exc:  # noqa: BLE001 - a malformed measurement is reported, not fatal
            got = (None, f"unreadable: {exc}", False)
        if dry:
            verdict = "pending (no GPU run)"
        elif got is None:
            verdict = "missing"
        else:
            verdict = "pass" if got[2] else "FAIL"
        rows.append({"target": name, "measured": "—" if got is None else got[1], "verdict": verdict})
    return rows


def table(header, rows) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)] + [
        "| " + " | ".join(str(c).replace("|", "\\|").replace("\n", " ") for c in r) + " |" for r in rows]


def markdown(report: dict) -> list[str]:
    m: dict = {}
    for s in report["sections"]:
        m.update(s.get("measurements", {}))
    report["targets"] = evaluate(m, report["dry_run"])
    gpu = m.get("env.gpu", "unknown")
    lines = ["# GPU acceptance" + (" (dry run: tiny sizes on the CPU)" if report["dry_run"] else ""), "",
             f"Machine: {gpu}. Command: `{report['command']}`. Total {report.get('seconds', '?')} s "
             f"(limit {report['time_limit']:.0f} s).", ""]
    if report["dry_run"]:
        lines += ["A dry run proves the script (imports, options, sections, files, tables); its numbers are CPU "
                  "numbers at tiny sizes and say nothing about the targets, which stay pending until a GPU run.", ""]
    lines += ["## Targets", ""]
    lines += table(["target", "measured", "verdict"], [[r["target"], r["measured"], r["verdict"]] for r in report["targets"]])
    w = report["wheels"]
    lines += ["", "## Carried wheels", "", f"Installed into `{w['site']}`: {', '.join(w['installed']) or 'none'}."]
    lines += [f"- {p}" for p in w["problems"]]
    lines += ["", "## Sections", ""]
    lines += table(["section", "status", "seconds", "budget"],
                   [[s["section"], s["status"], s.get("seconds", "—"), s.get("budget", "—")] for s in report["sections"]])
    for s in report["sections"]:
        lines += ["", f"### {s['section']}: {s['status']}", ""]
        if s.get("error"):
            lines += [f"Error: `{s['error']}`", ""]
        if s.get("parts"):
            lines += table(["part", "status", "detail"], [[p["name"], p["status"], p["detail"]] for p in s["parts"]])
        for tbl in s.get("tables", []):
            lines += ["", f"**{tbl['title']}**", "", *table(tbl["header"], tbl["rows"])]
    return lines
