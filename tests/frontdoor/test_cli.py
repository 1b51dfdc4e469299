"""The command line: the README's first command and its error handling."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np

from gammapo.cli import EXAMPLE_GAPS, main
from gammapo_spec import calibrate_margins


def test_cli_calibrate_prints_a_real_calibration(capsys):
    assert main(["calibrate"]) == 0
    out = capsys.readouterr().out
    expected = calibrate_margins(EXAMPLE_GAPS, gamma0=4.0, tau=10.0)
    for value in expected:
        assert f"{value:.6f}" in out, f"margin {value:.6f} missing from the table"
    assert "KKT residual" in out


def test_cli_calibrate_json_matches_the_spec(capsys):
    assert main(["calibrate", "--gaps", "2,-1,0.5", "--tau", "0.3", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    for solver in ("mirror", "exact"):
        np.testing.assert_allclose(
            data[solver]["margins"], calibrate_margins([2, -1, 0.5], gamma0=4.0, tau=0.3, solver=solver)
        )
    assert data["exact"]["kkt_residual"] <= 1e-10


def test_cli_calibrate_bad_hyperparameter_is_a_clear_error(capsys):
    assert main(["calibrate", "--tau", "-1"]) == 2
    assert "tau must be a finite number > 0" in capsys.readouterr().err


def test_cli_runs_as_module():
    out = subprocess.run([sys.executable, "-m", "gammapo", "backends"], capture_output=True, text=True, check=True)
    assert "numpy" in out.stdout and "available" in out.stdout


def test_cli_passthrough_subcommands_keep_their_leading_options():
    """`gammapo train --help` reaches the trainer's own parser (argparse.REMAINDER used to drop it)."""
    import sys as _sys

    for command, expected in [("train", "--methods"), ("select", "--fraction"), ("augment", "--ties")]:
        done = subprocess.run([_sys.executable, "-m", "gammapo", command, "--help"], capture_output=True, text=True)
        assert done.returncode == 0, f"gammapo {command} --help exited {done.returncode}: {done.stderr[-500:]}"
        assert f"usage: gammapo {command}" in done.stdout, done.stdout[:300]
        assert expected in done.stdout, f"gammapo {command} --help does not show {expected}"
