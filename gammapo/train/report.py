"""Tables, the Markdown report and the plot of a ``gammapo train`` study.

Results are grouped by (method, noise model, noise, data variant); every number is the mean over seeds with the
sample standard deviation (``±``, 0 for one seed) and the min–max range in ``results.json``.

Example:
    >>> from gammapo.train.run import Result
    >>> rs = [Result("DPO", "dpo", 0.2, s, a, 0.5, 0.0, 1.0, 10, []) for s, a in enumerate([0.8, 0.9])]
    >>> round(summarise(rs)[0]["accuracy_mean"], 4), round(summarise(rs)[0]["accuracy_std"], 4)
    (0.85, 0.0707)
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import statistics
from typing import Any, Sequence

__all__ = ["summarise", "format_table", "format_diagnostics", "format_settings", "format_sweep", "write_report"]


def _stats(values: list[float]) -> tuple[float, float, float, float]:
    """Mean, sample std (0 for one value), min, max; a NaN or an infinity propagates instead of raising."""
    if not all(math.isfinite(v) for v in values):
        mean = sum(values) / len(values)
        std = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1)) if len(values) > 1 else 0.0
        return mean, std, min(values), max(values)
    mean = statistics.fmean(values)
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return mean, std, min(values), max(values)


def _noise_label(row: dict[str, Any]) -> str:
    return f"{row.get('noise_model', 'uniform')} {row['noise']:.2f}"


def summarise(results: Sequence[Any]) -> list[dict[str, Any]]:
    """One row per (method, noise model, noise, data), in first-seen order: means, sample standard deviations
    and ranges over seeds of the accuracy (overall and per Δr* bucket), the greedy reward, the seconds, the
    training pairs and, for the γ- methods, the mechanism diagnostics."""
    groups: dict[tuple, list[Any]] = {}
    for r in results:
        groups.setdefault((r.method, getattr(r, "noise_model", "uniform"), r.noise, getattr(r, "data", "plain")), []).append(r)
    rows = []
    for (method, noise_model, noise, data), rs in groups.items():
        row: dict[str, Any] = {"method": method, "loss": rs[0].loss, "noise_model": noise_model, "noise": noise,
                               "data": data, "seeds": len(rs)}
        values: dict[str, list[float]] = {}
        for r in rs:
            for key in ("accuracy", "gen_reward", "ref_gen_reward", "seconds", "train_pairs", "eval_pairs"):
                if getattr(r, key, None) is not None:
                    values.setdefault(key, []).append(getattr(r, key))
            for name, acc in (getattr(r, "buckets", None) or {}).items():
                values.setdefault(f"acc_{name}", []).append(acc)
            for name, v in (getattr(r, "diagnostics", None) or {}).items():
                values.setdefault(f"diag_{name}", []).append(v)
        for key, vals in values.items():
            mean, std, lo, hi = _stats(vals)
            row.update({f"{key}_mean": mean, f"{key}_std": std, f"{key}_min": lo, f"{key}_max": hi})
        if getattr(rs[0], "settings", None):
            row["settings"] = {k: v for k, v in rs[0].settings.items() if k != "counts"}
        rows.append(row)
    return rows


def _pm(row: dict[str, Any], key: str, digits: int = 3) -> str:
    if f"{key}_mean" not in row:
        return "n/a"
    if row["seeds"] == 1:
        return f"{row[key + '_mean']:.{digits}f}"
    return f"{row[key + '_mean']:.{digits}f} ± {row[key + '_std']:.{digits}f}"


def _has_data(rows: list[dict[str, Any]]) -> bool:
    return any(r.get("data", "plain") not in ("plain", "oracle") for r in rows)


def _label(row: dict[str, Any], with_data: bool) -> str:
    data = row.get("data", "plain")
    if data == "oracle":
        return f"{row['method']} oracle"
    return f"{row['method']} [{data}]" if with_data else row["method"]


def _render(head: list[str], body: list[list[str]], markdown: bool) -> str:
    if markdown:
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        return "\n".join(lines + ["| " + " | ".join(b) + " |" for b in body])
    widths = [max(len(h), *(len(b[i]) for b in body)) for i, h in enumerate(head)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    return "\n".join([fmt.format(*head), fmt.format(*("-" * w for w in widths))] + [fmt.format(*b) for b in body])


def _delta_cell(row: dict[str, Any], deltas: dict[tuple, dict[str, Any]]) -> str:
    d = deltas.get((row["method"], row.get("noise_model", "uniform"), row["noise"], row.get("data", "plain")))
    if d is None:
        return "base" if not row["loss"].startswith("gamma-") and row.get("data", "plain") == "plain" else "n/a"
    return f"{d['mean']:+.3f} ± {d['std']:.3f} ({d['positive']}/{len(d['deltas'])}+)"


def format_table(rows: list[dict[str, Any]], *, markdown: bool = False, deltas: Sequence[dict[str, Any]] = (),
                 real: bool = False) -> str:
    """The study's table, one row per (method, noise, data).

    Embedded task: held-out clean-pair accuracy (mean ± std over seeds), its paired Δ against the base loss
    (mean ± std, seeds positive; :func:`gammapo.train.compare.paired_deltas`), the accuracy on the hard
    (Δr* = 0.2) and easy (Δr* ≥ 0.6) held-out pairs, the greedy response's r*, seconds per run; the
    ``data`` and ``train pairs`` columns appear for the augmented/selected variants. A user's data set
    (``real``): the held-out preference accuracy on the user's own labels and the number of held-out pairs."""
    if real:
        head = ["method", "loss", "seeds", "held-out preference accuracy on your labels", "held-out pairs", "s/run"]
        body = [[r["method"], r["loss"], str(r["seeds"]), _pm(r, "accuracy"), _pm(r, "eval_pairs", 0),
                 _pm(r, "seconds", 1)] for r in rows]
        return _render(head, body, markdown)
    with_data = _has_data(rows)
    by_key = {(d["method"], d["noise_model"], d["noise"], d["data"]): d for d in deltas}
    head = ["method", "noise"] + (["data", "train pairs"] if with_data else []) + [
        "seeds", "clean-pair accuracy", "Δ vs base (paired)", "hard", "easy", "greedy r*", "s/run"]
    body = [
        [_label(r, with_data), _noise_label(r)]
        + ([r.get("data", "plain"), _pm(r, "train_pairs", 0)] if with_data else [])
        + [str(r["seeds"]), _pm(r, "accuracy"), _delta_cell(r, by_key), _pm(r, "acc_hard"), _pm(r, "acc_easy"),
           _pm(r, "gen_reward"), _pm(r, "seconds", 1)]
        for r in rows
    ]
    return _render(head, body, markdown)


