"""Device discipline of the torch training path, checked on CPU without a GPU.

Every op a training step runs (rewards and gaps, both calibration solvers in batch and queue mode, the
queue step, every per-pair loss, the loss step with its backward, the stateful module, the trainer's
pair loss and the fused loss's chunked log-probs) runs here on inputs that hold no data:

* ``meta`` tensors: any read of a value on the host (``.item()``, ``.tolist()``, ``bool(t)``, a
  data-dependent shape such as ``nonzero``) raises;
* ``FakeTensorMode`` tensors: a read of a value raises ``DataDependentOutputException`` (or
  ``DynamicOutputShapeException``). Where torch is built with CUDA they sit on a fake ``cuda`` device
  (no GPU needed), so a tensor created without the inputs' device lands on the CPU and mixing it in
  raises; the fused Triton kernel cannot launch on fake tensors and is turned off there
  (``GAMMAPO_DISABLE_TRITON=1``: the torch-ops path CUDA runs otherwise), and the backward passes run.
  A CPU-only build refuses fake CUDA tensors in some Python bindings (``~t``, ``t[idx]``), so there the
  fake tensors are CPU tensors (the compiled CPU kernel never takes a fake tensor) and the backward
  passes run on ``meta`` only (autograd on fake tensors aborts in a CPU-only build).

On top, :class:`DeviceLog` (a ``TorchDispatchMode``) sees every aten op of the call and records the
device of each tensor it takes or returns; the test fails if any is not the inputs' device, which also
catches CPU scalars created by mistake (which CUDA would accept silently, with a host-to-device copy).
The one documented host read of the fused loss (the number of scored tokens) is asserted as such.
"""

from __future__ import annotations

import contextlib

import pytest
import torch
from torch._subclasses.fake_tensor import FakeTensorMode
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

import gammapo_spec as R
import gammapo_torch as T
from gammapo_torch import _state
from gammapo_torch._fused_logps import chunked_row_logps
from gammapo_torch.fused_loss import fused_gamma_po_loss

QUEUE = R.GammaPOConfig(loss="gamma-simpo", beta=2.0, gamma_beta_ratio=0.5, tau=3.0, queue_size=64, sample_size=24,
                        queue_warmup=8, check_values=False)


class DeviceLog(TorchDispatchMode):
    """Records ``(op, device)`` of every tensor argument and result of every aten op while active."""

    def __init__(self):
        super().__init__()
        self.seen: list[tuple[str, str]] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_flatten((args, kwargs, out))[0]:
            if isinstance(t, torch.Tensor):
                self.seen.append((str(func), str(t.device)))
        return out

    def off_device(self, device: str) -> list[tuple[str, str]]:
        return sorted({(op, d) for op, d in self.seen if d != device})


class Place:
    """Where the inputs live: ``meta``, or fake tensors under ``FakeTensorMode`` (see the module docstring)."""

    def __init__(self, kind: str, monkeypatch):
        self.kind = kind
        cuda = torch.backends.cuda.is_built()
        self.device = "meta" if kind == "meta" else "cuda:0" if cuda else "cpu"
        self.mode = FakeTensorMode() if kind == "fake" else None
        self.grad = self.mode is None or cuda
        if self.mode is not None:
            monkeypatch.setenv("GAMMAPO_DISABLE_TRITON", "1")

    def tensor(self, real: torch.Tensor) -> torch.Tensor:
        if self.mode is None:
            return real.to("meta")
        with self.mode:  # a fake tensor of the same shape and dtype (values do not exist on a fake device)
            return torch.empty(real.shape, dtype=real.dtype, device=self.device)

    def state(self, config: R.GammaPOConfig, dtype=torch.float32) -> _state.QueueState:
        real = T.init_state(config, seed=3, dtype=dtype)
        return _state.QueueState(*(self.tensor(t) for t in real))

    @contextlib.contextmanager
    def running(self):
        """Inside: the fake mode (if any) and the device log; on exit, every tensor seen is on the device."""
        log = DeviceLog()
        with self.mode if self.mode is not None else contextlib.nullcontext(), log:
            yield log
        wrong = log.off_device(self.device)
        assert not wrong, f"ops saw tensors off {self.device}: {wrong[:8]}"
        assert log.seen, "the device log saw no op (the check would pass vacuously)"


