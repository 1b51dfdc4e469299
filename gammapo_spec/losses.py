r"""The base losses γ-PO plugs into, as functions of the pair's *margin-adjusted gap*.

Every loss here depends on a pair only through :math:`z = h - m`: the reward gap h minus the pair's
target margin m. That is what makes γ-PO plug-and-play: the per-pair margin is

.. math:: m_i = m^\text{base}_i + (\gamma_i - \gamma_0)

with :math:`\gamma_i` from calibration (a constant for the gradient) and the base margin of the loss:
γ0 for SimPO (so γ-SimPO uses :math:`m_i = \gamma_i`), :math:`\alpha(|y_w| - |y_l|)` for R-DPO, 0 for the
others. The shift :math:`\gamma_i - \gamma_0` has mean zero, so each loss keeps its base margin on
average. Without the ``gamma-`` prefix, :math:`m_i = m^\text{base}_i`.

Per-pair losses :math:`\ell(z)` (the batch loss is their mean), with ε = ``label_smoothing``:

========  ===========================================================================================
dpo       :math:`(1-\varepsilon)\,\operatorname{softplus}(-z) + \varepsilon\,\operatorname{softplus}(z)`
simpo     same as dpo, plus SimPO's optional NLL term (:func:`sft_terms`)
rdpo      same as dpo (R-DPO is DPO with the length margin)
robust    :math:`\big((1-\varepsilon)\operatorname{softplus}(-z) - \varepsilon\operatorname{softplus}(z)\big)/(1-2\varepsilon)`
hinge     :math:`\max(0,\; 1 - z)`
ipo       :math:`\big((z - \tfrac12)/\beta\big)^2`
========  ===========================================================================================

Decisions (``docs/theory/losses.md``, "Decisions the spec makes"):

* **Label smoothing** uses the conservative-DPO form :math:`-\varepsilon\log\sigma(-(h - m))`: the binary
  cross-entropy of *one* Bradley–Terry-with-margin model, :math:`P(y_w \succ y_l) = \sigma(h - m)`, against a
  soft label 1 − ε. It is what cDPO, SimPO's own code and TRL's CPOTrainer compute, and it is minimised
  at a finite z (where σ(z) = 1 − ε). The alternative, the plain ``simpo`` loss of the γ-PO repository's copy
  of the SimPO trainer, smooths with :math:`-\varepsilon\log\sigma(-h - m)` ("symmetric margin": the flipped
  pair must also clear the margin); its ``gm-simpo`` ignores label smoothing altogether. The two coincide when m = 0 and differ whenever a margin is present; gammapo does not
  offer the symmetric form.
* **IPO** is Azar et al.'s :math:`(\Delta - 1/(2\beta))^2` with Δ the *unscaled, summed* log-ratio
  difference (:math:`\Delta = h/\beta`), which is :math:`((z - 1/2)/\beta)^2` with z = h − m. The alternatives:
  newer TRL length-normalises Δ (average instead of summed log-probs), and the γ-PO trainer writes
  :math:`(\Delta - 1/(2\,\text{gamma\_beta\_ratio}))^2`, putting the margin ratio where IPO's regulariser
  belongs. A user who wants length-normalised IPO passes length-averaged log-probs.
* **Hinge** uses the subgradient 0 at z = 1 (as ``relu`` does in every framework).
"""

from __future__ import annotations

import numpy as np

from .config import GammaPOConfig
from .numerics import sigmoid, softplus

__all__ = ["base_margins", "target_margins", "pair_losses", "pair_loss_derivative", "sft_terms", "sft_terms_grad"]


def base_margins(config: GammaPOConfig, n: int, chosen_lengths=None, rejected_lengths=None) -> np.ndarray:
    r"""The loss's own target margin per pair: γ0 (SimPO), :math:`\alpha(|y_w| - |y_l|)` (R-DPO), else 0."""
    if config.base_loss == "simpo":
        return np.full(n, config.gamma0)
    if config.base_loss == "rdpo":
        lw = np.asarray(chosen_lengths, dtype=np.float64)
        ll = np.asarray(rejected_lengths, dtype=np.float64)
        return config.rdpo_alpha * (lw - ll)
    return np.zeros(n)


