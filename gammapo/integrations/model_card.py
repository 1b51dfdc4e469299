"""The model card :class:`~gammapo.integrations.trl.GammaPOTrainer` writes beside its checkpoints.

TRL's own card names the trainer (DPO) and the model path it was loaded from; a γ-PO run needs more to
be reproducible: the base model (or that it was built from a config), the loss that was actually
trained with its β, γ0, τ and calibration solver, and the papers of that loss and of γ-PO.

Example:
    >>> from gammapo_spec import GammaPOConfig
    >>> text = model_card_text(GammaPOConfig(loss="gamma-simpo", beta=10.0, gamma_beta_ratio=0.4, tau=10.0),
    ...                        base_model=None, model_name="run")
    >>> "trained from a config" in text, "β = 10, γ0 = 4 (γ0/β = 0.4), τ = 10" in text, "2506.03690" in text
    (True, True, True)
"""

from __future__ import annotations

import os
from typing import Any

__all__ = ["CITATIONS", "model_card_text", "base_model_of", "write_model_card"]

_GAMMA_PO = ("γ-PO", "Sun et al., *Robust Preference Optimization via Dynamic Target Margins*, ACL 2025 Findings, "
             "arXiv:2506.03690")
#: The paper of each base loss (the γ- variants cite γ-PO as well).
CITATIONS = {
    "dpo": ("DPO", "Rafailov et al., *Direct Preference Optimization: Your Language Model is Secretly a Reward "
                   "Model*, NeurIPS 2023, arXiv:2305.18290"),
    "simpo": ("SimPO", "Meng, Xia and Chen, *SimPO: Simple Preference Optimization with a Reference-Free Reward*, "
                       "NeurIPS 2024, arXiv:2405.14734"),
    "ipo": ("IPO", "Azar et al., *A General Theoretical Paradigm to Understand Learning from Human Preferences*, "
                   "AISTATS 2024, arXiv:2310.12036"),
    "robust": ("rDPO", "Chowdhury, Kini and Natarajan, *Provably Robust DPO: Aligning Language Models with Noisy "
                       "Feedback*, ICML 2024, arXiv:2403.00409"),
    "rdpo": ("R-DPO", "Park et al., *Disentangling Length from Quality in Direct Preference Optimization*, "
                      "arXiv:2403.19159"),
    "hinge": ("SLiC-HF (hinge)", "Zhao et al., *SLiC-HF: Sequence Likelihood Calibration with Human Feedback*, "
                                 "arXiv:2305.10425"),
}
_TRL = ("TRL", "von Werra et al., *TRL: Transformer Reinforcement Learning*, https://github.com/huggingface/trl")


def base_model_of(model) -> str | None:
    """The path or hub id ``model`` was loaded from (``config._name_or_path``), ``None`` when it was built
    from a config."""
    name = getattr(getattr(model, "config", None), "_name_or_path", "") or ""
    return name or None


_NAMES = {"dpo": "DPO", "simpo": "SimPO", "ipo": "IPO", "hinge": "hinge", "robust": "rDPO", "rdpo": "R-DPO"}


def _name(loss: str) -> str:
    base = loss.removeprefix("gamma-")
    name = _NAMES.get(base, base)
    return f"γ-{name}" if loss.startswith("gamma-") else name


def _describe_loss(config) -> str:
    parts = [f"β = {config.beta:g}"]
    if config.base_loss == "simpo" or config.dynamic_margins:
        parts.append(f"γ0 = {config.gamma0:g} (γ0/β = {config.gamma_beta_ratio:g})")
    if config.dynamic_margins:
        parts.append(f"τ = {config.tau:g}")
        parts.append(f"calibration solver `{config.solver}`, calibration set `{config.calibration}`")
    text = f"**{_name(config.loss)}** (gammapo's `{config.loss}` loss): " + ", ".join(parts)
    if config.dynamic_margins:
        text += (f". The calibrated margins have mean γ0 and log(γmax/γmin) ≤ γ0/τ = {config.gamma0 / config.tau:.3g}; "
                 f"κ = γ0²/(8τ) = {config.gamma0**2 / (8 * config.tau):.3g}")
    return text + "."


def model_card_text(config, *, base_model: str | None, model_name: str | None = None,
                    dataset_name: str | None = None, training: dict[str, Any] | None = None,
                    loss_label: str | None = None) -> str:
    """The card's Markdown for a run of ``config`` (a :class:`~gammapo_spec.GammaPOConfig`, or ``None`` for a
    loss without one, described by ``loss_label``)."""
    papers = [_GAMMA_PO]
    if config is not None:
        base = config.base_loss
        if base in CITATIONS and CITATIONS[base] not in papers:
            papers.append(CITATIONS[base])
    papers.append(_TRL)
    tags = ["trl", "gammapo"] + ([config.loss] if config is not None else [])
    front = ["---"] + ([f"base_model: {base_model}"] if base_model else []) + ["library_name: transformers", "tags:"]
    front += [f"- {t}" for t in tags] + ["---", ""]
    origin = (f"This model is a fine-tuned version of `{base_model}`." if base_model else
              "This model was trained from a config (randomly initialised), not fine-tuned from a saved model.")
    method = _describe_loss(config) if config is not None else f"the loss `{loss_label or 'unknown'}`."
    body = [f"# {model_name or 'Model card'}", "", origin + (f" Data: `{dataset_name}`." if dataset_name else ""), "",
            "## Training procedure", "",
            f"Trained with gammapo's `GammaPOTrainer` (TRL's `DPOTrainer` with a gammapo loss) and {method}"]
    if training:
        body += ["", "Trainer settings: " + ", ".join(f"{k} = {v}" for k, v in training.items()) + "."]
    body += ["", "## Citations", ""] + [f"- {name}: {ref}" for name, ref in papers] + [""]
    return "\n".join(front + body)


def write_model_card(trainer, path: str, *, model_name: str | None = None, dataset_name: str | None = None) -> str:
    """Write the card of ``trainer``'s run to ``path`` (a file or a folder, then ``README.md`` in it)."""
    if os.path.isdir(path):
        path = os.path.join(path, "README.md")
    args = trainer.args
    training = {"learning rate": f"{args.learning_rate:g}", "epochs": f"{args.num_train_epochs:g}",
                "batch size per device": args.per_device_train_batch_size,
                "gradient accumulation": args.gradient_accumulation_steps, "seed": args.seed}
    if args.max_steps and args.max_steps > 0:
        training["max steps"] = args.max_steps
    from gammapo_spec import GammaPOConfig

    loss = trainer.pair_loss
    config = getattr(loss, "config", None)
    text = model_card_text(config if isinstance(config, GammaPOConfig) else None, base_model=base_model_of(trainer.model),
                           model_name=model_name, dataset_name=dataset_name, training=training,
                           loss_label=type(loss).__name__)
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(text)
    return path
