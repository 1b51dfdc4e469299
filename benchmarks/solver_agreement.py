"""How far the released mirror-descent margins are from the exact minimiser, by γ0, τ and gap scale.

Run: ``python -m benchmarks.solver_agreement [--quick] [--out DIR]`` (NumPy only, about a minute on 2 cores;
``--quick``: three τ, two γ0, one draw per scale, seconds). Writes ``solver_agreement.md`` in ``DIR``
(default ``benchmarks/results``): for each (τ, γ0) the worst ``max_i |γ_mirror − γ_exact| / γ0``
over Gaussian gap sets (M = 256, 5 draws per scale, scales 0.3 … 100) with the released K = 20.
"""

from __future__ import annotations

import argparse
import pathlib
import platform
from typing import Sequence

import numpy as np

from gammapo_spec.calibration import exact_margins, mirror_margins

TAUS = (0.1, 0.3, 1.0, 3.0, 10.0, 20.0, 100.0)
GAMMA0S = (0.375, 1.0, 3.0, 4.0, 5.0, 10.0)
SCALES = (0.3, 1.0, 3.0, 10.0, 30.0, 100.0)


def worst_gap(tau: float, gamma0: float, rng: np.random.Generator, m: int = 256, draws: int = 5) -> float:
    worst = 0.0
    for scale in SCALES:
        for _ in range(draws):
            h = rng.normal(size=m) * scale
            diff = np.abs(mirror_margins(h, gamma0=gamma0, tau=tau) - exact_margins(h, gamma0=gamma0, tau=tau))
            worst = max(worst, float(diff.max()) / gamma0)
    return worst


def main(argv: Sequence[str] | None = None) -> int:
    """Write the table; ``--quick``: a small grid (seconds); ``--out DIR``: the results folder."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.solver_agreement", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="three τ, two γ0, one draw per scale (seconds)")
    parser.add_argument("--out", default=None, help="results folder (default benchmarks/results)")
    args = parser.parse_args(argv)
    taus, gamma0s, draws = ((0.3, 3.0, 20.0), (1.0, 4.0), 1) if args.quick else (TAUS, GAMMA0S, 5)
    rng = np.random.default_rng(0)
    lines = [
        "# Mirror descent (K = 20) vs the exact minimiser",
        "",
        f"Worst `max |γ_mirror − γ_exact| / γ0` over Gaussian gaps (M = 256, scales {list(SCALES)}, {draws} draw{'s' if draws > 1 else ''} each)"
        + (" — quick mode: a reduced grid." if args.quick else "."),
        f"Machine: {platform.machine()}, Python {platform.python_version()}, NumPy {np.__version__}.",
        "",
        "| τ \\ γ0 | " + " | ".join(f"{g:g}" for g in gamma0s) + " |",
        "|---|" + "---|" * len(gamma0s),
    ]
    for tau in taus:
        cells = [f"{worst_gap(tau, g0, rng, draws=draws):.1e}" for g0 in gamma0s]
        lines.append(f"| {tau:g} | " + " | ".join(cells) + " |")
        print(lines[-1], flush=True)
    folder = pathlib.Path(args.out) if args.out else pathlib.Path(__file__).parent / "results"
    folder.mkdir(parents=True, exist_ok=True)
    out = folder / "solver_agreement.md"
    out.write_text("\n".join(lines) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
