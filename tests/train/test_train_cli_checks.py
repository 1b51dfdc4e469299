"""``gammapo train`` checks every option before any work, documents every flag in plain text, refuses to
overwrite a report, and reports honestly on a user's own data (table and model cards)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

pytest.importorskip("torch")
pytest.importorskip("trl")

from gammapo.train.cli import build_parser, main  # noqa: E402
from gammapo.train.task import SyntheticTask  # noqa: E402
from gammapo.train.tiny import build_model, build_tokenizer  # noqa: E402

TASK = SyntheticTask()


@pytest.mark.parametrize("argv,message", [
    (["--lr", "-1"], "--lr must be a finite number > 0, got -1"),
    (["--lr", "0"], "--lr must be a finite number > 0, got 0"),
    (["--lr", "nan"], "--lr must be a finite number > 0, got nan"),
    (["--epochs", "0"], "--epochs must be a finite number > 0, got 0"),
    (["--epochs", "-2"], "--epochs must be a finite number > 0, got -2"),
    (["--beta", "0"], "--beta must be a finite number > 0, got 0"),
    (["--max-steps", "0"], "--max-steps must be >= 1 (or -1: run the epochs), got 0"),
    (["--save-steps", "-1"], "--save-steps must be >= 0"),
    (["--seeds", "0"], "--seeds must be >= 1, got 0"),
    (["--threads", "0"], "--threads must be >= 1, got 0"),
    (["--jobs", "0"], "--jobs must be >= 1, got 0"),
    (["--max-length", "0"], "--max-length must be >= 1, got 0"),
    (["--eval-fraction", "1"], "--eval-fraction must lie in [0, 1), got 1"),
    (["--noise-model", "gauss"], "--noise-model: expected distinct names from uniform, bt"),
    (["--noise", "0.2,nan"], "--noise rates must lie in [0, 0.5)"),
    (["--methods", "gamma-simpo:foo=1"], "bad option 'foo=1' in 'gamma-simpo:foo=1'"),
    (["--methods", "gamma-simpo:tau=x"], "tau in 'gamma-simpo:tau=x' must be a number"),
    (["--methods", "dpo:tau=1"], "dpo has no tau"),
    (["--methods", "gamma-simpo:tau=-1"], "tau must be a finite number > 0"),
    (["--methods", "dpo,dpo"], "a method is repeated"),
    (["--resume", "--overwrite"], "choose one"),
])
def test_bad_option_exits_2_in_one_line_before_any_work(tmp_path, capsys, argv, message):
    out = tmp_path / "o"
    assert main(argv + ["--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("gammapo train: error:") and message in err, err
    assert err.count("\n") == 1, f"the error is not one line:\n{err}"
    assert not out.exists(), "nothing may be trained or written before the options are checked"


def test_bad_option_from_the_command_line_has_no_traceback(tmp_path):
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "gammapo", "train", "--lr", "-1", "--out", str(tmp_path / "o")],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.strip() == "gammapo train: error: --lr must be a finite number > 0, got -1", proc.stderr
    assert "Traceback" not in proc.stderr and time.perf_counter() - t0 < 300


def test_every_flag_has_plain_text_help():
    parser = build_parser()
    missing = [a.option_strings[0] for a in parser._actions if a.option_strings and not a.help]
    assert not missing, f"flags without help text: {missing}"
    text = parser.format_help()
    for markup in ("``", ":mod:", ":func:", ":class:", ":math:", ".. "):
        assert markup not in text, f"reST markup {markup!r} in --help:\n{text}"


def test_existing_report_is_not_overwritten_without_overwrite(tmp_path, capsys):
    out = tmp_path / "report"
    out.mkdir()
    (out / "report.md").write_text("an earlier study")
    (out / "notes.txt").write_text("mine")
    argv = ["--quick", "--methods", "simpo", "--no-oracle", "--pairs", "16", "--eval-pairs", "8", "--max-steps", "1",
            "--batch-size", "8", "--save-steps", "0", "--jobs", "1", "--out", str(out)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "already holds a report (report.md); pass --overwrite" in err and err.count("\n") == 1
    assert (out / "report.md").read_text() == "an earlier study"
    assert main(argv + ["--overwrite"]) == 0
    assert (out / "report.md").read_text() != "an earlier study"
    assert (out / "notes.txt").read_text() == "mine", "--overwrite touches only the report's own files"


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("base-model")
    tok = build_tokenizer(TASK.words)
    build_model(len(tok), seed=0).save_pretrained(path)
    tok.save_pretrained(path)
    return str(path)


def test_own_data_report_and_model_cards_are_honest(tmp_path, model_dir, capsys):
    data = tmp_path / "prefs.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in TASK.pairs(40, noise=0.0, seed=2)))
    out = tmp_path / "out"
    argv = ["--model", model_dir, "--dataset", str(data), "--loss", "gamma-simpo", "--preset", "tiny", "--tau", "2",
            "--max-steps", "2", "--batch-size", "8", "--save-steps", "1", "--eval-fraction", "0.25", "--out", str(out)]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    report = (out / "report.md").read_text()
    for text in (printed, report):
        assert "held-out preference accuracy on your labels" in text
        assert "noise 0.00" not in text and "ground-truth" not in text and "greedy" not in text
    assert "10 held-out pairs" in printed.replace("the 10 held-out", "10 held-out")
    row = json.loads((out / "results.json").read_text())["summary"][0]
    assert row["eval_pairs_mean"] == 10
    cards = [out / "checkpoints" / "gamma-simpo-seed0" / "README.md", out / "models" / "gamma-simpo-seed0" / "README.md"]
    for card in cards:
        text = card.read_text()
        assert f"fine-tuned version of `{model_dir}`" in text and "[None]" not in text
        assert "**γ-SimPO**" in text and "β = 2, γ0 = 1 (γ0/β = 0.5), τ = 2" in text and "solver `exact`" in text
        assert "arXiv:2506.03690" in text and "arXiv:2405.14734" in text, "cites γ-PO and SimPO"
        assert "trained with DPO" not in text


def test_model_card_of_a_model_built_from_a_config(tmp_path):
    from gammapo.train.run import RunConfig, train_method

    tok = build_tokenizer(TASK.words)
    trainer = train_method(method="dpo", loss="dpo", loss_kwargs={"beta": 0.1}, model=build_model(len(tok), seed=0),
                           tokenizer=tok, train_pairs=TASK.pairs(16, noise=0.0, seed=1),
                           run=RunConfig(str(tmp_path / "run"), batch_size=8, max_steps=1, save_steps=1))
    text = (tmp_path / "run" / "README.md").read_text()
    assert "trained from a config" in text and "base_model" not in text
    assert "**DPO**" in text and "β = 0.1" in text and "arXiv:2305.18290" in text and "arXiv:2506.03690" in text
    assert os.path.isdir(tmp_path / "run" / "checkpoint-1") and trainer.state.global_step == 1


def test_train_shows_the_solver_regime_warning(tmp_path, capsys):
    """The CLI mutes library notices, not gammapo's own warnings: mirror at κ = γ0²/(8τ) > 0.5 is named."""
    import warnings

    from gammapo_spec import calibration

    from gammapo.train.cli import main

    calibration._WARNED.clear()  # the warning is given once per setting and process; another test may have had it
    argv = ["--quick", "--methods", "gamma-simpo:tau=1:beta=10:gamma_beta_ratio=0.4:solver=mirror", "--pairs", "16", "--eval-pairs", "8",
            "--max-steps", "1", "--batch-size", "8", "--save-steps", "0", "--jobs", "1", "--no-oracle",
            "--noise-model", "uniform", "--out", str(tmp_path / "o")]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")
        assert main(argv) == 0
    assert any("κ" in str(w.message) or "kappa" in str(w.message) for w in caught), [str(w.message) for w in caught]


def test_train_refuses_an_output_folder_in_use(tmp_path, capsys):
    from gammapo.integrations._checkpoints import lock_output
    from gammapo.train.cli import main

    out = tmp_path / "o"
    held = lock_output(str(out))  # as a second `gammapo train --out o` running now would hold it
    try:
        assert main(["--quick", "--max-steps", "1", "--out", str(out)]) == 2
    finally:
        held.close()
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("gammapo train: error:") and "Traceback" not in err[0]
    assert not (out / "report.md").exists()


def test_train_resume_with_other_settings_is_a_one_line_error(tmp_path, capsys):
    from gammapo.train.cli import main

    out = str(tmp_path / "o")
    base = ["--quick", "--methods", "gamma-simpo", "--pairs", "16", "--eval-pairs", "8", "--batch-size", "8",
            "--jobs", "1", "--no-oracle", "--noise-model", "uniform", "--seeds", "1", "--save-steps", "1"]
    assert main(base + ["--max-steps", "2", "--out", out]) == 0
    capsys.readouterr()
    assert main(base + ["--max-steps", "3", "--tau", "5", "--resume", "--out", out]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err and err[-1].startswith("gammapo train: error:") and "tau" in err[-1], err
