"""One section in its own process: ``python -m scripts.gpu_acceptance._child NAME RESULT.json [--dry-run]``.

:class:`Recorder` writes the section's result file after every part, so a section stopped at its time
budget still reports the parts it finished. The helpers time calls (CUDA events on a GPU, the wall
clock on a CPU) and count host synchronisations (``torch.cuda.set_sync_debug_mode``).
"""

from __future__ import annotations

import contextlib
import importlib
import json
import pathlib
import statistics
import sys
import time
import traceback
import warnings
from typing import Any, Callable

NO_CUDA = "skipped: no CUDA"
#: section name → ``module:function`` of this package that runs it.
RUNNERS = {"environment": "sec_env:run", "cuda_tests": "sec_pytest:cuda_tests",
           "conformance_torch": "sec_pytest:conformance_torch", "conformance_jax": "sec_pytest:conformance_jax",
           "sync_and_graphs": "sec_sync:run", "calibration_timings": "sec_timing:run", "fused_loss": "sec_fused:run",
           "trainer_step": "sec_trainer:run", "parallel_trainer": "sec_parallel:run"}


class Recorder:
    """The result of one section: parts (name, status, detail, data) and flat measurements."""

    def __init__(self, name: str, path: pathlib.Path, dry: bool):
        self.path = path
        self.data: dict[str, Any] = {"section": name, "dry_run": dry, "parts": [], "measurements": {}}
        self.started = time.perf_counter()
        self.flush()

    def flush(self) -> None:
        self.path.write_text(json.dumps(self.data, indent=1, default=str))

    def left(self, budget: float) -> float:
        """Seconds left of this section's budget (``GAMMAPO_SECTION_BUDGET``; ``budget`` when unset)."""
        import os

        total = float(os.environ.get("GAMMAPO_SECTION_BUDGET", "0") or budget)
        return total - (time.perf_counter() - self.started)

    def table(self, title: str, header: list[str], rows: list[list[Any]]) -> None:
        """Add (or replace, by title) a table of this section's report."""
        tables = [t for t in self.data.get("tables", []) if t["title"] != title]
        self.data["tables"] = tables + [{"title": title, "header": header, "rows": [list(r) for r in rows]}]
        self.flush()

    def measure(self, key: str, value: Any) -> None:
        self.data["measurements"][key] = value
        self.flush()

    @contextlib.contextmanager
    def part(self, name: str):
        """Run a part; it may set ``p["status"]`` (ok, fail, skipped: …) and ``p["detail"]``; an exception is an error."""
        p: dict[str, Any] = {"name": name, "status": "ok", "detail": "", "data": {}}
        start = time.perf_counter()
        try:
            yield p
        except Exception as exc:  # noqa: BLE001 - one part's failure must not stop the others
            p["status"] = "error"
            p["detail"] = f"{type(exc).__name__}: {exc}"[:600]
            p["traceback"] = traceback.format_exc()[-2500:]
        p["seconds"] = round(time.perf_counter() - start, 3)
        self.data["parts"].append(p)
        print(f"[{self.data['section']}] {name}: {p['status']} {p['detail'][:200]}", flush=True)
        self.flush()

    def skip(self, name: str, reason: str = NO_CUDA) -> None:
        with self.part(name) as p:
            p["status"] = reason if reason.startswith("skipped") else f"skipped: {reason}"


def cuda() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except ImportError:
        return False


def time_block(fn: Callable[[], Any], inner: int, on_cuda: bool) -> float:
    """Microseconds per call of ``fn`` over ``inner`` back-to-back calls (CUDA events, or the wall clock)."""
    if on_cuda:
        import torch

        torch.cuda.synchronize()
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(inner):
            fn()
        end.record()
        end.synchronize()
        return start.elapsed_time(end) * 1e3 / inner
    t = time.perf_counter()
    for _ in range(inner):
        fn()
    return (time.perf_counter() - t) * 1e6 / inner


