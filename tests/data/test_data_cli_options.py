"""`gammapo select`/`augment` options: checked before any work, named as on the command line.

Covers the defaults a user meets first (``augment`` on plain-string prompts), the hints a missing
column gives (``--model``, ``--ref-model``), a selection that would keep nothing, ``--score-field``
on an existing column, the ``--select-fraction`` spelling shared with ``gammapo train``, and
condition templates restricted to plain ``{score}`` fields.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from gammapo.data.augment import augment_pairs
from gammapo.data.cli import augment_main, select_main
from gammapo.data.io import read_data
from gammapo_spec import ConfigError
from gammapo.data.reward_augmented import condition_text


def _rows(n, logps=True):
    rows = []
    for i in range(n):
        r = {"id": i, "prompt": f"q{i % 2}", "chosen": "a b", "rejected": "c", "score_chosen": float(5 + i % 5),
             "score_rejected": float(i % 4)}
        if logps:
            r.update(chosen_logps=-1.0 - i % 3, rejected_logps=-2.0 - i % 5, chosen_lengths=2, rejected_lengths=1)
        rows.append(r)
    return rows


def _jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return str(path)


def _one_error_line(err: str, prog: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"{prog}: error: "), err
    assert "Traceback" not in err
    return lines[0]


def test_augment_default_works_on_plain_string_prompts(tmp_path, capsys):
    src = _jsonl(tmp_path / "in.jsonl", _rows(3))
    assert augment_main([src, str(tmp_path / "out.jsonl"), "--quiet"]) == 0, capsys.readouterr().err
    out = read_data(str(tmp_path / "out.jsonl")).data
    assert len(out) == 6 and out[0]["prompt"].endswith("\n\nq0") and "score is 5" in out[0]["prompt"]
    assert augment_pairs(_rows(3)).data == out


def test_augment_default_puts_a_system_message_in_conversations():
    rows = [{"prompt": [{"role": "user", "content": "hi"}], "chosen": [{"role": "assistant", "content": "yo"}],
             "rejected": [{"role": "assistant", "content": "no"}], "score_chosen": 9, "score_rejected": 1}]
    out = augment_pairs(rows, template="S{score}").data
    assert out[0]["prompt"] == [{"role": "system", "content": "S9"}, {"role": "user", "content": "hi"}]


def test_augment_mode_system_on_plain_prompts_names_the_record_and_the_options(tmp_path, capsys):
    src = _jsonl(tmp_path / "in.jsonl", _rows(2))
    assert augment_main([src, str(tmp_path / "out.jsonl"), "--mode", "system"]) == 2
    line = _one_error_line(capsys.readouterr().err, "gammapo augment")
    assert f"{src}:1" in line and "--mode prefix" in line


def test_select_without_logprobs_points_to_model(tmp_path, capsys):
    src = _jsonl(tmp_path / "in.jsonl", _rows(4, logps=False))
    assert select_main([src, str(tmp_path / "out.jsonl"), "--select-fraction", "0.5"]) == 2
    line = _one_error_line(capsys.readouterr().err, "gammapo select")
    assert "chosen_logps" in line and "--model" in line


def test_select_reference_based_checks_ref_fields_before_the_policy_model(tmp_path, capsys):
    pytest.importorskip("transformers")
    from gammapo.train.tiny import build_model, build_tokenizer

    tok = build_tokenizer(["q0", "q1", "a", "b", "c"])
    build_model(len(tok), seed=1).save_pretrained(tmp_path / "m")
    tok.save_pretrained(tmp_path / "m")
    capsys.readouterr()
    src = _jsonl(tmp_path / "in.jsonl", _rows(4, logps=False))
    assert select_main([src, str(tmp_path / "out.jsonl"), "--select-fraction", "0.5", "--variant", "reference-based",
                        "--model", str(tmp_path / "m"), "--quiet"]) == 2
    err = capsys.readouterr().err
    line = _one_error_line(err, "gammapo select")
    assert "ref_chosen_logps" in line and "--ref-model" in line and "computed" not in err


@pytest.mark.parametrize("fraction", ["1e-9", "0.1"])
def test_select_fraction_that_keeps_no_pair_is_refused(tmp_path, capsys, fraction):
    src = _jsonl(tmp_path / "in.jsonl", _rows(5))
    assert select_main([src, str(tmp_path / "out.jsonl"), "--select-fraction", fraction]) == 2
    line = _one_error_line(capsys.readouterr().err, "gammapo select")
    assert "--select-fraction" in line and "keeps no pair" in line
    assert not (tmp_path / "out.jsonl").exists()


def test_select_fraction_that_keeps_no_valid_pair_is_refused(tmp_path, capsys):
    rows = _rows(10)
    for r in rows[2:]:
        r["chosen_logps"] = None
    src = _jsonl(tmp_path / "in.jsonl", rows)
    assert select_main([src, str(tmp_path / "out.jsonl"), "--select-fraction", "0.2", "--skip-invalid"]) == 2
    err = capsys.readouterr().err
    assert err.count("skipped") == 8 and "keeps no pair of the 2 valid pairs" in err.splitlines()[-1]
    assert not (tmp_path / "out.jsonl").exists()


@pytest.mark.parametrize("bad", ["0", "1.5", "nan", "-0.2"])
def test_select_fraction_outside_the_interval_is_refused_before_reading(tmp_path, capsys, bad):
    assert select_main([str(tmp_path / "missing.jsonl"), str(tmp_path / "out.jsonl"), "--select-fraction", bad]) == 2
    assert "--select-fraction must lie in (0, 1]" in _one_error_line(capsys.readouterr().err, "gammapo select")


def test_fraction_is_a_deprecated_spelling_of_select_fraction(tmp_path, capsys):
    src = _jsonl(tmp_path / "in.jsonl", _rows(6))
    assert select_main([src, str(tmp_path / "a.jsonl"), "--fraction", "0.5", "--quiet"]) == 0
    assert "--fraction is deprecated; use --select-fraction" in capsys.readouterr().err
    assert select_main([src, str(tmp_path / "b.jsonl"), "--select-fraction", "0.5", "--quiet"]) == 0
    assert "is deprecated" not in capsys.readouterr().err
    assert read_data(str(tmp_path / "a.jsonl")).data == read_data(str(tmp_path / "b.jsonl")).data


def test_select_needs_a_fraction(tmp_path, capsys):
    src = _jsonl(tmp_path / "in.jsonl", _rows(2))
    assert select_main([src, str(tmp_path / "out.jsonl")]) == 2
    assert "--select-fraction" in _one_error_line(capsys.readouterr().err, "gammapo select")


def test_score_field_refuses_an_existing_column_unless_asked(tmp_path, capsys):
    src = _jsonl(tmp_path / "in.jsonl", _rows(6))
    out = tmp_path / "out.jsonl"
    assert select_main([src, str(out), "--select-fraction", "0.5", "--score-field", "id"]) == 2
    line = _one_error_line(capsys.readouterr().err, "gammapo select")
    assert "'id'" in line and "--replace-score-field" in line and not out.exists()
    assert select_main([src, str(out), "--select-fraction", "0.5", "--score-field", "id", "--replace-score-field",
                        "--quiet"]) == 0
    got = read_data(str(out)).data
    assert all(isinstance(r["id"], float) for r in got)


def test_score_field_refuses_an_existing_column_in_a_dataset(tmp_path):
    datasets = pytest.importorskip("datasets")
    from gammapo.data.select import select_pairs

    ds = datasets.Dataset.from_list(_rows(6))
    with pytest.raises(ConfigError, match="replace_score_field=True") as info:
        select_pairs(ds, fraction=0.5, score_field="id")
    assert info.value.field == "score_field"
    res = select_pairs(ds, fraction=0.5, score_field="id", replace_score_field=True)
    assert res.data.column_names.count("id") == 1 and isinstance(res.data[0]["id"], float)


@pytest.mark.parametrize("template", [
    "{score.__class__}", "{score.real}", "{score[0]}", "{score!r}", "{score:>99999999999}", "{score:{score}}",
    "{other}", "{}", "{0}", "{score:c}", "{score:.500f}", "{score:>5000}", "no field", "{score", "}{score}",
])
def test_templates_are_plain_score_fields_with_bounded_formats(template):
    with pytest.raises(ConfigError) as info:
        condition_text(7.0, template)
    assert info.value.field == "template"


@pytest.mark.parametrize(("template", "want"), [
    ("{score}", "7"), ("[{score:.2f}]", "[7.00]"), ("{score:>4}|", "   7|"), ("{{score}} {score}", "{score} 7"),
    ("{score:+.1e}", "+7.0e+00"), ("{score} of {score}", "7 of 7"),
])
def test_plain_templates_still_format(template, want):
    assert condition_text(7.0, template) == want


def test_cli_bad_template_is_one_line_before_reading(tmp_path, capsys):
    assert augment_main([str(tmp_path / "missing.jsonl"), str(tmp_path / "o.jsonl"), "--template",
                         "{score:>99999999999}"]) == 2
    line = _one_error_line(capsys.readouterr().err, "gammapo augment")
    assert line.startswith("gammapo augment: error: --template")


def test_unknown_option_is_one_line_exit_2(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "gammapo", "augment", "a.jsonl", "b.jsonl", "--bogus"],
                          capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert proc.returncode == 2
    assert _one_error_line(proc.stderr, "gammapo augment").endswith("unrecognized arguments: --bogus")
