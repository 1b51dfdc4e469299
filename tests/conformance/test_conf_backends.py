"""The conformance suite through its own entry point (``python -m gammapo_conformance``, a pytest run in
a child process) on the JAX backend's ``lax`` path: the backend with its CPU calibration kernel off
(``GAMMAPO_DISABLE_CPU_KERNEL=1``), i.e. the path GPU and TPU lowerings use. The variable is read while
JAX traces, so it needs a process of its own; the suite on every backend as installed runs in this
process (test_conf_suite.py). torch's ops path is compared with its kernel in tests/torch."""

import pytest

from conf_run import run_suite
from conf_suite import CI_EXAMPLES, xfail_file


def test_conformance_suite_passes_on_the_jax_lax_path(tmp_path):
    pytest.importorskip("jax")
    xfail = xfail_file("jax")
    rc, report, output = run_suite("jax", tmp_path, "--max-examples", str(CI_EXAMPLES["jax"]), "--derandomize",
                                   *(["--xfail-file", str(xfail)] if xfail else []),
                                   env_extra={"GAMMAPO_DISABLE_CPU_KERNEL": "1"})
    assert report is not None, output[-3000:]
    failing = [op for op, cell in report["cells"].items() if cell == "fail"]
    assert rc == 0 and not failing, f"jax (lax path) fails conformance on {failing}:\n{output[-6000:]}"
    assert all(cell in ("pass", "xfail") for cell in report["cells"].values()), report["cells"]
