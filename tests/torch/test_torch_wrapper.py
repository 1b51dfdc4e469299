"""``GammaPOLoss`` (the stateful nn.Module): equals the functional API, checkpoints bit for bit."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch

from gammapo_spec.errors import StateError

import gammapo_spec as R
import gammapo_torch as T
from _torch_helpers import make_inputs, to_torch

CFG = R.GammaPOConfig(loss="gamma-simpo", beta=2.0, gamma_beta_ratio=0.5, tau=3.0, queue_size=24, sample_size=16,
                      queue_warmup=8)


def batches(k: int, n: int = 6, dtype=torch.float32) -> list[dict[str, torch.Tensor]]:
    return [to_torch(make_inputs(CFG, n, seed=i), dtype) for i in range(k)]


def test_gamma_po_loss_module_equals_functional_api_and_tracks_the_state():
    module = T.GammaPOLoss(CFG, seed=4)
    state = T.init_state(CFG, seed=4)
    for x in batches(5):
        out_m = module(**x)
        out_f, state = T.gamma_po_loss(CFG, state, **x)
        assert torch.equal(out_m.margins, out_f.margins) and torch.equal(out_m.loss, out_f.loss)
        assert all(torch.equal(a, b) for a, b in zip(module.state, state)), "module buffers follow the functional state"


def test_gamma_po_loss_module_state_dict_round_trip_resumes_bit_for_bit():
    """Checkpoint mid-run with torch.save(module.state_dict()), load into a fresh module, continue:
    margins, losses and the final state equal the uninterrupted run exactly."""
    xs = batches(9)
    straight = T.GammaPOLoss(CFG, seed=2)
    ref_out = [straight(**x) for x in xs]

    first = T.GammaPOLoss(CFG, seed=2)
    for x in xs[:4]:
        first(**x)
    blob = io.BytesIO()
    torch.save(first.state_dict(), blob)
    del first
    blob.seek(0)
    resumed = T.GammaPOLoss(CFG, seed=999)  # a different seed: the checkpoint must restore it
    resumed.load_state_dict(torch.load(blob, weights_only=True))
    for i, x in enumerate(xs[4:], start=4):
        out = resumed(**x)
        assert torch.equal(out.margins, ref_out[i].margins), f"margins differ after resume at step {i}"
        assert torch.equal(out.losses, ref_out[i].losses), f"losses differ after resume at step {i}"
    for name, value in straight.state_dict().items():
        assert torch.equal(resumed.state_dict()[name], value), f"{name} differs at the end"


def test_gamma_po_loss_module_state_dict_matches_reference_state_dict():
    """The module's buffers are the reference's state for the same float64 history."""
    module = T.GammaPOLoss(CFG, seed=6, dtype=torch.float64)
    ref = R.init_state(CFG, seed=6)
    for x in batches(4, dtype=torch.float64):
        module(**x)
        _, ref = R.gamma_po_loss(CFG, ref, **{k: v.numpy() for k, v in x.items()})
    sd = module.state_dict()
    np.testing.assert_allclose(sd["queue_buffer"].numpy(), ref.buffer, rtol=1e-12, atol=1e-12)
    assert [int(sd[f"queue_{k}"]) for k in ("size", "head", "step", "seed")] == [ref.size, ref.head, ref.step, ref.seed]


def test_gamma_po_loss_module_in_a_model_checkpoint_and_stateless_configs():
    model = torch.nn.Module()
    model.loss_fn = T.GammaPOLoss(CFG, seed=1)
    assert sorted(model.state_dict()) == [f"loss_fn.queue_{k}" for k in ("buffer", "head", "seed", "size", "step")]
    plain = T.GammaPOLoss(R.GammaPOConfig(loss="gamma-simpo", calibration="batch"))
    assert plain.state is None and plain.state_dict() == {}
    x = to_torch(make_inputs(plain.config, 3), torch.float32)
    assert plain(**x).margins.shape == (3,)


def test_gamma_po_loss_module_load_state_dict_rejects_a_different_queue_size():
    small = T.GammaPOLoss(CFG.replace(queue_size=8))
    with pytest.raises(StateError, match="state holds 8 slots but queue_size is") as info:
        T.GammaPOLoss(CFG).load_state_dict(small.state_dict())
    assert info.value.field == "queue_size"
