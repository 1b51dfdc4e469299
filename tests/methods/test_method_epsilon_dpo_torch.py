"""gammapo_torch.epsilon_dpo matches gammapo_spec.epsilon_dpo (values, gradients, errors, state, 2 gloo ranks)."""

from __future__ import annotations

import os

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import torch.distributed as dist  # noqa: E402
import torch.multiprocessing as mp  # noqa: E402

import gammapo_spec.epsilon_dpo as S  # noqa: E402
import gammapo_torch.epsilon_dpo as T  # noqa: E402
from gammapo_spec import GammaPOError  # noqa: E402


def _tokens(seed=0, B=3, Tn=9, V=13):
    rng = np.random.default_rng(seed)
    p = rng.normal(size=(B, Tn, V)) * 2
    q = p + rng.normal(size=(B, Tn, V))  # a reference near the policy, as in training
    y = rng.integers(0, V, size=(B, Tn))
    m = rng.random((B, Tn)) < 0.7
    m[:, 0] = True
    return p, q, y, m


@pytest.mark.parametrize("chunk", [1, 4, 9, 50, None])
@pytest.mark.parametrize(("dtype", "tol"), [(torch.float64, 1e-10), (torch.float32, 2e-5), (torch.bfloat16, 2e-5)])
def test_token_op_matches_spec(chunk, dtype, tol):
    p, q, y, m = _tokens()
    pt, qt = torch.tensor(p, dtype=dtype), torch.tensor(q, dtype=dtype)
    if dtype == torch.bfloat16:  # upcast: compare with the reference fed the same bf16-rounded logits
        p, q = pt.double().numpy(), qt.double().numpy()
    ref = S.epsilon_sequence_logps(p, q, y, m, epsilon=0.3)
    got = T.epsilon_sequence_logps(pt, qt, torch.tensor(y), torch.tensor(m), epsilon=0.3, chunk_size=chunk)
    for name, a, b in zip(ref._fields, ref, got):
        assert b.dtype == (torch.float64 if dtype == torch.float64 else torch.float32)
        np.testing.assert_allclose(b.detach().double().numpy(), a, rtol=tol, atol=tol, err_msg=name)


@pytest.mark.parametrize(("dtype", "tol"), [(torch.float64, 1e-10), (torch.float32, 2e-5)])
def test_token_op_gradient_matches_spec_and_naive(dtype, tol):
    p, q, y, m = _tokens(1)
    g = np.array([0.5, -1.5, 2.0])
    want = S.sequence_logps_vjp(p, y, m, g)
    grads = []
    for fn in (lambda *a, **k: T.epsilon_sequence_logps(*a, chunk_size=4, **k), T.naive_epsilon_sequence_logps):
        pt = torch.tensor(p, dtype=dtype, requires_grad=True)
        before = pt.detach().clone()
        out = fn(pt, torch.tensor(q, dtype=dtype), torch.tensor(y), torch.tensor(m), epsilon=0.2)
        assert not out.logps_plus.requires_grad and not out.logps_minus.requires_grad
        (out.logps * torch.tensor(g, dtype=out.logps.dtype)).sum().backward()
        assert torch.equal(pt.detach(), before)  # the backward must not touch the logits
        assert pt.grad.dtype == dtype
        np.testing.assert_allclose(pt.grad.double().numpy(), want, rtol=tol, atol=tol)
        grads.append(pt.grad)
    torch.testing.assert_close(grads[0], grads[1], rtol=tol, atol=tol)


def test_naive_equals_chunked_and_ignore_index():
    p, q, y, m = _tokens(2)
    yi = torch.tensor(np.where(m, y, -100))
    a = T.epsilon_sequence_logps(torch.tensor(p), torch.tensor(q), yi, epsilon=0.1, chunk_size=2)
    b = T.naive_epsilon_sequence_logps(torch.tensor(p), torch.tensor(q), torch.tensor(y), torch.tensor(m), epsilon=0.1)
    for u, v in zip(a, b):
        torch.testing.assert_close(u, v.detach(), rtol=1e-12, atol=1e-12)


