"""The per-step path never leaves the device: no host reads in eager mode, no graph break under compile."""

from __future__ import annotations

import random

import torch
from torch._dynamo.testing import CompileCounterWithBackend

import gammapo_spec as R
import gammapo_torch as T

CFG = R.GammaPOConfig(loss="gamma-simpo", beta=2.0, gamma_beta_ratio=0.5, tau=3.0, queue_size=64,
                      sample_size=24, queue_warmup=8, check_values=False)


class HostReads:
    """Records every way a tensor's value can reach the host: ``.item()``, ``.tolist()``, ``.cpu()``,
    ``.numpy()``, ``bool/int/float(t)`` (patched on ``torch.Tensor``), and Python's ``random``."""

    METHODS = ("item", "tolist", "cpu", "numpy", "__bool__", "__int__", "__float__", "__index__")
    RANDOM = ("random", "sample", "shuffle", "randint", "choice")

    def __init__(self):
        self.reads: list[str] = []
        self._saved: list[tuple[object, str, object]] = []

    def _wrap(self, owner, name, label):
        original = getattr(owner, name)

        def recorder(*args, **kwargs):
            self.reads.append(label)
            return original(*args, **kwargs)

        self._saved.append((owner, name, original))
        setattr(owner, name, recorder)

    def __enter__(self):
        for name in self.METHODS:
            self._wrap(torch.Tensor, name, f"Tensor.{name}")
        for name in self.RANDOM:
            self._wrap(random, name, f"random.{name}")
        return self

    def __exit__(self, *exc):
        for owner, name, original in reversed(self._saved):
            setattr(owner, name, original)


def batch(n: int, seed: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return dict(
        chosen_logps=-torch.rand(n, generator=g) * 10 - 0.1,
        rejected_logps=-torch.rand(n, generator=g) * 10 - 0.1,
        chosen_lengths=torch.randint(1, 30, (n,), generator=g),
        rejected_lengths=torch.randint(1, 30, (n,), generator=g),
    )


def test_gamma_po_loss_queue_step_reads_nothing_back_to_the_host():
    state = T.init_state(CFG, seed=3)
    batches = [batch(6, step) for step in range(3)]
    with HostReads() as mode:
        for step in range(3):
            out, state = T.gamma_po_loss(CFG, state, **batches[step])
    assert mode.reads == [], f"the per-step path read values back to the host: {mode.reads}"
    # the detector works: value checks on cost exactly one read-back per call
    checked, inputs = CFG.replace(check_values=True), batch(6, 9)
    with HostReads() as mode:
        T.gamma_po_loss(checked, state, **inputs)
    assert mode.reads == ["Tensor.tolist"], f"value checks: one read-back expected, saw {mode.reads}"


def test_gamma_po_loss_compiles_fullgraph_without_graph_breaks_or_recompiles():
    """The whole loss step, queue calibration included, is one graph (dynamo, AOT autograd); its
    values equal the eager step's, and new counter values do not trigger a recompile."""
    config = CFG.replace(check_values=True)  # value checks are skipped while compiling

    def step(state, inputs):
        out, new_state = T.gamma_po_loss(config, state, **inputs)
        return out, new_state

    counter = CompileCounterWithBackend("aot_eager")
    compiled = torch.compile(step, fullgraph=True, backend=counter)
    eager_state = compiled_state = T.init_state(config, seed=5)
    for i in range(3):
        inputs = batch(6, i)
        inputs["chosen_logps"].requires_grad_(True)
        out_c, compiled_state = compiled(compiled_state, inputs)
        out_e, eager_state = step(eager_state, {k: v.detach() for k, v in inputs.items()})
        out_c.loss.backward()
        assert inputs["chosen_logps"].grad is not None
        torch.testing.assert_close(out_c.margins, out_e.margins, rtol=1e-6, atol=1e-6)
        torch.testing.assert_close(out_c.loss.detach(), out_e.loss, rtol=1e-6, atol=1e-6)
        for a, b in zip(compiled_state, eager_state):
            torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6)
        assert isinstance(out_c.metrics["margins/std"], torch.Tensor)
    assert counter.frame_count == 1, f"compiled {counter.frame_count} times, expected once"
