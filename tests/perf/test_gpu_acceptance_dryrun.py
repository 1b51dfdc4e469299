"""The GPU acceptance script proven on the CPU: its dry run end to end, its targets, its wheel list and the
conformance suite's device option. No GPU is needed (none is assumed)."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys
import zipfile

import pytest

from scripts.gpu_acceptance import SECTIONS
from scripts.gpu_acceptance._env import read_manifest
from scripts.gpu_acceptance.report import TARGETS, evaluate
from scripts.gpu_acceptance.runner import parse, section_status

ROOT = pathlib.Path(__file__).resolve().parents[2]


def demo_wheel(folder: pathlib.Path) -> pathlib.Path:
    """A minimal pure-Python wheel (one module), so the offline install path runs without a registry."""
    folder.mkdir()
    path = folder / "gammapo_demo_pkg-0.1-py3-none-any.whl"
    files = {
        "gammapo_demo_pkg/__init__.py": "VALUE = 42\n",
        "gammapo_demo_pkg-0.1.dist-info/METADATA": "Metadata-Version: 2.1\nName: gammapo-demo-pkg\nVersion: 0.1\n",
        "gammapo_demo_pkg-0.1.dist-info/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = "".join(f"{name},,\n" for name in files) + "gammapo_demo_pkg-0.1.dist-info/RECORD,,\n"
    with zipfile.ZipFile(path, "w") as z:
        for name, text in files.items():
            z.writestr(name, text)
        z.writestr("gammapo_demo_pkg-0.1.dist-info/RECORD", record)
    return folder


def test_dry_run_runs_every_section_and_writes_the_report(tmp_path):
    out, site = tmp_path / "out", tmp_path / "site"
    wheels = demo_wheel(tmp_path / "wheels")
    proc = subprocess.run(
        [sys.executable, "-m", "scripts.gpu_acceptance", str(out), "--dry-run", "--wheels", str(wheels), "--manifest", "none",
         "--site", str(site), "--time-limit", "840"],  # about 1.5 CPU-minutes; generous for a loaded shared machine
        cwd=ROOT, capture_output=True, text=True, timeout=900, env={**os.environ, "CUDA_VISIBLE_DEVICES": ""},
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = json.loads((out / "gpu_acceptance.json").read_text())
    md = (out / "gpu_acceptance.md").read_text()
    assert (out / "gpu_acceptance.log").stat().st_size > 0
    assert report["wheels"]["installed"] == ["gammapo_demo_pkg-0.1-py3-none-any.whl"], report["wheels"]
    assert (site / "gammapo_demo_pkg" / "__init__.py").is_file()
    sections = {s["section"]: s for s in report["sections"]}
    assert list(sections) == list(SECTIONS)
    for name, s in sections.items():
        assert s["status"] in ("ok", "skipped"), f"{name}: {s['status']} {s.get('error')} {s.get('log', '')[-1500:]}"
        for part in s["parts"]:
            assert part["status"] == "ok" or part["status"].startswith("skipped"), (name, part)
    parts = {p["name"]: p for s in report["sections"] for p in s["parts"]}
    for cuda_only in ("triton kernel chosen and matching the spec", "CUDA graph: queue step, exact solver",
                      "no host sync: queue steps (exact)", "no host sync: GammaPOTrainer.compute_loss"):
        assert parts[cuda_only]["status"] == "skipped: no CUDA", parts[cuda_only]
    # the parallel section trains its unwrapped reference on the CPU and skips the sharded arms, saying why
    assert parts["reference: the same run without a wrapper, one process"]["status"] == "ok"
    for arm in ("accelerate FSDP2", "DeepSpeed ZeRO-2", "DeepSpeed ZeRO-3"):
        part = next(p for name, p in parts.items() if name.startswith(arm))
        assert part["status"].startswith("skipped: no CUDA (accelerate runs FSDP and DeepSpeed only"), part
    # the CPU preview of the sync check ran the bodies: the loss path reads nothing back, the trainer does
    m = {k: v for s in report["sections"] for k, v in s["measurements"].items()}
    assert m["sync.queue steps (exact).cpu_host_reads"] == 0 and m["sync.queue steps (mirror).cpu_host_reads"] == 0
    assert m["sync.fused loss fwd+bwd.cpu_host_reads"] == 0
    assert m["conformance_torch.counts"]["PASSED"] > 0 and m["conformance_jax.counts"]["PASSED"] > 0
    assert m["conformance_torch.device"] == "cpu"
    for contender in ("released per-step path", "default solver, eager", "mirror, torch ops", "jax lax jit, default solver"):
        assert m[f"calib.{contender}.64"] > 0, contender
    # every target is listed, and none is claimed by a dry run
    assert [r["target"] for r in report["targets"]] == [t for t, _ in TARGETS]
    assert {r["verdict"] for r in report["targets"]} == {"pending (no GPU run)"}
    for title in ("## Targets", "**Calibration per step**", "**Fused γ-SimPO loss, forward+backward**",
                  "**One bf16 training step**", "### trainer_step: ok", "### parallel_trainer: ok"):
        assert title in md, title


def good_measurements() -> dict:
    m = {"env.gpu": "NVIDIA H200", "conformance_torch.device": "cuda", "conformance_jax.device": "gpu", "triton.ok": True,
         "calib.default solver, CUDA graph.256": 30.0, "calib.default solver, eager.256": 900.0,
         "calib.empty Triton kernel launch.256": 12.0, "graph.exact.max_diff": 0.0, "graph.mirror.max_diff": 1e-7,
         "trainer.overhead_vs_trl": 0.01, "trainer.overhead_vs_simpo": 0.015,
         "parallel.fsdp2.ok": True, "parallel.zero2.ok": True, "parallel.zero3.ok": True}
    for name in ("cuda_tests", "conformance_torch", "conformance_jax"):
        m[f"{name}.status"], m[f"{name}.counts"] = "ok", {"PASSED": 10, "FAILED": 0, "ERROR": 0}
    for path in ("queue steps (exact)", "queue steps (mirror)", "fused loss fwd+bwd", "GammaPOTrainer.compute_loss"):
        m[f"sync.{path}"] = 0
    for t in (1024, 2048):
        m.update({f"fused.{t}.mem_ratio": 0.2, f"fused.{t}.time_ratio": 1.2, f"fused.{t}.liger_mem_ratio": 0.8,
                  f"fused.{t}.liger_time_ratio": 1.0})
    return m


def verdicts(m: dict) -> dict[str, str]:
    return {r["target"]: r["verdict"] for r in evaluate(m, dry=False)}


def test_targets_pass_on_good_measurements_and_each_bad_one_fails():
    assert set(verdicts(good_measurements()).values()) == {"pass"}
    bad = {
        "calibration ≤ 50 µs per step at 256 gaps (default solver)": {"calib.default solver, CUDA graph.256": 51.0,
                                                                       "calib.empty Triton kernel launch.256": 20.0},
        "calibration within 3× of the empty-kernel floor at 256 gaps": {"calib.empty Triton kernel launch.256": 9.9},
        "zero host syncs: fused loss forward+backward": {"sync.fused loss fwd+bwd": 2},
        "calibration replays from a CUDA graph (mirror)": {"graph.mirror.max_diff": 1e-3},
        "fused loss peak memory ≤ 25% of unfused (V = 128k, T = 2048)": {"fused.2048.mem_ratio": 0.26},
        "fused loss time ≤ 1.3× unfused (V = 128k, T = 1024)": {"fused.1024.time_ratio": 1.31},
        "fused loss ahead of Liger's SimPO on memory at equal time (T = 1024)": {"fused.1024.liger_mem_ratio": 1.01},
        "γ-SimPO step overhead over TRL's SimPO step ≤ 2%": {"trainer.overhead_vs_trl": 0.021},
        "conformance suite, torch backend on CUDA": {"conformance_torch.device": "cpu"},
        "conformance suite, JAX backend on the GPU": {"conformance_jax.status": "fail"},
        "Triton kernel chosen on CUDA and within tolerance of the spec": {"triton.ok": False},
        **{f"GammaPOTrainer under {what}, 1 process: equals the unwrapped run, checkpoint complete": {f"parallel.{arm}.ok": False}
           for arm, what in (("fsdp2", "accelerate FSDP2"), ("zero2", "DeepSpeed ZeRO-2"), ("zero3", "DeepSpeed ZeRO-3"))},
    }
    for target, change in bad.items():
        got = verdicts({**good_measurements(), **change})
        assert got[target] == "FAIL", (target, got[target])
        assert sum(v == "FAIL" for v in got.values()) == 1, {k: v for k, v in got.items() if v != "pass"}
    m = good_measurements()
    del m["trainer.overhead_vs_trl"]
    assert verdicts(m)["γ-SimPO step overhead over TRL's SimPO step ≤ 2%"] == "missing"


def test_section_status_and_options():
    assert section_status({"rc": 0, "parts": [{"status": "ok"}, {"status": "skipped: no CUDA"}]}) == "ok"
    assert section_status({"rc": 0, "parts": [{"status": "skipped: no CUDA"}]}) == "skipped"
    assert section_status({"rc": 0, "parts": [{"status": "ok"}, {"status": "fail"}]}) == "fail"
    assert section_status({"rc": -9, "timed_out": True, "parts": [{"status": "ok"}]}) == "timeout"
    assert section_status({"rc": 1, "parts": []}) == "error"
    with pytest.raises(SystemExit):
        parse(["out", "--only", "no_such_section"])
    assert parse(["out", "--only", "fused_loss,trainer_step", "--dry-run"]).only == "fused_loss,trainer_step"


def test_wheel_manifest_is_exact_and_fits_the_carry_limit():
    rows = read_manifest()
    names = [r["file"] for r in rows]
    assert len(set(names)) == len(names) and all(n.endswith(".whl") for n in names)
    for wanted in ("trl-", "datasets-", "liger_kernel-", "dill-", "multiprocess-", "deepspeed-"):
        assert sum(n.startswith(wanted) for n in names) == 1, wanted
    tracked = sum((ROOT / f).stat().st_size for f in subprocess.run(
        ["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split() if (ROOT / f).is_file())
    assert sum(r["bytes"] for r in rows) + tracked <= 64 * 2**20, "the wheels and the checkout exceed what a GPU run carries"
    text = (ROOT / "scripts" / "gpu_wheels.txt").read_text()
    assert "python3 -m scripts.gpu_acceptance" in text and "--wheels .whl" in text
    assert "/.whl/" in (ROOT / ".gitignore").read_text().split()


def test_conformance_device_option_reaches_the_torch_backend():
    """With GAMMAPO_CONFORMANCE_DEVICE=meta the torch backend's arrays hold no values, so the suite must fail
    (on CUDA the same option puts them on the GPU); the dry run above passes it on the CPU."""
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-x", "-q", "conformance/test_reward_gap.py",
         "--backend", "torch", "--conformance-max-examples", "1"],
        cwd=ROOT, capture_output=True, text=True, timeout=300, env={**os.environ, "GAMMAPO_CONFORMANCE_DEVICE": "meta"},
    )
    assert proc.returncode == 1 and "meta" in proc.stdout, proc.stdout[-2000:]