def test_policy_equal_reference_gives_zero_steps():
    p, _, y, m = _tokens(3)
    for dtype in (torch.float64, torch.float32, torch.bfloat16):
        pt = torch.tensor(p, dtype=dtype)
        out = T.epsilon_sequence_logps(pt, pt.clone(), torch.tensor(y), torch.tensor(m), epsilon=0.4, chunk_size=3)
        torch.testing.assert_close(out.logps_plus, out.logps.detach(), rtol=0, atol=0)
        torch.testing.assert_close(out.logps_minus, out.logps.detach(), rtol=0, atol=0)


def _pairs(n=16, seed=4):
    rng = np.random.default_rng(seed)
    x = {k: -rng.uniform(1, 30, n) for k in ("c", "r", "c0", "r0")}
    x["cp"], x["rp"] = x["c"] + rng.normal(size=n), x["r"] + rng.normal(size=n)
    x["cm"], x["rm"] = x["c"] + rng.normal(size=n), x["r"] + rng.normal(size=n)
    return x


@pytest.mark.parametrize(("dtype", "tol"), [(torch.float64, 1e-10), (torch.float32, 2e-5)])
def test_pair_ops_match_spec(dtype, tol):
    x = _pairs()
    t = {k: torch.tensor(v, dtype=dtype) for k, v in x.items()}
    s_ref = S.epsilon_steps(x["c"], x["r"], x["cp"], x["rp"], x["cm"], x["rm"])
    s = T.epsilon_steps(t["c"], t["r"], t["cp"], t["rp"], t["cm"], t["rm"])
    assert s.dtype == torch.int64 and s.tolist() == s_ref.tolist() and set(s_ref.tolist()) == {-1, 0, 1}
    margins = np.linspace(-0.5, 0.5, 16)
    kw = dict(beta=0.7, epsilon=0.25, label_smoothing=0.1)
    ref = S.epsilon_dpo_loss(x["c"], x["r"], x["c0"], x["r0"], s_ref, margins=margins, **kw)
    grad = S.epsilon_dpo_grad(x["c"], x["r"], x["c0"], x["r0"], s_ref, margins=margins, **kw)
    c = t["c"].clone().requires_grad_(True)
    r = t["r"].clone().requires_grad_(True)
    out = T.epsilon_dpo_loss(c, r, t["c0"], t["r0"], s, margins=torch.tensor(margins, dtype=dtype), **kw)
    for name in ("losses", "betas", "gaps", "chosen_rewards", "rejected_rewards"):
        np.testing.assert_allclose(getattr(out, name).detach().double().numpy(), getattr(ref, name), rtol=tol, atol=tol,
                                   err_msg=name)
    assert float(out.loss.detach()) == pytest.approx(ref.loss, rel=tol, abs=tol)
    out.loss.backward()
    np.testing.assert_allclose(c.grad.double().numpy(), grad["chosen_logps"], rtol=tol, atol=tol)
    np.testing.assert_allclose(r.grad.double().numpy(), grad["rejected_logps"], rtol=tol, atol=tol)
    gaps = T.epsilon_dpo_gaps(t["c"], t["r"], t["c0"], t["r0"], s, beta=torch.tensor(0.7, dtype=torch.float64),
                              epsilon=0.25)
    np.testing.assert_allclose(gaps.double().numpy(), ref.gaps, rtol=tol, atol=tol)
    np.testing.assert_allclose(T.epsilon_betas(0.7, s, 0.25).numpy(), S.epsilon_betas(0.7, s_ref, 0.25), rtol=1e-15)


# --- identical errors -------------------------------------------------------------------------------------
def _same_error(spec_call, torch_call):
    with pytest.raises(GammaPOError) as a:
        spec_call()
    with pytest.raises(GammaPOError) as b:
        torch_call()
    assert type(a.value) is type(b.value) and str(a.value) == str(b.value) and a.value.field == b.value.field


