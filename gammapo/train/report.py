"""Tables, the Markdown report and the plot of a ``gammapo train`` study.

Results are grouped by (method, noise, data variant); every number is the mean over seeds with the sample standard
deviation (``±``, 0 for one seed) and the min–max range in ``results.json``.

Example:
    >>> from gammapo.train.run import Result
    >>> rs = [Result("DPO", "dpo", 0.2, s, a, 0.5, 0.0, 1.0, 10, []) for s, a in enumerate([0.8, 0.9])]
    >>> round(summarise(rs)[0]["accuracy_mean"], 4), round(summarise(rs)[0]["accuracy_std"], 4)
    (0.85, 0.0707)
"""

from __future__ import annotations

import dataclasses
import json
import os
import statistics
from typing import Any, Sequence

__all__ = ["summarise", "format_table", "write_report"]


def _stats(values: list[float]) -> tuple[float, float, float, float]:
    mean = statistics.fmean(values)
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return mean, std, min(values), max(values)


def summarise(results: Sequence[Any]) -> list[dict[str, Any]]:
    """One row per (method, noise, data), in first-seen order: means, standard deviations, ranges over seeds."""
    groups: dict[tuple[str, float, str], list[Any]] = {}
    for r in results:
        groups.setdefault((r.method, r.noise, getattr(r, "data", "plain")), []).append(r)
    rows = []
    for (method, noise, data), rs in groups.items():
        row: dict[str, Any] = {"method": method, "loss": rs[0].loss, "noise": noise, "data": data, "seeds": len(rs)}
        for key in ("accuracy", "gen_reward", "ref_gen_reward", "seconds", "train_pairs"):
            vals = [getattr(r, key, None) for r in rs if getattr(r, key, None) is not None]
            if vals:
                mean, std, lo, hi = _stats(vals)
                row.update({f"{key}_mean": mean, f"{key}_std": std, f"{key}_min": lo, f"{key}_max": hi})
        rows.append(row)
    return rows


def _pm(row: dict[str, Any], key: str, digits: int = 3) -> str:
    if f"{key}_mean" not in row:
        return "n/a"
    if row["seeds"] == 1:
        return f"{row[key + '_mean']:.{digits}f}"
    return f"{row[key + '_mean']:.{digits}f} ± {row[key + '_std']:.{digits}f}"


def _has_data(rows: list[dict[str, Any]]) -> bool:
    return any(r.get("data", "plain") != "plain" for r in rows)


def _label(row: dict[str, Any], with_data: bool) -> str:
    return f"{row['method']} [{row.get('data', 'plain')}]" if with_data else row["method"]


