"""Preference-data tools: alignment-potential selection and reward-augmented relabelling.

Pure Python over records (lists of dicts) or Hugging Face ``datasets.Dataset`` objects; the maths
of selection is defined in :mod:`gammapo_spec.alignment_potential`, the relabelling in
:mod:`gammapo.data.reward_augmented`.

* :mod:`gammapo.data.io` — read and write JSONL and JSON files and ``datasets`` directories
  (``save_to_disk``), the one reader of every command;
* :mod:`gammapo.data.output` — output checks before any work, and atomic replacement;
* :mod:`gammapo.data.select` — score pairs and keep the top fraction (``gammapo select``);
* :mod:`gammapo.data.reward_augmented` — the relabelling of one record (conditions, ties, formats);
* :mod:`gammapo.data.augment` — reward-augmented relabelling of a data set (``gammapo augment``);
* :mod:`gammapo.data.logprobs` — fill in the log-prob and length columns with a local causal LM;
* :mod:`gammapo.data.cli` — the two command lines.

Nothing here loses or duplicates a record silently: every operation returns counts
(``read``, ``invalid``, ``filtered``, ``written``) with ``read == invalid + filtered + written`` for
selection and ``written == 2 * kept`` for augmentation.
"""

from .augment import augment_pairs
from .io import DataError, read_data, write_data
from .select import select_pairs

__all__ = ["DataError", "augment_pairs", "read_data", "select_pairs", "write_data"]
