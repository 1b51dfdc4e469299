"""init_state / calibrate_step: the queue's semantics, its portable RNG, and bit-exact save/restore."""

from __future__ import annotations

import collections

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from gammapo_spec import (
    GammaPOConfig,
    InputError,
    QueueState,
    StateError,
    calibrate_margins,
    calibrate_step,
    init_state,
    state_from_dict,
    state_to_dict,
)
from gammapo_spec.random import STREAM_SAMPLE, hash32, warmup_normals
from gammapo_spec.state import sample_slots


def py_hash32(x: int) -> int:
    """hash32 written again with Python ints, from the module docstring."""
    m = 0xFFFFFFFF
    x &= m
    x ^= x >> 16
    x = (x * 0x7FEB352D) & m
    x ^= x >> 15
    x = (x * 0x2C1B3C6D) & m
    x ^= x >> 12
    x = (x * 0x297A2D39) & m
    x ^= x >> 15
    return x


def py_sample(seed: int, step: int, size: int, capacity: int, count: int) -> list[int]:
    key = py_hash32(py_hash32(seed ^ STREAM_SAMPLE) ^ step)
    keys = [(py_hash32((key + i) & 0xFFFFFFFF), i) for i in range(capacity)]
    return [i for _, i in sorted(k for k in keys if k[1] < size)][:count]


def cfg(**kw) -> GammaPOConfig:
    base = dict(loss="gamma-simpo", beta=2.0, gamma_beta_ratio=0.5, tau=5.0, calibration="queue",
                queue_size=16, sample_size=10, queue_warmup=0)
    base.update(kw)
    return GammaPOConfig(**base)


@given(st.integers(0, 2**32 - 1))
def test_hash32_matches_python_int_implementation(x):
    assert int(hash32(x)) == py_hash32(x)


def test_hash32_is_a_bijection_on_a_block():
    xs = np.arange(1 << 16, dtype=np.uint64) * 65537
    assert np.unique(hash32(xs)).size == xs.size


def test_init_state_none_without_queue_calibration():
    assert init_state(cfg(calibration="batch")) is None
    assert init_state(cfg(loss="simpo")) is None


def test_init_state_warmup_draws_are_standard_normal():
    z = warmup_normals(seed=123, count=4000)
    assert abs(z.mean()) < 0.08 and abs(z.std() - 1.0) < 0.05
    state = init_state(cfg(queue_size=16, queue_warmup=8), seed=5)
    np.testing.assert_array_equal(state.buffer[:8], warmup_normals(5, 8))
    assert (state.size, state.head, state.step, state.seed) == (8, 8, 0, 5)
    assert np.all(state.buffer[8:] == 0)


@pytest.mark.parametrize("seed", [-1, 2**32, 1.5, True, "0"])
def test_init_state_rejects_bad_seed(seed):
    with pytest.raises(StateError) as info:
        init_state(cfg(), seed=seed)
    assert info.value.field == "seed"


@given(seed=st.integers(0, 2**32 - 1), step=st.integers(0, 10**6), size=st.integers(0, 32),
       count=st.integers(0, 32))
def test_sample_slots_matches_independent_python_sampler(seed, step, size, count):
    count = min(count, size)
    state = QueueState(buffer=np.zeros(32), size=size, head=size % 32, step=step, seed=seed)
    assert sample_slots(state, count).tolist() == py_sample(seed, step, size, 32, count)


def test_sample_slots_is_roughly_uniform():
    counts = np.zeros(20)
    for step in range(3000):
        state = QueueState(buffer=np.zeros(20), size=20, head=0, step=step, seed=9)
        counts[sample_slots(state, 5)] += 1
    expected = 3000 * 5 / 20
    chi2 = float(np.sum((counts - expected) ** 2 / expected))
    assert chi2 < 50.0, f"slot frequencies far from uniform (χ² = {chi2:.1f}, 19 dof)"


class ReferenceQueue:
    """An independent model of the queue: a deque of the most recent gaps plus slot bookkeeping."""

    def __init__(self, capacity: int, seed: int):
        self.capacity, self.seed, self.step = capacity, seed, 0
        self.slots = [0.0] * capacity
        self.head = self.size = 0
        self.history: collections.deque = collections.deque(maxlen=capacity)

    def step_once(self, config: GammaPOConfig, gaps: list[float]) -> np.ndarray:
        n = len(gaps)
        count = min(self.size, max(config.sample_size - n, 0))
        idx = py_sample(self.seed, self.step, self.size, self.capacity, count)
        calib = [self.slots[i] for i in idx] + list(gaps)
        gamma = calibrate_margins(calib, gamma0=config.gamma0, tau=config.tau)[count:]
        for g in gaps:  # pushed after calibrating
            self.slots[self.head] = g
            self.head = (self.head + 1) % self.capacity
            self.history.append(g)
        self.size = min(self.size + n, self.capacity)
        self.step += 1
        return gamma


