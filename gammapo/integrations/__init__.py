"""Integrations of gammapo with the training libraries people already use.

* :mod:`gammapo.integrations.losses` — the registry of pair losses a trainer dispatches on by name
  (every γ-PO loss of the spec; other methods register their own);
* :mod:`gammapo.integrations.trl` — :class:`~gammapo.integrations.trl.GammaPOTrainer`, TRL's
  ``DPOTrainer`` with its loss replaced by a registered pair loss (needs ``gammapo[trl]``).

Nothing here is imported by ``import gammapo``; each module imports its framework when loaded.
"""
