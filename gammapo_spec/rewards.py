r"""Implicit rewards and the reward gap ``h`` of each preference pair.

Two families (``docs/theory/objective.md``, "Rewards and gaps"):

.. math::

    \text{reference-based (DPO, IPO, hinge, robust, R-DPO):}\quad
        u_w = \beta (c - c_\text{ref}),\quad u_l = \beta (r - r_\text{ref})

    \text{length-normalised, reference-free (SimPO):}\quad
        u_w = \beta\, c / |y_w|,\quad u_l = \beta\, r / |y_l|

and the gap :math:`h = u_w - u_l`. Here :math:`c, r` are the policy's summed token log-probs of the
chosen and rejected responses, :math:`c_\text{ref}, r_\text{ref}` the reference model's, and
:math:`|y_w|, |y_l|` the response lengths in tokens.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .config import GammaPOConfig
from .validation import (
    LENGTH_FIELDS,
    as_real_array,
    check_finite,
    check_pair_shapes,
    check_positive,
    required_fields,
)

__all__ = ["reward_gap", "implicit_rewards", "prepare_inputs"]


def prepare_inputs(config: GammaPOConfig, **inputs: Any) -> dict[str, np.ndarray]:
    """Validate the per-pair inputs of ``config``'s loss and convert them to float64 arrays.

    Returns:
        The needed inputs by name (arguments passed as ``None`` are dropped).

    Raises:
        InputError: see :mod:`gammapo_spec.validation`.
    """
    arrays = {k: as_real_array(k, v).astype(np.float64) for k, v in inputs.items() if v is not None}
    check_pair_shapes(config, {k: a.shape for k, a in arrays.items()})
    if config.check_values:
        for name in required_fields(config):
            if name in LENGTH_FIELDS:
                check_positive(name, bool(np.all(np.isfinite(arrays[name]) & (arrays[name] > 0))))
            else:
                check_finite(name, bool(np.all(np.isfinite(arrays[name]))))
    return arrays


def implicit_rewards(
    config: GammaPOConfig,
    *,
    chosen_logps,
    rejected_logps,
    ref_chosen_logps=None,
    ref_rejected_logps=None,
    chosen_lengths=None,
    rejected_lengths=None,
) -> tuple[np.ndarray, np.ndarray]:
    r"""The implicit rewards :math:`(u_w, u_l)` of each pair, in ``config``'s loss family.

    Args:
        config: selects the family (``simpo`` is length-normalised and reference-free, every
            other loss is reference-based) and β.
        chosen_logps, rejected_logps: ``[N]`` summed policy log-probs :math:`c, r`.
        ref_chosen_logps, ref_rejected_logps: ``[N]`` reference log-probs (reference-based losses).
        chosen_lengths, rejected_lengths: ``[N]`` response lengths in tokens, > 0 (SimPO, R-DPO).

    Returns:
        ``(chosen_rewards, rejected_rewards)``, each ``[N]`` float64.

    Raises:
        InputError: a missing, unexpected, mismatched or non-finite input.

    Example:
        >>> from gammapo_spec import GammaPOConfig, implicit_rewards
        >>> cfg = GammaPOConfig(loss="simpo", beta=2.0)
        >>> implicit_rewards(cfg, chosen_logps=[-4.0], rejected_logps=[-9.0],
        ...                  chosen_lengths=[2], rejected_lengths=[3])
        (array([-4.]), array([-6.]))
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
    return _rewards_from_arrays(config, x)


def _rewards_from_arrays(config: GammaPOConfig, x: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    beta = config.beta
    if config.reference_free:
        return beta * x["chosen_logps"] / x["chosen_lengths"], beta * x["rejected_logps"] / x["rejected_lengths"]
    return (
        beta * (x["chosen_logps"] - x["ref_chosen_logps"]),
        beta * (x["rejected_logps"] - x["ref_rejected_logps"]),
    )


def reward_gap(
    config: GammaPOConfig,
    *,
    chosen_logps,
    rejected_logps,
    ref_chosen_logps=None,
    ref_rejected_logps=None,
    chosen_lengths=None,
    rejected_lengths=None,
) -> np.ndarray:
    r"""The reward gap :math:`h = u_w - u_l` of each pair (the "implicit reward margin").

    Reference-based: :math:`h = \beta[(c - c_\text{ref}) - (r - r_\text{ref})]`;
    SimPO: :math:`h = \beta(c/|y_w| - r/|y_l|)`. Arguments and errors as :func:`implicit_rewards`.

    Returns:
        ``[N]`` float64 gaps.

    Example:
        >>> from gammapo_spec import GammaPOConfig, reward_gap
        >>> cfg = GammaPOConfig(loss="gamma-dpo", beta=0.5)
        >>> reward_gap(cfg, chosen_logps=[-3.0, -5.0], rejected_logps=[-6.0, -4.0],
        ...            ref_chosen_logps=[-4.0, -5.0], ref_rejected_logps=[-5.0, -5.0])
        array([ 1. , -0.5])
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