TOKEN_CASES = [
    ({"ref_logits": np.zeros((2, 3, 5))}, {}),
    ({"policy_logits": np.zeros((2, 3))}, {}),
    ({"labels": np.zeros((2, 4), int)}, {}),
    ({"mask": np.ones((2, 4), bool)}, {}),
    ({"labels": np.full((2, 3), 4)}, {}),
    ({"labels": np.full((2, 3), -1)}, {}),
    ({"labels": np.zeros((2, 3))}, {}),
    ({"mask": np.array([[1, 1, 1], [0, 0, 0]])}, {}),
    ({"policy_logits": np.full((2, 3, 4), np.nan)}, {}),
    ({"ref_logits": np.full((2, 3, 4), np.inf)}, {}),
    ({}, {"epsilon": 1.0}),
    ({}, {"epsilon": 0.0}),
]


@pytest.mark.parametrize(("kw", "opt"), TOKEN_CASES)
def test_token_op_errors_identical(kw, opt):
    args = {"policy_logits": np.zeros((2, 3, 4)), "ref_logits": np.zeros((2, 3, 4)),
            "labels": np.zeros((2, 3), int), "mask": np.ones((2, 3), bool)}
    args.update(kw)
    if "ref_logits" not in kw and args["policy_logits"].shape != (2, 3, 4):
        args["ref_logits"] = args["policy_logits"]
    eps = opt.get("epsilon", 0.1)
    targs = {k: torch.as_tensor(v) for k, v in args.items()}
    _same_error(lambda: S.epsilon_sequence_logps(epsilon=eps, **args),
                lambda: T.epsilon_sequence_logps(epsilon=eps, **targs))


@pytest.mark.parametrize(
    "call",
    [
        lambda M: M.epsilon_steps([0.0, 1.0], [0.0], [0.0], [0.0], [0.0], [0.0]),
        lambda M: M.epsilon_steps([0.0], [0.0], [0.0], [0.0], [0.0], [float("nan")]),
        lambda M: M.epsilon_dpo_loss([0.0], [0.0], [0.0], [np.inf], [0], beta=1.0, epsilon=0.1),
        lambda M: M.epsilon_dpo_loss([0.0], [0.0], [0.0], [0.0], [2], beta=1.0, epsilon=0.1),
        lambda M: M.epsilon_dpo_loss([0.0], [0.0], [0.0], [0.0], [0, 0], beta=1.0, epsilon=0.1),
        lambda M: M.epsilon_dpo_loss([0.0], [0.0], [0.0], [0.0], [0], beta=1.0, epsilon=0.1, margins=[0.0, 1.0]),
        lambda M: M.epsilon_dpo_loss([], [], [], [], [], beta=1.0, epsilon=0.1),
        lambda M: M.epsilon_dpo_loss([[0.0]], [[0.0]], [[0.0]], [[0.0]], [0], beta=1.0, epsilon=0.1),
        lambda M: M.epsilon_dpo_loss([0.0], [0.0], [0.0], [0.0], [0], beta=0.0, epsilon=0.1),
        lambda M: M.epsilon_dpo_loss([0.0], [0.0], [0.0], [0.0], [0], beta=1.0, epsilon=0.1, label_smoothing=0.6),
        lambda M: M.epsilon_dpo_loss([0.0], None, [0.0], [0.0], [0], beta=1.0, epsilon=0.1),
        lambda M: M.epsilon_betas(-1.0, [0], 0.1),
        lambda M: M.epsilon_betas(1.0, [3], 0.1),
        lambda M: M.epsilon_state_from_dict({"beta": 0.1, "epsilon": 0.1, "step_sum": 3, "step_count": 2, "updates": 0}),
        lambda M: M.epsilon_state_from_dict({"beta": 0.1, "epsilon": 2.0, "step_sum": 0, "step_count": 0, "updates": 0}),
    ],
)
def test_pair_errors_identical(call):
    def wrap(v):
        return torch.tensor(v, dtype=torch.float64) if isinstance(v, list) and v and not isinstance(v[0], list) else v

    class Tm:  # the torch module, with list arguments turned into tensors
        def __getattr__(self, name):
            f = getattr(T, name)
            return lambda *a, **k: f(*[wrap(v) for v in a], **{kk: wrap(v) for kk, v in k.items()})

    _same_error(lambda: call(S), lambda: call(Tm()))


