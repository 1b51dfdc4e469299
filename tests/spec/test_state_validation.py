"""A queue state read from a checkpoint is untrusted input: every field is checked against the spec's
invariants, with ``StateError`` naming the field, before anything uses it."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import gammapo_spec as R
from gammapo_spec.errors import StateError
from gammapo_spec.state import STEP_LIMIT, QueueState, check_state, check_state_fields

CFG = R.GammaPOConfig(queue_size=16, sample_size=8, queue_warmup=8)


def good() -> dict:
    return R.state_to_dict(R.init_state(CFG, seed=3))


BAD = [
    ({"size": 10**9}, "size"),
    ({"size": -5}, "size"),
    ({"size": 3.7}, "size"),
    ({"size": "3"}, "size"),
    ({"size": 8.0}, "size"),  # a whole float is still not a count
    ({"size": True}, "size"),
    ({"size": np.array([8, 8])}, "size"),
    ({"head": -2000}, "head"),
    ({"head": 16}, "head"),
    ({"head": 3}, "head"),  # size 8 < 16 slots: the next write goes to slot 8
    ({"step": -5}, "step"),
    ({"step": 2**70}, "step"),
    ({"seed": 2**40}, "seed"),
    ({"seed": -1}, "seed"),
    ({"buffer": np.full(16, np.nan)}, "buffer"),
    ({"buffer": np.r_[np.zeros(15), np.inf]}, "buffer"),
    ({"buffer": np.arange(16)}, "buffer"),  # int64
    ({"buffer": np.zeros(16, dtype=np.complex128)}, "buffer"),
    ({"buffer": np.array(["a"] * 16)}, "buffer"),
    ({"buffer": np.zeros((4, 4))}, "buffer"),
    ({"buffer": np.zeros(0)}, "buffer"),
]


@pytest.mark.parametrize("change,field", BAD, ids=[f"{k}={v!r}"[:40] for c, _ in BAD for k, v in c.items()])
def test_state_from_dict_rejects_every_bad_field(change, field):
    with pytest.raises(StateError) as info:
        R.state_from_dict({**good(), **change})
    assert info.value.field == field
    assert field in str(info.value)


def test_state_from_dict_accepts_numpy_and_0dim_integers():
    data = good()
    data.update(size=np.int32(8), head=np.array(8, dtype=np.int64), step=np.uint64(5), seed=np.array(3))
    state = R.state_from_dict(data)
    assert (state.size, state.head, state.step, state.seed) == (8, 8, 5, 3)
    assert all(type(v) is int for v in (state.size, state.head, state.step, state.seed))


def test_state_from_dict_reads_float32_buffers_exactly():
    data = good()
    data["buffer"] = data["buffer"].astype(np.float32)
    assert np.array_equal(R.state_from_dict(data).buffer, data["buffer"].astype(np.float64))


def test_a_full_buffer_allows_any_head():
    data = dict(good(), size=16, head=5)
    assert R.state_from_dict(data).head == 5


def test_the_constructor_checks_ranges_too():
    with pytest.raises(StateError, match="size") as info:
        QueueState(buffer=np.zeros(16), size=10**9, head=0, step=0, seed=0)
    assert info.value.field == "size"
    with pytest.raises(StateError, match="step"):
        QueueState(buffer=np.zeros(16), size=16, head=0, step=STEP_LIMIT, seed=0)


@settings(max_examples=200, deadline=None)
@given(cap=st.integers(1, 40), size=st.integers(-3, 45), head=st.integers(-3, 45),
       step=st.integers(-2, 2**64), seed=st.integers(-2, 2**33))
def test_check_state_fields_is_exactly_the_invariants(cap, size, head, step, seed):
    ok = (0 <= size <= cap and 0 <= head < cap and 0 <= step < 2**63 and 0 <= seed < 2**32
          and (size == cap or head == size))
    if ok:
        check_state_fields(np.zeros(cap), size, head, step, seed, finite=True)
    else:
        with pytest.raises(StateError):
            check_state_fields(np.zeros(cap), size, head, step, seed, finite=True)


def test_every_reachable_state_passes_the_checks():
    cfg = R.GammaPOConfig(queue_size=5, sample_size=4, queue_warmup=2)
    state = R.init_state(cfg, seed=1)
    rng = np.random.default_rng(0)
    for _ in range(12):
        _, state = R.calibrate_step(cfg, state, rng.normal(size=int(rng.integers(1, 8))))
        again = R.state_from_dict(R.state_to_dict(state))
        assert (again.size, again.head, again.step) == (state.size, state.head, state.step)


def test_a_state_of_another_backend_is_named_by_its_backend():
    class QueueState:  # what a backend's state type looks like from here: same name, another package
        pass

    QueueState.__module__ = "gammapo_jax._state"
    with pytest.raises(StateError, match="a QueueState of gammapo_jax; convert it") as info:
        check_state(CFG, QueueState())
    assert info.value.field == "state"
