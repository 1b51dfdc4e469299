"""``gammapo train --data plain,augmented,selected``: validation before training, the two transforms on
the embedded task's pairs (counts, conditioning, the selection against an independent computation),
the report's data column, and one short real TRL run per transform with the evaluation conditioned."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("trl")

from gammapo_spec.alignment_potential import alignment_potential, selection_size  # noqa: E402

from gammapo.train import cli, run  # noqa: E402
from gammapo.train import transforms as T  # noqa: E402
from gammapo.train.report import format_table, summarise  # noqa: E402
from gammapo.train.task import SyntheticTask  # noqa: E402
from gammapo.train.tiny import build_model, build_tokenizer  # noqa: E402

TASK = SyntheticTask()
torch.set_num_threads(1)


# --- validation: exit status 2 and a message, before any training -----------------------------------
@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--data", "plain,bogus"], "unknown variant(s) ['bogus']"),
        (["--data", ","], "no data variant"),
        (["--data", "selected,selected"], "repeated"),
        (["--data", "selected", "--select-fraction", "0"], "--select-fraction must lie in (0, 1]"),
        (["--data", "selected", "--select-fraction", "1.5"], "--select-fraction must lie in (0, 1]"),
        (["--data", "selected", "--select-fraction", "0.001", "--pairs", "100"], "keeps no pair of 100"),
        (["--data", "augmented", "--model", "m", "--dataset", "d.jsonl"], "gammapo augment"),
    ],
)
def test_bad_data_options_stop_before_training(argv, message, tmp_path, capsys):
    out = tmp_path / "out"
    assert cli.main([*argv, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert message in err, err
    assert not out.exists(), "nothing may be written (or trained) after a usage error"


# --- the transforms on the embedded task's pairs ------------------------------------------------------
def test_scores_are_the_ground_truth_on_a_0_to_10_scale():
    liked = [a for a in range(TASK.n_words) if TASK.table[2, a] == 1.0][0]
    disliked = [a for a in range(TASK.n_words) if TASK.table[2, a] == -1.0][0]
    assert T.task_score(TASK, "q2", f" t{liked} t{liked} t{liked} t{liked} t{liked}") == 10 == T.top_score(TASK)
    assert T.task_score(TASK, "q2", f" t{disliked} t{disliked} t{disliked} t{disliked} t{disliked}") == 0
    assert T.task_score(TASK, "q2", f" t{liked} t{disliked} t{liked} t{disliked} t{liked}") == 6  # r* = 0.2
    assert T.score_words(TASK) == [f"s{i}" for i in range(11)]
    assert T.condition("q5", TASK) == "s10 q5" and T.condition("q5", TASK, 3) == "s3 q5"


@pytest.mark.parametrize("scores", ["truth", "labels"])
def test_augmented_counts_and_pairs(scores):
    pairs = TASK.pairs(300, noise=0.2, seed=4)
    flipped = [TASK.reward(p["prompt"], p["chosen"]) < TASK.reward(p["prompt"], p["rejected"]) for p in pairs]
    rows, counts = T.augmented_pairs(TASK, pairs, scores=scores)
    assert counts["read"] == 300 and counts["invalid"] == 0 and counts["dropped_ties"] == 0  # the task redraws ties
    assert counts["written"] == 2 * counts["kept"] == len(rows)
    assert counts["flipped_read"] == sum(flipped) > 0
    if scores == "truth":  # a flipped label has s_w < s_l: exactly the flipped pairs are dropped
        assert counts["dropped_lower"] == sum(flipped) and counts["kept"] == 300 - sum(flipped)
        assert counts["flipped_kept"] == 0
        kept = [p for p, f in zip(pairs, flipped) if not f]
    else:  # the judge agrees with the labels: nothing is dropped, the flipped pairs stay
        assert counts["dropped_lower"] == 0 and counts["kept"] == 300 and counts["flipped_kept"] == sum(flipped)
        kept = pairs
    for p, a, b in zip(kept, rows[0::2], rows[1::2]):
        sw = T.task_score(TASK, p["prompt"], p["chosen"])
        sl = T.task_score(TASK, p["prompt"], p["rejected"])
        if scores == "labels":
            sw, sl = max(sw, sl), min(sw, sl)
        assert a == {"prompt": f"s{sw} {p['prompt']}", "chosen": p["chosen"], "rejected": p["rejected"]}
        assert b == {"prompt": f"s{sl} {p['prompt']}", "chosen": p["rejected"], "rejected": p["chosen"]}


@pytest.mark.parametrize(("fraction", "scores"), [(0.4, "truth"), (0.25, "labels")])
def test_selected_matches_an_independent_alignment_potential(fraction, scores):
    """The kept pairs are the top floor(f n) by z(s_w - s_l) - z(|c/|y_w| - r/|y_l||) of the initial model,
    computed here with gammapo.train.run.sequence_logps (not gammapo.data.logprobs)."""
    n = 200
    pairs = TASK.pairs(n, noise=0.2, seed=5)
    tok = build_tokenizer(TASK.words)
    model = build_model(len(tok), seed=3)
    rows, counts = T.selected_pairs(TASK, pairs, model, tok, fraction=fraction, scores=scores)
    k = selection_size(n, fraction)
    assert k == int(fraction * n) and counts == {**counts, "read": n, "invalid": 0, "filtered": n - k, "written": k}
    assert len(rows) == k and all(set(r) == {"prompt", "chosen", "rejected"} for r in rows)

    prompts = [p["prompt"] for p in pairs]
    c, lc = run.sequence_logps(model, tok, prompts, [p["chosen"] for p in pairs])
    r, lr = run.sequence_logps(model, tok, prompts, [p["rejected"] for p in pairs])
    implicit = (c / lc - r / lr).abs().double().numpy()
    scored = T.scored_pairs(TASK, pairs, scores)
    explicit = np.array([s["score_chosen"] - s["score_rejected"] for s in scored], dtype=float)
    ap = alignment_potential(explicit, implicit)
    order = np.argsort(-ap, kind="stable")[:k]
    assert rows == [pairs[i] for i in sorted(order)]
    flipped = [TASK.reward(p["prompt"], p["chosen"]) < TASK.reward(p["prompt"], p["rejected"]) for p in pairs]
    assert counts["flipped_read"] == sum(flipped)
    assert counts["flipped_kept"] == sum(flipped[i] for i in order)
    if scores == "truth":  # negative explicit margins rank the flipped pairs low: fewer than their share kept
        assert counts["flipped_kept"] < fraction * sum(flipped)


def test_table_gains_data_columns_only_for_a_data_study():
    def res(data, acc):
        return run.Result("DPO", "dpo", 0.2, 0, acc, 0.5, 0.0, 1.0, 10, [], data=data, train_pairs=100)

    plain = format_table(summarise([res("plain", 0.8)]))
    assert "data" not in plain.splitlines()[0] and "train pairs" not in plain
    study = format_table(summarise([res("plain", 0.8), res("augmented", 0.6), res("selected", 0.7)]))
    assert study.splitlines()[0].split()[:4] == ["method", "noise", "data", "train"]
    assert [line.split()[4] for line in study.splitlines()[2:]] == ["plain", "augmented", "selected"]


# --- one short real TRL run per transform ---------------------------------------------------------------
def test_short_study_over_the_three_variants(tmp_path, capsys, monkeypatch):
    seen: dict[str, list] = {"accuracy": [], "greedy": []}
    real_acc, real_greedy = run.implicit_gaps, run.greedy_reward

    def spy_acc(policy, reference, tokenizer, pairs, **kw):
        if len(pairs) == 32:  # the held-out pairs (the training pairs' gaps feed the diagnostics)
            seen["accuracy"].append([p["prompt"] for p in pairs])
        return real_acc(policy, reference, tokenizer, pairs, **kw)

    def spy_greedy(model, tokenizer, task, prompt_fn=None):
        seen["greedy"].append([prompt_fn(p) if prompt_fn else p for p in task.prompts])
        return real_greedy(model, tokenizer, task, prompt_fn)

    monkeypatch.setattr(run, "implicit_gaps", spy_acc)
    monkeypatch.setattr(run, "greedy_reward", spy_greedy)
    out = tmp_path / "study"
    argv = ["--methods", "dpo", "--data", "plain,augmented,selected", "--pairs", "64", "--eval-pairs", "32",
            "--max-steps", "2", "--batch-size", "8", "--save-steps", "0", "--jobs", "1", "--no-oracle", "--seeds", "1",
            "--noise-model", "uniform", "--out", str(out)]
    assert cli.main(argv) == 0
    printed = capsys.readouterr().out
    data = json.loads((out / "results.json").read_text())
    summary = {r["data"]: r for r in data["summary"]}
    assert list(summary) == ["plain", "augmented", "selected"]
    counts = {c["data"]: c for c in data["settings"]["data_counts"]}
    assert summary["plain"]["train_pairs_mean"] == 64
    assert summary["augmented"]["train_pairs_mean"] == counts["augmented"]["written"] == 2 * counts["augmented"]["kept"]
    assert summary["selected"]["train_pairs_mean"] == counts["selected"]["written"] == selection_size(64, 0.4) == 25
    for run_ in data["runs"]:
        assert run_["steps"] == 2 and 0.0 <= run_["accuracy"] <= 1.0
    # every count is printed
    a, s = counts["augmented"], counts["selected"]
    assert (f"read {a['read']}, kept {a['kept']}, dropped s_w < s_l {a['dropped_lower']}, ties dropped 0, "
            f"written {a['written']}") in printed
    assert f"read {s['read']}, invalid 0, dropped {s['filtered']}, written {s['written']}" in printed
    # the table (printed and in the report) has the data column
    header = next(line for line in printed.splitlines() if line.startswith("method"))
    assert header.split()[2] == "data"
    report = (out / "report.md").read_text()
    assert "| method | noise | data | train pairs |" in report and "## Data transforms" in report
    # the augmented run is evaluated conditioned on the top score (policy and reference), the others are not
    assert len(seen["accuracy"]) == 3 and len(seen["greedy"]) == 6
    plain_eval, aug_eval, sel_eval = seen["accuracy"]
    assert aug_eval == ["s10 " + p for p in plain_eval] and sel_eval == plain_eval
    assert seen["greedy"][2] == seen["greedy"][3] == ["s10 " + p for p in TASK.prompts]
    assert seen["greedy"][0] == seen["greedy"][4] == TASK.prompts


def test_transforms_docstring_examples():
    import doctest

    result = doctest.testmod(T, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0