# --- the state --------------------------------------------------------------------------------------------
def test_state_sequence_equals_spec_and_round_trips():
    rng = np.random.default_rng(9)
    spec_state, st = S.init_epsilon_state(0.1, 0.05), T.init_epsilon_state(0.1, 0.05)
    for step in range(6):
        for _ in range(3):  # micro-batches
            s = rng.integers(-1, 2, size=int(rng.integers(1, 8)))
            spec_state = S.epsilon_accumulate(spec_state, s)
            st = T.epsilon_accumulate(st, torch.tensor(s))
        assert T.epsilon_state_to_dict(st) == S.epsilon_state_to_dict(spec_state)
        spec_state, st = S.epsilon_update_beta(spec_state), T.epsilon_update_beta(st)
        assert float(st.beta) == spec_state.beta  # same float64 arithmetic
    assert T.epsilon_state_to_dict(st) == S.epsilon_state_to_dict(spec_state)
    back = T.epsilon_state_from_dict(T.epsilon_state_to_dict(st))
    assert T.epsilon_state_to_dict(back) == T.epsilon_state_to_dict(st)
    assert T.epsilon_update_beta(T.init_epsilon_state(0.3, 0.1)).beta == 0.3  # nothing accumulated


# --- distributed: the β update uses the global mean (2 gloo ranks, unequal micro-batch sizes) -------------
RANK_STEPS = {0: [[1, 1, 0], [-1]], 1: [[1, 1, 1, 1, 0, -1]]}


def _dist_worker(rank: int, world: int, init_file: str, out: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        st = T.init_epsilon_state(0.2, 0.1)
        for s in RANK_STEPS[rank]:
            st = T.epsilon_accumulate(st, torch.tensor(s))
        st = T.epsilon_update_beta(st)
        torch.save({"beta": st.beta, "count": st.step_count}, os.path.join(out, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


@pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(), reason="needs gloo")
def test_update_beta_all_reduces_over_two_gloo_ranks(tmp_path):
    mp.spawn(_dist_worker, args=(2, str(tmp_path / "init"), str(tmp_path)), nprocs=2, join=True)
    spec_state = S.init_epsilon_state(0.2, 0.1)
    for r in (0, 1):
        for s in RANK_STEPS[r]:
            spec_state = S.epsilon_accumulate(spec_state, s)
    want = S.epsilon_update_beta(spec_state).beta  # mean over all 10 pairs = 0.4
    assert want == pytest.approx(0.2 / 1.04, rel=1e-15)
    for r in (0, 1):
        got = torch.load(tmp_path / f"rank{r}.pt", weights_only=True)
        assert float(got["beta"]) == want and int(got["count"]) == 0


def test_token_op_bfloat16_gradient_is_the_float32_one_rounded_once():
    p, q, y, m = _tokens(5)
    pt = torch.tensor(p, dtype=torch.bfloat16, requires_grad=True)
    out = T.epsilon_sequence_logps(pt, torch.tensor(q, dtype=torch.bfloat16), torch.tensor(y), torch.tensor(m),
                                   epsilon=0.2, chunk_size=4)
    assert out.logps.dtype == torch.float32
    out.logps.sum().backward()
    assert pt.grad.dtype == torch.bfloat16
    want = S.sequence_logps_vjp(pt.detach().double().numpy(), y, m)  # the reference on the same bf16 logits
    # computed in float32, returned in bfloat16: one bfloat16 rounding (relative 2^-8) of values in [-1, 1]
    np.testing.assert_allclose(pt.grad.double().numpy(), want, rtol=2**-8, atol=2**-9)
