r"""The embedded synthetic preference task: a known ground-truth reward, noisy labels drawn from it.

Prompts are ``K`` words ``q0 … q{K-1}``; a response is ``L`` words from an alphabet ``t0 … t{A-1}``.
Each prompt likes some words and dislikes others (a fixed table ``W[k, a] ∈ {+1, 0, −1}`` drawn once
from ``task_seed``), and the ground-truth reward is the mean liking of the response's words:

.. math::  r^\star(x_k, y) = \frac1L \sum_{t=1}^{L} W[k, y_t] \in [-1, 1]

(a word outside the alphabet — or missing, when a generation stops early — scores 0).

Preference pairs: two responses drawn uniformly at random; the one with the higher :math:`r^\star`
is *chosen* (ties are redrawn); then each label is flipped (the label noise γ-PO is meant to be robust
to), by one of two noise models with the same expected flip rate ``noise``:

* ``uniform`` — every pair flipped with probability ``noise``, whatever its true reward difference;
* ``bt`` — instance-dependent Bradley–Terry noise: a pair with true reward difference
  :math:`\Delta r^\star > 0` is flipped with probability :math:`\sigma(-\Delta r^\star / T)`, so close
  pairs are flipped more often than clear ones; the temperature :math:`T` is solved
  (:meth:`SyntheticTask.bt_temperature`) so that the expected flip rate over the task's pairs is ``noise``.

Held-out evaluation pairs are drawn the same way and never flipped ("clean").

Example:
    >>> task = SyntheticTask()
    >>> pairs = task.pairs(4, noise=0.0, seed=1)
    >>> all(task.reward(p["prompt"], p["chosen"]) > task.reward(p["prompt"], p["rejected"]) for p in pairs)
    True
"""

from __future__ import annotations

import dataclasses

import numpy as np

__all__ = ["SyntheticTask", "NOISE_MODELS"]

#: The label-noise models of :meth:`SyntheticTask.pairs`.
NOISE_MODELS = ("uniform", "bt")


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

    def gap_distribution(self) -> tuple[np.ndarray, np.ndarray]:
        r"""The exact distribution of the true reward difference :math:`\Delta r^\star > 0` of a drawn pair
        (before any flip): ``(values, probabilities)``. Every prompt has the same number of liked and
        disliked words, so it is the same for every prompt.

        Example:
            >>> values, probs = SyntheticTask().gap_distribution()
            >>> values[:3].round(2).tolist(), bool(abs(probs.sum() - 1) < 1e-12)
            ([0.2, 0.4, 0.6], True)
        """
        p_like = self.n_liked / self.n_words
        word = np.array([p_like, 1.0 - 2.0 * p_like, p_like])  # word score -1, 0, +1
        total = np.array([1.0])
        for _ in range(self.length):
            total = np.convolve(total, word)  # sum of L word scores, offset by -L
        joint = np.outer(total, total)
        diff = np.abs(np.subtract.outer(np.arange(total.size), np.arange(total.size)))
        values = np.arange(1, total.size) / self.length
        probs = np.array([joint[diff == d].sum() for d in range(1, total.size)])
        return values, probs / probs.sum()

    def bt_temperature(self, rate: float) -> float:
        r"""The temperature :math:`T` of the ``bt`` noise model whose expected flip rate
        :math:`\mathbb E[\sigma(-\Delta r^\star/T)]` over the task's pairs is ``rate`` (in ``[0, 0.5)``;
        0 for rate 0), by bisection on :math:`\log T` to 1e-12.

        Example:
            >>> task = SyntheticTask()
            >>> values, probs = task.gap_distribution()
            >>> t = task.bt_temperature(0.2)
            >>> round(float(np.sum(probs / (1 + np.exp(values / t)))), 9)
            0.2
        """
        if not 0.0 <= rate < 0.5:
            raise ValueError(f"a flip rate must lie in [0, 0.5), got {rate}")
        if rate == 0.0:
            return 0.0
        from gammapo_spec.numerics import sigmoid

        values, probs = self.gap_distribution()

        def flip_rate(t: float) -> float:
            return float(np.sum(probs * sigmoid(-values / t)))

        lo, hi = -12.0, 12.0  # log T
        while hi - lo > 1e-12:
            mid = 0.5 * (lo + hi)
            lo, hi = (mid, hi) if flip_rate(float(np.exp(mid))) < rate else (lo, mid)
        return float(np.exp(0.5 * (lo + hi)))

    def reward_gap(self, pair: dict[str, str]) -> float:
        r""":math:`r^\star(\text{chosen}) - r^\star(\text{rejected})` of a pair: negative when its label is flipped."""
        return self.reward(pair["prompt"], pair["chosen"]) - self.reward(pair["prompt"], pair["rejected"])

    def pairs(self, n: int, *, noise: float, seed: int, noise_model: str = "uniform") -> list[dict[str, str]]:
        """``n`` pairs ``{"prompt", "chosen", "rejected"}`` (TRL's standard format), labels flipped by
        ``noise_model`` (``uniform`` or ``bt``, expected flip rate ``noise``); responses start with a space
        so they follow the prompt as words. The same ``seed`` draws the same responses under either model."""
        if noise_model not in NOISE_MODELS:
            raise ValueError(f"noise_model must be one of {list(NOISE_MODELS)}, got {noise_model!r}")
        from gammapo_spec.numerics import sigmoid

        temperature = self.bt_temperature(noise) if noise_model == "bt" else 0.0
        rng = np.random.default_rng(seed)
        out: list[dict[str, str]] = []
        while len(out) < n:
            k = int(rng.integers(self.n_prompts))
            a, b = (" " + " ".join(f"t{i}" for i in rng.integers(self.n_words, size=self.length)) for _ in range(2))
            ra, rb = self.reward(f"q{k}", a), self.reward(f"q{k}", b)
            if ra == rb:
                continue
            chosen, rejected = (a, b) if ra > rb else (b, a)
            u = rng.random()
            if noise_model == "bt":
                flip = temperature > 0 and u < float(sigmoid(np.array(-abs(ra - rb) / temperature)))
            else:
                flip = u < noise
            if flip:
                chosen, rejected = rejected, chosen
            out.append({"prompt": f"q{k}", "chosen": chosen, "rejected": rejected})
        return out
