"""Queue state on tensors: hash, init_state, calibrate_step transitions, checkpoints, errors."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import gammapo_spec as R
import gammapo_torch as T
from gammapo_spec.random import STREAM_SAMPLE, hash32 as ref_hash32, slot_keys as ref_slot_keys, stream_key as ref_stream_key
from gammapo_spec.state import sample_slots
from gammapo_torch._hash import hash32, slot_keys, stream_key
from gammapo_torch._state import sample_candidates
from _torch_helpers import assert_same_error, close


def cfg(**kw) -> R.GammaPOConfig:
    base = dict(loss="gamma-simpo", beta=2.0, gamma_beta_ratio=0.5, tau=5.0, calibration="queue",
                queue_size=16, sample_size=10, queue_warmup=0)
    base.update(kw)
    return R.GammaPOConfig(**base)


def assert_state_equal(torch_state, ref_state, what: str, atol: float = 0.0) -> None:
    d = T.state_to_dict(torch_state)
    r = ref_state.to_dict()
    for key in ("size", "head", "step", "seed"):
        assert d[key] == r[key], f"{what}: {key} torch={d[key]} reference={r[key]}"
    close(d["buffer"], r["buffer"], 0.0, atol, f"{what}: buffer")


@given(st.lists(st.integers(0, 2**32 - 1), min_size=1, max_size=50))
def test_hash32_matches_reference_bit_for_bit(values):
    got = hash32(torch.tensor(values, dtype=torch.int64)).tolist()
    assert got == [int(v) for v in ref_hash32(np.array(values, dtype=np.uint64))]


@given(seed=st.integers(0, 2**32 - 1), step=st.integers(0, 2**40), n=st.integers(1, 64))
def test_slot_keys_match_reference(seed, step, n):
    key = stream_key(torch.tensor(seed), STREAM_SAMPLE, torch.tensor(step))
    assert int(key) == ref_stream_key(seed, STREAM_SAMPLE, step & 0xFFFFFFFF)
    assert slot_keys(key, n).tolist() == [int(v) for v in ref_slot_keys(int(key), n)]


@given(seed=st.integers(0, 2**32 - 1), step=st.integers(0, 1000), size=st.integers(0, 32), k=st.integers(0, 32))
def test_sample_candidates_first_count_are_the_reference_sample(seed, step, size, k):
    ref = R.QueueState(buffer=np.zeros(32), size=size, head=size % 32, step=step, seed=seed)
    state = T.state_from_dict(ref.to_dict())
    slots, count = sample_candidates(state, k)
    assert int(count) == min(size, k)
    assert slots[: int(count)].tolist() == sample_slots(ref, min(size, k)).tolist()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_init_state_matches_reference(dtype):
    c = cfg(queue_size=32, queue_warmup=8)
    state = T.init_state(c, seed=123, dtype=dtype)
    assert state.buffer.dtype == dtype and all(t.dtype == torch.int64 and t.dim() == 0 for t in state[1:])
    assert_state_equal(state, R.init_state(c, seed=123), "init", atol=0.0 if dtype == torch.float64 else 1e-6)


def test_init_state_default_is_float32_and_none_when_stateless():
    assert T.init_state(cfg()).buffer.dtype == torch.float32
    assert T.init_state(cfg(calibration="batch")) is None
    assert T.init_state(cfg(loss="simpo")) is None


@pytest.mark.parametrize("seed", [-1, 2**32, 1.5, True, "0"])
def test_init_state_bad_seed_matches_reference(seed):
    assert_same_error(lambda: R.init_state(cfg(), seed=seed), lambda: T.init_state(cfg(), seed=seed))


@given(
    sizes=st.lists(st.integers(1, 24), min_size=1, max_size=10),
    queue_size=st.integers(1, 40),
    sample_size=st.integers(1, 48),
    warmup=st.integers(0, 8),
    seed=st.integers(0, 2**32 - 1),
)
def test_calibrate_step_sequence_matches_reference_float64(sizes, queue_size, sample_size, warmup, seed):
    """Several steps: sampled sets, margins, pushes and wrap-around equal the reference's."""
    c = cfg(queue_size=queue_size, sample_size=sample_size, queue_warmup=min(warmup, queue_size))
    ref, state = R.init_state(c, seed=seed), T.init_state(c, seed=seed, dtype=torch.float64)
    rng = np.random.default_rng(seed % 1000)
    for i, n in enumerate(sizes):
        h = rng.normal(scale=2.0, size=n)
        g_ref, ref = R.calibrate_step(c, ref, h)
        g, state = T.calibrate_step(c, state, torch.tensor(h))
        close(g, g_ref, 1e-10, 1e-10, f"margins at step {i}")
        assert_state_equal(state, ref, f"state after step {i}")


def test_calibrate_step_wraps_around_and_keeps_last_capacity_gaps():
    c = cfg(queue_size=5, sample_size=8)
    state = T.init_state(c, dtype=torch.float64)
    _, state = T.calibrate_step(c, state, torch.arange(1.0, 4.0, dtype=torch.float64))  # 3 gaps
    _, state = T.calibrate_step(c, state, torch.arange(4.0, 8.0, dtype=torch.float64))  # 4 more: wraps
    d = T.state_to_dict(state)
    assert d["buffer"].tolist() == [6.0, 7.0, 3.0, 4.0, 5.0] and (d["size"], d["head"], d["step"]) == (5, 2, 2)
    _, state = T.calibrate_step(c, state, torch.arange(10.0, 17.0, dtype=torch.float64))  # n > capacity
    d = T.state_to_dict(state)
    # j = 0..6 write slots 2,3,4,0,1,2,3: the last five (12..16) survive in slots 4,0,1,2,3
    assert d["buffer"].tolist() == [13.0, 14.0, 15.0, 16.0, 12.0] and d["head"] == 4


