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
    extracted = subprocess.run(
        ["awk", "/<!-- ci:test-command -->/{found=1; next} found && /^```/ {if (inblock) exit; inblock=1; next} "
         "found && inblock {print; exit}", str(ROOT / "README.md")],
        capture_output=True, text=True, check=True,
    ).stdout.strip()
    assert extracted == command
    assert extracted in (ROOT / ".ci" / "run").read_text() or "ci:test-command" in (ROOT / ".ci" / "run").read_text()
    assert "pytest" in command
