"""Bad input at the command line: one line naming the problem, exit status 2, no traceback.

A framework or test tool that "is not installed" is simulated in a child process by putting ``None`` in
``sys.modules`` for it before the CLI runs: Python then treats the module as absent (``import`` raises
ModuleNotFoundError and ``importlib.util.find_spec`` returns None), as on an install without it.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import re
import subprocess
import sys

import pytest

import gammapo
from gammapo.cli import main


def _run_cli(argv: list[str], block: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    """``python -m gammapo ARGV`` in a child process where the modules in ``block`` are not importable."""
    code = (
        "import runpy, sys\n"
        f"for name in {list(block)!r}: sys.modules[name] = None\n"
        f"sys.argv = ['gammapo'] + {argv!r}\n"
        "runpy.run_module('gammapo', run_name='__main__', alter_sys=True)\n"
    )
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)


def _assert_one_line_error(err: str, *needles: str) -> None:
    assert "Traceback" not in err, err
    assert err.count("\n") == 1 and err.endswith("\n"), f"not one line: {err!r}"
    assert ": error: " in err, err
    for needle in needles:
        assert needle in err, f"{needle!r} missing from {err!r}"


def test_calibrate_unknown_backend(capsys):
    assert main(["calibrate", "--backend", "foo"]) == 2
    _assert_one_line_error(capsys.readouterr().err, "gammapo calibrate: error:", "unknown backend 'foo'", "numpy")


def test_calibrate_backend_whose_framework_is_not_installed():
    done = _run_cli(["calibrate", "--backend", "jax"], block=("jax",))
    assert done.returncode == 2, done.stderr
    _assert_one_line_error(done.stderr, "gammapo calibrate: error:", "needs jax", "pip install 'gammapo[jax]'")
    assert done.stdout == ""


@pytest.mark.parametrize("argv, needle", [
    (["calibrate", "--gaps", "1,nan"], "--gaps: wants finite numbers"),
    (["calibrate", "--gaps", "1,x"], "--gaps: wants comma-separated numbers"),
    (["calibrate", "--tau", "0"], "tau must be a finite number > 0"),
    (["calibrate", "--iters", "0"], "iters must be an integer >= 1"),
    (["calibrate", "--solver", "newton"], "invalid choice: 'newton'"),
    (["nope"], "invalid choice: 'nope'"),
    ([], "the following arguments are required: COMMAND"),
])
def test_bad_options_are_one_line(argv, needle, capsys):
    with pytest.raises(SystemExit) as exit_info:
        rc = main(argv)
        raise SystemExit(rc)
    assert exit_info.value.code == 2
    _assert_one_line_error(capsys.readouterr().err, needle)


def test_conformance_unknown_backend_stops_before_pytest(capsys):
    assert main(["conformance", "foo"]) == 2
    captured = capsys.readouterr()
    _assert_one_line_error(captured.err, "gammapo conformance: error:", "'foo' is neither a known backend")
    assert captured.out == "", "pytest ran"


@pytest.mark.parametrize("argv, needle", [
    (["--max-examples", "0"], "--max-examples: wants a whole number >= 1"),
    (["--skip-file", "no-such-file.txt"], "--skip-file no-such-file.txt: no such file"),
    (["--report-json", "no-such-folder/r.json"], "the folder no-such-folder does not exist"),
])
def test_conformance_bad_options_stop_before_pytest(argv, needle, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        raise SystemExit(main(["conformance", "numpy", *argv]))
    assert exit_info.value.code == 2
    captured = capsys.readouterr()
    _assert_one_line_error(captured.err, needle)
    assert captured.out == ""


@pytest.mark.parametrize("blocked", ["pytest", "hypothesis"])
def test_conformance_without_the_test_tools(blocked):
    done = _run_cli(["conformance", "numpy"], block=(blocked,))
    assert done.returncode == 2, done.stderr[-2000:]
    _assert_one_line_error(done.stderr, "gammapo conformance: error:", f"needs {blocked}", "pip install 'gammapo[test]'")


def test_conformance_backend_whose_framework_is_not_installed():
    done = _run_cli(["conformance", "jax"], block=("jax",))
    assert done.returncode == 2, done.stderr[-2000:]
    _assert_one_line_error(done.stderr, "gammapo conformance: error:", "needs jax")


def test_version():
    done = _run_cli(["--version"])
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"gammapo {gammapo.__version__}\n"
    assert importlib.metadata.version("gammapo") == gammapo.__version__


# --- help text -------------------------------------------------------------------------------------

#: Every subcommand and the function that builds its parser.
PARSERS = {
    "gammapo": "gammapo.cli:build_parser",
    "calibrate": "gammapo.cli:build_parser",
    "backends": "gammapo.cli:build_parser",
    "conformance": "gammapo_conformance.cli:_parser",
    "bench": "benchmarks.__main__:build_parser",
    "select": "gammapo.data.cli:build_select_parser",
    "augment": "gammapo.data.cli:build_augment_parser",
    "train": "gammapo.train.cli:build_parser",
}


def _parser_of(command: str) -> argparse.ArgumentParser:
    module, _, attr = PARSERS[command].partition(":")
    parser = getattr(importlib.import_module(module), attr)()
    if command in ("calibrate", "backends"):
        sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        parser = sub.choices[command]
    return parser


@pytest.mark.parametrize("command", list(PARSERS))
def test_every_flag_has_help(command):
    parser = _parser_of(command)
    undocumented = [a.option_strings or [a.dest] for a in parser._actions
                    if not isinstance(a, argparse._SubParsersAction) and (not a.help or a.help == argparse.SUPPRESS)]
    assert not undocumented, f"gammapo {command}: options without help text: {undocumented}"
    assert parser.description, f"gammapo {command} --help has no description"


#: reST that argparse would print as it is: ``literal``, :role:`x`, `link`_, directives, literal-block "::".
RST = re.compile(r"``|:[a-z]+:`|`_\b|^\s*\.\. |::$", re.M)


@pytest.mark.parametrize("command", list(PARSERS))
def test_help_has_no_rest_markup(command, capsys):
    argv = ["--help"] if command == "gammapo" else [command, "--help"]
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: "), out[:200]
    found = RST.findall(out)
    assert not found, f"gammapo {' '.join(argv)} shows reST markup {found}:\n{out}"
