r"""gammapo_spec — the normative NumPy reference of γ-PO and the reward-margin losses around it.

Every backend implements this module's functions with the same names, argument lists, errors and
state semantics; the conformance suite (``gammapo_conformance``) checks them against it. Everything
here computes in float64 and depends on NumPy only.

The pieces, one concept per module:

* :mod:`~gammapo_spec.methods` — the one shape of every method: ``init(config, seed)`` and
  ``step(config, state, pairs) -> (output, state)`` for γ-PO, β-DPO and ε-DPO, on a :class:`Pairs` batch;
* :mod:`~gammapo_spec.config` — :class:`GammaPOConfig`, :class:`BetaDPOConfig`, :class:`EpsilonDPOConfig`,
  validated on construction by :mod:`~gammapo_spec.hyperparams`, the one validator of hyper-parameters;
* :mod:`~gammapo_spec.rewards` — implicit rewards and the reward gap h;
* :mod:`~gammapo_spec.calibration` — the margin calibration (mirror and exact solvers, KKT residual);
* :mod:`~gammapo_spec.state` and :mod:`~gammapo_spec.random` — queue-mode state and its portable RNG;
* :mod:`~gammapo_spec.losses` — the base losses as functions of z = h − m, target margins;
* :mod:`~gammapo_spec.gamma_po` — the loss step, its analytic gradient, its output;
* :mod:`~gammapo_spec.beta_dpo` — the β-DPO baseline (dynamic batch β, Gaussian data filtering);
* :mod:`~gammapo_spec.epsilon_dpo` — ε-DPO: per-pair β from perturbed logits, the global β update
  (its token-level op in :mod:`~gammapo_spec.epsilon_tokens`);
* :mod:`~gammapo_spec.dtype_policy` — which precision backends compute in;
* :mod:`~gammapo_spec.interop` — moving arrays and state in and out, loss with gradient;
* :mod:`~gammapo_spec.validation` and :mod:`~gammapo_spec.errors` — the error policy.
"""

from .beta_dpo import BetaDPOState, beta_dpo_step, init_beta_dpo_state
from .calibration import calibrate_margins, calibration_objective, exact_log_margins, kkt_residual
from .config import BASE_LOSSES, LOSS_NAMES, BetaDPOConfig, EpsilonDPOConfig, GammaPOConfig
from .errors import ConfigError, GammaPOError, InputError, StateError
from .epsilon_dpo import (
    EpsilonDPOState,
    epsilon_accumulate,
    epsilon_dpo_loss,
    epsilon_sequence_logps,
    epsilon_steps,
    epsilon_update_beta,
)
from .interop import asarray, gamma_po_loss_and_grad, state_from_dict, state_to_dict, to_numpy
from .gamma_po import LossOutput, gamma_po_loss, loss_metrics, loss_vjp, loss_with_margins
from .methods import Pairs, init, step
from .losses import pair_loss_curvature, pair_loss_derivative, pair_losses, target_margins
from .rewards import implicit_rewards, reward_gap
from .state import QueueState, calibrate_step, init_state

#: The backend name under which :func:`gammapo.get_backend` returns this module.
name = "numpy"

__all__ = [
    "BASE_LOSSES",
    "BetaDPOConfig",
    "BetaDPOState",
    "LOSS_NAMES",
    "ConfigError",
    "EpsilonDPOConfig",
    "EpsilonDPOState",
    "GammaPOConfig",
    "GammaPOError",
    "InputError",
    "LossOutput",
    "Pairs",
    "QueueState",
    "StateError",
    "asarray",
    "beta_dpo_step",
    "calibrate_margins",
    "calibrate_step",
    "calibration_objective",
    "epsilon_accumulate",
    "epsilon_dpo_loss",
    "epsilon_sequence_logps",
    "epsilon_steps",
    "epsilon_update_beta",
    "exact_log_margins",
    "gamma_po_loss",
    "gamma_po_loss_and_grad",
    "implicit_rewards",
    "init",
    "init_beta_dpo_state",
    "init_state",
    "kkt_residual",
    "loss_metrics",
    "loss_vjp",
    "loss_with_margins",
    "name",
    "pair_loss_curvature",
    "pair_loss_derivative",
    "pair_losses",
    "reward_gap",
    "state_from_dict",
    "state_to_dict",
    "step",
    "target_margins",
    "to_numpy",
]
