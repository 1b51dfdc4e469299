"""Every backend is tested on the same inputs: a backend whose module holds many literal constants
draws exactly the examples the reference draws (Hypothesis would otherwise mix the literals of
imported local source files into its draws), and the report shows what was drawn."""

from conf_run import run_suite

CONSTANTS_BACKEND = '''
"""The NumPy reference under another name, in a module full of literal constants."""
from gammapo_spec import *  # noqa: F401,F403
import gammapo_spec as _R
globals().update({k: getattr(_R, k) for k in ("asarray", "to_numpy", "state_to_dict", "state_from_dict",
                                                "gamma_po_loss_and_grad")})
name = "numpy-with-constants"
TABLE = [%s]
WORDS = [%s]
'''


def test_draws_do_not_depend_on_imported_modules(tmp_path):
    mod = tmp_path / "consts_backend.py"
    floats = ", ".join(repr(x) for x in (0.001 * i + 1e-7 for i in range(400)))
    ints = ", ".join(str(17 * i + 3) for i in range(400))
    mod.write_text(CONSTANTS_BACKEND % (floats + ", " + ints, ", ".join(repr(f"w{i}") for i in range(50))))
    args = ("--max-examples", "25", "--derandomize", "-k", "test_gamma_po_loss_values or test_reward_gap_errors or "
            "test_calibrate_step_state_transitions")
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    rc_a, a, out_a = run_suite("numpy", tmp_path / "a", *args)
    rc_b, b, out_b = run_suite("consts_backend", tmp_path / "b", *args, pythonpath=[tmp_path])
    assert a is not None and b is not None, (out_a + out_b)[-3000:]
    assert rc_a == 0 and rc_b == 0, (out_a + out_b)[-3000:]
    da = {r["nodeid"]: (r["examples"], r["draws_digest"]) for r in a["results"]}
    db = {r["nodeid"]: (r["examples"], r["draws_digest"]) for r in b["results"]}
    assert len(da) == 3 and da == db, f"the two backends drew different examples:\n{da}\n{db}"
    for r in a["results"]:  # the report shows what was drawn
        assert r["drawn"] and sum(v for k, v in r["drawn"].items() if k.startswith("dtype=")) == r["examples"], r
