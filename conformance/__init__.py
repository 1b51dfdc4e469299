"""gammapo_conformance — the Hypothesis-driven conformance suite of gammapo backends.

Three ways to run it::

    pytest conformance --backend torch                                  # from a checkout
    python -m gammapo conformance mypkg.backend:B --max-examples 50     # anywhere
    pytest -p gammapo_conformance.plugin --pyargs gammapo_conformance --conformance-backend NAME

See ``docs/porting.md``.
"""

from __future__ import annotations

from .cli import main

__all__ = ["main"]
