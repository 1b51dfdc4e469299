r"""Data variants of the embedded study: plain, reward-augmented and alignment-potential-selected pairs.

``gammapo train --data plain,augmented,selected`` trains every method on each variant of the *same*
noisy training pairs (:mod:`gammapo.train.task`):

* ``plain`` — the pairs as drawn (20% of the labels flipped by default).
* ``augmented`` — reward-augmented relabelling (:mod:`gammapo.data.augment`,
  :mod:`gammapo.data.reward_augmented`): every pair with :math:`s_w \ge s_l` becomes two pairs, the
  prompt conditioned on :math:`s_w` (``chosen`` ≻ ``rejected``) and on :math:`s_l` (``rejected`` ≻
  ``chosen``); pairs with :math:`s_w < s_l` are dropped. The condition is a prefix word ``s<score>``
  (the tiny word-level tokenizer has no chat template; the eleven words ``s0 … s10`` are added to its
  vocabulary for these runs). At evaluation the policy *and* the reference are conditioned on the top
  score (:func:`condition`), for the held-out clean-pair accuracy and for the greedy generations.
* ``selected`` — alignment-potential selection (:mod:`gammapo.data.select`,
  :mod:`gammapo_spec.alignment_potential`): explicit margin :math:`s_w - s_l`, implicit margin from the
  *initial* model of the run (the one that becomes the reference), reference-free (length-normalised:
  the reference-based margin is 0 for every pair before training, a constant column); log-probs by
  :func:`gammapo.data.logprobs.fill_logprobs`. The top ``fraction`` is kept,
  :math:`k = \lfloor f N \rfloor` (the spec's :func:`~gammapo_spec.alignment_potential.selection_size`).

Scores: the task's ground-truth reward :math:`r^\star \in \{-1, -0.8, \dots, 1\}` (five words, each
liked, neutral or disliked) on the integer scale :math:`s = L\,(r^\star + 1) \in \{0, \dots, 2L\}`
(0–10 for the default ``L = 5``; the top score is ``2L``). Two sources (``--scores``):

* ``truth`` (default) — :math:`s` of each response as it is: a flipped label then has
  :math:`s_w < s_l`, so augmentation drops it and selection ranks it last by explicit margin. This is
  the setting the methods assume (a scorer better than the labels) and it gives them information the
  plain-data runs do not have: their gains here are an upper bound.
* ``labels`` — a judge that agrees with the (noisy) labels: the two scores of a flipped pair are swapped,
  so :math:`s_w \ge s_l` always and the scores say nothing about which labels are wrong, only how
  large each preference is. The fair control.

Example:
    >>> from gammapo.train.task import SyntheticTask
    >>> task = SyntheticTask()
    >>> pairs = task.pairs(200, noise=0.2, seed=1)
    >>> rows, counts = augmented_pairs(task, pairs, scores="truth")
    >>> counts["read"] == 200 and counts["written"] == 2 * counts["kept"] == len(rows)
    True
    >>> rows[0]["prompt"].split()[0] in score_words(task), condition("q3", task)
    (True, 's10 q3')
"""

from __future__ import annotations

from typing import Any, Sequence

__all__ = [
    "DATA_VARIANTS",
    "SCORE_SOURCES",
    "TEMPLATE",
    "task_score",
    "top_score",
    "score_words",
    "condition",
    "scored_pairs",
    "augmented_pairs",
    "selected_pairs",
    "count_flipped",
]

DATA_VARIANTS = ("plain", "augmented", "selected")
SCORE_SOURCES = ("truth", "labels")
#: The condition of an augmented prompt: one word before the prompt (``s10 q3``).
TEMPLATE = "s{score}"
_COLUMNS = ("prompt", "chosen", "rejected")


def task_score(task, prompt: str, response: str) -> int:
    r""":math:`s = L\,(r^\star + 1)`, an integer in ``[0, 2L]``."""
    return int(round(task.length * (task.reward(prompt, response) + 1.0)))


