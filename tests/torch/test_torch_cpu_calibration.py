"""The compiled CPU kernel of the calibration step (gammapo_torch._cpu_calibration) against the spec.

Margins: float64 1e-10 relative to the reference (1e-8 in the unconverged small-τ regime, as for the
torch-ops path), float32 2e-5. Queue states (sample, push, counters): bit for bit. The kernel is also
compared with the torch-ops path it replaces (``GAMMAPO_DISABLE_CPU_KERNEL=1``), and the fallback
when no compiler is found is exercised.
"""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import gammapo_spec as R
import gammapo_torch as T
from gammapo_torch import _cpu_calibration as K

needs_kernel = pytest.mark.skipif(
    shutil.which("g++") is None and shutil.which("c++") is None, reason="no C++ compiler to build the kernel"
)


def ok(got, want, tol: float) -> bool:
    """``|got - want| <= tol + tol * |want|`` elementwise (the ``close`` helper's rule, rtol = atol)."""
    got = got.detach().double().numpy() if isinstance(got, torch.Tensor) else np.asarray(got, dtype=np.float64)
    return bool(np.all(np.abs(got - want) <= tol + tol * np.abs(want)))


@needs_kernel
def test_the_kernel_builds_here_and_is_the_default_cpu_path():
    assert K.load() is not None, K.build_error()
    assert K.build_error() is None
    assert K.usable(torch.zeros(3)) and K.usable(torch.zeros(3, dtype=torch.float64))
    assert not K.usable(torch.zeros(3, dtype=torch.bfloat16))


@needs_kernel
@pytest.mark.parametrize("gamma0,tau", [(4.0, 10.0), (1.0, 1.0), (0.5, 3.0), (3.0, 100.0), (0.0, 2.0)])
@pytest.mark.parametrize("m", [1, 2, 7, 64, 257, 1000])
def test_batch_margins_equal_the_reference(gamma0, tau, m):
    h = np.random.default_rng(m).normal(size=m) * 3.0
    want = R.calibrate_margins(h, gamma0=gamma0, tau=tau, solver="mirror")
    got64 = T.calibrate_margins(torch.tensor(h), gamma0=gamma0, tau=tau, solver="mirror").numpy()
    got32 = T.calibrate_margins(torch.tensor(h, dtype=torch.float32), gamma0=gamma0, tau=tau, solver="mirror").numpy()
    if gamma0 == 0:
        assert np.all(got64 == 0) and np.all(got32 == 0)
        return
    assert ok(got64, want, 1e-10) and ok(got32, want, 2e-5)


@needs_kernel
@settings(max_examples=40, deadline=None)
@given(
    gamma0=st.floats(0.01, 5.0),
    tau=st.floats(0.05, 200.0),
    iters=st.integers(1, 40),
    h=st.lists(st.floats(-30.0, 30.0), min_size=1, max_size=80),
)
def test_margins_equal_the_reference_property(gamma0, tau, iters, h):
    want = R.calibrate_margins(h, gamma0=gamma0, tau=tau, iters=iters, solver="mirror")
    got = T.calibrate_margins(torch.tensor(h, dtype=torch.float64), gamma0=gamma0, tau=tau, iters=iters, solver="mirror").numpy()
    # 1e-8 where 19 steps with eta = 1 amplify last-bit differences (tau < 1), as for the torch-ops path
    assert ok(got, want, 1e-8 if tau < 1.0 else 1e-10)


@needs_kernel
def test_without_a_safe_shift_the_kernel_normalises_with_logsumexp(monkeypatch):
    # eta * gamma0 = 1000 is beyond float64's safe shift: the kernel takes the max-shifted logsumexp
    h = torch.tensor(np.random.default_rng(0).normal(size=50) * 3.0)
    assert T._calibration.normaliser_shift(50, 1000.0, 0.5, torch.float64) is None
    got = T.calibrate_margins(h, gamma0=1000.0, tau=0.5, solver="mirror")
    monkeypatch.setenv("GAMMAPO_DISABLE_CPU_KERNEL", "1")
    ops = T.calibrate_margins(h, gamma0=1000.0, tau=0.5, solver="mirror")
    assert torch.isfinite(got).all()
    torch.testing.assert_close(got, ops, rtol=1e-8, atol=1e-8)


