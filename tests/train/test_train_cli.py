"""``gammapo train`` end to end: the default study in its reduced size, a local model and preference
file (standard and conversational), and bad input stopping with exit status 2 before training."""

from __future__ import annotations

import json
import os

import pytest

pytest.importorskip("torch")
pytest.importorskip("trl")

from gammapo.train.cli import main  # noqa: E402
from gammapo.train.task import SyntheticTask  # noqa: E402
from gammapo.train.tiny import build_model, build_tokenizer  # noqa: E402

TASK = SyntheticTask()


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory):
    """A tiny model and tokenizer saved with save_pretrained (a chat template for conversational data)."""
    path = tmp_path_factory.mktemp("tiny-model")
    tok = build_tokenizer(TASK.words)
    tok.chat_template = "{% for m in messages %}{{ m['content'] }}{% endfor %}"
    build_model(len(tok), seed=0).save_pretrained(path)
    tok.save_pretrained(path)
    return str(path)


def _jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def test_cli_quick_default_prints_table_and_writes_report(tmp_path, capsys):
    out = tmp_path / "report"
    assert main(["--quick", "--max-steps", "3", "--eval-pairs", "64", "--out", str(out), "--save-steps", "0"]) == 0
    printed = capsys.readouterr().out
    for name in ("DPO", "SimPO", "γ-DPO", "γ-SimPO", "γ-SimPO τ=10", "DPO oracle", "SimPO oracle", "clean-pair accuracy",
                 "Δ vs base (paired)", "hard", "easy", "greedy r*", "AUC of −γ (flipped)", "Verdict:"):
        assert name in printed, f"{name!r} missing from the printed output:\n{printed}"
    for f in ("report.md", "results.png", "results.json"):
        assert (out / f).is_file(), f"{f} not written"
    data = json.loads((out / "results.json").read_text())
    assert [(r["loss"], r["data"]) for r in data["summary"]] == [
        ("dpo", "plain"), ("gamma-dpo", "plain"), ("simpo", "plain"), ("gamma-simpo", "plain"), ("gamma-simpo", "plain"),
        ("dpo", "oracle"), ("simpo", "oracle")]
    for row in data["summary"]:
        assert 0.0 <= row["accuracy_mean"] <= 1.0 and -1.0 <= row["gen_reward_mean"] <= 1.0
        assert f"{row['accuracy_mean']:.3f}" in printed, "the printed table shows the measured accuracy"
    taus = [r["settings"]["tau"] for r in data["summary"] if r["loss"] == "gamma-simpo"]
    assert taus == [1.0, 10.0], "the per-method override reaches the loss"
    report = (out / "report.md").read_text()
    assert "clean-pair accuracy" in report and "Verdict" in report and "γ0/τ" in report


def test_cli_noise_sweep_with_seeds_reports_spread(tmp_path, capsys):
    out = tmp_path / "sweep"
    argv = ["--quick", "--methods", "gamma-simpo", "--noise", "0,0.3", "--seeds", "2", "--max-steps", "4",
            "--eval-pairs", "64", "--no-oracle", "--out", str(out), "--save-steps", "0"]
    assert main(argv) == 0
    data = json.loads((out / "results.json").read_text())
    assert [(r["noise"], r["seeds"]) for r in data["summary"]] == [(0.0, 2), (0.3, 2)]
    assert all(r["eval_pairs_mean"] == 64 for r in data["summary"])
    assert "±" in capsys.readouterr().out
    assert "accuracy vs label noise" in (out / "report.md").read_text()


def test_cli_trains_local_model_on_jsonl_and_resumes(tmp_path, tiny_model_dir, capsys):
    data = _jsonl(tmp_path / "prefs.jsonl", TASK.pairs(40, noise=0.0, seed=2))
    out = tmp_path / "out"
    argv = ["--model", tiny_model_dir, "--dataset", data, "--loss", "gamma-simpo", "--preset", "tiny",
            "--max-steps", "4", "--batch-size", "8", "--save-steps", "2", "--out", str(out)]
    assert main(argv) == 0
    assert (out / "models" / "gamma-simpo-seed0" / "config.json").is_file()
    summary = json.loads((out / "results.json").read_text())["summary"][0]
    assert 0.0 <= summary["accuracy_mean"] <= 1.0, "held-out accuracy from TRL's eval_rewards/accuracies"
    assert os.path.isfile(out / "checkpoints" / "gamma-simpo-seed0" / "checkpoint-4" / "gammapo_loss_state.pt")
    # a second run with --resume continues from checkpoint-4 (already at max_steps: no further step)
    assert main(argv[:-2] + ["--max-steps", "6", "--resume", "--out", str(out)]) == 0
    runs = json.loads((out / "results.json").read_text())["runs"]
    assert runs[0]["steps"] == 6


def test_cli_trains_on_conversational_format(tmp_path, tiny_model_dir):
    rows = [{"prompt": [{"role": "user", "content": p["prompt"]}],
             "chosen": [{"role": "assistant", "content": p["chosen"]}],
             "rejected": [{"role": "assistant", "content": p["rejected"]}]} for p in TASK.pairs(24, noise=0.0, seed=4)]
    data = _jsonl(tmp_path / "conv.jsonl", rows)
    argv = ["--model", tiny_model_dir, "--dataset", data, "--loss", "gamma-dpo", "--preset", "tiny",
            "--max-steps", "2", "--batch-size", "4", "--save-steps", "0", "--out", str(tmp_path / "o")]
    assert main(argv) == 0


