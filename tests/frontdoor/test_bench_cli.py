"""`gammapo bench`: it finds the checkout's benchmarks, writes to a new folder unless told otherwise (never
over the committed results the docs include), and refuses what it cannot honour before running anything."""

from __future__ import annotations

import hashlib
import pathlib
import subprocess
import sys

import pytest

import benchmarks.__main__ as runner
from benchmarks._perf_common import RESULTS
from gammapo.cli import main

ROOT = pathlib.Path(__file__).resolve().parents[2]


def _snapshot(folder: pathlib.Path) -> dict[str, tuple[str, int]]:
    return {p.name: (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
            for p in sorted(folder.iterdir()) if p.is_file()}


def test_bench_list_works_from_anywhere_with_the_checkout_installed(tmp_path):
    done = subprocess.run([sys.executable, "-m", "gammapo", "bench", "--list"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    for name in runner.REGISTRY:
        assert name in done.stdout


def test_quick_run_without_out_writes_a_fresh_folder_and_leaves_committed_results(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(runner, "RUNS", tmp_path / "runs")
    before = _snapshot(RESULTS)
    assert main(["bench", "solver_agreement", "--quick"]) == 0
    assert _snapshot(RESULTS) == before, "a run without --out changed benchmarks/results/"
    (run_dir,) = (tmp_path / "runs").iterdir()
    assert sorted(p.name for p in run_dir.iterdir()) == ["solver_agreement.md", "summary.md"]
    assert "quick mode" in (run_dir / "solver_agreement.md").read_text()
    assert "| solver_agreement |" in (run_dir / "summary.md").read_text()
    assert str(run_dir) in capsys.readouterr().out
    # the next run gets a folder of its own, even within the same second
    assert len({runner.fresh_folder() for _ in range(3)} | {run_dir}) == 4


def test_a_benchmark_without_options_is_refused_before_anything_runs(tmp_path, monkeypatch, capsys):
    (tmp_path / "fixed_bench.py").write_text("def main():\n    raise SystemExit('ran')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(runner.REGISTRY, "fixed", ("fixed_bench", "a benchmark with a plain main()"))
    monkeypatch.setattr(runner, "RUNS", tmp_path / "runs")
    with pytest.raises(SystemExit) as exit_info:
        main(["bench", "solver_agreement", "fixed", "--quick"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "fixed take(s) no options" in err and "python -m fixed_bench" in err
    assert not (tmp_path / "runs").exists(), "something ran or wrote before the refusal"


@pytest.mark.parametrize("argv, needle", [
    (["--summary-only"], "--summary-only rewrites the summary of a results folder: name it with --out DIR"),
    (["nope"], "unknown benchmark(s) nope"),
])
def test_bad_bench_options_are_one_line(argv, needle, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["bench", *argv])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and needle in err and "Traceback" not in err
