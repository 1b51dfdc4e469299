r"""Implicit rewards and the reward gap on tensors (differentiable).

.. math::

    \text{reference-based:}\quad u_w = \beta (c - c_\text{ref}),\quad u_l = \beta (r - r_\text{ref});
    \qquad \text{SimPO:}\quad u_w = \beta\, c/|y_w|,\quad u_l = \beta\, r/|y_l|;\qquad h = u_w - u_l .

Inputs are cast to the compute dtype (:mod:`gammapo_torch._dtypes`) before any arithmetic, so
bfloat16 log-probs give float32 rewards, and gradients flow back to each input in its own dtype.
"""

from __future__ import annotations

import torch

from gammapo_spec.config import GammaPOConfig

from ._dtypes import compute_dtype
from ._validation import prepare_inputs

__all__ = ["implicit_rewards", "reward_gap", "rewards_from_tensors", "cast_inputs"]


def cast_inputs(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The validated inputs cast to their common compute dtype (lengths included, as values)."""
    dtype = compute_dtype(*tensors.values())
    return {k: t.to(dtype) for k, t in tensors.items()}


def rewards_from_tensors(config: GammaPOConfig, x: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """``(u_w, u_l)`` from validated, cast inputs (no checks)."""
    beta = config.beta
    if config.reference_free:
        return beta * x["chosen_logps"] / x["chosen_lengths"], beta * x["rejected_logps"] / x["rejected_lengths"]
    return beta * (x["chosen_logps"] - x["ref_chosen_logps"]), beta * (x["rejected_logps"] - x["ref_rejected_logps"])


def implicit_rewards(
    config: GammaPOConfig,
    *,
    chosen_logps,
    rejected_logps,
    ref_chosen_logps=None,
    ref_rejected_logps=None,
    chosen_lengths=None,
    rejected_lengths=None,
) -> tuple[torch.Tensor, torch.Tensor]:
    r"""The implicit rewards :math:`(u_w, u_l)` of each pair (see :func:`gammapo_spec.implicit_rewards`).

    Returns:
        ``(chosen_rewards, rejected_rewards)``, each ``[N]`` in the compute dtype, differentiable.

    Raises:
        InputError: a missing, unexpected, mismatched or (with value checks) non-finite input.

    Example:
        >>> import torch
        >>> from gammapo_spec import GammaPOConfig
        >>> cfg = GammaPOConfig(loss="simpo", beta=2.0)
        >>> implicit_rewards(cfg, chosen_logps=torch.tensor([-4.0]), rejected_logps=torch.tensor([-9.0]),
        ...                  chosen_lengths=torch.tensor([2]), rejected_lengths=torch.tensor([3]))
        (tensor([-4.]), tensor([-6.]))
    """
    x = prepare_inputs(
        config,
        chosen_logps=chosen_logps,
        rejected_logps=rejected_logps,
        ref_chosen_logps=ref_chosen_logps,
        ref_rejected_logps=ref_rejected_logps,
        chosen_lengths=chosen_lengths,
        rejected_lengths=rejected_lengths,
    )
    return rewards_from_tensors(config, cast_inputs(x))


def reward_gap(
    config: GammaPOConfig,
    *,
    chosen_logps,
    rejected_logps,
    ref_chosen_logps=None,
    ref_rejected_logps=None,
    chosen_lengths=None,
    rejected_lengths=None,
) -> torch.Tensor:
    r"""The reward gap :math:`h = u_w - u_l` of each pair (see :func:`gammapo_spec.reward_gap`).

    Arguments and errors as :func:`implicit_rewards`; returns ``[N]`` gaps, differentiable.

    Example:
        >>> import torch
        >>> from gammapo_spec import GammaPOConfig
        >>> cfg = GammaPOConfig(loss="gamma-dpo", beta=0.5)
        >>> t = lambda *v: torch.tensor(v, dtype=torch.float64)
        >>> reward_gap(cfg, chosen_logps=t(-3.0, -5.0), rejected_logps=t(-6.0, -4.0),
        ...            ref_chosen_logps=t(-4.0, -5.0), ref_rejected_logps=t(-5.0, -5.0))
        tensor([ 1.0000, -0.5000], dtype=torch.float64)
    """
    u_w, u_l = implicit_rewards(
        config,
        chosen_logps=chosen_logps,
        rejected_logps=rejected_logps,
        ref_chosen_logps=ref_chosen_logps,
        ref_rejected_logps=ref_rejected_logps,
        chosen_lengths=chosen_lengths,
        rejected_lengths=rejected_lengths,
    )
    return u_w - u_l
