"""The uint32 hash of the JAX backend is bit-identical to gammapo_spec.random."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from gammapo_spec import random as ref
from hypothesis import given, settings
from hypothesis import strategies as st

from gammapo_jax import _hash

U32 = st.integers(min_value=0, max_value=2**32 - 1)


def test_hash32_matches_reference_on_edge_values():
    x = np.array([0, 1, 2, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFE, 0xFFFFFFFF], dtype=np.uint64)
    got = np.asarray(jax.jit(_hash.hash32)(jnp.asarray(x.astype(np.uint32))))
    np.testing.assert_array_equal(got.astype(np.uint64), ref.hash32(x))


@settings(max_examples=50, deadline=None)
@given(seed=U32, counter=U32)
def test_stream_key_and_slot_keys_match_reference(seed, counter):
    key = _hash.stream_key(jnp.uint32(seed), ref.STREAM_SAMPLE, jnp.uint32(counter))
    assert int(key) == ref.stream_key(seed, ref.STREAM_SAMPLE, counter)
    keys = np.asarray(_hash.slot_keys(key, 37)).astype(np.uint64)
    np.testing.assert_array_equal(keys, ref.slot_keys(int(key), 37))


def test_sample_keys_under_jit_with_traced_seed_and_step():
    f = jax.jit(lambda s, k: _hash.sample_keys(s, k, 64))
    for seed, step in [(0, 0), (7, 3), (2**32 - 1, 2**32 - 1)]:
        want = ref.slot_keys(ref.stream_key(seed, ref.STREAM_SAMPLE, step), 64)
        got = np.asarray(f(jnp.uint32(seed), jnp.uint32(step))).astype(np.uint64)
        np.testing.assert_array_equal(got, want, err_msg=f"seed={seed} step={step}")