def target_margins(
    config: GammaPOConfig, n: int, *, gamma=None, chosen_lengths=None, rejected_lengths=None
) -> np.ndarray:
    r"""The per-pair target margins :math:`m_i = m^\text{base}_i + (\gamma_i - \gamma_0)`.

    Args:
        config: the loss configuration.
        n: the number of pairs N.
        gamma: ``[N]`` calibrated margins; required with the ``gamma-`` prefix, ignored without it.
        chosen_lengths, rejected_lengths: ``[N]`` lengths (R-DPO only).

    Returns:
        ``[N]`` float64 target margins.

    Example:
        >>> from gammapo_spec import GammaPOConfig, target_margins
        >>> target_margins(GammaPOConfig(loss="gamma-dpo", beta=1.0, gamma_beta_ratio=1.0), 2, gamma=[0.5, 1.5])
        array([-0.5,  0.5])
    """
    m = base_margins(config, n, chosen_lengths, rejected_lengths)
    if config.dynamic_margins:
        if gamma is None:
            raise ValueError(f"loss {config.loss!r} needs the calibrated gamma")
        m = m + (np.asarray(gamma, dtype=np.float64) - config.gamma0)
    return m


def pair_losses(config: GammaPOConfig, z) -> np.ndarray:
    r"""The per-pair loss :math:`\ell(z)` of ``config.base_loss`` at z = h − m (table above; no SFT term).

    Example:
        >>> import numpy as np
        >>> from gammapo_spec import GammaPOConfig, pair_losses
        >>> float(pair_losses(GammaPOConfig(loss="dpo", beta=0.1), np.array([0.0]))[0]) == float(np.log(2))
        True
    """
    z = np.asarray(z, dtype=np.float64)
    eps = config.label_smoothing
    name = config.base_loss
    if name in ("dpo", "simpo", "rdpo"):
        return (1.0 - eps) * softplus(-z) + eps * softplus(z)
    if name == "robust":
        return ((1.0 - eps) * softplus(-z) - eps * softplus(z)) / (1.0 - 2.0 * eps)
    if name == "hinge":
        return np.maximum(0.0, 1.0 - z)
    if name == "ipo":
        return ((z - 0.5) / config.beta) ** 2
    raise AssertionError(name)  # unreachable: the config validated the name


def pair_loss_derivative(config: GammaPOConfig, z) -> np.ndarray:
    r""":math:`d\ell/dz` of :func:`pair_losses`, written out.

    ========  ==============================================================
    dpo …     :math:`-(1-\varepsilon)\,\sigma(-z) + \varepsilon\,\sigma(z)`
    robust    :math:`-\big((1-\varepsilon)\sigma(-z) + \varepsilon\sigma(z)\big)/(1-2\varepsilon)`
    hinge     :math:`-1` if z < 1, else 0
    ipo       :math:`2(z - \tfrac12)/\beta^2`
    ========  ==============================================================
    """
    z = np.asarray(z, dtype=np.float64)
    eps = config.label_smoothing
    name = config.base_loss
    if name in ("dpo", "simpo", "rdpo"):
        return -(1.0 - eps) * sigmoid(-z) + eps * sigmoid(z)
    if name == "robust":
        return -((1.0 - eps) * sigmoid(-z) + eps * sigmoid(z)) / (1.0 - 2.0 * eps)
    if name == "hinge":
        return np.where(z < 1.0, -1.0, 0.0)
    if name == "ipo":
        return 2.0 * (z - 0.5) / config.beta**2
    raise AssertionError(name)


def pair_loss_curvature(config: GammaPOConfig, z) -> np.ndarray:
    r""":math:`d^2\ell/dz^2` of :func:`pair_losses`, written out (independent of the label smoothing ε).

    ========  ==============================================================
    dpo …     :math:`\sigma(z)\,\sigma(-z)`  (both smoothing terms contribute ε·σσ and (1−ε)·σσ)
    robust    :math:`\sigma(z)\,\sigma(-z)`  (the (1 − 2ε) of the numerator cancels the denominator)
    hinge     0 (the kink at z = 1 is not a curvature: :func:`pair_loss_derivative` jumps there)
    ipo       :math:`2/\beta^2`
    ========  ==============================================================

    The conformance suite uses it to bound how far a correctly rounded gap moves a gradient: a gap off
    by δz moves ℓ'(z) by about ℓ''(z)·δz.

    Example:
        >>> import numpy as np
        >>> from gammapo_spec import GammaPOConfig, pair_loss_curvature
        >>> float(pair_loss_curvature(GammaPOConfig(loss="dpo", label_smoothing=0.2), np.array([0.0]))[0])
        0.25
    """
    z = np.asarray(z, dtype=np.float64)
    name = config.base_loss
    if name in ("dpo", "simpo", "rdpo", "robust"):
        return sigmoid(z) * sigmoid(-z)
    if name == "hinge":
        return np.zeros_like(z)
    if name == "ipo":
        return np.full_like(z, 2.0 / config.beta**2)
    raise AssertionError(name)


