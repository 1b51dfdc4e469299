"""The benchmark baseline (benchmarks/released_baseline.py) is faithful arithmetic: its margins are the spec's."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from benchmarks.released_baseline import released_calibrate, released_init_queue, released_mirror
from gammapo_spec.calibration import mirror_margins


@pytest.mark.parametrize("m", [1, 3, 64, 256, 1024])
@pytest.mark.parametrize("gamma0, tau", [(1.0, 1.0), (4.0, 10.0), (3.0, 3.0), (0.375, 0.3), (0.0, 2.0)])
def test_released_calibrate_batch_mode_equals_spec_mirror_margins(m, gamma0, tau):
    h = np.random.default_rng(m).normal(scale=2.0, size=m)
    got = released_calibrate(torch.tensor(h), None, gamma0=gamma0, tau=tau)
    want = mirror_margins(h, gamma0=gamma0, tau=tau, iters=20)
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-12, atol=1e-12,
                               err_msg=f"baseline vs spec mirror, M={m}, gamma0={gamma0}, tau={tau}")


@pytest.mark.parametrize("iters", [1, 2, 5])
def test_released_mirror_returns_gamma_before_the_last_update_like_the_spec(iters):
    h = np.array([3.0, -2.0, 0.5, 1.0])
    got = released_mirror(torch.tensor(h), gamma0=2.0, tau=1.0, iters=iters)
    np.testing.assert_allclose(got.numpy(), mirror_margins(h, gamma0=2.0, tau=1.0, iters=iters), rtol=1e-13)


class RecordingRandom(random.Random):
    """A ``random.Random`` that remembers what ``sample`` returned."""

    def sample(self, population, k, **kwargs):
        self.last = super().sample(population, k, **kwargs)
        return self.last


def test_released_calibrate_queue_mode_calibrates_on_sampled_then_current_and_pushes():
    rng = RecordingRandom(7)
    queue = released_init_queue(rng=rng)
    assert len(queue) == 8
    for step in range(5):
        h = np.random.default_rng(step).normal(size=6)
        before = list(queue)
        got = released_calibrate(torch.tensor(h), queue, gamma0=2.0, tau=3.0, sample_size=16, capacity=20, rng=rng)
        count = min(len(before), 16 - 6)
        assert len(rng.last) == count and all(v in before for v in rng.last)
        want = mirror_margins(np.concatenate([rng.last, h]), gamma0=2.0, tau=3.0)[count:]
        np.testing.assert_allclose(got.numpy(), want, rtol=1e-12, atol=1e-12, err_msg=f"step {step}")
        assert queue == (before + h.tolist())[-20:], f"FIFO push/trim wrong at step {step}"


def test_released_calibrate_reads_the_gaps_back_to_the_host_once_per_step(monkeypatch):
    """The baseline really pays the device→host copy the released code pays (one ``tolist`` per step)."""
    calls = []
    original = torch.Tensor.tolist

    def recorder(self):
        calls.append(self.shape)
        return original(self)

    monkeypatch.setattr(torch.Tensor, "tolist", recorder)
    queue = released_init_queue(rng=random.Random(0))
    released_calibrate(torch.randn(4), queue, gamma0=1.0, tau=1.0, rng=random.Random(0))
    assert calls == [torch.Size([4])]
    released_calibrate(torch.randn(4), None, gamma0=1.0, tau=1.0)
    assert len(calls) == 1, "batch mode needs no host copy"
