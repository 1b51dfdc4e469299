"""Probe the conformance suite's margin tolerance on random calibration sets (mirror solver).

For each set it calls the backend's ``calibrate_margins`` in float64 and float32, the reference on the
same rounded gaps, and reports, per κ = γ0²/(8τ) bin and dtype, the largest error as a fraction of the
tolerance the suite would apply (``err/tol``; above 1 the suite would fail a correct backend), and how
many sets failed. This is how the κ > 0.5 boundary of ``gammapo_conformance.tolerances`` was measured
(2026-12-01: 50,000 sets with κ ∈ [0.3, 0.5] on the torch and JAX CPU kernels and op paths, none above
0.11 of the bound; 24,000 with κ ∈ [0, 2]).

    python scripts/probe_calibration_tolerance.py torch --sets 6000 --seed 1 --kappa 0 2 --tau 1e-3 1e3
    GAMMAPO_DISABLE_CPU_KERNEL=1 python scripts/probe_calibration_tolerance.py jax --sets 1500

Sets: τ log-uniform in the ``--tau`` range, κ uniform in ``--kappa`` (γ0 from both), M ∈ {1, 2, 16, 255,
1024, 4096}, K ∈ {2, 5, 14, 20, 30}, Gaussian gaps of scale 1e-3..300 (log-uniform), 15% rounded to
ties, 15% with 1% outliers at ±1e4.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

import gammapo
import gammapo_spec as R
from gammapo_conformance.adapters import Adapter
from gammapo_conformance.tolerances import tolerance


def random_set(rng: np.random.Generator, tau_range, kappa_range):
    tau = float(10 ** rng.uniform(np.log10(tau_range[0]), np.log10(tau_range[1])))
    kappa = float(rng.uniform(*kappa_range))
    gamma0 = float(np.sqrt(8 * tau * kappa))
    m = int(rng.choice([1, 2, 16, 255, 1024, 4096]))
    iters = int(rng.choice([2, 5, 14, 20, 30]))
    scale = 10 ** rng.uniform(-3, 2.5)
    gaps = rng.normal(scale=scale, size=m)
    kind = rng.random()
    if kind < 0.15:
        gaps = np.round(gaps / scale) * scale
    elif kind < 0.3:
        gaps[rng.random(m) < 0.01] = 1e4 * rng.choice([-1, 1])
    return tau, kappa, gamma0, iters, gaps


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("backend", help="registry name or MODULE:ATTR")
    p.add_argument("--sets", type=int, default=2000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--tau", type=float, nargs=2, default=(1e-3, 1e3), metavar=("LO", "HI"))
    p.add_argument("--kappa", type=float, nargs=2, default=(0.0, 2.0), metavar=("LO", "HI"))
    p.add_argument("--bin", type=float, default=0.25, help="width of the κ bins in the report")
    a = p.parse_args(argv)
    ad = Adapter(gammapo.get_backend(a.backend))
    rng = np.random.default_rng(a.seed)
    worst: dict[str, tuple[float, dict]] = {}
    fails, t0 = 0, time.time()
    for i in range(a.sets):
        tau, kappa, gamma0, iters, gaps = random_set(rng, a.tau, a.kappa)
        for dtype in ("float64", "float32"):
            with ad.precision(dtype):
                g = ad.array(gaps, dtype)
                got = ad.numpy(ad.backend.calibrate_margins(g, gamma0=gamma0, tau=tau, solver="mirror", iters=iters))
            want = R.calibrate_margins(ad.numpy(g), gamma0=gamma0, tau=tau, solver="mirror", iters=iters)
            tol = tolerance(dtype, "calibration", solver="mirror", tau=tau, gamma0=gamma0, iters=iters)
            with np.errstate(invalid="ignore"):
                ratio = np.abs(got - want) / (tol.atol * (1 + gamma0) + tol.rtol * np.abs(want))
            r = float(np.nanmax(np.where(got == want, 0.0, ratio), initial=0.0))
            fails += r > 1
            key = f"{dtype} kappa<={(int(kappa / a.bin) + 1) * a.bin:.2f}"
            if r > worst.get(key, (0.0,))[0]:
                worst[key] = (r, dict(tau=tau, gamma0=gamma0, m=gaps.size, iters=iters, tol=tol.rtol, set=i))
    print(f"{a.backend}: {a.sets} sets, {fails} over the tolerance, {time.time() - t0:.0f} s")
    for k in sorted(worst):
        r, info = worst[k]
        print(f"  {k:<22} err/tol {r:.2e}  " + json.dumps(info))
    return 1 if fails else 0


if __name__ == "__main__":
    raise SystemExit(main())