def top_score(task) -> int:
    """The highest score, ``2L`` (every word liked)."""
    return 2 * task.length


def score_words(task) -> list[str]:
    """The condition words ``s0 … s{2L}`` (added to the tokenizer of the augmented runs)."""
    return [TEMPLATE.format(score=s) for s in range(top_score(task) + 1)]


def condition(prompt: str, task, score: int | None = None) -> str:
    """``prompt`` conditioned on ``score`` (default: the top score), by the spec's inference helper."""
    from gammapo.data.reward_augmented import condition_prompt

    return condition_prompt(prompt, top_score(task) if score is None else score, template=TEMPLATE, mode="prefix",
                            separator=" ")


def scored_pairs(task, pairs: Sequence[dict], scores: str) -> list[dict]:
    """``pairs`` with ``score_chosen`` and ``score_rejected`` from ``scores`` (``truth`` or ``labels``)."""
    if scores not in SCORE_SOURCES:
        raise ValueError(f"scores must be one of {list(SCORE_SOURCES)}, got {scores!r}")
    out = []
    for p in pairs:
        sw, sl = task_score(task, p["prompt"], p["chosen"]), task_score(task, p["prompt"], p["rejected"])
        if scores == "labels" and sw < sl:
            sw, sl = sl, sw
        out.append(dict(p, score_chosen=sw, score_rejected=sl))
    return out


def augmented_pairs(task, pairs: Sequence[dict], *, scores: str) -> tuple[list[dict], dict[str, int]]:
    """Reward-augmented training pairs (prompt, chosen, rejected only) and the transform's counts
    (``read``, ``invalid``, ``kept``, ``dropped_lower``, ``dropped_ties``, ``written``, and
    ``flipped_kept``: kept pairs whose label disagrees with the ground truth, of ``flipped_read``)."""
    from gammapo.data.augment import augment_pairs

    rows = scored_pairs(task, pairs, scores)
    res = augment_pairs(rows, template=TEMPLATE, mode="prefix", separator=" ", show_progress=False)
    counts: dict[str, Any] = dict(res.counts)
    counts["flipped_read"] = int(sum(_flipped(task, p) for p in pairs))
    counts["flipped_kept"] = int(sum(_flipped(task, p) for p, r in zip(pairs, rows) if r["score_chosen"] >= r["score_rejected"]))
    return [{k: r[k] for k in _COLUMNS} for r in res.data], counts


def selected_pairs(task, pairs: Sequence[dict], model, tokenizer, *, fraction: float, scores: str,
                   batch_size: int = 256) -> tuple[list[dict], dict[str, Any]]:
    """The top ``fraction`` of ``pairs`` by alignment potential under ``model`` (the initial model) and the
    counts (``read``, ``invalid``, ``filtered``, ``written``, and ``flipped_kept``: kept pairs whose label
    disagrees with the ground truth, against ``flipped_read`` in the input)."""
    from gammapo.data.logprobs import fill_logprobs
    from gammapo.data.select import select_pairs

    rows = scored_pairs(task, pairs, scores)
    was_training = model.training
    model.eval()
    rows, _ = fill_logprobs(rows, model, tokenizer, batch_size=batch_size, show_progress=False)
    model.train(was_training)
    res = select_pairs(rows, fraction=fraction, variant="reference-free")
    counts: dict[str, Any] = dict(res.counts)
    counts["flipped_read"] = int(sum(_flipped(task, p) for p in pairs))
    counts["flipped_kept"] = int(sum(_flipped(task, pairs[i]) for i in res.indices))
    return [{k: r[k] for k in _COLUMNS} for r in res.data], counts


def count_flipped(task, pairs: Sequence[dict]) -> int:
    """How many of ``pairs`` have a label that disagrees with the ground-truth reward."""
    return int(sum(_flipped(task, p) for p in pairs))


def _flipped(task, pair: dict) -> bool:
    return bool(task.reward(pair["prompt"], pair["chosen"]) < task.reward(pair["prompt"], pair["rejected"]))
