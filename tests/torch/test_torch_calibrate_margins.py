"""gammapo_torch.calibrate_margins against gammapo_spec.calibrate_margins: values, dtypes, errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import gammapo_spec as R
import gammapo_torch as T
from gammapo_torch._calibration import mirror_margins, normaliser_shift
from _torch_helpers import TOLERANCES, assert_same_error, close

gaps_st = st.lists(st.floats(-20, 20, allow_nan=False), min_size=1, max_size=300).map(np.array)


@given(h=gaps_st, gamma0=st.floats(0.0, 5.0), tau=st.floats(1.0, 30.0), iters=st.integers(1, 25))
def test_calibrate_margins_mirror_float64_matches_reference(h, gamma0, tau, iters):
    expected = R.calibrate_margins(h, gamma0=gamma0, tau=tau, iters=iters, solver="mirror")
    got = T.calibrate_margins(torch.tensor(h), gamma0=gamma0, tau=tau, iters=iters, solver="mirror")
    assert got.dtype == torch.float64 and got.shape == expected.shape
    close(got, expected, 1e-10, 1e-10, "mirror margins, float64, tau >= 1")


@given(h=gaps_st, gamma0=st.floats(0.1, 5.0), tau=st.floats(0.05, 1.0))
def test_calibrate_margins_mirror_small_tau_float64(h, gamma0, tau):
    # η = 1 for τ ≤ 0.5: the 19 un-converged updates amplify last-bit differences of exp/log/sum
    # order (measured: up to ~2e-11 at τ = 0.05), so the bound here is looser than for τ ≥ 1.
    expected = R.calibrate_margins(h, gamma0=gamma0, tau=tau, solver="mirror")
    close(T.calibrate_margins(torch.tensor(h), gamma0=gamma0, tau=tau, solver="mirror"), expected, 1e-8, 1e-8, "mirror, small tau")


@given(h=gaps_st, gamma0=st.floats(0.0, 5.0), tau=st.floats(0.05, 30.0))
def test_calibrate_margins_exact_float64_matches_reference(h, gamma0, tau):
    expected = R.calibrate_margins(h, gamma0=gamma0, tau=tau, solver="exact")
    got = T.calibrate_margins(torch.tensor(h), gamma0=gamma0, tau=tau, solver="exact")
    close(got, expected, 1e-10, 1e-10, "exact margins, float64")


@pytest.mark.parametrize("dtype_name", ["float32", "bfloat16"])
@pytest.mark.parametrize("solver", ["mirror", "exact"])
def test_calibrate_margins_low_precision_computes_in_float32(dtype_name, solver):
    dtype, rtol, atol = TOLERANCES[dtype_name]
    h = torch.tensor(np.random.default_rng(1).normal(scale=3.0, size=257), dtype=dtype)
    expected = R.calibrate_margins(h.to(torch.float64).numpy(), gamma0=4.0, tau=10.0, solver=solver)
    got = T.calibrate_margins(h, gamma0=4.0, tau=10.0, solver=solver)
    assert got.dtype == torch.float32, "half and float32 gaps calibrate and return in float32"
    close(got, expected, rtol, atol, f"{solver} margins from {dtype_name} gaps")


def test_calibrate_margins_mean_is_gamma0_and_detached():
    h = torch.linspace(-3, 3, 50, dtype=torch.float64, requires_grad=True)
    gamma = T.calibrate_margins(h, gamma0=1.5, tau=2.0, solver="mirror")
    assert not gamma.requires_grad, "margins are constants for the gradient"
    assert abs(float(gamma.mean()) - 1.5) < 1e-12 and bool((gamma >= 0).all())


def test_calibrate_margins_accepts_lists_like_the_reference():
    close(T.calibrate_margins([2.0, 0.5, -1.0], gamma0=1.0, tau=1.0, solver="mirror"),
          R.calibrate_margins([2.0, 0.5, -1.0], gamma0=1.0, tau=1.0, solver="mirror"), 1e-14, 1e-14, "list input")


def test_mirror_margins_masked_equals_unmasked_on_the_valid_slots():
    rng = np.random.default_rng(3)
    cand = torch.tensor(rng.normal(size=12))
    cur = torch.tensor(rng.normal(size=5))
    for count in (0, 1, 7, 12):
        z = torch.cat([cand, cur])
        got = mirror_margins(z, gamma0=2.0, tau=3.0, count=torch.tensor(count), n_candidates=12)
        ref = R.calibrate_margins(torch.cat([cand[:count], cur]).numpy(), gamma0=2.0, tau=3.0, solver="mirror")
        close(got[:count], ref[:count], 1e-13, 1e-13, f"valid candidates, count={count}")
        close(got[12:], ref[count:], 1e-13, 1e-13, f"current gaps, count={count}")
        assert bool((got[count:12] == 0).all()), "masked candidates get margin 0"


def _traced_mirror(**kwargs):
    """``mirror_margins`` as ``torch.compile`` traces it (``aot_eager``: the traced graph, run eagerly)."""
    return torch.compile(lambda z, c: mirror_margins(z, count=c, **kwargs), fullgraph=True, dynamic=False, backend="aot_eager")


@pytest.mark.parametrize("gamma0, tau", [(4.0, 10.0), (1.0, 0.3), (2.0, 3.0)])
@pytest.mark.parametrize("dtype_name", ["float64", "float32"])
def test_mirror_margins_compiled_matches_reference(gamma0, tau, dtype_name):
    dtype, rtol, atol = TOLERANCES[dtype_name]
    rng = np.random.default_rng(5)
    cand, cur = rng.normal(scale=3.0, size=40), rng.normal(scale=3.0, size=24)
    fn = _traced_mirror(gamma0=gamma0, tau=tau, n_candidates=40)
    for count in (0, 17, 40):
        got = fn(torch.tensor(np.concatenate([cand, cur]), dtype=dtype), torch.tensor(count))
        ref = R.calibrate_margins(np.concatenate([cand[:count], cur]), gamma0=gamma0, tau=tau, solver="mirror")
        close(got[40:], ref[count:], rtol, atol, f"compiled mirror, {dtype_name}, count={count}")
        close(got[:count], ref[:count], rtol, atol, f"compiled mirror candidates, {dtype_name}, count={count}")


def test_mirror_margins_compiled_float32_stays_finite_where_a_constant_shift_could_overflow():
    # η γ0 = 100 (τ = 0.5, γ0 = 100): the C++ kernel's constant shift could overflow float32 (so it has
    # none there and takes logsumexp); the shared solver's max-shifted logsumexp is safe at any η γ0
    assert normaliser_shift(256, 100.0, 0.5, torch.float32) is None
    assert normaliser_shift(256, 100.0, 0.5, torch.float64) is not None
    h = np.random.default_rng(2).normal(scale=50.0, size=32)
    got = _traced_mirror(gamma0=100.0, tau=0.5)(torch.tensor(h, dtype=torch.float32), None)
    ref = R.calibrate_margins(h, gamma0=100.0, tau=0.5, solver="mirror")
    assert bool(torch.isfinite(got).all()), "the compiled solver stays finite"
    close(got, ref, 1e-3, 1e-3 * 100.0, "compiled mirror, float32 (γ0 = 100)")


BAD_ARGS = [
    dict(gamma0=-1.0, tau=1.0),
    dict(gamma0=float("nan"), tau=1.0),
    dict(gamma0=1.0, tau=0.0),
    dict(gamma0=1.0, tau=-2.0),
    dict(gamma0=1.0, tau=float("inf")),
    dict(gamma0=1.0, tau=1.0, solver="newton"),
    dict(gamma0=1.0, tau=1.0, iters=0),
    dict(gamma0=1.0, tau=1.0, iters=2.5),
    dict(gamma0=True, tau=1.0),
]


@pytest.mark.parametrize("kwargs", BAD_ARGS, ids=lambda k: ",".join(f"{a}={b}" for a, b in k.items()))
def test_calibrate_margins_config_errors_match_reference(kwargs):
    assert_same_error(
        lambda: R.calibrate_margins([1.0, 2.0], **kwargs),
        lambda: T.calibrate_margins(torch.tensor([1.0, 2.0]), **kwargs),
    )


@pytest.mark.parametrize(
    "gaps",
    [[], [[1.0, 2.0]], 3.0, [1.0, float("nan")], [float("inf"), 0.0], [float("-inf")]],
    ids=["empty", "2-D", "0-D", "nan", "inf", "-inf"],
)
def test_calibrate_margins_input_errors_match_reference(gaps):
    assert_same_error(
        lambda: R.calibrate_margins(gaps, gamma0=1.0, tau=1.0, solver="mirror"),
        lambda: T.calibrate_margins(torch.tensor(gaps, dtype=torch.float64), gamma0=1.0, tau=1.0, solver="mirror"),
    )


def test_calibrate_margins_without_value_checks_propagates_nan():
    got = T.calibrate_margins(torch.tensor([1.0, float("nan")]), gamma0=1.0, tau=1.0, check_values=False, solver="mirror")
    ref = R.calibrate_margins([1.0, float("nan")], gamma0=1.0, tau=1.0, check_values=False, solver="mirror")
    assert np.isnan(ref).all() and bool(torch.isnan(got).all()), "NaN reaches every margin, as the reference"
