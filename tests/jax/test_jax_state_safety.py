"""The JAX backend validates a queue state wherever it enters (state_from_dict, QueueState.create with
concrete fields) with the spec's StateError, and its kernel refuses counters outside the buffer."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest

import gammapo_jax as G
import gammapo_spec as R
from gammapo_spec.errors import StateError

CFG = R.GammaPOConfig(loss="gamma-simpo", beta=2.0, gamma_beta_ratio=0.5, tau=1.0, queue_size=16, sample_size=8)


@pytest.mark.parametrize("change,field", [
    ({"size": 3.7}, "size"), ({"size": "3"}, "size"), ({"size": 10**9}, "size"), ({"head": -2000}, "head"),
    ({"seed": 2**40}, "seed"), ({"step": -5}, "step"), ({"step": 2**70}, "step"),
    ({"buffer": np.arange(16)}, "buffer"), ({"buffer": np.full(16, np.nan)}, "buffer"),
    ({"buffer": jnp.arange(16)}, "buffer"), ({"size": jnp.asarray(8.0)}, "size"),
])
def test_state_from_dict_same_error_as_the_reference(change, field):
    data = {**G.state_to_dict(G.init_state(CFG)), **change}
    with pytest.raises(StateError) as ours:
        G.state_from_dict(data)
    with pytest.raises(StateError) as ref:
        R.state_from_dict({k: np.asarray(v) if hasattr(v, "dtype") else v for k, v in data.items()})
    assert (ours.value.field, str(ours.value)) == (ref.value.field, str(ref.value)) and ours.value.field == field


def test_create_checks_concrete_fields():
    with pytest.raises(StateError, match="size must be in") as info:
        G.QueueState.create(buffer=jnp.zeros(16), size=10**8, head=0, step=0, seed=0)
    assert info.value.field == "size"
    state = G.QueueState.create(buffer=jnp.zeros(16), size=16, head=3, step=2**40 + 5, seed=1)
    assert int(state.step) == 5  # stored mod 2**32, as documented


def test_the_kernel_refuses_counters_outside_the_buffer():
    from gammapo_jax import _cpu_kernel

    if not _cpu_kernel.usable(jnp.float32):
        pytest.skip("no CPU kernel")
    bad = G.QueueState(buffer=jnp.zeros(16), counters=jnp.asarray([10**8, 0, 0, 0], dtype=jnp.uint32))
    with pytest.raises(Exception, match="counters do not fit the buffer"):
        G.calibrate_step(CFG.replace(solver="mirror"), bad, jnp.asarray([1.0, 2.0]))


def test_a_state_of_another_backend_is_named():
    torch = pytest.importorskip("torch")
    import gammapo_torch as T

    with pytest.raises(StateError, match="a QueueState of gammapo_torch; convert it"):
        G.calibrate_step(CFG, T.init_state(CFG), jnp.asarray([1.0, 2.0]))
    del torch
