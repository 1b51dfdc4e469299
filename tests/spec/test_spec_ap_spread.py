"""The authors' explicit margin, max − min over every scored response of a prompt: fixed values, a plain
Python calculation on ragged score lists, its relation to the pair's gap, and the errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gammapo_spec.alignment_potential import alignment_potential, explicit_margin, explicit_margin_spread
from gammapo_spec.errors import InputError

SCORES = st.lists(st.lists(st.floats(-100, 100, allow_nan=False), min_size=2, max_size=6), min_size=1, max_size=30)


def _padded(rows):
    k = max(len(r) for r in rows)
    return np.array([r + [math.nan] * (k - len(r)) for r in rows])


def test_fixed_values():
    nan = float("nan")
    got = explicit_margin_spread([[8.0, 6.5, 3.0, nan], [7.0, 7.5, 2.0, 5.0], [nan, 4.0, nan, 4.0]])
    assert got.tolist() == [5.0, 5.5, 0.0]


@settings(max_examples=100, deadline=None)
@given(rows=SCORES)
def test_equals_max_minus_min_of_each_ragged_row(rows):
    want = [max(r) - min(r) for r in rows]
    np.testing.assert_array_equal(explicit_margin_spread(_padded(rows)), want)


@settings(max_examples=100, deadline=None)
@given(rows=SCORES, data=st.data())
def test_spread_bounds_the_gap_of_any_pair_from_the_row(rows, data):
    w = [data.draw(st.integers(0, len(r) - 1)) for r in rows]
    lo = [data.draw(st.integers(0, len(r) - 1)) for r in rows]
    gap = explicit_margin([r[i] for r, i in zip(rows, w)], [r[i] for r, i in zip(rows, lo)])
    assert np.all(explicit_margin_spread(_padded(rows)) >= np.abs(gap))


def test_best_and_worst_pair_gives_the_same_alignment_potential():
    rows = [[8.0, 6.5, 3.0], [7.0, 7.5, 2.0], [1.0, 9.0, 4.0]]
    im = np.array([0.3, 0.1, 0.7])
    gap = explicit_margin([max(r) for r in rows], [min(r) for r in rows])
    np.testing.assert_array_equal(alignment_potential(explicit_margin_spread(rows), im), alignment_potential(gap, im))


@pytest.mark.parametrize("scores,msg", [
    ([1.0, 2.0], "2-D"),
    (np.zeros((0, 3)), "2-D"),
    ([[1.0, float("inf")]], "infinite"),
    ([[1.0, float("nan")], [1.0, 2.0]], "at least two"),
])
def test_errors_name_the_field(scores, msg):
    with pytest.raises(InputError, match=msg) as info:
        explicit_margin_spread(scores)
    assert info.value.field == "scores"