def sft_terms(config: GammaPOConfig, chosen_logps, chosen_lengths) -> np.ndarray:
    r"""SimPO's optional NLL term on the chosen responses, as per-pair terms :math:`t_i` added to the losses.

    With :math:`w` = ``sft_weight``, :math:`c_i` the summed log-prob of the chosen response and
    :math:`|y_{w,i}|` its length in tokens, the two reductions are

    .. math::

        \text{pair (default):}\quad t_i = w\cdot\frac{-c_i}{|y_{w,i}|},
        \qquad\qquad
        \text{token:}\quad t_i = w\cdot\frac{-N\,c_i}{\sum_j |y_{w,j}|},

    so that the batch loss :math:`\frac1N\sum_i(\ell_i + t_i)` carries
    :math:`w\cdot\frac1N\sum_i -c_i/|y_{w,i}|` (the mean over pairs of each response's per-token NLL)
    or :math:`w\cdot\big(-\sum_i c_i\big)/\sum_i|y_{w,i}|` (the mean over every chosen token of the
    batch: the cross-entropy of the released SimPO trainer and of TRL's ``cpo_alpha``). The two agree
    when all chosen responses have the same length.

    Decision: ``"pair"`` is the default. It is a per-pair loss, so it does not change when a batch is
    split into micro-batches for gradient accumulation, and it weighs pairs as the preference term
    does; ``"token"`` is offered to reproduce the released trainer (its token mean is over the batch
    given, i.e. per micro-batch and per rank, as there).

    Args:
        config: the loss configuration (``sft_weight``, ``sft_reduction``).
        chosen_logps: ``[N]`` summed log-probs :math:`c_i` of the chosen responses.
        chosen_lengths: ``[N]`` their lengths (> 0).

    Returns:
        ``[N]`` float64 terms (zeros when ``sft_weight`` is 0).

    Example:
        >>> from gammapo_spec import GammaPOConfig
        >>> from gammapo_spec.losses import sft_terms
        >>> cfg = GammaPOConfig(loss="simpo", sft_weight=1.0)
        >>> sft_terms(cfg, [-2.0, -6.0], [1.0, 3.0]).tolist()           # -c/|y_w| each
        [2.0, 2.0]
        >>> sft_terms(cfg.replace(sft_reduction="token"), [-2.0, -6.0], [1.0, 3.0]).tolist()  # mean 8/4
        [1.0, 3.0]
    """
    c = np.asarray(chosen_logps, dtype=np.float64)
    if config.sft_weight == 0:
        return np.zeros_like(c)
    lengths = np.asarray(chosen_lengths, dtype=np.float64)
    if config.sft_reduction == "token":
        return config.sft_weight * (-c * c.shape[0] / np.sum(lengths))
    return config.sft_weight * (-c / lengths)


def sft_terms_grad(config: GammaPOConfig, chosen_lengths) -> np.ndarray:
    r"""The gradient of the batch-mean SFT term :math:`\frac1N\sum_i t_i` (:func:`sft_terms`) in each
    :math:`c_i`: :math:`-w/(N|y_{w,i}|)` (pair) or :math:`-w/\sum_j|y_{w,j}|` (token)."""
    lengths = np.asarray(chosen_lengths, dtype=np.float64)
    if config.sft_weight == 0:
        return np.zeros_like(lengths)
    if config.sft_reduction == "token":
        return np.full_like(lengths, -config.sft_weight / np.sum(lengths))
    return -config.sft_weight / (lengths.shape[0] * lengths)