def _queue_run(config, seed, sizes, dtype, buffer_dtype=None, kernel=True, monkeypatch=None):
    if not kernel:
        monkeypatch.setenv("GAMMAPO_DISABLE_CPU_KERNEL", "1")
    rng = np.random.default_rng(seed)
    state = T.init_state(config, seed=seed, dtype=buffer_dtype or dtype)
    ref = R.init_state(config, seed=seed)
    out = []
    for n in sizes:
        h = rng.normal(size=n) * 3.0
        gamma, state = T.calibrate_step(config, state, torch.tensor(h, dtype=dtype))
        want, ref = R.calibrate_step(config, ref, torch.tensor(h, dtype=dtype).double().numpy())
        out.append((gamma, state, want, ref))
    if not kernel:
        monkeypatch.delenv("GAMMAPO_DISABLE_CPU_KERNEL")
    return out


@needs_kernel
@pytest.mark.parametrize(
    "capacity,sample_size,warmup,sizes",
    [
        (64, 40, 8, [5, 17, 1, 33, 8, 64, 3, 70, 2, 9]),  # partial queue, wrap, n > capacity
        (2048, 256, 8, [64] * 40),  # the released shapes: the queue fills and wraps
        (16, 4, 0, [4, 6, 1, 3]),  # sample_size <= n: nothing sampled
        (8, 100, 3, [1, 2, 3, 20, 1]),  # every stored gap sampled
    ],
)
def test_queue_steps_equal_the_reference_states_bit_for_bit(capacity, sample_size, warmup, sizes):
    config = R.GammaPOConfig(loss="gamma-simpo", solver="mirror", gamma_beta_ratio=0.4, beta=10.0, tau=10.0, queue_size=capacity,
                             sample_size=sample_size, queue_warmup=warmup, check_values=False)
    for seed in (0, 7, 2**32 - 1):
        for gamma, state, want, ref in _queue_run(config, seed, sizes, torch.float64):
            assert np.array_equal(state.buffer.numpy(), ref.buffer)
            assert (int(state.size), int(state.head), int(state.step), int(state.seed)) == (
                ref.size, ref.head, ref.step, ref.seed)
            assert ok(gamma, want, 1e-10)


@needs_kernel
def test_float32_queue_and_float64_gaps_on_a_float32_buffer():
    config = R.GammaPOConfig(loss="gamma-simpo", solver="mirror", queue_size=128, sample_size=96, queue_warmup=8, check_values=False)
    for gamma, state, want, ref in _queue_run(config, 3, [16] * 12, torch.float32):
        assert state.buffer.dtype == torch.float32 and gamma.dtype == torch.float32
        # the float32 state holds float32-rounded warm-up draws; the pushed gaps are float32 on both sides
        assert np.array_equal(state.buffer.numpy(), ref.buffer.astype(np.float32))
        assert ok(gamma, want, 2e-5)
    # float64 gaps read a float32 buffer upcast (exactly) and write a float64 one
    state = T.init_state(config, seed=1)
    gamma, new = T.calibrate_step(config, state, torch.randn(16, dtype=torch.float64))
    assert gamma.dtype == new.buffer.dtype == torch.float64 and state.buffer.dtype == torch.float32


@needs_kernel
def test_kernel_and_torch_ops_paths_agree(monkeypatch):
    config = R.GammaPOConfig(loss="gamma-simpo", solver="mirror", queue_size=256, sample_size=64, queue_warmup=8, check_values=False)
    for dtype, tol in ((torch.float64, 1e-12), (torch.float32, 2e-6)):
        on = _queue_run(config, 5, [16] * 20, dtype)
        off = _queue_run(config, 5, [16] * 20, dtype, kernel=False, monkeypatch=monkeypatch)
        for (g1, s1, *_), (g2, s2, *_) in zip(on, off):
            for a, b in zip(s1, s2):
                assert torch.equal(a, b)
            torch.testing.assert_close(g1, g2, rtol=tol, atol=tol)


