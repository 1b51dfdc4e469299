"""The suite has teeth: every deliberately broken backend in ``mutants/`` is rejected at CI settings
(``conf_suite.MUTANT_EXAMPLES`` examples per test, derandomized), by a test of the op its bug is in.

One test per mutant, so xdist spreads them; each runs only its op's tests, in this process, up to the
first failure (``conf_suite.first_failure``). ``scripts/mutation_score.py`` prints the same verdicts
as a score ``killed/total``."""

import importlib.util
import sys

import pytest

from conf_run import ROOT
from conf_suite import first_failure, suite_ops

sys.path.insert(0, str(ROOT / "tests" / "conformance" / "mutants"))
import conf_mutants  # noqa: E402

MUTANTS = dict(sorted(conf_mutants.MUTANTS.items()))


def test_every_mutant_names_an_op_of_the_suite():
    assert len(MUTANTS) >= 20, f"only {len(MUTANTS)} mutants"
    assert set(MUTANTS.values()) <= set(suite_ops()), set(MUTANTS.values()) - set(suite_ops())


@pytest.mark.parametrize("name", list(MUTANTS))
def test_mutant_is_rejected(name):
    if conf_mutants.needs_torch(name) and importlib.util.find_spec("torch") is None:
        pytest.skip("torch is not installed")
    op = MUTANTS[name]
    failed = first_failure(getattr(conf_mutants, name), op)
    assert failed is not None, f"mutant {name} survived: every test of {op} passed on it"
