r"""Paired comparisons of a study's runs and the verdict printed under its table.

Runs with the same seed share their training pairs, initial model and batch order
(:mod:`gammapo.train.study`), so a method is compared with its base loss seed by seed:
:math:`\Delta_s = \text{acc}_s(\text{method}) - \text{acc}_s(\text{base})`. :func:`paired_deltas` gives
the mean, the sample standard deviation and how many seeds were positive; :func:`judge` calls a mean
*beyond spread* when the 95% interval of the paired mean, :math:`\bar\Delta \pm t_{0.975,n-1}\,s/\sqrt n`,
excludes 0, else *within spread*. The oracle row (the base loss trained without the flipped pairs) gives
the ceiling the γ- variant is measured against.

Example:
    >>> judge([0.01, 0.02, 0.015])
    'beyond spread (better)'
    >>> judge([0.01, -0.02, 0.015])
    'within spread'
"""

from __future__ import annotations

import math
import statistics
from typing import Any, Sequence

__all__ = ["paired_deltas", "judge", "verdict"]

# two-sided 95% Student t quantiles by degrees of freedom (larger: 2.0)
_T975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262}


def judge(deltas: Sequence[float]) -> str:
    """``beyond spread (better|worse)`` when the paired mean's 95% interval excludes 0, else ``within spread``;
    ``one seed (no spread)`` for a single value."""
    n = len(deltas)
    if n < 2:
        return "one seed (no spread)"
    mean, std = statistics.fmean(deltas), statistics.stdev(deltas)
    half = _T975.get(n - 1, 2.0) * std / math.sqrt(n)
    if mean - half > 0:
        return "beyond spread (better)"
    if mean + half < 0:
        return "beyond spread (worse)"
    return "within spread"


def _key(r) -> tuple:
    return (r.method, getattr(r, "noise_model", "uniform"), r.noise, getattr(r, "data", "plain"))


def paired_deltas(results: Sequence[Any]) -> list[dict[str, Any]]:
    """For every (method, noise model, noise, data) row other than a base loss on plain data: the per-seed
    accuracy differences against the base loss of its family (same noise and seed), their mean, sample
    std, the count of positive seeds and the verdict of :func:`judge`. Rows whose base did not run are
    left out."""
    acc: dict[tuple, dict[int, float]] = {}
    loss_of: dict[str, str] = {}
    for r in results:
        if r.accuracy is not None:
            acc.setdefault(_key(r), {})[r.seed] = r.accuracy
            loss_of[r.method] = r.loss
    bases = {(r.loss, getattr(r, "noise_model", "uniform"), r.noise): r.method for r in results
             if getattr(r, "data", "plain") == "plain" and not r.loss.startswith("gamma-")}
    rows = []
    for (method, noise_model, noise, data), by_seed in acc.items():
        loss = loss_of[method]
        if data == "plain" and not loss.startswith("gamma-"):
            continue  # a base loss itself
        base = bases.get((loss.removeprefix("gamma-"), noise_model, noise))
        if base is None:
            continue
        ref = acc[(base, noise_model, noise, "plain")]
        seeds = sorted(set(by_seed) & set(ref))
        if not seeds:
            continue
        d = [by_seed[s] - ref[s] for s in seeds]
        rows.append({
            "method": method, "loss": loss, "data": data, "noise_model": noise_model, "noise": noise, "base": base,
            "seeds": seeds, "deltas": d, "mean": statistics.fmean(d), "std": statistics.stdev(d) if len(d) > 1 else 0.0,
            "positive": sum(x > 0 for x in d), "judgement": judge(d),
        })
    return rows


def _fmt(row: dict[str, Any]) -> str:
    return f"{row['mean']:+.3f} ± {row['std']:.3f} ({row['positive']}/{len(row['deltas'])} seeds positive)"


def verdict(results: Sequence[Any]) -> list[str]:
    """Lines that say, from these runs' numbers, whether each γ- method beat its base loss and how far the
    oracle ceiling was; ending with a one-line summary."""
    rows = paired_deltas(results)
    oracle = {(r["base"], r["noise_model"], r["noise"]): r for r in rows if r["data"] == "oracle"}
    lines, better, total = [], 0, 0
    for r in rows:
        if r["data"] != "plain":
            continue
        total += 1
        better += r["judgement"] == "beyond spread (better)"
        line = f"{r['method']} vs {r['base']} ({r['noise_model']} noise {r['noise']:.2f}): Δ = {_fmt(r)} — {r['judgement']}"
        ceiling = oracle.get((r["base"], r["noise_model"], r["noise"]))
        if ceiling is not None:
            line += f"; oracle ceiling {ceiling['mean']:+.3f}"
            if ceiling["mean"] > 0 and r["mean"] > 0:
                line += f" ({r['mean'] / ceiling['mean']:.0%} of it recovered)"
        lines.append(line)
    if total:
        if better == 0:
            lines.append(f"Verdict: no γ- method beat its base loss beyond seed spread in these runs (0 of {total} "
                         "comparisons).")
        else:
            where = sorted({f"{r['noise_model']} noise {r['noise']:.2f}" for r in rows
                            if r["data"] == "plain" and r["judgement"] == "beyond spread (better)"})
            lines.append(f"Verdict: a γ- method beat its base loss beyond seed spread in {better} of {total} "
                         f"comparisons (under {', '.join(where)}); in the others the difference is within spread "
                         "or worse.")
    return lines
