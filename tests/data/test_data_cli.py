"""`gammapo select` and `gammapo augment` as a user runs them (subprocesses, real files)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from gammapo.data.augment import augment_pairs
from gammapo.data.select import select_pairs


def _rows(n):
    return [{"id": i, "prompt": f"q{i % 2}", "chosen": "a b", "rejected": "c",
             "score_chosen": float((7 * i) % 10), "score_rejected": float((3 * i) % 10),
             "chosen_logps": -1.0 - (5 * i) % 7, "rejected_logps": -2.0 - (2 * i) % 5,
             "chosen_lengths": 1 + i % 4, "rejected_lengths": 2 + i % 3} for i in range(n)]


def _jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return str(path)


def _read(path):
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh]


def gammapo(*args):
    return subprocess.run([sys.executable, "-m", "gammapo", *args], capture_output=True, text=True, timeout=120)


def test_cli_select_jsonl_writes_the_selection_and_reports_counts(tmp_path):
    rows = _rows(20)
    src = _jsonl(tmp_path / "in.jsonl", rows)
    proc = gammapo("select", src, str(tmp_path / "out.jsonl"), "--fraction", "0.4", "--weight", "0.5", "--quiet")
    assert proc.returncode == 0, proc.stderr
    assert "read 20, invalid 0, filtered 12, written 8" in proc.stderr
    assert _read(tmp_path / "out.jsonl") == select_pairs(rows, fraction=0.4, weight=0.5).data


def test_cli_select_baseline(tmp_path):
    rows = _rows(10)
    src = _jsonl(tmp_path / "in.jsonl", rows)
    proc = gammapo("select", src, str(tmp_path / "out.jsonl"), "--fraction", "0.3", "--baseline", "explicit-margin")
    assert proc.returncode == 0, proc.stderr
    assert _read(tmp_path / "out.jsonl") == select_pairs(rows, fraction=0.3, metric="explicit-margin").data


def test_cli_select_bad_record_names_line_and_field(tmp_path):
    rows = _rows(4)
    del rows[2]["score_rejected"]
    src = _jsonl(tmp_path / "in.jsonl", rows)
    proc = gammapo("select", src, str(tmp_path / "out.jsonl"), "--fraction", "0.5")
    assert proc.returncode == 2
    assert f"gammapo select: error: {src}:3: field 'score_rejected' is missing" in proc.stderr
    assert not (tmp_path / "out.jsonl").exists()
    proc = gammapo("select", src, str(tmp_path / "out.jsonl"), "--fraction", "0.5", "--skip-invalid")
    assert proc.returncode == 0, proc.stderr
    assert f"skipped {src}:3" in proc.stderr and "read 4, invalid 1, filtered 2, written 1" in proc.stderr


def test_cli_select_refuses_an_existing_output(tmp_path):
    src = _jsonl(tmp_path / "in.jsonl", _rows(4))
    proc = gammapo("select", src, src, "--fraction", "0.5", "--overwrite")
    assert proc.returncode == 2 and "is the input" in proc.stderr


def test_cli_select_and_augment_datasets_directories(tmp_path):
    datasets = pytest.importorskip("datasets")
    rows = _rows(10)
    datasets.Dataset.from_list(rows).save_to_disk(str(tmp_path / "ds"))
    proc = gammapo("select", str(tmp_path / "ds"), str(tmp_path / "sel"), "--fraction", "0.5", "--quiet")
    assert proc.returncode == 0, proc.stderr
    assert datasets.load_from_disk(str(tmp_path / "sel")).to_list() == select_pairs(rows, fraction=0.5).data
    proc = gammapo("augment", str(tmp_path / "sel"), str(tmp_path / "aug"), "--mode", "prefix", "--template", "<{score}>")
    assert proc.returncode == 0, proc.stderr
    got = datasets.load_from_disk(str(tmp_path / "aug")).to_list()
    assert got == augment_pairs(select_pairs(rows, fraction=0.5).data, mode="prefix", template="<{score}>").data


def test_cli_augment_conversational_jsonl_system_mode(tmp_path):
    rows = [{"prompt": [{"role": "user", "content": "hi"}], "chosen": [{"role": "assistant", "content": "hello"}],
             "rejected": [{"role": "assistant", "content": "go"}], "score_chosen": 9, "score_rejected": s}
            for s in (3, 9, 10)]
    src = _jsonl(tmp_path / "in.jsonl", rows)
    proc = gammapo("augment", src, str(tmp_path / "out.jsonl"), "--template", "Score {score}.", "--ties", "drop")
    assert proc.returncode == 0, proc.stderr
    assert "read 3, invalid 0, kept 1, dropped lower 1, dropped ties 1, written 2" in proc.stderr
    out = _read(tmp_path / "out.jsonl")
    assert [r["prompt"][0] for r in out] == [{"role": "system", "content": "Score 9."}, {"role": "system", "content": "Score 3."}]


def test_cli_augment_system_mode_on_plain_prompts_is_a_clear_error(tmp_path):
    src = _jsonl(tmp_path / "in.jsonl", _rows(2))
    proc = gammapo("augment", src, str(tmp_path / "out.jsonl"), "--mode", "system")
    assert proc.returncode == 2 and "use --mode prefix" in proc.stderr and "Traceback" not in proc.stderr


def test_cli_select_model_fills_missing_logprobs(tmp_path):
    pytest.importorskip("transformers")
    from gammapo.data.logprobs import fill_logprobs
    from gammapo.train.tiny import build_model, build_tokenizer

    tok = build_tokenizer(["q0", "q1", "a", "b", "c"])
    model = build_model(len(tok), seed=1)
    model.save_pretrained(tmp_path / "m")
    tok.save_pretrained(tmp_path / "m")
    rows = [{k: v for k, v in r.items() if "logps" not in k and "lengths" not in k} for r in _rows(6)]
    src = _jsonl(tmp_path / "in.jsonl", rows)
    proc = gammapo("select", src, str(tmp_path / "out.jsonl"), "--fraction", "0.5", "--model", str(tmp_path / "m"),
                   "--score-field", "ap", "--quiet")
    assert proc.returncode == 0, proc.stderr
    assert "computed policy log-probs for 6 records" in proc.stderr
    filled, _ = fill_logprobs([dict(r) for r in rows], model, tok)
    want = select_pairs(filled, fraction=0.5, score_field="ap").data
    got = _read(tmp_path / "out.jsonl")
    assert [r["id"] for r in got] == [r["id"] for r in want]
    assert [r["chosen_logps"] for r in got] == pytest.approx([r["chosen_logps"] for r in want], abs=1e-5)
