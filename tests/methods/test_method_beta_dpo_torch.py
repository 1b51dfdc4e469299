"""gammapo_torch.beta_dpo matches gammapo_spec.beta_dpo: values, subset, state, gradients, errors."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import gammapo_spec.beta_dpo as spec  # noqa: E402
import gammapo_torch.beta_dpo as tb  # noqa: E402
from gammapo_spec import GammaPOError  # noqa: E402


def _batch(n, seed):
    rng = np.random.default_rng(seed)
    return [rng.normal(-30, 3, n) for _ in range(4)]


def _t(xs, dtype):
    return [torch.tensor(x, dtype=dtype) for x in xs]


@pytest.mark.parametrize(("dtype", "tol"), [(torch.float64, 1e-10), (torch.float32, 2e-5), (torch.bfloat16, 2e-5)])
@pytest.mark.parametrize("rho", [0.8, 0.5, 1.0])
def test_torch_steps_match_spec(dtype, tol, rho):
    s_state, t_state = spec.init_beta_dpo_state(17), tb.init_beta_dpo_state(17)
    for step in range(6):
        xs = _batch(16, step)
        ts = _t(xs, dtype)
        xs = [t.double().numpy() for t in ts]  # the spec sees the same (rounded) values
        so = spec.beta_dpo_step(s_state, *xs, beta0=0.1, alpha=0.6, rho=rho)
        to = tb.beta_dpo_step(t_state, *ts, beta0=0.1, alpha=0.6, rho=rho)
        assert to.loss.dtype == (torch.float64 if dtype == torch.float64 else torch.float32)
        assert to.mask.double().numpy().tolist() == so.mask.tolist(), step  # identical subset
        assert float(to.beta) == pytest.approx(so.beta, rel=1e-12)
        assert float(to.loss) == pytest.approx(so.loss, rel=tol, abs=tol)
        np.testing.assert_allclose(to.losses.double().numpy(), so.losses, rtol=tol, atol=tol)
        got = to.state.to_dict()
        want = so.state.to_dict()
        assert got["step"] == want["step"] and got["seed"] == want["seed"]
        assert got["gap_mean"] == pytest.approx(want["gap_mean"], rel=1e-12, abs=1e-14)
        assert got["gap_std"] == pytest.approx(want["gap_std"], rel=1e-12, abs=1e-14)
        s_state, t_state = so.state, to.state


def test_torch_subset_identical_given_same_state_many_states():
    rng = np.random.default_rng(1)
    for i in range(40):
        n = int(rng.integers(1, 50))
        st = spec.BetaDPOState(float(rng.normal()), float(rng.uniform(0, 3)), int(rng.integers(0, 2**40)), int(rng.integers(0, 2**32)))
        xs = _batch(n, 100 + i)
        r = float(rng.uniform(0.05, 1))
        so = spec.beta_dpo_step(st, *xs, rho=r)
        to = tb.beta_dpo_step(tb.BetaDPOState.from_dict(st.to_dict()), *_t(xs, torch.float64), rho=r)
        assert to.mask.numpy().tolist() == so.mask.tolist()


def test_torch_gradient_matches_spec_and_fd():
    xs = _batch(12, 4)
    ts = [t.requires_grad_() for t in _t(xs, torch.float64)]
    st = spec.BetaDPOState(0.3, 1.2, 5, 8)
    so = spec.beta_dpo_step(st, *xs, rho=0.5)
    to = tb.beta_dpo_step(tb.BetaDPOState.from_dict(st.to_dict()), *ts, rho=0.5)
    to.loss.backward()
    g = spec.masked_loss_grad(so.gaps, so.mask, so.beta)
    for t, sign in zip(ts, (1.0, -1.0, -1.0, 1.0)):
        np.testing.assert_allclose(t.grad.numpy(), sign * g, rtol=1e-10, atol=1e-12)
    # beta, mask and the new state carry no graph
    assert not to.beta.requires_grad and not to.mask.requires_grad and not to.state.gap_mean.requires_grad


def test_torch_state_round_trip_and_json():
    st = tb.init_beta_dpo_state(3)
    outs = []
    for i in range(4):
        if i == 2:
            st = tb.BetaDPOState.from_dict(json.loads(json.dumps(st.to_dict())))
        o = tb.beta_dpo_step(st, *_t(_batch(8, i), torch.float64))
        outs.append(o)
        st = o.state
    st2 = tb.init_beta_dpo_state(3)
    for i, o in enumerate(outs):
        o2 = tb.beta_dpo_step(st2, *_t(_batch(8, i), torch.float64))
        assert torch.equal(o2.mask, o.mask) and float(o2.loss) == float(o.loss)
        st2 = o2.state
    assert st2.to_dict() == st.to_dict()
    # the spec restores the torch state's dict and continues identically
    assert spec.BetaDPOState.from_dict(st.to_dict()) == st.to_spec()


def _err(fn):
    try:
        fn()
    except GammaPOError as e:
        return type(e), str(e), e.field
    raise AssertionError("no error")


@pytest.mark.parametrize("case", [
    {"beta0": 0.0}, {"rho": 0.0}, {"rho": 2.0}, {"momentum": 1.0}, {"alpha": float("nan")}, {"beta_min": -1.0},
])
def test_torch_config_errors_equal_spec(case):
    xs = _batch(4, 0)
    want = _err(lambda: spec.beta_dpo_step(spec.init_beta_dpo_state(), *xs, **case))
    got = _err(lambda: tb.beta_dpo_step(tb.init_beta_dpo_state(), *_t(xs, torch.float64), **case))
    assert got == want


def test_torch_input_errors_equal_spec():
    xs = _batch(4, 0)
    bad_shape = [xs[0], xs[1][:3], xs[2], xs[3]]
    bad_nan = [xs[0], xs[1], xs[2], np.array([0.0, np.nan, 0.0, 0.0])]
    bad_2d = [xs[0].reshape(2, 2), xs[1], xs[2], xs[3]]
    for bad in (bad_shape, bad_nan, bad_2d):
        want = _err(lambda: spec.beta_dpo_step(spec.init_beta_dpo_state(), *bad))
        got = _err(lambda: tb.beta_dpo_step(tb.init_beta_dpo_state(), *_t(bad, torch.float64)))
        assert got == want
    assert _err(lambda: tb.init_beta_dpo_state(-1)) == _err(lambda: spec.init_beta_dpo_state(-1))
    assert _err(lambda: tb.beta_dpo_step(spec.init_beta_dpo_state(), *_t(xs, torch.float64)))[2] == "state"


def test_torch_step_under_compile_has_no_graph_break():
    xs = _t(_batch(8, 2), torch.float32)

    def f(state, *a):
        o = tb.beta_dpo_step(state, *a, check_values=False)
        return o.loss, o.mask, o.state.gap_mean

    st = tb.init_beta_dpo_state(0)
    explain = torch._dynamo.explain(f)(st, *xs)
    assert explain.graph_break_count == 0
