"""The suite has teeth: every deliberately broken backend in ``mutants/`` is rejected at CI settings,
and the report names the op its bug is in. ``scripts/mutation_score.py`` runs them all and prints the
mutation score ``killed/total``; this test runs it and requires every mutant killed."""

import subprocess
import sys

from conf_run import ROOT


def test_mutation_score_is_full():
    # each mutant runs only its op's tests (-k op) and stops at the first failure (-x); two at a time
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "mutation_score.py"), "--jobs", "2",
                           "--timeout", "600"], cwd=ROOT, capture_output=True, text=True, timeout=3000)
    out = proc.stdout + proc.stderr
    last = [line for line in out.splitlines() if line.startswith("mutation score:")]
    assert last, out[-4000:]
    killed, total = map(int, last[-1].split(":")[1].split("/"))
    assert total >= 20, f"only {total} mutants found:\n{out[-3000:]}"
    assert proc.returncode == 0 and killed == total, "surviving mutants:\n" + "\n".join(
        line for line in out.splitlines() if not line.startswith("killed"))
