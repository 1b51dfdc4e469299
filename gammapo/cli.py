"""The ``gammapo`` command line (also ``python -m gammapo``).

Every bad input (an unknown backend, a framework that is not installed, a bad option value) is answered
with one line, ``gammapo <command>: error: <what is wrong>``, and exit status 2, before any work starts.

Subcommands:

* ``calibrate`` — a worked margin calibration on the embedded example gaps (or your own);
* ``backends`` — the known backends and whether their framework is installed here;
* ``conformance`` — run the conformance suite against a backend (needs ``gammapo[test]``);
* ``train`` — γ-PO training through TRL (needs ``gammapo[trl]``);
* ``select`` — alignment-potential data selection over a preference file;
* ``augment`` — reward-augmented relabelling of a preference file;
* ``bench`` — the benchmarks (from a checkout: they live in ``benchmarks/``).

Heavy subcommands import their frameworks only when run.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from typing import Sequence

__all__ = ["main", "build_parser", "CliParser", "EXAMPLE_GAPS"]

#: What ``gammapo --help`` says first (plain text: argparse prints it as it is).
DESCRIPTION = "gammapo: γ-PO margin calibration, conformance, training, data selection and benchmarks."


class CliParser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose errors are one line (``PROG: error: MESSAGE (see PROG --help)``), exit 2.

    argparse's default prints the whole usage block before the message; one line is easier to read
    and to grep in a log.
    """

    def error(self, message: str):  # noqa: D102 - argparse's hook
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")

#: The embedded example: reward gaps of 12 pairs from confident (large h) to probably mislabelled
#: (negative h), in reward units of the released Llama-3 recipe (β = 10).
EXAMPLE_GAPS: tuple[float, ...] = (4.0, 3.1, 2.5, 1.8, 1.2, 0.9, 0.4, 0.1, -0.3, -0.8, -1.5, -2.6)


def _parse_gaps(text: str) -> list[float]:
    try:
        gaps = [float(v) for v in text.replace(" ", "").split(",") if v]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"wants comma-separated numbers, got {text!r}") from exc
    if not gaps:
        raise argparse.ArgumentTypeError("is empty")
    bad = [g for g in gaps if not math.isfinite(g)]
    if bad:
        raise argparse.ArgumentTypeError(f"wants finite numbers, got {bad[0]!r}")
    return gaps


def _add_calibrate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "calibrate",
        help="calibrate per-pair target margins for a set of reward gaps",
        description="Calibrate γ-PO margins on the embedded example gaps (or --gaps) and compare solvers.",
    )
    p.add_argument("--gaps", type=_parse_gaps, default=list(EXAMPLE_GAPS), help="comma-separated reward gaps h")
    p.add_argument("--beta", type=float, default=10.0, help="β (default 10, the Llama-3 recipe)")
    p.add_argument("--gamma-beta-ratio", type=float, default=0.4, help="γ0/β (default 0.4); γ0 = β·ratio")
    p.add_argument("--tau", type=float, default=10.0, help="τ, the entropy weight (default 10)")
    p.add_argument("--iters", type=int, default=20,
                   help="iterations of the mirror solver (default 20; the exact solver ignores it)")
    p.add_argument("--solver", choices=["exact", "mirror", "both"], default="both",
                   help="exact: the minimiser (the default solver everywhere); mirror: the released arithmetic; "
                        "both (default here): side by side")
    p.add_argument("--backend", default="numpy",
                   help="backend to calibrate with: numpy (the reference, default), torch, jax, or a plug-in name")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=_run_calibrate)


def _one_line(exc: BaseException) -> str:
    """The exception's message on one line (a multi-line message is joined with "; ")."""
    return "; ".join(line.strip() for line in str(exc).splitlines() if line.strip()) or type(exc).__name__


