r"""The metrics :class:`~gammapo.integrations.trl.GammaPOTrainer` logs, reduced over every rank.

Two kinds:

* TRL's token metrics, as ``trl.DPOTrainer`` logs them: ``entropy`` (mean over all completion tokens,
  chosen and rejected), ``logits/chosen`` and ``logits/rejected`` (mean over the vocabulary and over the
  completion tokens of each side), ``mean_token_accuracy`` (share of chosen completion tokens whose label
  is the top-1 prediction) and ``num_tokens`` (the running count of attended training tokens). Each rank
  contributes sums and counts; the logged value is the ratio of the totals, so it is the mean over every
  token of every rank.
* the loss's own metrics. For the calibrated margins (``gamma/*``) the statistics are those of all the
  margins of the step, pooled over the ranks: with rank r holding :math:`n_r` pairs of mean
  :math:`\mu_r` and (population) standard deviation :math:`s_r`,

  .. math:: \mu = \frac{\sum_r n_r\mu_r}{\sum_r n_r}, \qquad
            s^2 = \frac{\sum_r n_r\,\big(s_r^2 + (\mu_r - \mu)^2\big)}{\sum_r n_r},

  ``gamma/min``/``gamma/max`` are the extremes over the ranks and ``gamma/log_spread`` is
  :math:`\log(\gamma_\max/\gamma_\min)` of those. Any other metric is the mean over the ranks
  (``…/min``, ``…/max``: the extreme).
"""

from __future__ import annotations

from typing import Callable

import torch

__all__ = ["token_sums", "token_sums_from_logits", "reduce_token_metrics", "reduce_loss_metrics"]

Gather = Callable[[torch.Tensor], torch.Tensor]


def token_sums(entropy: torch.Tensor, mean_logits: torch.Tensor, is_top1: torch.Tensor,
               mask: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per-rank sums behind TRL's token metrics, from ``[2B, T]`` per-token values (rows ``[chosen;
    rejected]``) aligned with the ``[2B, T]`` completion ``mask`` (labels shifted by one)."""
    mask = mask.to(torch.bool)
    m = mask.to(entropy.dtype)
    chosen, rejected = mask.chunk(2, dim=0)
    logits_c, logits_r = mean_logits.detach().chunk(2, dim=0)
    top1_c, _ = is_top1.chunk(2, dim=0)
    return {
        "entropy_sum": (entropy.detach() * m).sum(),
        "tokens": m.sum(),
        "logits_chosen_sum": logits_c[chosen].sum(),
        "chosen_tokens": chosen.sum().to(entropy.dtype),
        "logits_rejected_sum": logits_r[rejected].sum(),
        "rejected_tokens": rejected.sum().to(entropy.dtype),
        "correct_chosen": (top1_c.to(torch.bool) & chosen).sum().to(entropy.dtype),
    }


@torch.no_grad()
def token_sums_from_logits(logits: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor,
                           chunk_rows: int = 1) -> dict[str, torch.Tensor]:
    """:func:`token_sums` from full ``[2B, T, V]`` logits aligned with ``labels``/``mask`` (computed a few
    rows at a time, so no second ``[2B, T, V]`` tensor exists)."""
    ent, mean, top1 = [], [], []
    for start in range(0, logits.shape[0], chunk_rows):
        rows = logits[start:start + chunk_rows].float()
        logp = torch.log_softmax(rows, dim=-1)
        ent.append(-(logp.exp() * logp).sum(-1))
        mean.append(rows.mean(-1))
        top1.append(rows.argmax(-1) == labels[start:start + chunk_rows])
    return token_sums(torch.cat(ent), torch.cat(mean), torch.cat(top1), mask)


def _total(gather: Gather, value: torch.Tensor) -> float:
    return float(gather(value.detach().reshape(1).float()).sum())


def reduce_token_metrics(gather: Gather, sums: dict[str, torch.Tensor]) -> dict[str, float]:
    """TRL's ``entropy``, ``logits/chosen``, ``logits/rejected``, ``mean_token_accuracy`` from the sums of
    every rank (0 where a count is 0, as TRL)."""
    t = {key: _total(gather, value) for key, value in sums.items()}

    def ratio(num: str, den: str) -> float:
        return t[num] / t[den] if t[den] > 0 else 0.0

    return {
        "entropy": ratio("entropy_sum", "tokens"),
        "logits/chosen": ratio("logits_chosen_sum", "chosen_tokens"),
        "logits/rejected": ratio("logits_rejected_sum", "rejected_tokens"),
        "mean_token_accuracy": ratio("correct_chosen", "chosen_tokens"),
    }


def reduce_loss_metrics(gather: Gather, metrics: dict[str, torch.Tensor], n_pairs: int) -> dict[str, float]:
    """The loss's 0-dim metrics of this rank (over its ``n_pairs`` pairs) reduced over every rank; see
    the module docstring for the ``gamma/*`` pooling."""
    per_rank = {key: gather(value.detach().reshape(1).double()) for key, value in metrics.items()}
    out: dict[str, float] = {}
    for key, values in per_rank.items():
        out[key] = float(values.min() if key.endswith("/min") else values.max() if key.endswith("/max")
                         else values.mean())
    if "gamma/mean" in per_rank:
        device = per_rank["gamma/mean"].device
        n = gather(torch.tensor([float(n_pairs)], dtype=torch.float64, device=device))
        mu_r = per_rank["gamma/mean"]
        mu = (n * mu_r).sum() / n.sum()
        out["gamma/mean"] = float(mu)
        if "gamma/std" in per_rank:
            var = (n * (per_rank["gamma/std"] ** 2 + (mu_r - mu) ** 2)).sum() / n.sum()
            out["gamma/std"] = float(var.sqrt())
            if "gamma/cv" in per_rank and mu > 0:
                out["gamma/cv"] = float(var.sqrt() / mu)  # pooled std over pooled mean
    if "gamma/log_spread" in per_rank and "gamma/min" in per_rank and "gamma/max" in per_rank:
        out["gamma/log_spread"] = float(torch.log(per_rank["gamma/max"].max() / per_rank["gamma/min"].min()))
    return out
