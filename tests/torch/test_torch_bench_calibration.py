"""The calibration benchmark runs end to end and writes its result files (tiny, eager-only run)."""

from __future__ import annotations

import json

from benchmarks.bench_calibration_torch import main, setup


def test_bench_calibration_torch_quick_writes_markdown_and_json(tmp_path, capsys):
    assert main(["--quick", "--no-compile", "--repeats", "2", "--out", str(tmp_path)]) == 0
    data = json.loads((tmp_path / "calibration_torch.json").read_text())
    rows = {(r["gaps"], r["contender"]) for r in data["results"]}
    assert rows == {(m, c) for m in (64, 256) for c in ("released", "gammapo eager", "gammapo eager, torch ops",
                                                                   "gammapo eager, released mirror")}
    assert all(r["median_us"] > 0 for r in data["results"])
    md = (tmp_path / "calibration_torch.md").read_text()
    assert "torch 2." in md and "No GPU" in md and "| 256 |" in md
    assert "released" in capsys.readouterr().out


def test_bench_setup_gives_a_full_queue_on_both_sides():
    s = setup(256)
    assert int(s["state"].size) == s["capacity"] == len(s["queue"]) == 2048
    assert s["gaps"].shape == (64,) and s["config"].sample_size == 256