def format_diagnostics(rows: list[dict[str, Any]], *, markdown: bool = False) -> str:
    """The γ- methods' mechanism diagnostics (:mod:`gammapo.train.diagnostics`), means over seeds."""
    rows = [r for r in rows if "diag_auc_flipped_mean" in r]
    if not rows:
        return ""
    head = ["method", "noise", "γ0/τ", "κ", "γ0 / median |h|", "AUC of −γ (flipped)", "AUC of −h", "γ std/mean",
            "log(γmax/γmin) realised / bound", "flipped share of gradient weight: γ-PO / base"]

    def f(r, k, d=3):
        return f"{r[f'diag_{k}_mean']:.{d}f}"

    body = [[r["method"], _noise_label(r), f(r, "spread_bound", 2), f(r, "kappa"), f(r, "gamma0_over_gap", 2),
             f(r, "auc_flipped"), f(r, "auc_flipped_gap"), f(r, "gamma_cv"),
             f"{f(r, 'log_spread')} / {f(r, 'spread_bound')}",
             f"{f(r, 'flipped_weight_share')} / {f(r, 'flipped_weight_share_base')}"] for r in rows]
    if markdown:
        head = [h.replace("|", "\\|") for h in head]
    return _render(head, body, markdown)


def format_settings(rows: list[dict[str, Any]]) -> str:
    """Each method's hyper-parameters in the units that say what it can do (Markdown)."""
    seen: dict[str, dict[str, Any]] = {}
    for r in rows:
        if r.get("settings") and r["method"] not in seen:
            seen[r["method"]] = r["settings"]
    head = ["method", "β", "γ0", "τ", "γ0/τ (bound on log γmax/γmin)", "κ = γ0²/(8τ)", "solver"]

    def g(s, k, fmt="{:g}"):
        return fmt.format(s[k]) if k in s else "—"

    body = [[m, g(s, "beta"), g(s, "gamma0"), g(s, "tau"), g(s, "spread_bound", "{:.3g}"), g(s, "kappa", "{:.3g}"),
             s.get("solver", "—")] for m, s in seen.items()]
    return _render(head, body, True)


