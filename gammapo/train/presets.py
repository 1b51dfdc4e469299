"""Hyper-parameter presets: the embedded task's and the released γ-SimPO recipes of the γ-PO paper.

A preset gives the loss keywords of each method family and the trainer's learning rate and epochs.
The released recipes are all γ-SimPO (length-normalised, 1 epoch, cosine schedule, warm-up 0.1):

==============  =====  =====  ====  =======
preset           β     γ0/β    τ     lr
==============  =====  =====  ====  =======
``llama3``       10     0.4    10   1e-6
``gemma2``       10     0.5    20   8e-7
``mistral``      2.5    0.15   10   6e-7
``qwen2.5``      10     0.3    3    1e-6
==============  =====  =====  ====  =======

SimPO uses the same β and γ0. DPO-family losses have no released γ-PO recipe: they use TRL's default
β = 0.1 with γ0/β = 5 (γ0 = 0.5) for γ-DPO and the preset's τ. ``tiny`` is the embedded task's
setting (a 2-layer model trained from scratch, hence the large learning rate).

Example:
    >>> loss_kwargs("gamma-simpo", PRESETS["llama3"])
    {'beta': 10.0, 'gamma_beta_ratio': 0.4, 'tau': 10.0}
    >>> loss_kwargs("dpo", PRESETS["llama3"])
    {'beta': 0.1}
"""

from __future__ import annotations

import dataclasses

__all__ = ["Preset", "PRESETS", "loss_kwargs"]


@dataclasses.dataclass(frozen=True)
class Preset:
    """β, γ0/β, τ of the SimPO family and of the DPO family; learning rate; epochs."""

    simpo_beta: float
    simpo_ratio: float
    tau: float
    learning_rate: float
    epochs: float
    dpo_beta: float = 0.1
    dpo_ratio: float = 5.0


PRESETS: dict[str, Preset] = {
    "tiny": Preset(simpo_beta=2.0, simpo_ratio=0.5, tau=1.0, learning_rate=3e-3, epochs=3.0, dpo_ratio=10.0),
    "llama3": Preset(simpo_beta=10.0, simpo_ratio=0.4, tau=10.0, learning_rate=1e-6, epochs=1.0),
    "gemma2": Preset(simpo_beta=10.0, simpo_ratio=0.5, tau=20.0, learning_rate=8e-7, epochs=1.0),
    "mistral": Preset(simpo_beta=2.5, simpo_ratio=0.15, tau=10.0, learning_rate=6e-7, epochs=1.0),
    "qwen2.5": Preset(simpo_beta=10.0, simpo_ratio=0.3, tau=3.0, learning_rate=1e-6, epochs=1.0),
}


def loss_kwargs(loss: str, preset: Preset) -> dict[str, float]:
    """The ``GammaPOConfig`` keywords of ``loss`` under ``preset`` (only the fields that loss takes)."""
    base = loss.removeprefix("gamma-")
    dynamic = loss.startswith("gamma-")
    if base == "simpo":
        kw = {"beta": preset.simpo_beta, "gamma_beta_ratio": preset.simpo_ratio}
    else:
        kw = {"beta": preset.dpo_beta}
        if dynamic:
            kw["gamma_beta_ratio"] = preset.dpo_ratio
    if dynamic:
        kw["tau"] = preset.tau
    return kw