@pytest.mark.parametrize("rows,message", [
    ([{"prompt": "q1", "chosen": " t1"}], "row 0: missing column(s) ['rejected']"),
    ([{"question": "q1", "chosen": " t1", "rejected": " t2"}], "missing column(s) ['prompt']"),
    ([{"prompt": "q1", "chosen": " t1", "rejected": " t2"}, {"prompt": "q2", "chosen": "  ", "rejected": " t2"}],
     "row 1: 'chosen' is empty"),
    ([{"prompt": [{"role": "user", "content": "q1"}], "chosen": [{"role": "assistant", "content": ""}],
       "rejected": [{"role": "assistant", "content": "t2"}]}], "row 0: 'chosen' is empty"),
])
def test_cli_bad_dataset_exits_2_naming_the_problem(tmp_path, tiny_model_dir, capsys, rows, message):
    data = _jsonl(tmp_path / "bad.jsonl", rows)
    assert main(["--model", tiny_model_dir, "--dataset", data, "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert message in err, f"expected {message!r} in the error, got {err!r}"
    assert not (tmp_path / "o").exists(), "nothing may be trained or written before the input is checked"


@pytest.mark.parametrize("argv,message", [
    (["--model", "/nonexistent/model", "--dataset", "x.jsonl"], "model path '/nonexistent/model' does not exist"),
    (["--model", "MODEL", "--dataset", "/nonexistent.jsonl"], "dataset path '/nonexistent.jsonl' does not exist"),
    (["--model", "MODEL"], "--model and --dataset go together"),
    (["--methods", "dpo,gamma-nope"], "unknown loss(es) ['gamma-nope']"),
    (["--noise", "0.7"], "--noise rates must lie in [0, 0.5)"),
    (["--loss", "gamma-simpo", "--tau", "-1"], "tau must be a finite number > 0"),
    (["--preset", "gpt5"], "unknown preset 'gpt5'"),
    (["--gamma-beta-ratio", "-1"], "--gamma-beta-ratio must be a finite number >= 0, got -1"),
    (["--gamma-beta-ratio", "inf"], "--gamma-beta-ratio must be a finite number >= 0, got inf"),
    (["--gamma-beta-ratio", "abc"], "argument --gamma-beta-ratio: invalid float value: 'abc'"),
    (["--solver", "newton"], "argument --solver: invalid choice: 'newton'"),
    (["--no-such-flag"], "unrecognized arguments: --no-such-flag"),
])
def test_cli_bad_arguments_exit_2(tmp_path, tiny_model_dir, capsys, argv, message):
    argv = [tiny_model_dir if a == "MODEL" else a for a in argv]
    assert main(argv + ["--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("gammapo train: error:") and message in err, err
    assert err.count("\n") == 1, f"the error is not one line:\n{err}"


def test_cli_gamma_beta_ratio_and_solver_reach_the_loss_config(tmp_path, monkeypatch):
    import gammapo.train.run as run_module
    from gammapo_spec import GammaPOConfig

    from gammapo.train.presets import PRESETS

    built = {}
    train_method = run_module.train_method

    def spy(**kwargs):
        trainer = train_method(**kwargs)
        built[kwargs["loss"]] = trainer.pair_loss.config
        return trainer

    monkeypatch.setattr(run_module, "train_method", spy)
    argv = ["--quick", "--methods", "simpo,gamma-dpo", "--pairs", "32", "--eval-pairs", "8", "--max-steps", "1",
            "--batch-size", "8", "--save-steps", "0", "--jobs", "1", "--no-oracle"]
    assert main(argv + ["--gamma-beta-ratio", "0.25", "--solver", "mirror", "--out", str(tmp_path / "a")]) == 0
    assert built["gamma-dpo"].solver == "mirror" and built["gamma-dpo"].gamma_beta_ratio == 0.25
    assert built["simpo"].gamma_beta_ratio == 0.25, "SimPO's constant margin γ0 = β·ratio takes the ratio too"
    assert main(argv + ["--solver", "exact", "--out", str(tmp_path / "b")]) == 0
    assert built["gamma-dpo"].solver == "exact"
    assert main(argv + ["--out", str(tmp_path / "c")]) == 0  # no flags: the config's default and the preset's ratio
    assert built["gamma-dpo"].solver == GammaPOConfig().solver
    assert built["gamma-dpo"].gamma_beta_ratio == PRESETS["tiny"].dpo_ratio
    assert built["simpo"].gamma_beta_ratio == PRESETS["tiny"].simpo_ratio


def test_cli_malformed_jsonl_names_the_line(tmp_path, tiny_model_dir, capsys):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "q1", "chosen": " t1", "rejected": " t2"}\n{oops\n')
    assert main(["--model", tiny_model_dir, "--dataset", str(bad)]) == 2
    assert "bad.jsonl:2: not valid JSON" in capsys.readouterr().err
