r"""gammapo_jax — the JAX backend of gammapo: pure, jit-compiled, vmappable, shardable.

``gammapo.get_backend("jax")`` returns this module. Every op of :mod:`gammapo_spec` exists here
with the same name, keyword arguments, errors and state semantics, on JAX arrays:

* pure functions: the queue state is an explicit pytree (:class:`QueueState`) returned, never
  mutated; calibration loops are ``lax`` loops; margins are ``stop_gradient``;
* ``jax.jit`` (a training step compiles once), ``jax.grad``/``jax.value_and_grad``, ``jax.vmap``;
* data parallelism: ``gather=AxisGather("data")`` inside ``shard_map``/``pmap`` calibrates on the
  gaps of every shard (:mod:`gammapo_jax._sharding`);
* dtype policy: float64 (under ``jax_enable_x64``) and float32 compute in their dtype, bfloat16
  and float16 inputs are upcast to float32 (:mod:`gammapo_jax._dtypes`);
* on a CPU the mirror calibration (a whole queue step: sample, solve, push) is one XLA FFI custom
  call of a compiled C++ kernel, built with ``g++`` on first use and cached
  (:mod:`gammapo_jax._cpu_kernel`); GPU/TPU lowerings, the exact solver, and machines without a
  C++ compiler use ``lax`` ops. ``GAMMAPO_DISABLE_CPU_KERNEL=1`` (read while tracing) turns the kernel off.

What is only checked eagerly: the value checks of ``config.check_values`` (non-finite log-probs
or gaps, non-positive lengths) need concrete values and are skipped inside ``jax.jit``,
``jax.vmap`` and ``shard_map`` (NaN then propagates as in the reference with checks off). Shape,
config and state checks run under every transformation (they only look at static shapes).
:func:`gamma_po_loss_and_grad` validates eagerly before it differentiates.

>>> import jax.numpy as jnp
>>> import gammapo
>>> B = gammapo.get_backend("jax")
>>> cfg = gammapo.GammaPOConfig(loss="gamma-simpo", calibration="batch")
>>> out, state = B.gamma_po_loss(cfg, B.init_state(cfg), chosen_logps=jnp.array([-4.0, -8.0]),
...                              rejected_logps=jnp.array([-9.0, -6.0]), chosen_lengths=jnp.array([2, 4]),
...                              rejected_lengths=jnp.array([3, 3]))
>>> out.loss.shape, state is None
((), True)
"""

from gammapo_spec.gamma_po import LossOutput

from ._calibration import calibrate_margins, kkt_residual
from ._interop import asarray, to_numpy
from ._loss import gamma_po_loss, gamma_po_loss_and_grad, loss_metrics, loss_with_margins
from ._losses import pair_losses, target_margins
from ._rewards import implicit_rewards, reward_gap
from ._sharding import AxisGather
from ._state import QueueState, calibrate_step, init_state, state_from_dict, state_to_dict
from .methods import Pairs, init, step

#: The backend name under which :func:`gammapo.get_backend` returns this module.
name = "jax"

__all__ = [
    "AxisGather",
    "LossOutput",
    "Pairs",
    "QueueState",
    "asarray",
    "calibrate_margins",
    "calibrate_step",
    "gamma_po_loss",
    "gamma_po_loss_and_grad",
    "implicit_rewards",
    "init",
    "init_state",
    "kkt_residual",
    "loss_metrics",
    "loss_with_margins",
    "name",
    "pair_losses",
    "reward_gap",
    "state_from_dict",
    "state_to_dict",
    "step",
    "target_margins",
    "to_numpy",
]
