"""``gammapo train``: γ-PO training through TRL, on the embedded task or on your model and data.

With no arguments it trains a tiny causal LM (built from a config, no download) on the embedded
synthetic task (gammapo.train.task: a known ground-truth reward, 20% of the labels flipped, by uniform
and by Bradley-Terry noise) with DPO, γ-DPO, SimPO, γ-SimPO (two settings) and the oracle of each base
loss (trained without the flipped pairs), 3 seeds each, in parallel; prints the table (held-out
clean-pair accuracy, its paired difference to the base loss, hard vs easy pairs), the mechanism
diagnostics and a verdict, and writes a report (Markdown, PNG, JSON) to ./gammapo-train-report.

    gammapo train                                        # the default study (a few minutes on 2 cores)
    gammapo train --noise 0,0.1,0.2,0.3,0.4 --seeds 5    # robustness sweep: accuracy vs label noise
    gammapo train --data plain,augmented,selected        # the same pairs plain, reward-augmented, AP-selected
    gammapo train --model ./my-model --dataset prefs.jsonl --preset llama3 --loss gamma-simpo
    gammapo train --resume                               # continue every run from its last checkpoint

Bad input (an unknown loss, a bad option value, missing columns, empty responses, a model path that
does not exist, a report folder that exists) stops with exit status 2 and a one-line message naming
the problem, before any training.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import sys
import time
from typing import Any, Sequence

__all__ = ["main", "build_parser", "DEFAULT_METHODS", "display_name"]

DEFAULT_METHODS = ("dpo", "gamma-dpo", "simpo", "gamma-simpo", "gamma-simpo:tau=10")
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


def _floats(text: str) -> list[float]:
    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None


class _Parser(argparse.ArgumentParser):
    """Bad arguments raise :class:`UsageError` (one line, exit status 2) instead of printing the usage."""

    def error(self, message: str):
        raise UsageError(message)


def build_parser() -> argparse.ArgumentParser:
    from gammapo_spec.config import SOLVERS, GammaPOConfig

    from gammapo.train.task import NOISE_MODELS

    default_solver = GammaPOConfig.__dataclass_fields__["solver"].default
    p = _Parser(prog="gammapo train", description=__doc__.splitlines()[0].replace("``", ""),
                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n\n", 2)[2])
    p.add_argument("--methods", default=",".join(DEFAULT_METHODS),
                   help="comma-separated losses to compare (default: %(default)s); any registered loss name, "
                   "optionally with its own settings as LOSS:key=value (keys: beta, tau, gamma_beta_ratio, solver)")
    p.add_argument("--loss", help="train this one loss (shorthand for --methods LOSS)")
    p.add_argument("--oracle", action=argparse.BooleanOptionalAction, default=True,
                   help="embedded task: also train each base loss (DPO, SimPO, ...) with the flipped pairs removed, "
                   "the ceiling a noise-robust method could reach (default: on)")
    p.add_argument("--preset", default=None, help="hyper-parameters: tiny (default for the embedded task), "
                   "llama3, gemma2, mistral, qwen2.5 (the released γ-SimPO recipes; default with --model: llama3)")
    p.add_argument("--beta", type=float, help="override β of every method (> 0)")
    p.add_argument("--tau", type=float, help="override τ of the γ- methods (> 0)")
    p.add_argument("--gamma-beta-ratio", type=float, metavar="RATIO",
                   help="override γ0/β (>= 0) of SimPO and the γ- methods: the base margin γ0 = β·RATIO, "
                   "the mean of the calibrated margins (default: the preset's)")
    p.add_argument("--solver", choices=SOLVERS,
                   help=f"calibration solver of the γ- methods: exact (the minimiser of the calibration problem) or "
                   f"mirror (the released mirror-descent arithmetic) (default: {default_solver})")
    p.add_argument("--calibration", choices=["queue", "batch"], default="queue",
                   help="where γ-PO's gaps come from: a queue of recent batches, or the current batch only "
                   "(default queue)")
    p.add_argument("--noise", type=_floats, default=[0.2], help="label-noise rate(s) of the embedded task, "
                   "comma-separated for a sweep, each in [0, 0.5) (default 0.2)")
    p.add_argument("--noise-model", default=None,
                   help=f"how labels are flipped, comma-separated: {', '.join(NOISE_MODELS)} (uniform: every pair "
                   "with the same probability; bt: Bradley-Terry, close pairs more often, at the same flip rate) "
                   "(default uniform,bt; with --quick uniform)")
    p.add_argument("--data", default="plain",
                   help="training-data variant(s) of the embedded task, comma-separated for a study: plain, augmented "
                   "(reward-augmented relabelling, evaluated conditioned on the top score), selected (top "
                   "--select-fraction by alignment potential) (default plain)")
    p.add_argument("--scores", choices=["truth", "labels"], default="truth",
                   help="scores for augmented/selected: truth = each response's ground-truth reward (a flipped label "
                   "then has s_w < s_l); labels = a judge agreeing with the noisy labels (default truth)")
    p.add_argument("--select-fraction", type=float, default=0.4,
                   help="share of pairs kept by --data selected, in (0, 1] (default 0.4)")
    p.add_argument("--seeds", type=int, default=None,
                   help="seeds per (method, noise): same seed, same data, initial model and batch order for every "
                   "method (default 3 on the embedded task, 1 with --quick or --model)")
    p.add_argument("--pairs", type=int, default=1024, help="training pairs of the embedded task (default 1024)")
    p.add_argument("--eval-pairs", type=int, default=2048, help="held-out clean pairs (default 2048)")
    p.add_argument("--epochs", type=float, help="training epochs, > 0 (default: the preset's)")
    p.add_argument("--lr", type=float, help="learning rate, > 0 (default: the preset's)")
    p.add_argument("--batch-size", type=int, default=32,
                   help="pairs per device batch; also the γ- methods' calibration set in batch mode (default 32)")
    p.add_argument("--grad-accum", type=int, default=1,
                   help="gradient-accumulation steps per optimiser step (default 1)")
    p.add_argument("--max-steps", type=int, default=-1,
                   help="stop after this many optimiser steps, >= 1 (default -1: run the epochs)")
    p.add_argument("--model", help="a local causal LM folder (save_pretrained) to train instead of the tiny one")
    p.add_argument("--dataset", help="preference file for --model: .jsonl/.json or a save_to_disk folder")
    p.add_argument("--eval-fraction", type=float, default=0.1,
                   help="share of --dataset held out for evaluation, in [0, 1) (default 0.1)")
    p.add_argument("--max-length", type=int, default=1024, help="truncate sequences (--model; default 1024)")
    p.add_argument("--out", default="gammapo-train-report", help="output folder (default ./%(default)s)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace the report, checkpoints and models of an existing --out folder")
    p.add_argument("--save-steps", type=int, help="checkpoint every N steps (default 25 embedded, 100 --model; 0: off)")
    p.add_argument("--resume", action="store_true", help="resume each run from its last checkpoint in --out")
    p.add_argument("--quick", action="store_true",
                   help="a reduced study (512 pairs, 256 held-out pairs, 1 epoch, 1 seed, uniform noise): for smoke tests")
    p.add_argument("--threads", type=int, default=None,
                   help="torch CPU threads per run (default: 1 for the embedded task, whose tiny model gains nothing "
                   "from more; torch's choice with --model)")
    p.add_argument("--jobs", type=int, default=None,
                   help="embedded task: runs in parallel, one process each (default: the CPU cores available)")
    return p


# --- planning: every check that can fail runs here, before any training --------------------------
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


# --- running --------------------------------------------------------------------------------------
def _progress_callback(label: str):
    from transformers import TrainerCallback

    class Progress(TrainerCallback):
        shown = 0  # quarters of the run already reported

        def on_log(self, args, state, control, logs=None, **kwargs):
            if not logs or "loss" not in logs:
                return
            quarter = 4 * state.global_step // max(1, state.max_steps)
            if quarter <= self.shown:
                return
            self.shown = quarter
            gamma = f"  γ mean {logs['gamma/mean']:.3f} std {logs['gamma/std']:.3f}" if "gamma/mean" in logs else ""
            print(f"    {label}: step {state.global_step:>4}/{state.max_steps}  loss {logs['loss']:.4f}  "
                  f"reward acc {logs.get('rewards/accuracies', float('nan')):.3f}{gamma}", flush=True)

    return Progress()


def _run_dir(out: str, method: str, noise: float | None, seed: int, data: str = "plain") -> str:
    tag = f"{method}-seed{seed}" if noise is None else f"{method}-noise{noise:g}-seed{seed}"
    if data != "plain":
        tag = f"{method}-{data}" + tag.removeprefix(method)
    return os.path.join(out, "checkpoints", tag)


def _resume_flag(run_dir: str, resume: bool) -> bool | None:
    """``--resume``: resume a run that has a complete checkpoint (the trainer says which), else start it."""
    from gammapo.integrations._checkpoints import newest_complete

    if resume and newest_complete(run_dir)[0] is not None:
        return True
    return None


def _jobs(args: argparse.Namespace, plan: dict[str, Any]) -> list[Any]:
    """Every run of the embedded study, in table order: noise model, noise, data, method, seed."""
    from gammapo.train.study import Job

    save_steps = 25 if args.save_steps is None else args.save_steps
    jobs = []
    for noise_model in plan["noise_models"]:
        for noise in args.noise:
            cells = [(d, spec) for d in plan["data"] for spec in plan["specs"] if spec.data == "plain"]
            cells += [("oracle", spec) for spec in plan["specs"] if spec.data == "oracle"]
            for data, spec in cells:
                for seed in range(args.seeds):
                    jobs.append(Job(
                        spec=dataclasses.replace(spec, data=data), noise=noise, noise_model=noise_model, seed=seed,
                        pairs=args.pairs, eval_pairs=args.eval_pairs, epochs=plan["epochs"], lr=plan["lr"],
                        batch_size=args.batch_size, grad_accum=args.grad_accum, max_steps=args.max_steps,
                        save_steps=save_steps, out=args.out, resume=args.resume, scores=args.scores,
                        select_fraction=args.select_fraction, threads=args.threads or 1,
                    ))
    return jobs


def _run_embedded(args: argparse.Namespace, plan: dict[str, Any]) -> list[Any]:
    from gammapo.train.study import available_cores, run_jobs

    jobs = _jobs(args, plan)
    workers = min(args.jobs or max(1, available_cores() // (args.threads or 1)), len(jobs))
    print(f"  {len(jobs)} runs, {workers} in parallel", flush=True)
    results = run_jobs(jobs, workers)
    counts = {}
    for r in results:
        key = (r.data, r.noise_model, r.noise, r.seed)
        if r.data != "plain" or plan["data"] != ["plain"]:
            counts.setdefault(key, {"data": r.data, "noise_model": r.noise_model, "noise": r.noise, "seed": r.seed,
                                    "scores": args.scores, **(r.settings or {}).get("counts", {})})
    plan["data_counts"] = list(counts.values())
    return results


def _run_real(args: argparse.Namespace, plan: dict[str, Any]) -> list[Any]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from gammapo.train.run import Result, RunConfig, train_method
    from gammapo.train.study import _settings

    save_steps = 100 if args.save_steps is None else args.save_steps
    results = []
    for seed in range(args.seeds):
        for entry in plan["methods"]:
            loss = parse_method(entry)[0]
            tag = entry.replace(":", "-").replace("=", "").replace("_", "")
            print(f"  {display_name(entry)} seed {seed} on {args.model}", flush=True)
            tok = AutoTokenizer.from_pretrained(args.model)
            model = AutoModelForCausalLM.from_pretrained(args.model, dtype="float32")
            run_dir = _run_dir(args.out, tag, None, seed)
            run = RunConfig(run_dir, epochs=plan["epochs"], batch_size=args.batch_size, grad_accum=args.grad_accum,
                            learning_rate=plan["lr"], seed=seed, max_steps=args.max_steps, save_steps=save_steps,
                            max_length=args.max_length)
            t0 = time.perf_counter()
            trainer = train_method(
                method=entry, loss=loss, loss_kwargs=plan["loss_kwargs"][entry], model=model, tokenizer=tok,
                train_pairs=plan["rows_train"], eval_pairs=plan["rows_eval"] or None, run=run,
                ref_model=None, callbacks=[_progress_callback(display_name(entry))],
                resume=_resume_flag(run_dir, args.resume),
            )
            seconds = time.perf_counter() - t0
            acc = trainer.evaluate().get("eval_rewards/accuracies") if plan["rows_eval"] else None
            from gammapo.integrations.model_card import write_model_card

            saved = os.path.join(args.out, "models", f"{tag}-seed{seed}")
            trainer.save_model(saved)
            if trainer.is_world_process_zero():
                write_model_card(trainer, saved, model_name=f"{tag}-seed{seed}", dataset_name=args.dataset)
            config = getattr(trainer.pair_loss, "config", None)
            results.append(Result(
                method=display_name(entry), loss=loss, noise=0.0, seed=seed, accuracy=acc, gen_reward=None,
                ref_gen_reward=None, seconds=seconds, steps=trainer.state.global_step,
                history=[{k: v for k, v in h.items() if isinstance(v, (int, float))} for h in trainer.state.log_history],
                eval_pairs=len(plan["rows_eval"]), noise_model="none",
                settings=_settings(config) if config is not None else None,
            ))
    return results


def _clear_report(out: str) -> None:
    """``--overwrite``: remove the report's own entries of ``out`` (nothing else in the folder)."""
    import shutil

    for entry in REPORT_ENTRIES:
        path = os.path.join(out, entry)
        if os.path.isdir(path):
            shutil.rmtree(path)
        elif os.path.exists(path):
            os.remove(path)


