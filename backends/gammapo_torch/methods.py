r"""The one shape of every method on torch tensors: :func:`init` and :func:`step` of :mod:`gammapo_spec.methods`.

The same :class:`~gammapo_spec.methods.Pairs` (holding tensors), the spec's config classes and the
spec's dispatch (:class:`~gammapo_spec.methods.MethodOps`), run on this backend's functions:
:func:`gammapo_torch.gamma_po_loss`, :func:`gammapo_torch.beta_dpo.beta_dpo_step` and the ops of
:mod:`gammapo_torch.epsilon_dpo`. Gradients flow as in those functions (margins, β-DPO's β and mask,
ε-DPO's steps are constants). Under ``torch.distributed`` each method communicates as its function does
over the default group (γ-PO and β-DPO gather the gaps, ε-DPO's β update sums its counters); for another
process group call the functions themselves.

Example:
    >>> import torch, gammapo_spec as S, gammapo_torch as T
    >>> t = lambda *v: torch.tensor(v, dtype=torch.float64)
    >>> pairs = T.Pairs(t(-1.0, -2.0), t(-3.0, -2.0), t(-2.0, -2.0), t(-2.0, -2.0))
    >>> cfg = S.BetaDPOConfig(beta0=0.1, alpha=0.5, rho=1.0)
    >>> out, state = T.step(cfg, T.init(cfg), pairs)
    >>> round(float(out.loss), 6), int(state.step)
    (0.625885, 1)
"""

from __future__ import annotations

from typing import Any

from gammapo_spec.methods import MethodOps, Pairs

from . import beta_dpo, epsilon_dpo
from ._gamma_po import gamma_po_loss
from ._state import init_state

__all__ = ["Pairs", "init", "step"]

_OPS = MethodOps(gamma_po_loss, init_state, beta_dpo, epsilon_dpo)


def init(config, seed: int = 0, *, device: Any = None) -> Any:
    """:func:`gammapo_spec.init` on this backend: the method's initial state, its tensors on ``device``.

    Raises:
        ConfigError, StateError: as the reference.
    """
    return _OPS.init(config, seed, device=device)


def step(config, state, pairs: Pairs) -> tuple[Any, Any]:
    """:func:`gammapo_spec.step` on tensors: ``(output, new_state)`` of the method ``config`` chooses,
    in the reference's order (for ε-DPO: steps, loss with the current β, accumulate, then the β update).

    Raises:
        ConfigError, InputError, StateError: as the reference, same class and message.
    """
    return _OPS.step(config, state, pairs)