def format_sweep(rows: list[dict[str, Any]], key: str = "accuracy") -> str:
    """Methods × noise levels, ``mean ± std`` of ``key`` (Markdown), one block per noise model."""
    with_data = _has_data(rows)
    lines: list[str] = []
    for model in dict.fromkeys(r.get("noise_model", "uniform") for r in rows):
        sub = [r for r in rows if r.get("noise_model", "uniform") == model]
        noises = sorted({r["noise"] for r in sub})
        methods = list(dict.fromkeys(_label(r, with_data) for r in sub))
        cell = {(_label(r, with_data), r["noise"]): _pm(r, key) for r in sub}
        lines += [f"| method ({model} noise) | " + " | ".join(f"{n:.2f}" for n in noises) + " |",
                  "|---|" + "---|" * len(noises)]
        lines += [f"| {m} | " + " | ".join(cell.get((m, n), "") for n in noises) + " |" for m in methods]
        lines.append("")
    return "\n".join(lines).rstrip()


DATA_NOTE = (
    "*plain*: the noisy pairs as drawn. *augmented*: reward-augmented relabelling, each pair with s_w >= s_l "
    "becomes two pairs whose prompt starts with the condition word `s<score>` (s_w: chosen preferred; s_l: "
    "rejected preferred), pairs with s_w < s_l are dropped; its clean-pair accuracy and greedy r* are measured "
    "with every prompt conditioned on the top score (`s10`), for the policy and for the reference. *selected*: the "
    "top fraction by alignment potential (explicit margin s_w - s_l, implicit margin from the initial model, "
    "reference-free). Scores s = 5 (r* + 1) in 0..10; `truth`: each response's ground-truth reward (a flipped "
    "label has s_w < s_l, information the plain runs do not have); `labels`: a judge agreeing with the noisy "
    "labels (scores of a flipped pair swapped). *flipped kept*: training pairs whose label disagrees with the "
    "ground truth, of those read."
)


def format_counts(counts: list[dict[str, Any]]) -> str:
    """The data transforms' counts (Markdown): pairs read, dropped, written, flipped labels kept."""
    lines = ["| data | noise | seed | scores | read | dropped | written | flipped kept / read |", "|" + "---|" * 8]
    for c in counts:
        dropped = c.get("dropped_lower", 0) + c.get("dropped_ties", 0) + c.get("filtered", 0) + c.get("invalid", 0)
        flipped = f"{c['flipped_kept']} / {c['flipped_read']}" if "flipped_kept" in c else "n/a"
        lines.append(f"| {c['data']} | {c['noise']:.2f} | {c['seed']} | {c.get('scores', '')} | {c['read']} | "
                     f"{dropped} | {c['written']} | {flipped} |")
    return "\n".join(lines)