def _quiet_libraries() -> None:
    os.environ.setdefault("TQDM_DISABLE", "1")
    import warnings

    import datasets
    import transformers

    datasets.disable_progress_bars()
    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    warnings.filterwarnings("ignore", category=UserWarning)
    warnings.filterwarnings("ignore", category=FutureWarning)
    # the libraries' notices are muted, gammapo's own warnings are not (e.g. the solver-regime warning)
    from gammapo_spec.errors import SolverRegimeWarning

    warnings.filterwarnings("default", module=r"gammapo")
    warnings.filterwarnings("default", category=SolverRegimeWarning)


def _follow(args: argparse.Namespace, plan: dict[str, Any]) -> int:
    """A rank other than 0 of a multi-process launch: the same runs, silently; rank 0 reports."""
    import contextlib

    from gammapo_spec.errors import GammaPOError

    from gammapo.train.data import DataError

    with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink):
        try:
            _run_real(args, plan) if args.model else _run_embedded(args, plan)
        except (GammaPOError, DataError) as exc:
            print(f"gammapo train: error: {exc}", file=sys.stderr)
            return 2
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``gammapo train``; returns the exit status (0 done, 2 bad input or missing dependency)."""
    try:
        args = build_parser().parse_args(argv)
    except UsageError as exc:
        print(f"gammapo train: error: {exc}", file=sys.stderr)
        return 2
    t_start = time.perf_counter()
    try:
        import torch

        _quiet_libraries()
        import trl  # noqa: F401 - fail early, with the install hint below
    except ImportError as exc:
        print(f"gammapo train: error: needs {exc.name} (pip install 'gammapo[trl]')", file=sys.stderr)
        return 2
    from gammapo_spec.errors import GammaPOError

    from gammapo.train.data import DataError

    if args.threads or not args.model:
        torch.set_num_threads(args.threads or 1)
    try:
        plan = _plan(args)
    except (UsageError, DataError, GammaPOError) as exc:
        print(f"gammapo train: error: {exc}", file=sys.stderr)
        return 2
    from gammapo.integrations._checkpoints import OutputLocked, lock_output

    rank, world = int(os.environ.get("RANK", "0") or 0), int(os.environ.get("WORLD_SIZE", "1") or 1)
    if world > 1:
        # torchrun / accelerate launch: every process runs the same runs one after another, each run's
        # trainer data-parallel over all of them; only rank 0 locks, prints and writes the report
        args.jobs = 1
        if rank != 0:
            return _follow(args, plan)
    try:
        lock = lock_output(args.out)  # held until the process ends: a second run on the same --out stops here
    except (OutputLocked, OSError) as exc:
        print(f"gammapo train: error: {exc}", file=sys.stderr)
        return 2
    if args.overwrite:
        _clear_report(args.out)
    real = bool(args.model)
    what = f"{args.model} on {args.dataset}" if real else "a tiny Llama on the embedded synthetic task"
    print(f"gammapo train: {', '.join(display_name(m) for m in plan['methods'])} — {what}; preset {plan['preset']}, "
          f"{plan['epochs']:g} epoch(s), lr {plan['lr']:g}" + ("" if real else f", {','.join(plan['noise_models'])} "
          f"noise {args.noise}, {args.seeds} seed(s), {args.pairs} training pairs, {args.eval_pairs} held-out pairs"
          + (", with the oracle of each base loss" if any(sp.data == "oracle" for sp in plan["specs"]) else "")
          + ("" if plan["data"] == ["plain"] else f", data {','.join(plan['data'])} ({args.scores} scores)")),
          flush=True)
    try:
        results = _run_real(args, plan) if real else _run_embedded(args, plan)
    except (GammaPOError, DataError, OutputLocked) as exc:  # e.g. a checkpoint of other settings on --resume
        print(f"gammapo train: error: {exc}", file=sys.stderr)
        return 2

    from gammapo.train.compare import paired_deltas, verdict
    from gammapo.train.report import format_diagnostics, format_table, summarise, write_report

    settings = {"methods": plan["methods"], "preset": plan["preset"], "epochs": plan["epochs"], "lr": plan["lr"],
                "batch_size": args.batch_size, "loss_kwargs": plan["loss_kwargs"]}
    if real:
        settings.update(model=args.model, dataset=args.dataset, eval_fraction=args.eval_fraction,
                        eval_pairs=len(plan["rows_eval"]), train_pairs=len(plan["rows_train"]))
    else:
        settings.update(noise=args.noise, noise_models=plan["noise_models"], seeds=args.seeds, pairs=args.pairs,
                        eval_pairs=args.eval_pairs, oracle=any(sp.data == "oracle" for sp in plan["specs"]))
        if plan["data"] != ["plain"]:
            settings.update(data=plan["data"], scores=args.scores, data_counts=plan["data_counts"])
            if "selected" in plan["data"]:
                settings["select_fraction"] = args.select_fraction
    paths = write_report(args.out, results, settings)
    rows = summarise(results)
    print()
    print(format_table(rows, deltas=[] if real else paired_deltas(results), real=real))
    if real:
        print(f"\nAccuracy: on the {len(plan['rows_eval'])} held-out pairs of {args.dataset} (--eval-fraction "
              f"{args.eval_fraction:g}), the share whose implicit reward prefers the response your data labels as chosen.")
    else:
        diag = format_diagnostics(rows)
        if diag:
            print("\nIs the mechanism active? (end of training, on the training pairs)")
            print(diag)
        print()
        for line in verdict(results):
            print(line)
        if args.seeds == 1:
            print("One seed per method: no spread to judge a difference by; use --seeds 3 or more.")
    print(f"\nreport: {paths['markdown']}  plot: {paths['plot']}  data: {paths['json']}  "
          f"({time.perf_counter() - t_start:.0f}s)")
    lock.close()
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