@needs_kernel
def test_inputs_are_not_modified_and_outputs_are_fresh():
    config = R.GammaPOConfig(loss="gamma-simpo", solver="mirror", queue_size=32, sample_size=24, queue_warmup=8, check_values=False)
    state = T.init_state(config, seed=2)
    before = [t.clone() for t in state]
    h = torch.randn(8, requires_grad=True)
    gamma, new = T.calibrate_step(config, state, h)
    for a, b in zip(state, before):
        assert torch.equal(a, b)
    assert not gamma.requires_grad and new.buffer.data_ptr() != state.buffer.data_ptr()
    assert int(new.size) == 16 and int(new.head) == 16 and int(new.step) == 1


def test_without_a_compiler_the_torch_ops_path_runs(monkeypatch, tmp_path):
    monkeypatch.setattr(K, "_LIBRARY", K._LIBRARY.fresh())  # not yet built: the next load() builds
    monkeypatch.setenv("CXX", str(tmp_path / "no-such-compiler"))
    monkeypatch.setenv("GAMMAPO_CACHE_DIR", str(tmp_path / "cache"))
    assert K.load() is None and "no-such-compiler" in K.build_error()
    assert not K.usable(torch.zeros(3))
    h = np.array([2.0, 0.5, -1.0])
    got = T.calibrate_margins(torch.tensor(h), gamma0=1.0, tau=1.0, solver="mirror").numpy()
    assert ok(got, R.calibrate_margins(h, gamma0=1.0, tau=1.0, solver="mirror"), 1e-10)


def _graph_ops(fn, *args) -> str:
    from torch._dynamo.testing import EagerAndRecordGraphs

    torch._dynamo.reset()
    backend = EagerAndRecordGraphs()
    torch.compile(fn, fullgraph=True, backend=backend)(*args)
    return "\n".join(g.code for g in backend.graphs)


@needs_kernel
def test_compiled_step_calls_the_kernel_as_one_custom_op_and_equals_eager(monkeypatch):
    config = R.GammaPOConfig(loss="gamma-simpo", solver="mirror", queue_size=64, sample_size=40, queue_warmup=8, check_values=False)
    state = T.init_state(config, seed=4)
    h = torch.randn(12)

    def step(st, gaps):
        return T.calibrate_step(config, st, gaps)

    code = _graph_ops(step, state, h)
    assert "gammapo.cpu_queue_step" in code and "topk" not in code
    compiled = torch.compile(step, fullgraph=True, backend="aot_eager")
    g_c, s_c = compiled(state, h)
    g_e, s_e = step(state, h)
    assert torch.equal(g_c, g_e) and all(torch.equal(a, b) for a, b in zip(s_c, s_e))
    batch = _graph_ops(lambda x: T.calibrate_margins(x, gamma0=1.0, tau=2.0, solver="mirror"), h)
    assert "gammapo.cpu_mirror" in batch
    # turned off, the compiled step is the torch-ops graph again
    monkeypatch.setenv("GAMMAPO_DISABLE_CPU_KERNEL", "1")
    code = _graph_ops(step, state, h)
    assert "gammapo.cpu_queue_step" not in code and "topk" in code
    torch._dynamo.reset()