def interleaved(fns: dict[str, Callable[[], Any]], repeats: int, inner: int, on_cuda: bool,
                wall: bool = False, warm: int = 3) -> tuple[dict[str, list[float]], dict[str, str]]:
    """Per-call µs of each function over ``repeats`` rounds (each times ``inner`` calls of every one in turn,
    after ``warm`` warm-up calls). A function that raises is dropped and its error returned. ``wall``: the
    wall clock even on a GPU (for callers that block on their own results, such as JAX)."""
    samples: dict[str, list[float]] = {k: [] for k in fns}
    errors: dict[str, str] = {}
    for name, fn in list(fns.items()):
        try:
            for _ in range(warm):
                fn()
        except Exception as exc:  # noqa: BLE001
            errors[name] = f"{type(exc).__name__}: {exc}"[:400]
    live = [k for k in fns if k not in errors]
    for r in range(repeats):
        for name in live[r % max(len(live), 1):] + live[: r % max(len(live), 1)]:
            if name in errors:
                continue
            try:
                samples[name].append(time_block(fns[name], inner, on_cuda and not wall))
            except Exception as exc:  # noqa: BLE001
                errors[name] = f"{type(exc).__name__}: {exc}"[:400]
    return {k: v for k, v in samples.items() if v and k not in errors}, errors


def median(values) -> float:
    return float(statistics.median(values))


@contextlib.contextmanager
def host_reads():
    """Counts value reads on the host through ``Tensor`` (``item``, ``tolist``, ``bool`` …) on any device."""
    import torch

    seen: list[str] = []
    saved = []
    for name in ("item", "tolist", "cpu", "numpy", "__bool__", "__int__", "__float__"):
        original = getattr(torch.Tensor, name)

        def rec(*a, _o=original, _n=name, **k):
            frame = traceback.extract_stack(limit=3)[0]
            seen.append(f"Tensor.{_n} at {pathlib.Path(frame.filename).name}:{frame.lineno}")
            return _o(*a, **k)

        saved.append((name, original))
        setattr(torch.Tensor, name, rec)
    try:
        yield seen
    finally:
        for name, original in saved:
            setattr(torch.Tensor, name, original)


@contextlib.contextmanager
def cuda_syncs():
    """Every host synchronisation inside (``set_sync_debug_mode("warn")``), with where it came from."""
    import torch

    sites: list[str] = []

    def show(message, category, filename, lineno, file=None, line=None):
        if "synchroniz" in str(message):
            stack = [f for f in traceback.extract_stack()[:-2] if "/torch/" not in f.filename and "warnings" not in f.filename]
            sites.append(" < ".join(f"{pathlib.Path(f.filename).name}:{f.lineno}" for f in stack[-4:][::-1]))

    torch.cuda.synchronize()
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.showwarning = show
        torch.cuda.set_sync_debug_mode("warn")
        try:
            yield sites
        finally:
            torch.cuda.set_sync_debug_mode("default")


def raises_in_error_mode(body: Callable[[], Any]) -> str | None:
    """Runs ``body`` under ``set_sync_debug_mode("error")``: the error message, or None when nothing synchronised."""
    import torch

    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        body()
        return None
    except RuntimeError as exc:
        return str(exc)[:300]
    finally:
        torch.cuda.set_sync_debug_mode("default")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    name, path, dry = argv[0], pathlib.Path(argv[1]), "--dry-run" in argv

    rec = Recorder(name, path, dry)
    module, _, func = RUNNERS[name].partition(":")
    try:
        getattr(importlib.import_module(f"scripts.gpu_acceptance.{module}"), func)(rec, dry)
    except Exception as exc:  # noqa: BLE001 - recorded; the parent reads the file
        rec.data["error"] = f"{type(exc).__name__}: {exc}"
        rec.data["traceback"] = traceback.format_exc()[-3000:]
        rec.flush()
        raise
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
