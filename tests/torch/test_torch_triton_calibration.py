"""The fused Triton calibration kernel: values against the reference (Triton's CPU interpreter) and
the automatic selection (CUDA only, at most MAX_FUSED gaps, switchable off)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import types

import pytest
import torch

from gammapo_torch import _calibration, _triton_calibration
from gammapo_torch._triton_calibration import MAX_FUSED, use_fused

#: Runs in a child process with TRITON_INTERPRET=1 (Triton reads it when a kernel is defined): the kernel
#: executes on CPU tensors; prints, per case, the largest difference from the NumPy reference.
INTERPRETED = textwrap.dedent(
    """
    import json
    import numpy as np, torch
    import gammapo_spec as R
    from gammapo_torch._triton_calibration import mirror_margins_fused, MAX_FUSED

    out = []
    rng = np.random.default_rng(0)
    for length, n_cand, count, gamma0, tau, dtype in [
        (1, 0, None, 2.0, 1.0, torch.float64),
        (3, 0, None, 1.0, 1.0, torch.float64),
        (300, 0, None, 4.0, 10.0, torch.float64),
        (300, 0, None, 4.0, 10.0, torch.float32),
        (MAX_FUSED, 0, None, 4.0, 10.0, torch.float32),
        (100, 60, 0, 2.0, 3.0, torch.float64),
        (100, 60, 25, 2.0, 3.0, torch.float64),
        (100, 60, 60, 2.0, 3.0, torch.float32),
    ]:
        h = rng.normal(scale=3.0, size=length)
        c = None if count is None else torch.tensor(count)
        got = mirror_margins_fused(torch.tensor(h, dtype=dtype), gamma0=gamma0, tau=tau, count=c, n_candidates=n_cand)
        k = n_cand if count is None else count
        keep = np.concatenate([h[:k], h[n_cand:]])
        ref = R.calibrate_margins(keep, gamma0=gamma0, tau=tau, solver="mirror")
        mine = np.concatenate([got[:k].double().numpy(), got[n_cand:].double().numpy()])
        masked = float(got[k:n_cand].abs().max()) if n_cand > k else 0.0
        out.append(dict(length=length, count=count, dtype=str(dtype), diff=float(np.abs(mine - ref).max()),
                        scale=float(np.abs(ref).max()), masked=masked, out_dtype=str(got.dtype)))
    print("RESULT" + json.dumps(out))
    """
)


def test_mirror_margins_fused_under_triton_interpreter_matches_reference():
    pytest.importorskip("triton", reason="the fused kernel needs triton")
    env = dict(os.environ, TRITON_INTERPRET="1")
    proc = subprocess.run([sys.executable, "-c", INTERPRETED], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"interpreted kernel failed:\n{proc.stderr[-3000:]}"
    line = next(l for l in proc.stdout.splitlines() if l.startswith("RESULT"))
    for case in json.loads(line[len("RESULT"):]):
        tol = 1e-12 if case["dtype"] == "torch.float64" else 2e-5
        assert case["diff"] <= tol * max(1.0, case["scale"]), f"fused kernel vs reference: {case}"
        assert case["masked"] == 0.0, f"masked candidates must get margin 0: {case}"
        assert case["out_dtype"] == case["dtype"], f"the kernel computes and returns in the input dtype: {case}"


def fake_cuda(length: int) -> types.SimpleNamespace:
    """What :func:`use_fused` looks at: ``is_cuda`` and ``shape``."""
    return types.SimpleNamespace(is_cuda=True, shape=(length,))


def test_use_fused_only_on_cuda_with_triton_up_to_max_fused(monkeypatch):
    monkeypatch.setattr(_triton_calibration, "HAVE_TRITON", True)
    monkeypatch.delenv("GAMMAPO_DISABLE_TRITON", raising=False)
    assert not use_fused(torch.zeros(16)), "CPU tensors take the torch-ops path"
    assert use_fused(fake_cuda(16)) and use_fused(fake_cuda(MAX_FUSED))
    assert not use_fused(fake_cuda(MAX_FUSED + 1)), "sets larger than MAX_FUSED take the torch-ops path"
    monkeypatch.setenv("GAMMAPO_DISABLE_TRITON", "1")
    assert not use_fused(fake_cuda(16)), "GAMMAPO_DISABLE_TRITON=1 turns the kernel off"
    monkeypatch.delenv("GAMMAPO_DISABLE_TRITON")
    monkeypatch.setattr(_triton_calibration, "HAVE_TRITON", False)
    assert not use_fused(fake_cuda(16)), "without triton the torch-ops path runs"


def test_solve_dispatches_mirror_to_the_fused_kernel_when_selected(monkeypatch):
    calls = []

    def fused(h, **kwargs):
        calls.append(kwargs)
        return torch.full_like(h, -1.0)

    monkeypatch.setattr(_triton_calibration, "use_fused", lambda h: True)
    monkeypatch.setattr(_triton_calibration, "mirror_margins_fused", fused)
    h = torch.randn(8, dtype=torch.float64)
    out = _calibration.solve(h, gamma0=1.0, tau=2.0, solver="mirror", iters=20, count=torch.tensor(3), n_candidates=4)
    assert bool((out == -1).all()) and len(calls) == 1
    assert calls[0]["n_candidates"] == 4 and int(calls[0]["count"]) == 3 and calls[0]["iters"] == 20
    # the exact solver never goes to the kernel
    _calibration.solve(h, gamma0=1.0, tau=2.0, solver="exact", iters=20)
    assert len(calls) == 1


def test_solve_on_cpu_never_calls_the_fused_kernel(monkeypatch):
    def boom(*args, **kwargs):
        raise AssertionError("the fused kernel ran on CPU")

    monkeypatch.setattr(_triton_calibration, "mirror_margins_fused", boom)
    _calibration.solve(torch.randn(8), gamma0=1.0, tau=2.0, solver="mirror", iters=20)


def test_mirror_margins_fused_rejects_sets_longer_than_max_fused():
    pytest.importorskip("triton")
    with pytest.raises(RuntimeError, match="at most 4096"):
        _triton_calibration.mirror_margins_fused(torch.zeros(MAX_FUSED + 1), gamma0=1.0, tau=1.0)