def _run_calibrate(args: argparse.Namespace) -> int:
    import warnings

    import numpy as np

    import gammapo
    from gammapo_spec import ConfigError, GammaPOConfig, calibration_objective, kkt_residual
    from gammapo_spec.calibration import log_spread, mirror_unreliable, spread_bound
    from gammapo_spec.errors import SolverRegimeWarning

    try:
        cfg = GammaPOConfig(
            loss="gamma-simpo", beta=args.beta, gamma_beta_ratio=args.gamma_beta_ratio, tau=args.tau,
            iters=args.iters, calibration="batch",
        )
    except ConfigError as exc:
        print(f"gammapo calibrate: error: {exc}", file=sys.stderr)
        return 2
    try:
        backend = gammapo.get_backend(args.backend)
    except (gammapo.BackendNotFoundError, gammapo.BackendProtocolError, ImportError) as exc:
        # an unknown name, a plug-in that is not a backend, or a framework that is missing or broken
        print(f"gammapo calibrate: error: {_one_line(exc)}", file=sys.stderr)
        return 2
    gaps = np.asarray(args.gaps, dtype=np.float64)
    solvers = ["exact", "mirror"] if args.solver == "both" else [args.solver]
    kappa = cfg.gamma0 ** 2 / (8.0 * cfg.tau)
    result: dict[str, object] = {
        "backend": backend.name,
        "gamma0": cfg.gamma0,
        "tau": cfg.tau,
        "kappa": kappa,
        "iters": cfg.iters,
        "gaps": gaps.tolist(),
        "spread_bound": spread_bound(cfg.gamma0, cfg.tau),
    }
    order = np.argsort(gaps, kind="stable")
    for solver in solvers:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", SolverRegimeWarning)  # said once below, in the user's words
            gamma = backend.to_numpy(
                backend.calibrate_margins(
                    backend.asarray(gaps), gamma0=cfg.gamma0, tau=cfg.tau, solver=solver, iters=cfg.iters
                )
            )
        result[solver] = {
            "margins": gamma.tolist(),
            "mean": float(gamma.mean()),
            "objective": calibration_objective(gaps, gamma, gamma0=cfg.gamma0, tau=cfg.tau),
            "kkt_residual": kkt_residual(gaps, gamma, gamma0=cfg.gamma0, tau=cfg.tau)
            if cfg.gamma0 > 0 and np.all(gamma > 0)
            else None,
            "monotone": bool(np.all(np.diff(gamma[order]) >= -1e-9 * max(cfg.gamma0, 1e-300))),
            "log_spread": log_spread(gamma),
        }
    if "mirror" in solvers and mirror_unreliable(cfg.gamma0, cfg.tau, cfg.iters):
        print(f"warning: the mirror solver (the released arithmetic) does not converge at these settings "
              f"(kappa = gamma0^2/(8 tau) = {kappa:.3g}, tau = {cfg.tau:g}; reliable for kappa <= 0.5 and "
              "tau >= 0.5): use the exact solver", file=sys.stderr)
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    names = {"exact": "exact (the minimiser, the default solver)", "mirror": "mirror (the released arithmetic)"}
    print(f"γ-PO margin calibration ({backend.name} backend): γ0 = β·ratio = {cfg.gamma0:g}, τ = {cfg.tau:g}, "
          f"κ = γ0²/(8τ) = {kappa:.3g}, M = {gaps.size} gaps")
    print("solver" + ("s" if len(solvers) > 1 else "") + ": " + "; ".join(
        names[s] + (f", K = {cfg.iters} iterations" if s == "mirror" else "") for s in solvers))
    head = f"{'pair':>4}  {'gap h':>9}" + "".join(f"  {'γ ' + s:>11}" for s in solvers)
    if len(solvers) == 2:
        head += f"  {'|Δγ|':>9}"
    print(head)
    for i, h in enumerate(gaps):
        row = f"{i:>4}  {h:>9.4f}" + "".join(f"  {result[s]['margins'][i]:>11.6f}" for s in solvers)
        if len(solvers) == 2:
            row += f"  {abs(result['mirror']['margins'][i] - result['exact']['margins'][i]):>9.2e}"
        print(row)
    for s in solvers:
        r = result[s]
        kkt = "n/a" if r["kkt_residual"] is None else f"{r['kkt_residual']:.2e}"
        print(f"{s:>6}: mean γ = {r['mean']:.12f}  objective = {r['objective']:.12f}  KKT residual = {kkt}  "
              f"log(γmax/γmin) = {r['log_spread']:.4g}")
    print(f"KKT bound on the spread: log(γmax/γmin) < γ0/τ = {result['spread_bound']:.4g}")
    for s in solvers:
        if result[s]["monotone"]:
            print(f"{s}: confident pairs (large h) get larger margins, ambiguous or flipped pairs (small or negative h) "
                  "smaller ones; the mean stays γ0.")
        else:
            print(f"{s}: the margins are NOT monotone in the gaps here (a larger gap got a smaller margin): "
                  "this iterate is not the minimiser.")
    return 0


