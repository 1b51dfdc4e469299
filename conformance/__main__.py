"""``python -m gammapo_conformance NAME [options]`` (same as ``python -m gammapo conformance``)."""

import sys

from gammapo_conformance.cli import main

sys.exit(main())
