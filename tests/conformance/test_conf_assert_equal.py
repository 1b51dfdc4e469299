"""gammapo_conformance.adapters.assert_equal: exact comparison with a short message, cheap on long arrays."""

import time

import numpy as np
import pytest

from gammapo_conformance.adapters import assert_equal


def test_assert_equal_passes_on_equal_arrays_and_lists():
    assert_equal(np.arange(5.0), [0.0, 1.0, 2.0, 3.0, 4.0], "ramp")
    assert_equal(np.zeros((2, 3)), np.zeros((2, 3)), "zeros")


def test_assert_equal_names_count_and_first_differences():
    want = np.ones(1024)
    got = want.copy()
    got[[3, 700]] = 0.0
    with pytest.raises(AssertionError) as info:
        assert_equal(got, want, "mask")
    msg = str(info.value)
    assert msg.startswith("mask: 2/1024 entries differ"), msg
    assert "[3]: 0.0 vs 1.0" in msg and "[700]: 0.0 vs 1.0" in msg, msg


def test_assert_equal_rejects_shape_mismatch():
    with pytest.raises(AssertionError, match=r"shape \(3,\) != reference \(4,\)"):
        assert_equal(np.zeros(3), np.zeros(4), "indices")


def test_assert_equal_message_is_short_and_fast_on_long_arrays():
    """A mismatch everywhere in 100k entries: the message stays one line of five entries (pytest's own
    list diff would be quadratic and, with CI set, untruncated)."""
    got, want = np.zeros(100_000), np.ones(100_000)
    t0 = time.perf_counter()
    with pytest.raises(AssertionError) as info:
        assert_equal(got, want, "big")
    assert time.perf_counter() - t0 < 1.0
    msg = str(info.value)
    assert "100000/100000" in msg and msg.count(" vs ") == 5 and len(msg) < 300, msg
