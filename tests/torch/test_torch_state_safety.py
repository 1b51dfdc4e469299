"""A tampered or hand-built queue state never reaches memory: ``load_state_dict``, ``state_from_dict``
and the CPU kernel refuse it with ``StateError`` naming the field (a subprocess shows the process
survives: a counter outside the buffer used to crash it with a segmentation fault)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

import gammapo_spec as R
import gammapo_torch as T
from gammapo_spec.errors import StateError
from gammapo_torch import _cpu_calibration

CFG = R.GammaPOConfig(loss="gamma-simpo", beta=2.0, gamma_beta_ratio=0.5, tau=1.0, queue_size=16, sample_size=8)
INPUTS = dict(chosen_logps=torch.tensor([-4.0, -8.0]), rejected_logps=torch.tensor([-9.0, -6.0]),
              chosen_lengths=torch.tensor([2, 4]), rejected_lengths=torch.tensor([3, 3]))

_CHILD = textwrap.dedent("""
    import sys, torch
    from gammapo.integrations.losses import GammaPOPairLoss, PairBatch
    from gammapo_spec import GammaPOConfig
    from gammapo_spec.errors import StateError
    cfg = GammaPOConfig(loss="gamma-simpo", beta=2.0, gamma_beta_ratio=0.5, tau=1.0, queue_size=16, sample_size=8,
                        solver=sys.argv[3])
    loss = GammaPOPairLoss(cfg)
    state = torch.load(sys.argv[1], weights_only=True)
    batch = PairBatch(torch.tensor([-4.0, -8.0]), torch.tensor([-9.0, -6.0]), torch.tensor([2, 4]), torch.tensor([3, 3]))
    try:
        if sys.argv[2] == "load":
            loss.load_state_dict(state)
        else:  # bypass load_state_dict: write the counters straight into the module's buffers
            for k, v in state.items():
                getattr(loss.inner, k.split(".")[-1]).copy_(v)
        loss(batch)
    except StateError as exc:
        print(f"StateError[{exc.field}]: {exc}")
        raise SystemExit(3)
    print("no error")
""")


@pytest.mark.skipif(_cpu_calibration.load() is None, reason="no C++ compiler: the CPU kernel is not built")
@pytest.mark.parametrize("field,value,path,solver", [
    ("size", 10**9, "load", "exact"),  # was a segmentation fault (rc 139)
    ("head", -2000, "raw", "mirror"),  # was an out-of-bounds heap write
    ("size", -5, "raw", "exact"),
])
def test_tampered_checkpoint_gives_state_error_not_a_crash(tmp_path, field, value, path, solver):
    good = T.GammaPOLoss(CFG)
    state = {f"inner.{k}": v for k, v in good.state_dict().items()}
    state[f"inner.queue_{field}"] = torch.tensor(value)
    torch.save(state, tmp_path / "gammapo_loss_state.pt")
    proc = subprocess.run([sys.executable, "-c", _CHILD, str(tmp_path / "gammapo_loss_state.pt"), path, solver],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 3, f"rc {proc.returncode} (139: segfault, 134: heap corruption)\n{proc.stderr[-2000:]}"
    assert f"StateError[{field}]" in proc.stdout if path == "load" else "StateError[" in proc.stdout


@pytest.mark.parametrize("change,field", [
    (dict(size=torch.tensor(10**9)), "size"), (dict(head=torch.tensor(-2000)), "head"),
    (dict(size=torch.tensor(3.7)), "size"), (dict(step=torch.tensor(-5)), "step"),
    (dict(seed=torch.tensor(2**40)), "seed"), (dict(buffer=torch.full((16,), float("nan"))), "buffer"),
    (dict(buffer=torch.arange(16)), "buffer"), (dict(buffer=torch.zeros(8), size=torch.tensor(8), head=torch.tensor(0)), "queue_size"),
    (dict(buffer=torch.zeros(16, dtype=torch.complex64)), "buffer"),
])
def test_load_state_dict_validates_every_field(change, field):
    loss = T.GammaPOLoss(CFG)
    before = {k: v.clone() for k, v in loss.state_dict().items()}
    data = {**loss.state_dict(), **{f"queue_{k}": v for k, v in change.items()}}
    with pytest.raises(StateError) as info:
        loss.load_state_dict(data)
    assert info.value.field == field
    for k, v in loss.state_dict().items():
        assert torch.equal(v, before[k]), f"{k} changed by a refused load"


def test_load_state_dict_names_a_missing_field():
    data = T.GammaPOLoss(CFG).state_dict()
    del data["queue_head"]
    with pytest.raises(StateError, match="lacks 'head'"):
        T.GammaPOLoss(CFG).load_state_dict(data)


@pytest.mark.parametrize("change,field", [
    ({"size": 3.7}, "size"), ({"size": "3"}, "size"), ({"seed": 2**40}, "seed"), ({"step": -5}, "step"),
    ({"step": 2**70}, "step"), ({"buffer": np.arange(16)}, "buffer"), ({"buffer": np.full(16, np.nan)}, "buffer"),
    ({"buffer": torch.arange(16)}, "buffer"), ({"size": torch.tensor(8.0)}, "size"),
])
def test_state_from_dict_same_error_as_the_reference(change, field):
    data = {**T.state_to_dict(T.init_state(CFG)), **change}
    with pytest.raises(StateError) as ours:
        T.state_from_dict(data)
    plain = {k: (v.numpy() if isinstance(v, torch.Tensor) else v) for k, v in data.items()}
    with pytest.raises(StateError) as ref:
        R.state_from_dict(plain)
    assert (ours.value.field, str(ours.value)) == (ref.value.field, str(ref.value)) and ours.value.field == field


def test_bfloat16_buffer_is_read():
    data = T.state_to_dict(T.init_state(CFG))
    data["buffer"] = data["buffer"].to(torch.bfloat16)
    assert T.state_from_dict(data).buffer.dtype == torch.float64


@pytest.mark.skipif(_cpu_calibration.load() is None, reason="no C++ compiler: the CPU kernel is not built")
@pytest.mark.parametrize("solver", ["exact", "mirror"])
def test_kernel_bounds_checks_a_hand_built_state(solver):
    cfg = CFG.replace(solver=solver)
    state = T.QueueState(torch.zeros(16), torch.tensor(10**8), torch.tensor(0), torch.tensor(0), torch.tensor(0))
    assert _cpu_calibration.takes_step(state.buffer, state[1:], torch.zeros(2))
    with pytest.raises(StateError, match="size must be in") as info:
        T.calibrate_step(cfg, state, torch.tensor([1.0, 2.0]))
    assert info.value.field == "size"


def test_a_state_of_another_backend_is_named():
    with pytest.raises(StateError, match="a QueueState of gammapo_spec"):
        T.calibrate_step(CFG, R.init_state(CFG), torch.tensor([1.0, 2.0]))
