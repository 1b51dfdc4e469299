"""Shared helpers of the performance benchmarks: statistics, the machine description, result files.

Every benchmark compares against a baseline measured in the same run and reports medians with their
spread (interquartile range, min–max), because the machines are shared and noisy.
"""

from __future__ import annotations

import json
import os
import pathlib
import platform
import statistics
from typing import Any, Iterable, Sequence

__all__ = ["RESULTS", "calls_per_block", "stats", "machine_info", "machine_line", "write_results", "markdown_table", "status_kib",
           "reset_peak_rss"]

#: Default folder of the result files.
RESULTS = pathlib.Path(__file__).resolve().parent / "results"


def status_kib(field: str) -> int:
    """A memory field of this process from ``/proc/self/status`` in KiB (``VmRSS``, ``VmHWM``, …; Linux)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def reset_peak_rss() -> bool:
    """Reset this process's peak RSS (``VmHWM``) to its current RSS; False where the kernel refuses."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def calls_per_block(gaps: int) -> int:
    """Calls of each contender per timed block in the interleaved calibration benchmarks.

    On these shared VMs the first call into any library after a few milliseconds of other work is
    slow: measured after a 15 ms pause, ``a + 1.0`` costs 40 µs in NumPy (1 µs warm), 90 µs in torch
    and a jitted no-op 150–200 µs in JAX (6 µs warm), also pinned to one core. Interleaving hands each
    contender one such cold start per block, so a block makes enough calls (100 up to 256 gaps, 50 up
    to 1024, 20 above) for it to add at most a few µs per call; the per-call medians never include it.
    """
    return 100 if gaps <= 256 else 50 if gaps <= 1024 else 20


def stats(values: Iterable[float]) -> dict[str, float]:
    """Median, quartiles, min, max and count of ``values``.

    Example:
        >>> stats([3.0, 1.0, 2.0])["median"]
        2.0
    """
    v = sorted(float(x) for x in values)
    if not v:
        raise ValueError("no values")
    q = statistics.quantiles(v, n=4, method="inclusive") if len(v) > 1 else [v[0], v[0], v[0]]
    return {"median": statistics.median(v), "q1": q[0], "q3": q[2], "min": v[0], "max": v[-1], "n": len(v)}


def _cpu_model() -> str:
    try:
        for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info() -> dict[str, Any]:
    """The machine the numbers come from: CPU model, cores, framework versions, accelerator."""
    info: dict[str, Any] = {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }
    try:
        import numpy

        info["numpy"] = numpy.__version__
    except ImportError:
        pass
    gpu = "no GPU"
    try:
        import torch

        info["torch"] = torch.__version__
        info["torch_threads"] = torch.get_num_threads()
        if torch.cuda.is_available():
            gpu = torch.cuda.get_device_name(0)
    except ImportError:
        pass
    try:
        import jax

        info["jax"] = jax.__version__
    except ImportError:
        pass
    info["gpu"] = gpu
    return info


def machine_line(info: dict[str, Any] | None = None) -> str:
    """One line for the reports, e.g. ``CPU AMD EPYC (2 cores), torch 2.13.0, jax 0.10.2, no GPU``."""
    info = machine_info() if info is None else info
    parts = [f"CPU {info['cpu']} ({info['cores']} cores)", f"Python {info['python']}"]
    parts += [f"{k} {info[k]}" for k in ("numpy", "torch", "jax") if k in info]
    parts.append(str(info["gpu"]))
    return ", ".join(parts)


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    """A Markdown table as lines."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return lines


def write_results(name: str, out_dir: pathlib.Path | str | None, markdown: list[str], data: dict[str, Any]) -> list[pathlib.Path]:
    """Write ``<name>.md`` and ``<name>.json`` under ``out_dir`` (default :data:`RESULTS`); returns the paths."""
    out = pathlib.Path(out_dir) if out_dir is not None else RESULTS
    out.mkdir(parents=True, exist_ok=True)
    md, js = out / f"{name}.md", out / f"{name}.json"
    md.write_text("\n".join(markdown) + "\n")
    js.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    return [md, js]
