"""gammapo_conformance — the Hypothesis-driven conformance suite (work in progress: see issue 5)."""
