"""Data-parallel γ-PO in JAX: 4 shards calibrate on the global batch and match one process exactly.

Runs on one CPU by asking XLA for 4 host devices; on accelerators the mesh is the real devices.
"""

import os

os.environ["XLA_FLAGS"] = os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=4"

import jax  # noqa: E402

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from jax.sharding import Mesh, PartitionSpec as P  # noqa: E402

import gammapo  # noqa: E402
from gammapo_jax import AxisGather  # noqa: E402

B = gammapo.get_backend("jax")
cfg = gammapo.GammaPOConfig(loss="gamma-simpo", beta=2.0, gamma_beta_ratio=0.5, tau=5.0,
                            calibration="queue", queue_size=128, sample_size=48)
rng = np.random.default_rng(0)
batch = dict(chosen_logps=jnp.asarray(rng.normal(-30.0, 3.0, 32)), rejected_logps=jnp.asarray(rng.normal(-30.0, 3.0, 32)),
             chosen_lengths=jnp.asarray(rng.integers(10, 30, 32)), rejected_lengths=jnp.asarray(rng.integers(10, 30, 32)))
state = B.init_state(cfg, seed=0, dtype="float64")

mesh = Mesh(np.array(jax.devices()[:4]), ("data",))


def sharded_step(state, batch):
    # Inside shard_map each shard sees its 8 pairs; AxisGather("data") all-gathers the gaps in shard
    # order, every shard calibrates the same 32 + sampled gaps, keeps its own 8 margins, and pushes
    # the same global gaps, so the queue leaves shard_map replicated (out_specs P()).
    out, new_state = B.gamma_po_loss(cfg, state, gather=AxisGather("data"), **batch)
    return out.margins, new_state


step = jax.jit(jax.shard_map(sharded_step, mesh=mesh, in_specs=(P(), P("data")), out_specs=(P("data"), P())))
margins, new_state = step(state, batch)

# One process on the whole batch gives the same margins and the same next state.
out_single, state_single = B.gamma_po_loss(cfg, state, **batch)
print("devices", len(jax.devices()), "margins shape", margins.shape)
print("max |sharded - single| margin", float(jnp.max(jnp.abs(margins - out_single.margins))))
print("same queue", bool(jnp.array_equal(new_state.buffer, state_single.buffer)), "step", int(new_state.step))