def format_table(rows: list[dict[str, Any]], *, markdown: bool = False) -> str:
    """The per-(method, noise, data) table: held-out clean-pair accuracy, greedy r*, time per run.

    The ``data`` and ``train pairs`` columns appear when a data variant other than ``plain`` was run."""
    with_data = _has_data(rows)
    head = ["method", "loss", "noise"] + (["data", "train pairs"] if with_data else []) + [
        "seeds", "clean-pair accuracy", "greedy r* (policy)", "greedy r* (reference)", "s/run"]
    body = [
        [r["method"], r["loss"], f"{r['noise']:.2f}"]
        + ([r.get("data", "plain"), _pm(r, "train_pairs", 0)] if with_data else [])
        + [str(r["seeds"]), _pm(r, "accuracy"), _pm(r, "gen_reward"), _pm(r, "ref_gen_reward"), _pm(r, "seconds", 1)]
        for r in rows
    ]
    if markdown:
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        lines += ["| " + " | ".join(b) + " |" for b in body]
        return "\n".join(lines)
    widths = [max(len(h), *(len(b[i]) for b in body)) for i, h in enumerate(head)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    return "\n".join([fmt.format(*head), fmt.format(*("-" * w for w in widths))] + [fmt.format(*b) for b in body])


def format_sweep(rows: list[dict[str, Any]], key: str = "accuracy") -> str:
    """Methods × noise levels, ``mean ± std`` of ``key`` (Markdown)."""
    noises = sorted({r["noise"] for r in rows})
    with_data = _has_data(rows)
    methods = list(dict.fromkeys(_label(r, with_data) for r in rows))
    cell = {(_label(r, with_data), r["noise"]): _pm(r, key) for r in rows}
    lines = ["| method | " + " | ".join(f"noise {n:.2f}" for n in noises) + " |", "|---|" + "---|" * len(noises)]
    for m in methods:
        lines.append(f"| {m} | " + " | ".join(cell.get((m, n), "") for n in noises) + " |")
    return "\n".join(lines)


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
    """Accuracy and greedy r* per method: against noise (lines, ±std bars) or, for one noise level, bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with_data = _has_data(rows)
    methods = list(dict.fromkeys(_label(r, with_data) for r in rows))
    names = list(dict.fromkeys(r["method"] for r in rows))
    noises = sorted({r["noise"] for r in rows})
    fig, axes = plt.subplots(1, 2, figsize=(10 if len(methods) <= 6 else 14, 4))
    for ax, key, title in zip(axes, ("accuracy", "gen_reward"), ("held-out clean-pair accuracy", "greedy r* of the policy")):
        for i, m in enumerate(methods):
            rs = sorted((r for r in rows if _label(r, with_data) == m and f"{key}_mean" in r), key=lambda r: r["noise"])
            if not rs:
                continue
            ys = [r[f"{key}_mean"] for r in rs]
            es = [r[f"{key}_std"] for r in rs]
            if len(noises) > 1:
                ax.errorbar([r["noise"] for r in rs], ys, yerr=es, marker="o", capsize=3, label=m)
                ax.set_xlabel("label noise (share of flipped pairs)")
            else:
                # a data study: one colour per method across the data variants (the x labels name the bars)
                colour = f"C{names.index(rs[0]['method']) % 10}" if with_data else None
                ax.bar(i, ys[0], yerr=es[0], capsize=3, label=m, color=colour)
                ax.set_xticks(range(len(methods)), methods, rotation=90 if with_data else 0, fontsize=8 if with_data else None)
        ax.set_title(title + ("" if len(noises) > 1 else f" (noise {noises[0]:.2f})"))
        ax.grid(alpha=0.3)
    if not (with_data and len(noises) == 1):
        axes[0].legend(fontsize=8 if with_data else None)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_report(out_dir: str, results: Sequence[Any], settings: dict[str, Any]) -> dict[str, str]:
    """Write ``report.md``, ``results.png`` and ``results.json`` to ``out_dir``; returns their paths."""
    os.makedirs(out_dir, exist_ok=True)
    rows = summarise(results)
    paths = {
        "markdown": os.path.join(out_dir, "report.md"),
        "plot": os.path.join(out_dir, "results.png"),
        "json": os.path.join(out_dir, "results.json"),
    }
    plot(rows, paths["plot"])
    with open(paths["json"], "w", encoding="utf-8") as fh:
        json.dump({"settings": settings, "summary": rows,
                   "runs": [dataclasses.asdict(r) for r in results]}, fh, indent=2)
    shown = {k: v for k, v in settings.items() if k != "data_counts"}
    md = [
        "# gammapo train report",
        "",
        "Settings: " + ", ".join(f"`{k}={v}`" for k, v in shown.items()),
        "",
        "## Results (mean ± sample std over seeds)",
        "",
        format_table(rows, markdown=True),
        "",
    ]
    if settings.get("data_counts"):
        md += ["## Data transforms (counts per noise level and seed)", "", format_counts(settings["data_counts"]), "",
               DATA_NOTE, ""]
    if len({r["noise"] for r in rows}) > 1:
        md += ["## Clean-pair accuracy vs label noise", "", format_sweep(rows, "accuracy"), "",
               "## Greedy ground-truth reward vs label noise", "", format_sweep(rows, "gen_reward"), ""]
    md += [
        "![results](results.png)",
        "",
        "*clean-pair accuracy*: share of held-out pairs, labelled by the ground-truth reward without noise, whose "
        "implicit reward gap (DPO family: policy/reference log-ratio difference; SimPO family: length-normalised "
        "log-prob difference) has the right sign. *greedy r\\**: the task's ground-truth reward of the greedy "
        "response to every prompt (1.0 is the best possible), for the trained policy and for the reference "
        "(initial) model. `n/a` where no ground truth is known (a user data set).",
        "",
    ]
    with open(paths["markdown"], "w", encoding="utf-8") as fh:
        fh.write("\n".join(md))
    return paths
