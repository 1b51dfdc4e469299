r"""The embedded synthetic preference task: a known ground-truth reward, noisy labels drawn from it.

Prompts are ``K`` words ``q0 … q{K-1}``; a response is ``L`` words from an alphabet ``t0 … t{A-1}``.
Each prompt likes some words and dislikes others (a fixed table ``W[k, a] ∈ {+1, 0, −1}`` drawn once
from ``task_seed``), and the ground-truth reward is the mean liking of the response's words:

.. math::  r^\star(x_k, y) = \frac1L \sum_{t=1}^{L} W[k, y_t] \in [-1, 1]

(a word outside the alphabet — or missing, when a generation stops early — scores 0).

Preference pairs: two responses drawn uniformly at random; the one with the higher :math:`r^\star`
is *chosen* (ties are redrawn); then each label is flipped with probability ``noise`` (the label
noise γ-PO is meant to be robust to). Held-out evaluation pairs are drawn the same way and never
flipped ("clean").

Example:
    >>> task = SyntheticTask()
    >>> pairs = task.pairs(4, noise=0.0, seed=1)
    >>> all(task.reward(p["prompt"], p["chosen"]) > task.reward(p["prompt"], p["rejected"]) for p in pairs)
    True
"""

from __future__ import annotations

import dataclasses

import numpy as np

__all__ = ["SyntheticTask"]


@dataclasses.dataclass(frozen=True)
class SyntheticTask:
    """The task's shape: ``n_prompts`` prompts, an alphabet of ``n_words``, responses of ``length``
    words, ``n_liked`` liked and ``n_liked`` disliked words per prompt, drawn from ``task_seed``."""

    n_prompts: int = 8
    n_words: int = 12
    length: int = 5
    n_liked: int = 3
    task_seed: int = 0

    @property
    def prompts(self) -> list[str]:
        return [f"q{k}" for k in range(self.n_prompts)]

    @property
    def alphabet(self) -> list[str]:
        return [f"t{a}" for a in range(self.n_words)]

    @property
    def words(self) -> list[str]:
        """Every word of the task (for the tokenizer)."""
        return self.prompts + self.alphabet

    @property
    def table(self) -> np.ndarray:
        """``W[k, a]``: +1 liked, −1 disliked, 0 neutral."""
        rng = np.random.default_rng(self.task_seed)
        w = np.zeros((self.n_prompts, self.n_words))
        for k in range(self.n_prompts):
            order = rng.permutation(self.n_words)
            w[k, order[: self.n_liked]] = 1.0
            w[k, order[self.n_liked : 2 * self.n_liked]] = -1.0
        return w

    def reward(self, prompt: str, response: str) -> float:
        """:math:`r^\\star(x, y)`: mean liking of the first ``length`` words (unknown or missing words score 0)."""
        k = int(prompt.strip()[1:])
        w = self.table[k]
        total = 0.0
        for word in response.split()[: self.length]:
            if word.startswith("t") and word[1:].isdigit() and int(word[1:]) < self.n_words:
                total += w[int(word[1:])]
        return total / self.length

    def best_reward(self) -> float:
        """The highest achievable reward (1.0: every word liked)."""
        return 1.0

    def pairs(self, n: int, *, noise: float, seed: int) -> list[dict[str, str]]:
        """``n`` pairs ``{"prompt", "chosen", "rejected"}`` (TRL's standard format), each label flipped with
        probability ``noise``; responses start with a space so they follow the prompt as words."""
        rng = np.random.default_rng(seed)
        out: list[dict[str, str]] = []
        while len(out) < n:
            k = int(rng.integers(self.n_prompts))
            a, b = (" " + " ".join(f"t{i}" for i in rng.integers(self.n_words, size=self.length)) for _ in range(2))
            ra, rb = self.reward(f"q{k}", a), self.reward(f"q{k}", b)
            if ra == rb:
                continue
            chosen, rejected = (a, b) if ra > rb else (b, a)
            if rng.random() < noise:
                chosen, rejected = rejected, chosen
            out.append({"prompt": f"q{k}", "chosen": chosen, "rejected": rejected})
        return out
