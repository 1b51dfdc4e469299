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


def test_cli_calibrate_names_its_solvers_and_claims_rank_consistency_only_where_it_holds(capsys):
    """At τ = 1, γ0 = 4 the released mirror iterate ranks these gaps wrongly: the command says so and warns."""
    gaps = "3.2,5.3,-7.7,-0.4,3.0,4.1,2.0,4.5"
    assert main(["calibrate", "--gaps", gaps, "--tau", "1"]) == 0
    captured = capsys.readouterr()
    out, err = captured.out, captured.err
    assert "exact (the minimiser, the default solver)" in out and "mirror (the released arithmetic)" in out
    assert "exact: confident pairs (large h) get larger margins" in out
    assert "mirror: the margins are NOT monotone in the gaps" in out
    assert "mirror: confident pairs" not in out
    assert "kappa = gamma0^2/(8 tau) = 2" in err and "use the exact solver" in err
    assert "log(γmax/γmin) < γ0/τ = 4" in out
    # the released recipe: both solvers agree, no warning, both claims hold
    assert main(["calibrate"]) == 0
    captured = capsys.readouterr()
    assert captured.err == "" and "mirror: confident pairs" in captured.out


def test_cli_calibrate_unknown_backend_is_one_line_and_exit_2(capsys):
    assert main(["calibrate", "--backend", "foo"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unknown backend 'foo'" in err and "Traceback" not in err


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
