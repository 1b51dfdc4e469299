"""Planning ``gammapo train``: every check of a command line that can fail, before any training.

Part of :mod:`gammapo.train.cli` (which re-exports the public names): the method names and their
per-method options, each option's range, the loss hyper-parameters (validated by building each loss),
the data variants and, for ``--model``, the model folder, its tokenizer and the preference file. A bad
command line raises :class:`UsageError` (exit status 2).
"""

from __future__ import annotations

import argparse
import math
import os
from typing import Any

__all__ = ["METHOD_OPTIONS", "REPORT_ENTRIES", "UsageError", "display_name", "parse_method"]

#: Per-method overrides a ``--methods`` entry may carry (``gamma-simpo:tau=10:solver=mirror``).
METHOD_OPTIONS = {"beta": float, "tau": float, "gamma_beta_ratio": float, "solver": str}
#: What ``--overwrite`` replaces in an existing report folder (nothing else there is touched).
REPORT_ENTRIES = ("report.md", "results.png", "results.json", "checkpoints", "models")
_DISPLAY = {"dpo": "DPO", "simpo": "SimPO", "ipo": "IPO", "hinge": "Hinge", "robust": "rDPO", "rdpo": "R-DPO",
            "beta-dpo": "β-DPO", "epsilon-dpo": "ε-DPO"}


class UsageError(ValueError):
    """A command line that cannot run (exit status 2)."""


def display_name(loss: str) -> str:
    """``gamma-simpo`` → ``γ-SimPO``, ``gamma-simpo:tau=10`` → ``γ-SimPO τ=10``; unknown names are shown as given."""
    loss, *options = loss.split(":")
    base = loss.removeprefix("gamma-")
    name = _DISPLAY.get(base, base)
    name = f"γ-{name}" if loss.startswith("gamma-") else name
    symbols = {"tau": "τ", "beta": "β", "gamma_beta_ratio": "γ0/β"}
    for opt in options:
        key, _, value = opt.partition("=")
        name += f" {symbols.get(key, key)}={value}" if key != "solver" else f" ({value})"
    return name


def parse_method(text: str) -> tuple[str, dict[str, Any]]:
    """``LOSS[:key=value...]`` → (loss, overrides); keys from :data:`METHOD_OPTIONS`.

    Example:
        >>> parse_method("gamma-simpo:tau=10:solver=mirror")
        ('gamma-simpo', {'tau': 10.0, 'solver': 'mirror'})
    """
    loss, *options = text.split(":")
    overrides: dict[str, Any] = {}
    for opt in options:
        key, eq, value = opt.partition("=")
        if not eq or key not in METHOD_OPTIONS:
            raise UsageError(f"--methods: bad option {opt!r} in {text!r}; use LOSS:key=value with key one of "
                             f"{', '.join(METHOD_OPTIONS)}")
        try:
            overrides[key] = METHOD_OPTIONS[key](value)
        except ValueError:
            raise UsageError(f"--methods: {key} in {text!r} must be a number, got {value!r}") from None
    return loss, overrides


def _finite(value: float | None, name: str, *, low: float = 0.0, strict: bool = True) -> None:
    if value is None:
        return
    ok = math.isfinite(value) and (value > low if strict else value >= low)
    if not ok:
        raise UsageError(f"--{name} must be a finite number {'>' if strict else '>='} {low:g}, got {value:g}")


