"""mkdocs hook: publish the committed benchmark plots (``benchmarks/results/*.png``) under ``assets/benchmarks/``.

The plots live beside the result tables the benchmarks write; the benchmarks page shows them from there
without a second copy in ``docs/`` that could go stale.
"""

from __future__ import annotations

import pathlib

from mkdocs.structure.files import File

RESULTS = pathlib.Path(__file__).resolve().parents[1] / "benchmarks" / "results"


def on_files(files, config):
    for png in sorted(RESULTS.glob("*.png")):
        files.append(File.generated(config, f"assets/benchmarks/{png.name}", abs_src_path=str(png)))
    return files
