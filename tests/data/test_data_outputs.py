"""Where `gammapo select`/`augment` write: checked before any work, replaced only when it is theirs, atomically.

* the output location (its folder exists and is a folder) is checked before the input is read;
* ``--overwrite`` replaces only a data file or a ``datasets`` folder (never a folder holding other
  files, never the input's parent);
* a replacement is written beside the output and swapped in, so a kill at any moment leaves the
  old output or the new one, complete; a killed write's temporary file (OUT.gammapo-tmp-...) is recognisable and removed
  by the next run;
* new files follow the umask.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from gammapo.data.cli import augment_main, select_main
from gammapo.data.io import read_data, write_data
from gammapo_spec import ConfigError

ROOT = Path(__file__).resolve().parents[2]


def _rows(n, tag="a"):
    return [{"id": i, "tag": tag, "prompt": f"q{i}", "chosen": "x y", "rejected": "z", "score_chosen": 9.0,
             "score_rejected": float(i % 7), "chosen_logps": -1.0 - i % 5, "rejected_logps": -2.0 - i % 3,
             "chosen_lengths": 2, "rejected_lengths": 1 + i % 4} for i in range(n)]


def _jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return str(path)


def _one_error_line(err: str, prog: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"{prog}: error: "), err
    return lines[0]


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_overwrite_never_deletes_a_folder_it_did_not_write(tmp_path, capsys):
    datasets = pytest.importorskip("datasets")
    project = tmp_path / "project"
    datasets.Dataset.from_list(_rows(6)).save_to_disk(str(project / "ds_in"))
    (project / "notes.txt").write_text("my notes", encoding="utf-8")
    other = tmp_path / "other"
    datasets.Dataset.from_list(_rows(2)).save_to_disk(str(other))
    (other / "README.md").write_text("keep me", encoding="utf-8")
    capsys.readouterr()
    before = _tree(tmp_path)
    assert select_main([str(project / "ds_in"), str(project), "--select-fraction", "0.5", "--overwrite", "--quiet"]) == 2
    line = _one_error_line(capsys.readouterr().err, "gammapo select")
    assert "holds the input" in line and str(project) in line
    assert select_main([str(project / "ds_in"), str(other), "--select-fraction", "0.5", "--overwrite", "--quiet"]) == 2
    line = _one_error_line(capsys.readouterr().err, "gammapo select")
    assert "not a datasets folder" in line and "'README.md'" in line and "--overwrite replaces only" in line
    assert select_main([str(project / "ds_in"), str(project / "ds_in" / "sel"), "--select-fraction", "0.5",
                        "--quiet"]) == 2
    assert "inside the input folder" in _one_error_line(capsys.readouterr().err, "gammapo select")
    assert _tree(tmp_path) == before, "a folder (or a file in it) was changed"


def test_overwrite_of_a_file_output_refuses_a_folder_and_a_non_data_file(tmp_path, capsys):
    src = _jsonl(tmp_path / "in.jsonl", _rows(4))
    (tmp_path / "folder").mkdir()
    (tmp_path / "folder" / "keep.txt").write_text("k", encoding="utf-8")
    (tmp_path / "script.sh").write_text("#!/bin/sh\necho hi\n", encoding="utf-8")
    before = _tree(tmp_path)
    for out in ("folder", "script.sh"):
        assert augment_main([src, str(tmp_path / out), "--overwrite", "--quiet"]) == 2
        assert "--overwrite" in _one_error_line(capsys.readouterr().err, "gammapo augment")
    assert _tree(tmp_path) == before


def test_overwrite_replaces_its_own_outputs(tmp_path, capsys):
    datasets = pytest.importorskip("datasets")
    src = _jsonl(tmp_path / "in.jsonl", _rows(6))
    out = tmp_path / "out.jsonl"
    assert select_main([src, str(out), "--select-fraction", "0.5", "--quiet"]) == 0
    capsys.readouterr()
    assert select_main([src, str(out), "--select-fraction", "1", "--quiet"]) == 2
    line = _one_error_line(capsys.readouterr().err, "gammapo select")
    assert "exists" in line and "--overwrite" in line and "overwrite=True" not in line
    assert select_main([src, str(out), "--select-fraction", "1", "--overwrite", "--quiet"]) == 0
    assert len(read_data(str(out)).data) == 6
    datasets.Dataset.from_list(_rows(6)).save_to_disk(str(tmp_path / "ds"))
    for fraction in ("0.5", "1"):
        assert select_main([str(tmp_path / "ds"), str(tmp_path / "sel"), "--select-fraction", fraction, "--overwrite",
                            "--quiet"]) == 0
    assert len(read_data(str(tmp_path / "sel")).data) == 6
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds", "in.jsonl", "out.jsonl", "sel"], "leftovers"


@pytest.mark.parametrize("command", ["select", "augment"])
def test_output_location_is_checked_before_the_input_is_read(tmp_path, capsys, command):
    src = _jsonl(tmp_path / "in.jsonl", _rows(4))
    (tmp_path / "afile").write_text("x", encoding="utf-8")
    main = select_main if command == "select" else augment_main
    extra = ["--select-fraction", "0.5"] if command == "select" else []
    for out, what in ((tmp_path / "newdir" / "sub" / "a.jsonl", "does not exist"), (tmp_path / "afile" / "a.jsonl", "not a folder")):
        assert main([src, str(out), "--quiet", *extra]) == 2
        line = _one_error_line(capsys.readouterr().err, f"gammapo {command}")
        assert what in line and str(out.parent) in line and "gammapo-" not in line
    # checked first: a bad input is not even read when the output cannot be written
    bad = tmp_path / "bad.jsonl"
    bad.write_text("not json\n", encoding="utf-8")
    assert main([str(bad), str(tmp_path / "newdir" / "a.jsonl"), "--quiet", *extra]) == 2
    assert "does not exist" in capsys.readouterr().err


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root may write anywhere")
def test_unwritable_output_folder_is_refused_before_work(tmp_path, capsys):
    src = _jsonl(tmp_path / "in.jsonl", _rows(4))
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    try:
        assert augment_main([src, str(locked / "a.jsonl"), "--quiet"]) == 2
        assert "not writable" in _one_error_line(capsys.readouterr().err, "gammapo augment")
    finally:
        locked.chmod(0o700)


def test_jsonl_output_follows_the_umask(tmp_path):
    code = textwrap.dedent(f"""
        import os
        os.umask(0o022)
        from gammapo.data.io import write_data
        write_data([{{"a": 1}}], {str(tmp_path / 'a.jsonl')!r}, "jsonl")
        write_data([{{"a": 1}}], {str(tmp_path / 'a.json')!r}, "json")
        os.umask(0o077)
        write_data([{{"a": 1}}], {str(tmp_path / 'b.jsonl')!r}, "jsonl")
    """)
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
    assert (tmp_path / "a.jsonl").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "a.json").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "b.jsonl").stat().st_mode & 0o777 == 0o600


def test_write_data_refuses_unrecognised_existing_output_in_python_words(tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "x.txt").write_text("x", encoding="utf-8")
    with pytest.raises(ConfigError, match="overwrite=True") as info:
        write_data(_rows(2), str(tmp_path / "d"), "datasets")
    assert info.value.field == "output"
    with pytest.raises(ConfigError, match="not a datasets folder"):
        write_data(_rows(2), str(tmp_path / "d"), "datasets", overwrite=True)
    assert _tree(tmp_path) == {"d/x.txt": b"x"}


_WORKER = textwrap.dedent("""
    import sys
    from gammapo.data.io import write_data
    kind, out, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    rows = {tag: [{"id": i, "tag": tag, "text": "w" * 40} for i in range(n)] for tag in "ab"}
    if kind == "datasets":
        import datasets
        rows = {tag: datasets.Dataset.from_list(r) for tag, r in rows.items()}
    print("ready", flush=True)
    k = 0
    while True:
        write_data(rows["ab"[k % 2]], out, kind, overwrite=True)
        k += 1
