"""The conformance suite on the three backends of the project, at CI settings.

CI: ``--max-examples`` 25 for numpy and torch, 6 for jax (every new shape recompiles under jit, ~2 s
an example on a shared core); a release run uses 200 for every backend with ``--derandomize``.
"""

import pytest

from conf_run import run_suite

def xfail_args(backend):
    """Known findings recorded in conformance/xfail_<backend>.txt (reasons in the file)."""
    from conf_run import ROOT

    f = ROOT / "conformance" / f"xfail_{backend}.txt"
    return ["--xfail-file", str(f)] if f.exists() else []


CI_EXAMPLES = {"numpy": 25, "torch": 25, "jax": 6}


@pytest.mark.parametrize("backend,kernel", [("numpy", True), ("torch", True), ("jax", True), ("jax", False)],
                         ids=["numpy", "torch", "jax", "jax-lax-ops"])
def test_conformance_suite_passes(backend, kernel, tmp_path):
    """``jax-lax-ops``: the JAX backend with its CPU calibration kernel off, i.e. the ``lax`` path that
    GPU and TPU lowerings use (torch's ops path is compared with its kernel in tests/torch)."""
    pytest.importorskip({"numpy": "numpy", "torch": "torch", "jax": "jax"}[backend])
    # derandomized: CI is deterministic; known findings, if any, are listed in conformance/xfail_<backend>.txt
    rc, report, output = run_suite(backend, tmp_path, "--max-examples", str(CI_EXAMPLES[backend]), "--derandomize",
                                    *xfail_args(backend),
                                    env_extra=None if kernel else {"GAMMAPO_DISABLE_CPU_KERNEL": "1"})
    assert report is not None, output[-3000:]
    failing = [op for op, cell in report["cells"].items() if cell == "fail"]
    assert rc == 0 and not failing, f"{backend} fails conformance on {failing}:\n{output[-6000:]}"
    assert all(cell in ("pass", "xfail") for cell in report["cells"].values()), report["cells"]
