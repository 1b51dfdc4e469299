"""Untrusted input files for `gammapo select`/`augment`/`train`: every bad record is named by file:line.

Each hostile line (bytes that are not UTF-8, an integer too large for any column type, nesting
deeper than any record needs, NaN or Infinity, a lone surrogate) is an invalid record found while
reading: exit status 2 with one line naming ``file:line``, nothing written; with ``--skip-invalid``
it is counted and left out. One reader serves every command (``.jsonl``, ``.json`` lists), a UTF-8
byte-order mark is accepted, and a CSV file is refused instead of being read as JSONL.
"""

from __future__ import annotations

import json

import pytest

from gammapo.data.cli import augment_main, select_main
from gammapo.data.io import DataError, read_data, write_data

GOOD = {"id": 0, "prompt": "p", "chosen": "a", "rejected": "b", "score_chosen": 8, "score_rejected": 2,
        "chosen_logps": -3.0, "rejected_logps": -5.0, "chosen_lengths": 2, "rejected_lengths": 3}


def _good(i):
    return json.dumps(dict(GOOD, id=i)).encode()


#: name -> the raw bytes of line 2 (a hostile record), and a fragment of the message it must give.
HOSTILE = {
    "non-utf8": (b'{"id": 1, "prompt": "caf\xe9", "chosen": "a", "rejected": "b"}', "not UTF-8"),
    "400-digit-int": (json.dumps(dict(GOOD, id=1, meta=10**400)).encode(), "64 bits"),
    "deep-nesting": (b'{"id": 1, "meta": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", "nested"),
    "nesting-500": (b'{"id": 1, "meta": ' + b"[" * 500 + b"]" * 500 + b"}", "nested more than 64"),
    "nan-carried": (json.dumps(dict(GOOD, id=1, meta=float("nan"))).encode(), "NaN"),
    "infinity-carried": (json.dumps(dict(GOOD, id=1, meta=float("inf"))).encode(), "Infinity"),
    "lone-surrogate": (json.dumps(dict(GOOD, id=1, prompt="\ud800")).encode(), "surrogate"),
    "huge-float": (json.dumps(dict(GOOD, id=1))[:-1].encode() + b', "meta": 1e400}', "Infinity"),
}


def _file(tmp_path, line2: bytes, name="in.jsonl"):
    path = tmp_path / name
    path.write_bytes(b"\n".join([_good(0), line2, _good(2)]) + b"\n")
    return str(path)


def _one_error_line(err: str, prog: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"{prog}: error: "), err
    assert "Traceback" not in err
    return lines[0]


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_read_data_names_the_line_of_a_hostile_record(tmp_path, case):
    line2, fragment = HOSTILE[case]
    src = _file(tmp_path, line2)
    with pytest.raises(DataError) as info:
        read_data(src)
    assert info.value.location == f"{src}:2" and fragment in str(info.value)
    table = read_data(src, skip_invalid=True)
    assert [r["id"] for r in table.data] == [0, 2] and [w for w, _ in table.invalid] == [f"{src}:2"]


@pytest.mark.parametrize("case", sorted(HOSTILE))
@pytest.mark.parametrize("command", ["select", "augment"])
def test_cli_hostile_record_is_one_line_exit_2_and_skippable(tmp_path, capsys, case, command):
    line2, fragment = HOSTILE[case]
    src = _file(tmp_path, line2)
    out = tmp_path / "out.jsonl"
    main = select_main if command == "select" else augment_main
    extra = ["--select-fraction", "1", "--quiet"] if command == "select" else ["--quiet"]
    assert main([src, str(out), *extra]) == 2
    line = _one_error_line(capsys.readouterr().err, f"gammapo {command}")
    assert f"{src}:2: " in line and fragment in line
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["in.jsonl"]
    assert main([src, str(out), *extra, "--skip-invalid"]) == 0
    err = capsys.readouterr().err
    assert f"skipped {src}:2: " in err and "invalid 1" in err
    assert len(read_data(str(out)).data) == (2 if command == "select" else 4)


def test_utf8_byte_order_mark_is_accepted(tmp_path, capsys):
    src = tmp_path / "bom.jsonl"
    src.write_bytes(b"\xef\xbb\xbf" + _good(0) + b"\n" + _good(1) + b"\n")
    assert [r["id"] for r in read_data(str(src)).data] == [0, 1]
    assert augment_main([str(src), str(tmp_path / "out.jsonl"), "--quiet"]) == 0
    assert "invalid 0" in capsys.readouterr().err


def test_line_separators_inside_strings_do_not_split_records(tmp_path):
    rows = [dict(GOOD, id=i, prompt=f"a\u2028b\u2029c\x85d{i}") for i in range(3)]
    out = tmp_path / "out.jsonl"
    write_data(rows, str(out), "jsonl")
    assert "\u2028" in out.read_text(encoding="utf-8"), "the writer keeps U+2028 raw (valid JSON)"
    assert read_data(str(out)).data == rows


def test_train_reads_what_augment_writes(tmp_path, capsys):
    """`gammapo train --dataset` reads the same JSONL as the data commands (U+2028 written raw)."""
    from gammapo.train.data import load_preferences

    rows = [{"prompt": f"q{i}\u2028more", "chosen": "good\u2029answer", "rejected": "bad", "score_chosen": 9,
             "score_rejected": 2} for i in range(3)]
    src = tmp_path / "in.jsonl"
    write_data(rows, str(src), "jsonl")
    out = tmp_path / "aug.jsonl"
    assert augment_main([str(src), str(out), "--quiet"]) == 0
    got = load_preferences(str(out))
    assert len(got) == 6 and got == read_data(str(out)).data


def test_train_reader_names_the_line_of_a_hostile_record(tmp_path):
    from gammapo.train.data import DataError as TrainDataError
    from gammapo.train.data import load_preferences

    src = _file(tmp_path, HOSTILE["non-utf8"][0])
    with pytest.raises(TrainDataError, match=rf"{src}:2: .*not UTF-8"):
        load_preferences(src)


@pytest.mark.parametrize("command", ["select", "augment"])
def test_json_list_input_is_read_by_every_command(tmp_path, capsys, command):
    src = tmp_path / "in.json"
    rows = [dict(GOOD, id=i) for i in range(4)]
    src.write_text(json.dumps(rows, indent=2), encoding="utf-8")
    out = tmp_path / "out.json"
    main = select_main if command == "select" else augment_main
    extra = ["--select-fraction", "0.5"] if command == "select" else []
    assert main([str(src), str(out), "--quiet", *extra]) == 0, capsys.readouterr().err
    got = json.loads(out.read_text(encoding="utf-8"))
    assert isinstance(got, list) and len(got) == (2 if command == "select" else 8)


def test_json_list_bad_element_names_its_line(tmp_path):
    src = tmp_path / "in.json"
    src.write_text('[\n  {"id": 0},\n  {"id": 1, "x": NaN},\n  7\n]\n', encoding="utf-8")
    with pytest.raises(DataError) as info:
        read_data(str(src))
    assert info.value.location == f"{src}:3"
    table = read_data(str(src), skip_invalid=True)
    assert table.data == [{"id": 0}] and [w for w, _ in table.invalid] == [f"{src}:3", f"{src}:4"]


@pytest.mark.parametrize("command", ["select", "augment"])
def test_csv_input_is_refused_not_read_as_jsonl(tmp_path, capsys, command):
    src = tmp_path / "prefs.csv"
    src.write_text("prompt,chosen,rejected,score_chosen,score_rejected\np,a,b,8,2\n", encoding="utf-8")
    main = select_main if command == "select" else augment_main
    extra = ["--select-fraction", "0.5"] if command == "select" else []
    assert main([str(src), str(tmp_path / "out.jsonl"), "--skip-invalid", *extra]) == 2
    line = _one_error_line(capsys.readouterr().err, f"gammapo {command}")
    assert "CSV" in line and "JSONL" in line
    assert not (tmp_path / "out.jsonl").exists()


def test_a_file_with_no_readable_record_is_an_error_even_when_skipping(tmp_path, capsys):
    src = tmp_path / "prefs.txt"
    src.write_text("prompt\tchosen\nq\ta\n", encoding="utf-8")
    assert augment_main([str(src), str(tmp_path / "out.jsonl"), "--skip-invalid"]) == 2
    line = _one_error_line(capsys.readouterr().err, "gammapo augment")
    assert "no line" in line and "JSON" in line
