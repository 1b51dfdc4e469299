"""The porter's walkthrough works: the example backend in docs/porting.md passes the suite."""

import re

from conf_run import ROOT, run_suite


def test_porting_example_backend_conforms(tmp_path):
    text = (ROOT / "docs" / "porting.md").read_text(encoding="utf-8")
    code = next(b for b in re.findall(r"```python\n(.*?)```", text, re.S) if b.startswith("# my_backend.py"))
    (tmp_path / "my_backend.py").write_text(code, encoding="utf-8")
    rc, report, output = run_suite("my_backend", tmp_path, "--max-examples", "10", pythonpath=[tmp_path])
    assert report is not None, output[-3000:]
    assert rc == 0, output[-4000:]
    assert report["cells"]["reward_gap"] == "pass"