def test_calibrate_step_float32_state_and_float64_gaps_promote_the_buffer():
    c = cfg(queue_warmup=4)
    state = T.init_state(c)
    _, s64 = T.calibrate_step(c, state, torch.zeros(3, dtype=torch.float64))
    _, s32 = T.calibrate_step(c, state, torch.zeros(3, dtype=torch.bfloat16))
    assert s64.buffer.dtype == torch.float64 and s32.buffer.dtype == torch.float32


def test_calibrate_step_batch_mode_is_calibrate_margins():
    c = cfg(calibration="batch")
    h = torch.linspace(-2, 2, 9, dtype=torch.float64)
    g, state = T.calibrate_step(c, None, h)
    assert state is None
    close(g, R.calibrate_margins(h.numpy(), gamma0=c.gamma0, tau=c.tau), 1e-13, 1e-13, "batch mode")


def test_calibrate_step_exact_solver_in_queue_mode():
    c = cfg(solver="exact", queue_warmup=8, tau=0.3)
    ref, state = R.init_state(c, seed=5), T.init_state(c, seed=5, dtype=torch.float64)
    for i, n in enumerate([3, 4, 9]):
        h = np.linspace(-1, 2, n)
        g_ref, ref = R.calibrate_step(c, ref, h)
        g, state = T.calibrate_step(c, state, torch.tensor(h))
        close(g, g_ref, 1e-10, 1e-10, f"exact margins at step {i}")


def test_state_dict_roundtrip_through_torch_save_resumes_bit_for_bit():
    """Run K steps; checkpoint after 3 with torch.save(state_to_dict); resume; margins equal exactly."""
    c = cfg(queue_size=24, sample_size=16, queue_warmup=8)
    batches = [torch.tensor(np.random.default_rng(i).normal(size=6), dtype=torch.float32) for i in range(8)]

    state = T.init_state(c, seed=9)
    straight = []
    for h in batches:
        g, state = T.calibrate_step(c, state, h)
        straight.append(g)

    state = T.init_state(c, seed=9)
    for h in batches[:3]:
        _, state = T.calibrate_step(c, state, h)
    blob = io.BytesIO()
    torch.save(T.state_to_dict(state), blob)
    del state
    blob.seek(0)
    state = T.state_from_dict(torch.load(blob, weights_only=True))
    for i, h in enumerate(batches[3:], start=3):
        g, state = T.calibrate_step(c, state, h)
        assert torch.equal(g, straight[i]), f"resumed margins differ at step {i}"


def test_state_from_dict_accepts_the_reference_dict_and_round_trips():
    ref = R.init_state(cfg(queue_warmup=8), seed=3)
    state = T.state_from_dict(ref.to_dict())
    assert state.buffer.dtype == torch.float64
    assert_state_equal(state, ref, "from reference dict")
    again = T.state_from_dict(T.state_to_dict(state))
    assert all(torch.equal(a, b) for a, b in zip(again, state))
    assert T.state_to_dict(None) is None and T.state_from_dict(None) is None


BAD_DICTS = [
    {"size": 0, "head": 0, "step": 0, "seed": 0},
    {"buffer": np.zeros(4), "head": 0, "step": 0, "seed": 0},
    {"buffer": np.zeros((2, 2)), "size": 0, "head": 0, "step": 0, "seed": 0},
    {"buffer": np.zeros(0), "size": 0, "head": 0, "step": 0, "seed": 0},
    {"buffer": np.zeros(4), "size": 5, "head": 0, "step": 0, "seed": 0},
    {"buffer": np.zeros(4), "size": 1, "head": 4, "step": 0, "seed": 0},
    {"buffer": np.zeros(4), "size": 1, "head": 1, "step": -1, "seed": 0},
    {"buffer": np.zeros(4), "size": 1, "head": 1, "step": 0, "seed": 2**32},
]


@pytest.mark.parametrize("data", BAD_DICTS, ids=range(len(BAD_DICTS)))
def test_state_from_dict_errors_match_reference(data):
    assert_same_error(lambda: R.state_from_dict(data), lambda: T.state_from_dict(data))


def test_calibrate_step_state_errors_match_reference():
    c = cfg()
    assert_same_error(lambda: R.calibrate_step(c, None, [1.0]), lambda: T.calibrate_step(c, None, torch.ones(1)))
    assert_same_error(lambda: R.calibrate_step(c, {"a": 1}, [1.0]), lambda: T.calibrate_step(c, {"a": 1}, torch.ones(1)))
    small = cfg(queue_size=8)
    assert_same_error(
        lambda: R.calibrate_step(c, R.init_state(small), [1.0]),
        lambda: T.calibrate_step(c, T.init_state(small), torch.ones(1)),
    )
    batch = cfg(calibration="batch")
    assert_same_error(
        lambda: R.calibrate_step(batch, R.init_state(c), [1.0]),
        lambda: T.calibrate_step(batch, T.init_state(c), torch.ones(1)),
    )


@pytest.mark.parametrize("gaps", [[], [[1.0]], [float("nan")], [1.0, float("inf")]], ids=["empty", "2-D", "nan", "inf"])
def test_calibrate_step_gap_errors_match_reference(gaps):
    c = cfg()
    assert_same_error(
        lambda: R.calibrate_step(c, R.init_state(c), gaps),
        lambda: T.calibrate_step(c, T.init_state(c), torch.tensor(gaps, dtype=torch.float64)),
    )