def _add_backends(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("backends", help="list the known backends and whether they can load here",
                       description="List the known backends and whether their framework is installed here.")
    p.set_defaults(func=_run_backends)


def _run_backends(args: argparse.Namespace) -> int:
    import gammapo

    available = set(gammapo.available_backends())
    for name in gammapo.list_backends():
        print(f"{name:<10} {'available' if name in available else 'framework not installed'}")
    return 0


#: Subcommands handed to another module's ``main(argv)`` with every argument after the name untouched
#: (so ``gammapo train --help`` shows the trainer's own help).
_PASSTHROUGH: dict[str, tuple[str, str]] = {
    "conformance": ("gammapo_conformance:main", "run the conformance suite against a backend"),
    "train": ("gammapo.train.cli:main", "train with γ-PO through TRL"),
    "select": ("gammapo.data.cli:select_main", "alignment-potential selection of preference data"),
    "augment": ("gammapo.data.cli:augment_main", "reward-augmented relabelling of preference data"),
    "bench": ("benchmarks.__main__:main", "run the benchmarks (from a source checkout)"),
}


def _source_checkout() -> "pathlib.Path | None":
    """The source checkout this gammapo runs from (an editable install), or the working directory if it is one.

    A checkout is a folder holding ``benchmarks/__main__.py`` beside ``gammapo/``.
    """
    import pathlib

    import gammapo

    for root in (pathlib.Path(gammapo.__file__).resolve().parents[1], pathlib.Path.cwd()):
        if (root / "benchmarks" / "__main__.py").is_file() and (root / "gammapo").is_dir():
            return root
    return None


def _passthrough(sub: argparse._SubParsersAction, name: str, help_text: str, target: str) -> None:
    # Listed for `gammapo --help`; `main` dispatches these before argparse sees their arguments.
    p = sub.add_parser(name, help=help_text, add_help=False)
    p.add_argument("rest", nargs=argparse.REMAINDER)
    p.set_defaults(func=lambda args: _delegate(target, args.rest))


def _delegate(target: str, argv: list[str]) -> int:
    import importlib

    module_name, _, attr = target.partition(":")
    command = next(name for name, (t, _) in _PASSTHROUGH.items() if t == target)
    if module_name.startswith("benchmarks"):
        root = _source_checkout()
        if root is None:
            print("gammapo bench: error: the benchmarks ship with the source, not with the installed package: "
                  "run gammapo bench inside a clone of the gammapo repository (pip install -e . there)",
                  file=sys.stderr)
            return 2
        if str(root) not in sys.path:
            sys.path.insert(0, str(root))
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        missing = exc.name or module_name
        print(f"gammapo {command}: error: this command needs {missing}, which is not installed here "
              f"({_one_line(exc)})", file=sys.stderr)
        return 2
    return int(getattr(module, attr)(argv) or 0)


def build_parser() -> argparse.ArgumentParser:
    import gammapo

    parser = CliParser(prog="gammapo", description=DESCRIPTION,
                       epilog="Run 'gammapo COMMAND --help' for the options of one command.")
    parser.add_argument("--version", action="version", version=f"gammapo {gammapo.__version__}",
                        help="print the installed gammapo version and exit")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=CliParser)
    _add_calibrate(sub)
    _add_backends(sub)
    for name, (target, help_text) in _PASSTHROUGH.items():
        _passthrough(sub, name, help_text, target)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit status."""
    from gammapo_spec import GammaPOError

    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        if argv and argv[0] in _PASSTHROUGH:
            return _delegate(_PASSTHROUGH[argv[0]][0], argv[1:])
        args = build_parser().parse_args(argv)
        return int(args.func(args) or 0)
    except GammaPOError as exc:  # a bad value that only the computation could check
        prog = f"gammapo {argv[0]}" if argv and not argv[0].startswith("-") else "gammapo"
        print(f"{prog}: error: {_one_line(exc)}", file=sys.stderr)
        return 2