def plot(rows: list[dict[str, Any]], path: str) -> None:
    """Held-out accuracy per method, one panel per noise model: lines against noise (±std bars; the oracle
    rows, the ceiling, dashed) or, for one noise level, bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with_data = _has_data(rows)
    models = list(dict.fromkeys(r.get("noise_model", "uniform") for r in rows))
    names = list(dict.fromkeys(r["method"] for r in rows))
    fig, axes = plt.subplots(1, len(models), figsize=(6.5 * len(models), 4.2), squeeze=False)
    for ax, model in zip(axes[0], models):
        sub = [r for r in rows if r.get("noise_model", "uniform") == model and "accuracy_mean" in r]
        noises = sorted({r["noise"] for r in sub})
        methods = list(dict.fromkeys(_label(r, with_data) for r in sub))
        for i, m in enumerate(methods):
            rs = sorted((r for r in sub if _label(r, with_data) == m), key=lambda r: r["noise"])
            colour = f"C{names.index(rs[0]['method']) % 10}"
            oracle = rs[0].get("data") == "oracle"
            ys, es = [r["accuracy_mean"] for r in rs], [r["accuracy_std"] for r in rs]
            if len(noises) > 1:
                ax.errorbar([r["noise"] for r in rs], ys, yerr=es, marker="s" if oracle else "o", capsize=3, label=m,
                            color=colour, linestyle="--" if oracle else "-", alpha=0.8 if oracle else 1.0)
                ax.set_xlabel("label noise (share of flipped training pairs)")
            else:
                ax.bar(i, ys[0], yerr=es[0], capsize=3, label=m, color=colour, hatch="//" if oracle else None,
                       alpha=0.6 if oracle else 1.0)
                ax.set_xticks(range(len(methods)), methods, rotation=60, fontsize=8, ha="right")
        if len(noises) == 1 and sub:
            lo = min(r["accuracy_mean"] - r["accuracy_std"] for r in sub)
            ax.set_ylim(max(0.0, lo - 0.05), 1.0)
        title = f"held-out clean-pair accuracy, {model} noise"
        ax.set_title(title + ("" if len(noises) > 1 else f" {noises[0]:.2f}"))
        ax.grid(alpha=0.3)
        if len(noises) > 1:
            ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


ACCURACY_NOTE = (
    "*clean-pair accuracy*: share of the held-out pairs (labelled by the ground-truth reward, never flipped) whose "
    "implicit reward gap (DPO family: policy/reference log-ratio difference; SimPO family: length-normalised "
    "log-prob difference) has the right sign; *hard* / *easy*: the same on the pairs whose true rewards differ "
    "by 0.2 (one word) / by 0.6 or more. *Δ vs base (paired)*: the accuracy minus the base loss's with the same "
    "seed (same training pairs, initial model and batch order), mean ± sample std over seeds, and how many seeds "
    "were positive; the *oracle* row is the base loss trained with the flipped pairs removed (the ceiling). "
    "*greedy r\\**: the ground-truth reward of the greedy 5-word response over the task's response words (1.0 is "
    "the best possible), mean over prompts."
)
DIAGNOSTICS_NOTE = (
    "Diagnostics at the end of training, on the training pairs, their gaps h under the trained policy "
    "calibrated in sets of one training batch: *AUC of −γ (flipped)*: how well a small margin flags a flipped "
    "pair (1: perfectly, 0.5: not at all; *AUC of −h*: the same for the gap itself: γ is a monotone function "
    "of h within a set, so it can add little beyond it); *γ std/mean*: how far the margins moved; "
    "*log(γmax/γmin)*: the largest realised spread of a set against its bound γ0/τ; *flipped share*: the "
    "flipped pairs' share of the total gradient weight σ(m − h) with the calibrated margins and with the base "
    "loss's margin at the same gaps (γ-PO can help only if the first is clearly below the second)."
)
REAL_NOTE = (
    "*held-out preference accuracy on your labels*: on the held-out share of your data set (`--eval-fraction`), "
    "the share of pairs whose implicit reward gap prefers the response your data labels as chosen (TRL's "
    "`eval_rewards/accuracies`); *held-out pairs*: how many pairs it counts. Your labels are the reference: "
    "no ground truth is known, so this measures agreement with them, noise included."
)


def write_report(out_dir: str, results: Sequence[Any], settings: dict[str, Any]) -> dict[str, str]:
    """Write ``report.md``, ``results.png`` and ``results.json`` to ``out_dir``; returns their paths."""
    from gammapo.train.compare import paired_deltas, verdict

    os.makedirs(out_dir, exist_ok=True)
    rows = summarise(results)
    real = "model" in settings
    deltas = [] if real else paired_deltas(results)
    paths = {
        "markdown": os.path.join(out_dir, "report.md"),
        "plot": os.path.join(out_dir, "results.png"),
        "json": os.path.join(out_dir, "results.json"),
    }
    plot(rows, paths["plot"])
    with open(paths["json"], "w", encoding="utf-8") as fh:
        json.dump({"settings": settings, "summary": rows, "paired_deltas": deltas,
                   "runs": [dataclasses.asdict(r) for r in results]}, fh, indent=2)
    shown = {k: v for k, v in settings.items() if k not in ("data_counts", "loss_kwargs")}
    md = ["# gammapo train report", "", "Settings: " + ", ".join(f"`{k}={v}`" for k, v in shown.items()), "",
          "## Results (mean ± sample std over seeds)", "", format_table(rows, markdown=True, deltas=deltas, real=real), ""]
    if real:
        md += [REAL_NOTE, ""]
    else:
        lines = verdict(results)
        if lines:
            md += ["## Verdict (from these runs)", ""] + [f"- {line}" for line in lines] + [""]
        diag = format_diagnostics(rows, markdown=True)
        if diag:
            md += ["## Is the mechanism active? (γ- methods)", "", diag, "", DIAGNOSTICS_NOTE, ""]
        md += ["## Settings in the units that matter", "", format_settings(rows), ""]
    if settings.get("data_counts"):
        md += ["## Data transforms (counts per noise level and seed)", "", format_counts(settings["data_counts"]), "",
               DATA_NOTE, ""]
    if len({r["noise"] for r in rows}) > 1:
        md += ["## Clean-pair accuracy vs label noise", "", format_sweep(rows, "accuracy"), ""]
    md += ["![results](results.png)", ""]
    if not real:
        md += [ACCURACY_NOTE, ""]
    with open(paths["markdown"], "w", encoding="utf-8") as fh:
        fh.write("\n".join(md))
    return paths
