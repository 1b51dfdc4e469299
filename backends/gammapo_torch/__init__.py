r"""gammapo_torch — the PyTorch backend of gammapo.

``gammapo.get_backend("torch")`` returns this module. Every op of :mod:`gammapo_spec` exists here with
the same name, keyword arguments, errors (class *and* message) and state semantics, on torch tensors,
differentiable with autograd (the calibrated margins are constants for the gradient), on CPU and
CUDA. The interoperability functions (``asarray``, ``to_numpy``, ``state_to_dict``,
``state_from_dict``, ``gamma_po_loss_and_grad``) complete the :class:`gammapo.Backend` protocol, and
:class:`GammaPOLoss` is a stateful ``nn.Module`` for training loops.

>>> import torch, gammapo
>>> B = gammapo.get_backend("torch")
>>> cfg = gammapo.GammaPOConfig(loss="gamma-simpo", queue_size=64, sample_size=16)
>>> state = B.init_state(cfg, seed=0)
>>> out, state = B.gamma_po_loss(cfg, state, chosen_logps=torch.tensor([-4.0, -8.0]),
...                              rejected_logps=torch.tensor([-9.0, -6.0]),
...                              chosen_lengths=torch.tensor([2, 4]), rejected_lengths=torch.tensor([3, 3]))
>>> out.loss.shape, out.margins.shape, int(state.step)
(torch.Size([]), torch.Size([2]), 1)

Dtype policy, asserted tolerances, the CPU kernel's speed, value checks and host synchronisation,
``torch.compile`` and distributed semantics: see the how-to guide "The same step in NumPy, PyTorch
and JAX", section "The torch backend" (``docs/howto/backends.md``).
"""

from gammapo_spec.gamma_po import LossOutput

from ._calibration import calibrate_margins
from ._gamma_po import gamma_po_loss, loss_metrics, loss_with_margins
from ._interop import asarray, gamma_po_loss_and_grad, to_numpy
from ._losses import pair_losses, target_margins
from ._rewards import implicit_rewards, reward_gap
from ._state import QueueState, calibrate_step, init_state, state_from_dict, state_to_dict
from .wrapper import GammaPOLoss
from .methods import Pairs, init, step

#: The backend name under which :func:`gammapo.get_backend` returns this module.
name = "torch"

__all__ = [
    "GammaPOLoss",
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
