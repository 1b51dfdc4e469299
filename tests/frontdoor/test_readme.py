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


def test_readme_example_comment_states_what_it_prints():
    """The comment quotes the margins the example prints, and why their mean is not γ0 on this batch."""
    readme = (ROOT / "README.md").read_text()
    block = re.findall(r"```python\n(.*?)```", readme, flags=re.S)[0]
    scope: dict = {}
    exec(compile(block.replace("print(", "(lambda *a: None)("), "README.md", "exec"), scope)
    margins = scope["out"].margins
    assert ", ".join(f"{m:.2f}" for m in margins) in block
    assert f"{margins.mean():.2f} over this batch" in block
    assert "warm-up draws" in block and scope["cfg"].queue_warmup == 8 and "8 warm-up" in block