@pytest.fixture(params=["meta", "fake"])
def place(request, monkeypatch):
    return Place(request.param, monkeypatch)


def batch(place: Place, n: int = 6, grad: bool = False) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(n)
    x = dict(
        chosen_logps=-torch.rand(n, generator=g) * 10 - 0.1,
        rejected_logps=-torch.rand(n, generator=g) * 10 - 0.1,
        ref_chosen_logps=-torch.rand(n, generator=g) * 10 - 0.1,
        ref_rejected_logps=-torch.rand(n, generator=g) * 10 - 0.1,
        chosen_lengths=torch.randint(1, 30, (n,), generator=g),
        rejected_lengths=torch.randint(1, 30, (n,), generator=g),
    )
    out = {k: place.tensor(v) for k, v in x.items()}
    if grad and place.grad:
        out["chosen_logps"].requires_grad_(True)
    return out


def inputs_for(config: R.GammaPOConfig, x: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    needed = R.validation.required_fields(config)
    return {k: v for k, v in x.items() if k in needed}


def on(place: Place, *tensors: torch.Tensor) -> None:
    for t in tensors:
        assert str(t.device) == place.device, f"result on {t.device}, inputs on {place.device}"


@pytest.mark.parametrize("loss", ["gamma-simpo", "gamma-dpo"])
def test_rewards_and_gap_stay_on_the_inputs_device(place, loss):
    config = R.GammaPOConfig(loss=loss, beta=2.0, check_values=False)
    x = inputs_for(config, batch(place))
    with place.running():
        h = T.reward_gap(config, **x)
        u_w, u_l = T.implicit_rewards(config, **x)
    on(place, h, u_w, u_l)


@pytest.mark.parametrize("solver", ["exact", "mirror"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_batch_calibration_stays_on_device_and_reads_nothing(place, solver, dtype):
    h = place.tensor(torch.randn(40, dtype=dtype))
    with place.running():
        gamma = T.calibrate_margins(h, gamma0=4.0, tau=10.0, solver=solver, check_values=False)
    on(place, gamma)
    assert gamma.shape == (40,) and gamma.dtype == dtype


@pytest.mark.parametrize("solver", ["exact", "mirror"])
def test_queue_step_stays_on_device_and_reads_nothing(place, solver):
    config = QUEUE.replace(solver=solver)
    state = place.state(config)
    h = place.tensor(torch.randn(6))
    with place.running():
        for _ in range(2):
            gamma, state = T.calibrate_step(config, state, h)
    on(place, gamma, *state)
    assert gamma.shape == (6,)


@pytest.mark.parametrize("loss", R.LOSS_NAMES)
def test_pair_losses_and_target_margins_stay_on_device(place, loss):
    config = R.GammaPOConfig(loss=loss, beta=0.5, check_values=False)
    z = place.tensor(torch.randn(7))
    lw, ll = place.tensor(torch.randint(1, 9, (7,))), place.tensor(torch.randint(1, 9, (7,)))
    gamma = place.tensor(torch.rand(7)) if config.dynamic_margins else None
    with place.running():
        losses = T.pair_losses(config, z)
        m = T.target_margins(config, 7, gamma=gamma, chosen_lengths=lw, rejected_lengths=ll)
    on(place, losses, m)


@pytest.mark.parametrize("solver", ["exact", "mirror"])
@pytest.mark.parametrize("loss", ["gamma-simpo", "gamma-dpo"])
def test_loss_step_and_backward_stay_on_device(place, solver, loss):
    config = QUEUE.replace(loss=loss, solver=solver)
    state = place.state(config)
    x = inputs_for(config, batch(place, grad=True))
    with place.running():
        out, state = T.gamma_po_loss(config, state, **x)
        if place.grad:
            out.loss.backward()
        fixed = T.loss_with_margins(config.replace(calibration="batch"), out.margins, **x)
    on(place, out.loss, out.losses, out.margins, *out.metrics.values(), *state, fixed.loss)
    if place.grad:
        on(place, x["chosen_logps"].grad)


def test_module_and_trainer_pair_loss_stay_on_device(place):
    from gammapo.integrations.losses import PairBatch, make_pair_loss

    pair_loss = make_pair_loss("gamma-simpo", beta=2.0, gamma_beta_ratio=0.5, tau=3.0, queue_size=64, sample_size=24,
                               check_values=False)
    with place.mode if place.mode is not None else contextlib.nullcontext():
        pair_loss = pair_loss.to(place.device) if place.mode is None else pair_loss._apply(place.tensor)
    x = batch(place, grad=True)
    pb = PairBatch(x["chosen_logps"], x["rejected_logps"], x["chosen_lengths"], x["rejected_lengths"])
    with place.running():
        out = pair_loss(pb)
        if place.grad:
            out.loss.backward()
    on(place, out.loss, *out.metrics.values(), *pair_loss.inner.state)


def test_fused_loss_chunked_logps_and_loss_stay_on_device(place):
    """The fused loss after its token selection: chunked log-probs forward and backward (pass 1 and 2),
    then the loss step on them, all on the device."""
    g = torch.Generator().manual_seed(0)
    rows, hidden, vocab, seqs = 20, 8, 33, 4
    x = place.tensor(torch.randn(rows, hidden, generator=g)).requires_grad_(place.grad)
    w = place.tensor(torch.randn(vocab, hidden, generator=g)).requires_grad_(place.grad)
    y = place.tensor(torch.randint(0, vocab, (rows,), generator=g))
    seq = place.tensor(torch.arange(rows) % seqs)
    lengths = place.tensor(torch.full((seqs // 2,), rows // seqs))
    state = place.state(QUEUE)
    with place.running():
        logps = chunked_row_logps(x, w, None, y, seq, seqs, 6)
        out, state = T.gamma_po_loss(QUEUE, state, chosen_logps=logps[:2], rejected_logps=logps[2:],
                                     chosen_lengths=lengths, rejected_lengths=lengths)
        if place.grad:
            out.loss.backward()
    on(place, logps, out.loss, *state)
    if place.grad:
        on(place, x.grad, w.grad)


def test_fused_loss_token_selection_is_its_one_documented_host_read(place):
    """``fused_gamma_po_loss`` selects the scored tokens with ``nonzero`` (a data-dependent shape: one
    host synchronisation on a GPU, stated in its docstring); nothing else stops it here."""
    h = place.tensor(torch.randn(2, 5, 8))
    w = place.tensor(torch.randn(11, 8))
    y = place.tensor(torch.randint(0, 11, (2, 5)))
    with pytest.raises(Exception) as info:  # meta: NotImplementedError; fake: DynamicOutputShapeException
        with place.mode if place.mode is not None else contextlib.nullcontext():
            fused_gamma_po_loss(QUEUE.replace(calibration="batch"), None, chosen_hidden=h, rejected_hidden=h,
                                weight=w, chosen_labels=y, rejected_labels=y)
    assert "nonzero" in repr(info.value) or "nonzero" in str(info.traceback[-1]) or any(
        "nonzero" in str(e.statement) for e in info.traceback), info.value


def test_value_checks_are_the_detected_host_read(place):
    """The detector works: ``check_values=True`` reads one answer back, which both modes refuse."""
    config = QUEUE.replace(check_values=True, calibration="batch")
    x = inputs_for(config, batch(place))
    with pytest.raises(Exception, match="(?i)meta|data.dependent|item|local_scalar_dense"):
        with place.mode if place.mode is not None else contextlib.nullcontext():
            T.gamma_po_loss(config, None, **x)


def test_the_device_log_catches_a_tensor_made_on_the_cpu(place):
    """The detector works: a CPU scalar mixed into a device computation is reported."""
    if place.device == "cpu":
        pytest.skip("fake CPU tensors (a CPU-only build): the CPU is the inputs' device here")
    h = place.tensor(torch.randn(4))
    with pytest.raises(AssertionError, match="off"):
        with place.running():
            (h * torch.tensor(2.0)).sum()
