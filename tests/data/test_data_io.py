"""gammapo.data.io: JSONL and datasets-on-disk round trips, record locations, bad lines, output guards."""

from __future__ import annotations

import json

import pytest

from gammapo.data.io import DataError, read_data, write_data
from gammapo_spec import ConfigError

ROWS = [
    {"prompt": "Qué?", "chosen": "sí ✓", "rejected": "no", "score_chosen": 8, "score_rejected": 2.5},
    {"prompt": "p", "chosen": "a\nb", "rejected": "c", "score_chosen": 1, "score_rejected": 0, "meta": {"k": [1, 2]}},
]
CONV = [
    {"prompt": [{"role": "user", "content": "hi"}], "chosen": [{"role": "assistant", "content": "hello"}],
     "rejected": [{"role": "assistant", "content": "go"}], "score_chosen": 9.0, "score_rejected": 3.0},
]


def _write_lines(path, lines):
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return str(path)


def test_read_data_jsonl_round_trip_is_exact(tmp_path):
    out = tmp_path / "out.jsonl"
    assert write_data(ROWS + CONV, str(out), "jsonl") == 3
    table = read_data(str(out))
    assert table.kind == "jsonl" and table.data == ROWS + CONV


def test_read_data_jsonl_blank_lines_are_skipped_and_lines_are_remembered(tmp_path):
    p = _write_lines(tmp_path / "in.jsonl", [json.dumps(ROWS[0]), "", "   ", json.dumps(ROWS[1])])
    table = read_data(p)
    assert len(table) == 2 and table.where(1) == f"{p}:4"


def test_read_data_jsonl_bad_line_names_its_line_number(tmp_path):
    p = _write_lines(tmp_path / "in.jsonl", [json.dumps(ROWS[0]), '{"prompt": "p", ', json.dumps(ROWS[1])])
    with pytest.raises(DataError, match=r"in\.jsonl:2: not valid JSON") as info:
        read_data(p)
    assert info.value.location == f"{p}:2"


def test_read_data_jsonl_non_object_line_is_an_error(tmp_path):
    p = _write_lines(tmp_path / "in.jsonl", ["[1, 2]"])
    with pytest.raises(DataError, match=r"in\.jsonl:1: a record must be a JSON object, got list"):
        read_data(p)


def test_read_data_skip_invalid_counts_the_skipped_lines(tmp_path):
    p = _write_lines(tmp_path / "in.jsonl", ["nope", json.dumps(ROWS[0]), "7"])
    table = read_data(p, skip_invalid=True)
    assert table.data == [ROWS[0]]
    assert [w for w, _ in table.invalid] == [f"{p}:1", f"{p}:3"]


def test_read_data_datasets_round_trip(tmp_path):
    datasets = pytest.importorskip("datasets")
    src = tmp_path / "ds"
    datasets.Dataset.from_list(CONV * 3).save_to_disk(str(src))
    table = read_data(str(src))
    assert table.kind == "datasets" and len(table) == 3 and table.where(2) == f"{src}[row 2]"
    out = tmp_path / "ds_out"
    assert write_data(table.data, str(out), "datasets") == 3
    assert datasets.load_from_disk(str(out)).to_list() == CONV * 3


def test_read_data_datasets_dict_split(tmp_path):
    datasets = pytest.importorskip("datasets")
    d = datasets.DatasetDict({"train": datasets.Dataset.from_list(ROWS[:1]), "test": datasets.Dataset.from_list(ROWS[:1] * 2)})
    d.save_to_disk(str(tmp_path / "dd"))
    assert len(read_data(str(tmp_path / "dd"), split="test")) == 2
    with pytest.raises(ConfigError) as info:
        read_data(str(tmp_path / "dd"))
    assert info.value.field == "split"
    with pytest.raises(ConfigError, match="no split 'dev'"):
        read_data(str(tmp_path / "dd"), split="dev")


def test_read_data_missing_path_and_non_dataset_directory(tmp_path):
    pytest.importorskip("datasets")
    with pytest.raises(ConfigError) as info:
        read_data(str(tmp_path / "nope.jsonl"))
    assert info.value.field == "input"
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="not a `datasets` directory"):
        read_data(str(tmp_path / "empty"))


def test_write_data_refuses_existing_output_and_the_input(tmp_path):
    p = tmp_path / "x.jsonl"
    write_data(ROWS, str(p), "jsonl")
    with pytest.raises(ConfigError, match="exists") as info:
        write_data(ROWS, str(p), "jsonl")
    assert info.value.field == "output"
    with pytest.raises(ConfigError, match="is the input"):
        write_data(ROWS, str(p), "jsonl", overwrite=True, inputs=[str(p)])
    assert write_data(ROWS[:1], str(p), "jsonl", overwrite=True) == 1
    assert read_data(str(p)).data == ROWS[:1]


def test_write_data_refuses_nan_instead_of_writing_invalid_json(tmp_path):
    with pytest.raises(ValueError):
        write_data([{"a": float("nan")}], str(tmp_path / "n.jsonl"), "jsonl")
    assert not list(tmp_path.iterdir()), "a failed write left a file behind"
