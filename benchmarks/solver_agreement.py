"""How far the released mirror-descent margins are from the exact minimiser, by γ0, τ and gap scale.

Run: ``python -m benchmarks.solver_agreement`` (NumPy only, about a minute on 2 cores). Writes
``benchmarks/results/solver_agreement.md``: for each (τ, γ0) the worst ``max_i |γ_mirror − γ_exact| / γ0``
over Gaussian gap sets (M = 256, 5 draws per scale, scales 0.3 … 100) with the released K = 20.
"""

from __future__ import annotations

import pathlib
import platform

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


def main() -> None:
    rng = np.random.default_rng(0)
    lines = [
        "# Mirror descent (K = 20) vs the exact minimiser",
        "",
        f"Worst `max |γ_mirror − γ_exact| / γ0` over Gaussian gaps (M = 256, scales {list(SCALES)}, 5 draws each).",
        f"Machine: {platform.machine()}, Python {platform.python_version()}, NumPy {np.__version__}.",
        "",
        "| τ \\ γ0 | " + " | ".join(f"{g:g}" for g in GAMMA0S) + " |",
        "|---|" + "---|" * len(GAMMA0S),
    ]
    for tau in TAUS:
        cells = [f"{worst_gap(tau, g0, rng):.1e}" for g0 in GAMMA0S]
        lines.append(f"| {tau:g} | " + " | ".join(cells) + " |")
        print(lines[-1], flush=True)
    out = pathlib.Path(__file__).parent / "results" / "solver_agreement.md"
    out.write_text("\n".join(lines) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
