"""Project-wide test options, all in one place.

Hypothesis profiles (select with ``HYPOTHESIS_PROFILE=name``):

* ``ci`` (default): 40 examples per property, no deadline (shared 2-core machines are noisy);
* ``dev``: 15 examples, for quick local iterations;
* ``release``: 400 examples, derandomised, for a release run.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

settings.register_profile("ci", max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("dev", max_examples=15, deadline=None)
settings.register_profile(
    "release", max_examples=400, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