""")


def _check_complete(out: Path, kind: str, n: int) -> str:
    data = read_data(str(out)).data
    rows = data.to_list() if kind == "datasets" else data
    tags = {r["tag"] for r in rows}
    assert len(rows) == n and len(tags) == 1, f"a partial output: {len(rows)} rows, tags {tags}"
    return tags.pop()


@pytest.mark.parametrize(("kind", "n", "kills"), [("jsonl", 20_000, 10), ("datasets", 20_000, 6)])
def test_random_kills_during_overwrites_leave_a_complete_output(tmp_path, kind, n, kills):
    """SIGKILL at random moments of a loop of overwrites: the output is always complete, old or new."""
    if kind == "datasets":
        pytest.importorskip("datasets")
    out = tmp_path / ("out.jsonl" if kind == "jsonl" else "out")
    write_data([{"id": i, "tag": "a", "text": "w" * 40} for i in range(n)], str(out), kind)
    rng = random.Random(20)
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    for _ in range(kills):
        proc = subprocess.Popen([sys.executable, "-c", _WORKER, kind, str(out), str(n)], stdout=subprocess.PIPE,
                                env=env, cwd=tmp_path)
        assert proc.stdout.readline().strip() == b"ready"
        time.sleep(rng.uniform(0.0, 0.8))
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
        _check_complete(out, kind, n)
    leftovers = [p.name for p in tmp_path.iterdir() if p.name != out.name]
    assert all(".gammapo-tmp-" in name for name in leftovers), leftovers
    # the next run removes what the killed runs left
    write_data([{"id": 0, "tag": "c", "text": ""}], str(out), kind, overwrite=True)
    assert [p.name for p in tmp_path.iterdir()] == [out.name]


def _dead_pid() -> int:
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                          check=True, timeout=60)
    return int(proc.stdout)


def test_leftovers_of_a_kill_between_two_renames_are_undone(tmp_path):
    """Where folders cannot be exchanged atomically, a kill between the two renames loses nothing."""
    datasets = pytest.importorskip("datasets")
    from gammapo.data.output import remove_stale

    pid = _dead_pid()
    out = tmp_path / "out"
    datasets.Dataset.from_list(_rows(3, tag="old")).save_to_disk(str(tmp_path / f"out.gammapo-old-{pid}-0a1b"))
    datasets.Dataset.from_list(_rows(3, tag="new")).save_to_disk(str(tmp_path / f"out.gammapo-tmp-{pid}-2c3d"))
    foreign = tmp_path / f"out.gammapo-tmp-{pid}-4e5f"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("not a dataset", encoding="utf-8")
    remove_stale(str(out))
    assert {r["tag"] for r in read_data(str(out)).data.to_list()} == {"old"}
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["out", foreign.name]), "a folder with other files was removed"


def test_replace_dir_without_an_atomic_exchange_still_swaps(tmp_path, monkeypatch):
    datasets = pytest.importorskip("datasets")
    from gammapo.data import output

    monkeypatch.setattr(output, "_exchange", lambda a, b: False)  # a platform without renameat2
    out = tmp_path / "out"
    write_data(_rows(3, tag="a"), str(out), "datasets")
    write_data(_rows(4, tag="b"), str(out), "datasets", overwrite=True)
    assert len(read_data(str(out)).data) == 4 and [p.name for p in tmp_path.iterdir()] == ["out"]
    assert isinstance(read_data(str(out)).data, datasets.Dataset)
