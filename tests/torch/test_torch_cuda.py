"""CUDA-only checks (skipped without a GPU; none was lent while these were written, so they have not
run yet): the per-step path never synchronises (``torch.cuda.set_sync_debug_mode("error")``), the fused
Triton kernel matches the reference on the device and is selected there, and the compiled step agrees."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import gammapo_spec as R
import gammapo_torch as T
from gammapo_torch import _triton_calibration

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

CFG = R.GammaPOConfig(loss="gamma-simpo", beta=2.0, gamma_beta_ratio=0.5, tau=3.0, queue_size=256, sample_size=64,
                      queue_warmup=8, check_values=False)


def cuda_batch(n: int, seed: int) -> dict[str, torch.Tensor]:
    g = torch.Generator(device="cuda").manual_seed(seed)
    return dict(
        chosen_logps=(-torch.rand(n, generator=g, device="cuda") * 10 - 0.1).requires_grad_(True),
        rejected_logps=-torch.rand(n, generator=g, device="cuda") * 10 - 0.1,
        chosen_lengths=torch.randint(1, 30, (n,), generator=g, device="cuda"),
        rejected_lengths=torch.randint(1, 30, (n,), generator=g, device="cuda"),
    )


@pytest.mark.parametrize("disable_triton", ["0", "1"], ids=["fused-kernel", "torch-ops"])
def test_gamma_po_loss_queue_steps_on_cuda_never_synchronise(monkeypatch, disable_triton):
    monkeypatch.setenv("GAMMAPO_DISABLE_TRITON", disable_triton)
    state = T.init_state(CFG, seed=3, device="cuda")
    batches = [cuda_batch(16, s) for s in range(4)]
    T.gamma_po_loss(CFG, state, **cuda_batch(16, 99))  # warm-up: kernel compilation may synchronise
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for x in batches:
            out, state = T.gamma_po_loss(CFG, state, **x)
            out.loss.backward()
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert int(state.step) == 4


@pytest.mark.parametrize("dtype, tol", [(torch.float64, 1e-12), (torch.float32, 2e-5)])
@pytest.mark.parametrize("length", [1, 300, 4096])
def test_mirror_margins_fused_on_cuda_matches_reference(dtype, tol, length):
    pytest.importorskip("triton")
    h = np.random.default_rng(length).normal(scale=3.0, size=length)
    hc = torch.tensor(h, dtype=dtype, device="cuda")
    assert _triton_calibration.use_fused(hc), "on CUDA with triton the fused kernel is selected"
    got = T.calibrate_margins(hc, gamma0=4.0, tau=10.0, solver="mirror")
    np.testing.assert_allclose(got.double().cpu().numpy(), R.calibrate_margins(h, gamma0=4.0, tau=10.0, solver="mirror"), rtol=tol, atol=tol)


def test_calibrate_step_compiled_on_cuda_equals_eager():
    step = torch.compile(lambda st, h: T.calibrate_step(CFG, st, h), fullgraph=True)
    s_eager = s_comp = T.init_state(CFG, seed=1, device="cuda")
    for i in range(3):
        h = torch.randn(16, device="cuda", generator=torch.Generator(device="cuda").manual_seed(i))
        g_e, s_eager = T.calibrate_step(CFG, s_eager, h)
        g_c, s_comp = step(s_comp, h)
        torch.testing.assert_close(g_c, g_e, rtol=1e-5, atol=1e-5)
