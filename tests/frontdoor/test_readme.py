"""The README's code is real: its Python example runs, and .ci/run finds the test command."""

from __future__ import annotations

import pathlib
import re
import subprocess

ROOT = pathlib.Path(__file__).resolve().parents[2]


def test_readme_python_example_runs():
    readme = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", readme, flags=re.S)
    assert blocks, "README has no python example"
    for block in blocks:
        exec(compile(block, "README.md", "exec"), {})


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    marker = readme.index("<!-- ci:test-command -->")
    command = re.search(r"```bash\n(.*?)\n```", readme[marker:], flags=re.S).group(1).strip()
    printed = subprocess.run(["bash", str(ROOT / ".ci" / "run"), "--print-command"],
                             capture_output=True, text=True, check=True).stdout.strip()
    assert printed == command, f".ci/run would run {printed!r}, the README says {command!r}"
    assert "pytest" in command