def test_an_unusable_cache_folder_has_no_shared_fallback(monkeypatch, tmp_path):
    import gammapo_native as _native

    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")  # a file where the cache folder's parent should be: mkdir fails
    monkeypatch.delenv("GAMMAPO_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocker))
    assert _native.cache_dirs() == [blocker / "gammapo"] and _native.private_cache_dir() is None
    monkeypatch.setenv("GAMMAPO_CACHE_DIR", str(tmp_path / "explicit"))
    assert _native.private_cache_dir() == tmp_path / "explicit"


@needs_kernel
@settings(max_examples=40, deadline=None)
@given(
    gamma0=st.floats(0.01, 5.0),
    tau=st.floats(1.0, 200.0),
    iters=st.integers(1, 40),
    h=st.lists(st.floats(-30.0, 30.0), min_size=1, max_size=300),
)
def test_float32_margins_equal_the_reference_property(gamma0, tau, iters, h):
    # the float32 kernel takes the next p as exp(w + D) / S: float32 rounding only
    x = torch.tensor(h, dtype=torch.float32)
    want = R.calibrate_margins(x.double().numpy(), gamma0=gamma0, tau=tau, iters=iters, solver="mirror")
    assert ok(T.calibrate_margins(x, gamma0=gamma0, tau=tau, iters=iters, solver="mirror"), want, 2e-5)


@needs_kernel
@pytest.mark.parametrize("gamma0, tau", [(4.0, 10.0), (4.0, 1.0), (0.5, 0.02), (100.0, 0.1)])
@pytest.mark.parametrize("m", [1, 3, 64, 1000])
def test_exact_kernel_equals_the_shared_solver_on_torch_ops_and_the_spec(gamma0, tau, m):
    """The default solver's CPU kernel computes the arithmetic of gammapo_spec.kkt_solver."""
    from gammapo_torch import _calibration as CAL
    from gammapo_torch import _cpu_calibration as K

    h = np.random.default_rng(m).normal(size=m) * 5.0
    want = R.calibrate_margins(h, gamma0=gamma0, tau=tau)
    for dtype, tol in ((torch.float64, 1e-11), (torch.float32, 2e-3 if gamma0 / tau > 100 else 1e-4)):
        x = torch.tensor(h, dtype=dtype)
        kernel = K.exact_margins(x, gamma0=gamma0, tau=tau)
        ops = CAL.exact_margins(x, gamma0=gamma0, tau=tau)
        assert np.max(np.abs(kernel.double().numpy() - want)) <= tol * gamma0, dtype
        assert np.max(np.abs(ops.double().numpy() - want)) <= tol * gamma0, dtype
        assert T.calibrate_margins(x, gamma0=gamma0, tau=tau).dtype == dtype


@needs_kernel
@pytest.mark.parametrize("gamma0, tau", [(4.0, 10.0), (4.0, 1.0), (0.5, 0.02), (4.0, 0.1), (20.0, 0.04)])
def test_exact_kernel_stops_early_only_where_the_fixed_work_would_change_rounding_only(gamma0, tau):
    """On the host the kernel leaves the outer loop once converged (c unchanged to a few ulps, no u moved
    beyond the solver's settled scale): the margins are the fixed-work NumPy solver's to rounding."""
    from gammapo_spec.kkt_solver import kkt_margins

    for m in (3, 64, 256, 1000):
        h = np.random.default_rng(m).normal(size=m) * 5.0
        got = K.exact_margins(torch.tensor(h), gamma0=gamma0, tau=tau).numpy()
        assert np.max(np.abs(got - kkt_margins(h, gamma0=gamma0, tau=tau))) <= 1e-12 * gamma0, m


@needs_kernel
def test_exact_kernel_masks_like_the_ops_path_and_rejects_a_bad_count():
    from gammapo_torch import _calibration as CAL
    from gammapo_torch import _cpu_calibration as K

    h = torch.randn(30, dtype=torch.float64) * 3
    for count in (0, 4, 10):
        c = torch.tensor(count)
        kernel = K.exact_margins(h, gamma0=2.0, tau=1.0, count=c, n_candidates=10)
        ops = CAL.exact_margins(h, gamma0=2.0, tau=1.0, count=c, n_candidates=10)
        assert torch.all(kernel[count:10] == 0) and ok(kernel, ops.numpy(), 1e-12)
    with pytest.raises(ValueError, match="count"):
        K.exact_margins(h, gamma0=2.0, tau=1.0, count=torch.tensor(11), n_candidates=10)
    nan = K.exact_margins(torch.tensor([1.0, float("nan"), 2.0]), gamma0=1.0, tau=1.0)
    assert torch.all(torch.isnan(nan)), "a non-finite gap makes every margin NaN, as in the reference"


@needs_kernel
def test_exact_queue_steps_equal_the_reference_with_and_without_the_kernel(monkeypatch):
    config = R.GammaPOConfig(loss="gamma-simpo", tau=1.0, queue_size=64, sample_size=40, queue_warmup=8,
                             check_values=False)
    assert config.solver == "exact"
    sizes = [5, 17, 1, 33, 8, 64, 3, 70, 2, 9]
    for kernel in (True, False):
        for gamma, state, want, ref in _queue_run(config, 11, sizes, torch.float64, kernel=kernel,
                                                  monkeypatch=monkeypatch):
            assert np.array_equal(state.buffer.numpy(), ref.buffer)
            assert ok(gamma, want, 1e-11)