def _check_options(args: argparse.Namespace) -> None:
    """Every option's own range, before anything is loaded."""
    from gammapo.train.task import NOISE_MODELS

    _finite(args.lr, "lr")
    _finite(args.epochs, "epochs")
    _finite(args.beta, "beta")
    _finite(args.tau, "tau")
    _finite(args.gamma_beta_ratio, "gamma-beta-ratio", strict=False)
    if any(not (math.isfinite(n) and 0.0 <= n < 0.5) for n in args.noise) or not args.noise:
        raise UsageError(f"--noise rates must lie in [0, 0.5), got {args.noise}")
    models = [m.strip() for m in (args.noise_model or "uniform").split(",") if m.strip()]
    bad = [m for m in models if m not in NOISE_MODELS]
    if bad or not models or len(set(models)) != len(models):
        raise UsageError(f"--noise-model: expected distinct names from {', '.join(NOISE_MODELS)}, got {args.noise_model!r}")
    for name in ("seeds", "pairs", "eval_pairs", "batch_size", "grad_accum", "max_length", "threads", "jobs"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise UsageError(f"--{name.replace('_', '-')} must be >= 1, got {value}")
    if args.max_steps != -1 and args.max_steps < 1:
        raise UsageError(f"--max-steps must be >= 1 (or -1: run the epochs), got {args.max_steps}")
    if args.save_steps is not None and args.save_steps < 0:
        raise UsageError(f"--save-steps must be >= 0 (0: no checkpoints), got {args.save_steps}")
    if not (math.isfinite(args.eval_fraction) and 0.0 <= args.eval_fraction < 1.0):
        raise UsageError(f"--eval-fraction must lie in [0, 1), got {args.eval_fraction:g}")
    if args.resume and args.overwrite:
        raise UsageError("--resume continues the runs in --out and --overwrite replaces them: choose one")
    existing = [e for e in REPORT_ENTRIES if os.path.exists(os.path.join(args.out, e))]
    if existing and not (args.resume or args.overwrite):
        raise UsageError(f"--out {args.out!r} already holds a report ({', '.join(existing)}); pass --overwrite to "
                         "replace it, --resume to continue its runs, or another --out")
    if os.path.exists(args.out) and not os.path.isdir(args.out):
        raise UsageError(f"--out {args.out!r} exists and is not a folder")


def _method_kwargs(args: argparse.Namespace, loss: str, overrides: dict[str, Any], preset) -> dict[str, Any]:
    from gammapo.integrations.losses import make_pair_loss
    from gammapo.train.presets import loss_kwargs

    kw = loss_kwargs(loss, preset)
    if args.beta is not None:
        kw["beta"] = args.beta
    if args.gamma_beta_ratio is not None and "gamma_beta_ratio" in kw:  # SimPO and the γ- methods take it
        kw["gamma_beta_ratio"] = args.gamma_beta_ratio
    if loss.startswith("gamma-"):
        kw["calibration"] = args.calibration
        if args.tau is not None:
            kw["tau"] = args.tau
        if args.solver is not None:
            kw["solver"] = args.solver
    for key, value in overrides.items():
        if key in ("tau", "solver") and not loss.startswith("gamma-"):
            raise UsageError(f"--methods: {loss} has no {key} (only the gamma- losses do)")
        if key == "gamma_beta_ratio" and "gamma_beta_ratio" not in kw:
            raise UsageError(f"--methods: {loss} has no gamma_beta_ratio")
        kw[key] = value
    make_pair_loss(loss, **kw)  # validates the hyper-parameters (ConfigError names the field)
    return kw


def _plan(args: argparse.Namespace) -> dict[str, Any]:
    from gammapo_spec.config import SOLVERS

    from gammapo.integrations.losses import registered_pair_losses
    from gammapo.train.presets import PRESETS
    from gammapo.train.study import MethodSpec

    _check_options(args)
    entries = [args.loss] if args.loss else [m.strip() for m in args.methods.split(",") if m.strip()]
    if not entries:
        raise UsageError("no methods given")
    parsed = [parse_method(e) for e in entries]
    unknown = [loss for loss, _ in parsed if loss not in registered_pair_losses()]
    if unknown:
        raise UsageError(f"unknown loss(es) {unknown}; known: {', '.join(registered_pair_losses())}")
    if len(set(entries)) != len(entries):
        raise UsageError(f"--methods: a method is repeated in {entries}")
    for _, overrides in parsed:
        if overrides.get("solver", SOLVERS[0]) not in SOLVERS:
            raise UsageError(f"--methods: solver must be one of {', '.join(SOLVERS)}, got {overrides['solver']!r}")
    preset_name = args.preset or ("llama3" if args.model else "tiny")
    if preset_name not in PRESETS:
        raise UsageError(f"unknown preset {preset_name!r}; known: {', '.join(PRESETS)}")
    preset = PRESETS[preset_name]
    specs, kwargs = [], {}
    for entry, (loss, overrides) in zip(entries, parsed):
        kwargs[entry] = _method_kwargs(args, loss, overrides, preset)
        specs.append(MethodSpec(display_name(entry), loss, kwargs[entry],
                                tag=entry.replace(":", "-").replace("=", "").replace("_", "")))
    real = bool(args.model or args.dataset)
    if args.seeds is None:
        args.seeds = 1 if (args.quick or real) else 3
    if args.noise_model is None:
        args.noise_model = "uniform" if args.quick else "uniform,bt"
    if args.quick:
        args.pairs, args.eval_pairs = min(args.pairs, 512), min(args.eval_pairs, 256)
    data = _plan_data(args)
    if args.oracle and not real and "plain" in data:
        for family in dict.fromkeys(loss.removeprefix("gamma-") for loss, _ in parsed):
            if family in ("dpo", "simpo", "ipo", "hinge", "robust", "rdpo"):
                kw = _method_kwargs(args, family, {}, preset)
                specs.append(MethodSpec(display_name(family), family, kw, data="oracle", tag=family))
    plan: dict[str, Any] = {
        "methods": entries, "specs": specs, "loss_kwargs": kwargs, "preset": preset_name, "data": data,
        "noise_models": [m.strip() for m in args.noise_model.split(",") if m.strip()],
        "epochs": args.epochs if args.epochs is not None else (1.0 if args.quick else preset.epochs),
        "lr": args.lr if args.lr is not None else preset.learning_rate,
    }
    if real:
        plan.update(_plan_real(args))
    return plan


def _plan_data(args: argparse.Namespace) -> list[str]:
    from gammapo_spec.alignment_potential import selection_size

    from gammapo.train.transforms import DATA_VARIANTS

    data = [d.strip() for d in args.data.split(",") if d.strip()]
    if not data:
        raise UsageError("--data: no data variant given")
    unknown = [d for d in data if d not in DATA_VARIANTS]
    if unknown:
        raise UsageError(f"--data: unknown variant(s) {unknown}; known: {', '.join(DATA_VARIANTS)}")
    if len(set(data)) != len(data):
        raise UsageError(f"--data: a variant is repeated in {data}")
    if (args.model or args.dataset) and data != ["plain"]:
        raise UsageError("--data augmented/selected needs the embedded task's ground-truth scores; for your own "
                         "data use `gammapo augment` / `gammapo select` and train on their output")
    if not 0.0 < args.select_fraction <= 1.0:
        raise UsageError(f"--select-fraction must lie in (0, 1], got {args.select_fraction}")
    if "selected" in data and selection_size(args.pairs, args.select_fraction) < 1:
        raise UsageError(f"--select-fraction {args.select_fraction} keeps no pair of {args.pairs}")
    return data


def _plan_real(args: argparse.Namespace) -> dict[str, Any]:
    from gammapo.train.data import is_conversational, load_preferences

    if not args.model or not args.dataset:
        raise UsageError("--model and --dataset go together (a local model folder and a preference file)")
    if not os.path.exists(args.model):
        raise UsageError(f"model path {args.model!r} does not exist")
    if not os.path.isfile(os.path.join(args.model, "config.json")):
        raise UsageError(f"model path {args.model!r} has no config.json (expected a save_pretrained folder)")
    rows = load_preferences(args.dataset)
    from transformers import AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(args.model)
    except Exception as exc:  # noqa: BLE001 - any failure is a bad model folder for the user
        raise UsageError(f"cannot load a tokenizer from {args.model!r}: {exc}") from exc
    if is_conversational(rows[0]) and not getattr(tok, "chat_template", None):
        raise UsageError(f"{args.dataset} is conversational but the tokenizer of {args.model!r} has no chat template")
    n_eval = int(round(len(rows) * args.eval_fraction))
    if len(rows) - n_eval < 1:
        raise UsageError(f"{args.dataset}: too few rows ({len(rows)}) to train on")
    return {"rows_train": rows[n_eval:], "rows_eval": rows[:n_eval]}