@given(batches=st.lists(st.lists(st.floats(-5, 5), min_size=1, max_size=12), min_size=1, max_size=8),
       seed=st.integers(0, 2**32 - 1))
def test_calibrate_step_queue_matches_independent_model(batches, seed):
    config = cfg()
    state = init_state(config, seed=seed)
    model = ReferenceQueue(config.queue_size, seed)
    for gaps in batches:
        gamma, state = calibrate_step(config, state, gaps)
        np.testing.assert_allclose(gamma, model.step_once(config, gaps), rtol=1e-12, atol=1e-13)
        assert (state.size, state.head, state.step) == (model.size, model.head, model.step)
        np.testing.assert_array_equal(state.buffer, np.array(model.slots))
        # FIFO content: the valid slots hold exactly the most recent `size` gaps.
        assert sorted(state.buffer[: state.size].tolist()) == sorted(model.history)


def test_calibrate_step_pushes_after_sampling():
    config = cfg(queue_size=8, sample_size=8)
    state = init_state(config, seed=0)
    gamma, state = calibrate_step(config, state, [1.0, -1.0])
    # First step: empty queue, so the calibration set is just the current gaps.
    np.testing.assert_allclose(gamma, calibrate_margins([1.0, -1.0], gamma0=config.gamma0, tau=config.tau))


def test_calibrate_step_large_batch_uses_no_samples_and_keeps_last_gaps():
    config = cfg(queue_size=4, sample_size=3)
    state = init_state(config, seed=0)
    gaps = np.arange(10.0)
    gamma, state = calibrate_step(config, state, gaps)
    np.testing.assert_allclose(gamma, calibrate_margins(gaps, gamma0=config.gamma0, tau=config.tau))
    assert sorted(state.buffer.tolist()) == [6.0, 7.0, 8.0, 9.0]
    assert (state.size, state.head) == (4, 10 % 4)


def test_calibrate_step_batch_mode_needs_no_state():
    config = cfg(calibration="batch")
    gamma, state = calibrate_step(config, None, [2.0, 0.0])
    assert state is None
    np.testing.assert_allclose(gamma, calibrate_margins([2.0, 0.0], gamma0=config.gamma0, tau=config.tau))


@pytest.mark.parametrize(
    "config,state,field",
    [
        (cfg(), None, "state"),
        (cfg(calibration="batch"), "x", "state"),
        (cfg(), QueueState(buffer=np.zeros(3), size=0, head=0, step=0, seed=0), "queue_size"),
    ],
)
def test_calibrate_step_rejects_state_that_does_not_fit(config, state, field):
    with pytest.raises(StateError) as info:
        calibrate_step(config, state, [1.0])
    assert info.value.field == field


def test_calibrate_step_rejects_nonfinite_gaps():
    config = cfg()
    with pytest.raises(InputError) as info:
        calibrate_step(config, init_state(config), [1.0, np.nan])
    assert info.value.field == "gaps"


def test_state_round_trips_bit_for_bit_through_npz(tmp_path):
    config = cfg(queue_size=32, sample_size=16, queue_warmup=8)
    rng = np.random.default_rng(0)
    batches = [rng.normal(size=6) * 3 for _ in range(12)]

    state = init_state(config, seed=42)
    uninterrupted = []
    for gaps in batches:
        gamma, state = calibrate_step(config, state, gaps)
        uninterrupted.append(gamma)

    state = init_state(config, seed=42)
    resumed = []
    for i, gaps in enumerate(batches):
        if i == 5:  # checkpoint, throw the object away, restore
            np.savez(tmp_path / "state.npz", **state_to_dict(state))
            state = state_from_dict(dict(np.load(tmp_path / "state.npz")))
        gamma, state = calibrate_step(config, state, gaps)
        resumed.append(gamma)
    for a, b in zip(uninterrupted, resumed):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize(
    "change,field",
    [
        ({"size": 99}, "size"),
        ({"head": -1}, "head"),
        ({"step": -1}, "step"),
        ({"seed": 2**33}, "seed"),
        ({"buffer": np.zeros((2, 2))}, "buffer"),
    ],
)
def test_state_from_dict_rejects_malformed(change, field):
    data = init_state(cfg(), seed=0).to_dict()
    data.update(change)
    with pytest.raises(StateError) as info:
        QueueState.from_dict(data)
    assert info.value.field == field


def test_state_from_dict_names_missing_key():
    data = init_state(cfg(), seed=0).to_dict()
    del data["head"]
    with pytest.raises(StateError) as info:
        QueueState.from_dict(data)
    assert info.value.field == "head"
