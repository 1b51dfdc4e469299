"""The backends' one method shape: jax.jit(gammapo_jax.step) equals the eager step, and gradients flow
through it; gammapo_torch.init places every method's state on the requested device and torch's step
differentiates like the method functions. (Values against the spec: conformance/test_methods.py.)"""

from __future__ import annotations

import numpy as np
import pytest

import gammapo_spec as S

CONFIGS = [S.GammaPOConfig(loss="gamma-dpo", beta=0.1, gamma_beta_ratio=2.0, queue_size=32, sample_size=8),
           S.GammaPOConfig(loss="gamma-simpo", calibration="batch"),
           S.BetaDPOConfig(rho=0.5),
           S.EpsilonDPOConfig(beta=0.5, epsilon=0.25)]
IDS = ["gamma-dpo-queue", "gamma-simpo-batch", "beta-dpo", "epsilon-dpo"]


def _columns(config, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    q = lambda: -rng.integers(8, 160, 8) / 4.0  # noqa: E731  (quarters: ε-DPO's steps are exact)
    c, r = q(), q()
    if isinstance(config, S.GammaPOConfig) and config.reference_free:
        return dict(chosen_logps=c, rejected_logps=r, chosen_lengths=rng.integers(1, 9, 8),
                    rejected_lengths=rng.integers(1, 9, 8))
    cols = dict(chosen_logps=c, rejected_logps=r, ref_chosen_logps=q(), ref_rejected_logps=q())
    if isinstance(config, S.EpsilonDPOConfig):
        d = lambda: rng.integers(-2, 3, 8) / 4.0  # noqa: E731
        cols.update(chosen_logps_plus=c + d(), rejected_logps_plus=r + d(), chosen_logps_minus=c + d(),
                    rejected_logps_minus=r + d())
    return cols


@pytest.mark.parametrize("config", CONFIGS, ids=IDS)
def test_jax_jitted_step_equals_eager_and_differentiates(config):
    jax = pytest.importorskip("jax")
    import jax.numpy as jnp

    import gammapo_jax as J

    with jax.enable_x64(True):
        jstep = jax.jit(J.step, static_argnums=0)
        eager, jitted = J.init(config, 1), J.init(config, 1)
        for seed in range(3):
            pairs = J.Pairs(**{k: jnp.asarray(v) for k, v in _columns(config, seed).items()})
            a, eager = J.step(config, eager, pairs)
            b, jitted = jstep(config, jitted, pairs)
            np.testing.assert_allclose(np.asarray(b.loss), np.asarray(a.loss), rtol=1e-12, atol=1e-12)
            np.testing.assert_allclose(np.asarray(b.losses), np.asarray(a.losses), rtol=1e-12, atol=1e-12)
            for x, y in zip(jax.tree_util.tree_leaves(eager), jax.tree_util.tree_leaves(jitted)):
                np.testing.assert_allclose(np.asarray(y), np.asarray(x), rtol=1e-12, atol=1e-12)
        grad = jax.grad(lambda c: J.step(config, J.init(config, 1), pairs._replace(chosen_logps=c))[0].loss)
        g = np.asarray(grad(pairs.chosen_logps))
        assert g.shape == (8,) and np.all(np.isfinite(g)) and np.any(g != 0.0)


@pytest.mark.parametrize("config", CONFIGS, ids=IDS)
def test_torch_init_device_and_step_gradient(config):
    torch = pytest.importorskip("torch")
    import gammapo_torch as T

    state = T.init(config, 1, device="cpu")
    fields = () if state is None else state if isinstance(state, tuple) else vars(state).values()
    tensors = [v for v in fields if isinstance(v, torch.Tensor)]
    assert state is None or tensors
    assert (state is None) == (isinstance(config, S.GammaPOConfig) and not config.stateful)
    assert all(t.device.type == "cpu" for t in tensors)
    cols = {k: torch.tensor(v, dtype=torch.float64) for k, v in _columns(config, 0).items()}
    cols["chosen_logps"].requires_grad_(True)
    out, _ = T.step(config, state, T.Pairs(**cols))
    out.loss.backward()
    g = cols["chosen_logps"].grad
    assert g is not None and torch.isfinite(g).all() and (g != 0).any()
    ref, _ = S.step(config, S.init(config, 1), S.Pairs(**{k: v.detach().numpy() for k, v in cols.items()}))
    np.testing.assert_allclose(out.loss.item(), float(ref.loss), rtol=1e-10, atol=1e-10)
