"""``gammapo train``: γ-PO training through TRL (needs ``gammapo[trl]``).

* :mod:`~gammapo.train.cli` — the command line (``main(argv) -> int``);
* :mod:`~gammapo.train.task` — the embedded synthetic preference task with a known ground-truth reward;
* :mod:`~gammapo.train.tiny` — a tiny causal LM and a word-level tokenizer built locally;
* :mod:`~gammapo.train.run` — train one method with :class:`~gammapo.integrations.trl.GammaPOTrainer`
  and evaluate it (clean-pair implicit-reward accuracy, ground-truth reward of greedy responses);
* :mod:`~gammapo.train.study` — the embedded study's runs (oracle, noise models, paired seeds) in a process pool;
* :mod:`~gammapo.train.diagnostics` — is γ-PO's mechanism active? (AUC of −γ for the flipped pairs, spread, weight shares);
* :mod:`~gammapo.train.compare` — paired differences against the base loss and the verdict;
* :mod:`~gammapo.train.data` — loading and checking a preference file before training;
* :mod:`~gammapo.train.presets` — the released γ-SimPO recipes of the γ-PO paper;
* :mod:`~gammapo.train.report` — the table, the Markdown report and the plot.
"""
