"""The suite has teeth: every deliberately broken backend in ``mutants/conf_mutants.py`` is rejected,
and the report names the op its bug is in."""

from pathlib import Path

import pytest

from conf_run import run_suite

MUTANT_DIR = Path(__file__).resolve().parent / "mutants"


def _mutants():
    import sys

    sys.path.insert(0, str(MUTANT_DIR))
    try:
        from conf_mutants import MUTANTS
    finally:
        sys.path.remove(str(MUTANT_DIR))
    return MUTANTS


@pytest.mark.parametrize("mutant,op", sorted(_mutants().items()))
def test_conformance_rejects_mutant(mutant, op, tmp_path):
    if mutant == "margins_not_detached":
        pytest.importorskip("torch")
    # only the op's own tests run (-k op), to keep CI short; `python -m gammapo_conformance conf_mutants:NAME`
    # runs the whole suite on a mutant
    rc, report, output = run_suite(f"conf_mutants:{mutant}", tmp_path, "--max-examples", "30", "--derandomize", "-k", op,
                                   pythonpath=[MUTANT_DIR], timeout=300)
    assert report is not None, output[-3000:]
    assert rc != 0, f"mutant {mutant} passed the conformance suite"
    assert report["cells"][op] == "fail", f"mutant {mutant}: expected a failure of {op}, got {report['cells']}"
