"""``gammapo train``: γ-PO training through TRL, on the embedded task or on your model and data.

With no arguments it trains a tiny causal LM (built from a config, no download) on the embedded
synthetic task (:mod:`gammapo.train.task`: a known ground-truth reward, 20% of the labels flipped) with
DPO, SimPO, γ-DPO and γ-SimPO, prints a table (held-out clean-pair implicit-reward accuracy, ground-truth
reward of greedy generations) and writes a report (Markdown, PNG, JSON) to ``./gammapo-train-report``.

    gammapo train                                        # the default study (1–4 minutes on 2 cores)
    gammapo train --noise 0,0.1,0.2,0.3,0.4 --seeds 3    # robustness sweep: accuracy vs label noise
    gammapo train --data plain,augmented,selected        # the same pairs plain, reward-augmented, AP-selected
    gammapo train --model ./my-model --dataset prefs.jsonl --preset llama3 --loss gamma-simpo
    gammapo train --resume                               # continue every run from its last checkpoint

Bad input (unknown loss, missing columns, empty responses, a model path that does not exist) stops with
exit status 2 and a message naming the problem, before any training.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from typing import Any, Sequence

__all__ = ["main", "build_parser", "DEFAULT_METHODS", "display_name"]

DEFAULT_METHODS = ("dpo", "simpo", "gamma-dpo", "gamma-simpo")
_DISPLAY = {"dpo": "DPO", "simpo": "SimPO", "ipo": "IPO", "hinge": "Hinge", "robust": "rDPO", "rdpo": "R-DPO",
            "beta-dpo": "β-DPO", "epsilon-dpo": "ε-DPO"}


class UsageError(ValueError):
    """A command line that cannot run (exit status 2)."""


def display_name(loss: str) -> str:
    """``gamma-simpo`` → ``γ-SimPO``; unknown names are shown as given."""
    base = loss.removeprefix("gamma-")
    name = _DISPLAY.get(base, base)
    return f"γ-{name}" if loss.startswith("gamma-") else name


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

    default_solver = GammaPOConfig.__dataclass_fields__["solver"].default
    p = _Parser(prog="gammapo train", description=__doc__.splitlines()[0],
                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n\n", 2)[2])
    p.add_argument("--methods", default=",".join(DEFAULT_METHODS),
                   help="comma-separated losses to compare (default: %(default)s); any registered loss name")
    p.add_argument("--loss", help="train this one loss (shorthand for --methods LOSS)")
    p.add_argument("--preset", default=None, help="hyper-parameters: tiny (default for the embedded task), "
                   "llama3, gemma2, mistral, qwen2.5 (the released γ-SimPO recipes; default with --model: llama3)")
    p.add_argument("--beta", type=float, help="override β of every method")
    p.add_argument("--tau", type=float, help="override τ of the γ- methods")
    p.add_argument("--gamma-beta-ratio", type=float, metavar="RATIO",
                   help="override γ0/β (>= 0) of SimPO and the γ- methods: the base margin γ0 = β·RATIO, "
                   "the mean of the calibrated margins (default: the preset's)")
    p.add_argument("--solver", choices=SOLVERS,
                   help=f"calibration solver of the γ- methods: exact (the minimiser of the calibration problem) or "
                   f"mirror (the released mirror-descent arithmetic) (default: GammaPOConfig's, {default_solver})")
    p.add_argument("--calibration", choices=["queue", "batch"], default="queue", help="where γ-PO's gaps come from")
    p.add_argument("--noise", type=_floats, default=[0.2], help="label-noise rate(s) of the embedded task, "
                   "comma-separated for a sweep (default 0.2)")
    p.add_argument("--data", default="plain",
                   help="training-data variant(s) of the embedded task, comma-separated for a study: plain, augmented "
                   "(reward-augmented relabelling, evaluated conditioned on the top score), selected (top "
                   "--select-fraction by alignment potential); see gammapo.train.transforms (default plain)")
    p.add_argument("--scores", choices=["truth", "labels"], default="truth",
                   help="scores for augmented/selected: truth = each response's ground-truth reward (a flipped label "
                   "then has s_w < s_l); labels = a judge agreeing with the noisy labels (default truth)")
    p.add_argument("--select-fraction", type=float, default=0.4,
                   help="share of pairs kept by --data selected, in (0, 1] (default 0.4)")
    p.add_argument("--seeds", type=int, default=1, help="seeds per (method, noise) (default 1)")
    p.add_argument("--pairs", type=int, default=2048, help="training pairs of the embedded task (default 2048)")
    p.add_argument("--eval-pairs", type=int, default=512, help="held-out clean pairs (default 512)")
    p.add_argument("--epochs", type=float, help="epochs (default: the preset's)")
    p.add_argument("--lr", type=float, help="learning rate (default: the preset's)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--grad-accum", type=int, default=1)
    p.add_argument("--max-steps", type=int, default=-1, help="stop after this many optimiser steps (default: epochs)")
    p.add_argument("--model", help="a local causal LM folder (save_pretrained) to train instead of the tiny one")
    p.add_argument("--dataset", help="preference file for --model: .jsonl/.json or a save_to_disk folder")
    p.add_argument("--eval-fraction", type=float, default=0.1, help="share of --dataset held out (default 0.1)")
    p.add_argument("--max-length", type=int, default=1024, help="truncate sequences (--model; default 1024)")
    p.add_argument("--out", default="gammapo-train-report", help="output folder (default ./%(default)s)")
    p.add_argument("--save-steps", type=int, help="checkpoint every N steps (default 25 embedded, 100 --model; 0: off)")
    p.add_argument("--resume", action="store_true", help="resume each run from its last checkpoint in --out")
    p.add_argument("--quick", action="store_true", help="a reduced study (512 pairs, 1 epoch): for smoke tests")
    p.add_argument("--threads", type=int, default=None,
                   help="torch CPU threads (default: 1 for the embedded task, whose tiny model gains nothing from more "
                   "and loses much on a busy machine; torch's choice with --model)")
    return p


# --- planning: every check that can fail runs here, before any training --------------------------
def _plan(args: argparse.Namespace) -> dict[str, Any]:
    from gammapo.integrations.losses import make_pair_loss, registered_pair_losses
    from gammapo.train.presets import PRESETS, loss_kwargs

    methods = [args.loss] if args.loss else [m.strip() for m in args.methods.split(",") if m.strip()]
    if not methods:
        raise UsageError("no methods given")
    if args.gamma_beta_ratio is not None and not (math.isfinite(args.gamma_beta_ratio) and args.gamma_beta_ratio >= 0):
        raise UsageError(f"--gamma-beta-ratio must be a finite number >= 0, got {args.gamma_beta_ratio:g}")
    unknown = [m for m in methods if m not in registered_pair_losses()]
    if unknown:
        raise UsageError(f"unknown loss(es) {unknown}; known: {', '.join(registered_pair_losses())}")
    preset_name = args.preset or ("llama3" if args.model else "tiny")
    if preset_name not in PRESETS:
        raise UsageError(f"unknown preset {preset_name!r}; known: {', '.join(PRESETS)}")
    preset = PRESETS[preset_name]
    kwargs = {}
    for m in methods:
        kw = loss_kwargs(m, preset)
        if args.beta is not None:
            kw["beta"] = args.beta
        if args.gamma_beta_ratio is not None and "gamma_beta_ratio" in kw:  # SimPO and the γ- methods take it
            kw["gamma_beta_ratio"] = args.gamma_beta_ratio
        if m.startswith("gamma-"):
            kw["calibration"] = args.calibration
            if args.tau is not None:
                kw["tau"] = args.tau
            if args.solver is not None:
                kw["solver"] = args.solver
        make_pair_loss(m, **kw)  # validates the hyper-parameters (ConfigError names the field)
        kwargs[m] = kw
    if any(not 0.0 <= n < 0.5 for n in args.noise):
        raise UsageError(f"--noise rates must lie in [0, 0.5), got {args.noise}")
    for name in ("seeds", "pairs", "eval_pairs", "batch_size", "grad_accum"):
        if getattr(args, name) < 1:
            raise UsageError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if args.quick:
        args.pairs, args.eval_pairs = min(args.pairs, 512), min(args.eval_pairs, 256)
    data = _plan_data(args)
    plan: dict[str, Any] = {
        "methods": methods, "loss_kwargs": kwargs, "preset": preset_name, "data": data,
        "epochs": args.epochs if args.epochs is not None else (1.0 if args.quick else preset.epochs),
        "lr": args.lr if args.lr is not None else preset.learning_rate,
    }
    if args.model or args.dataset:
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
    if not 0.0 <= args.eval_fraction < 1.0:
        raise UsageError(f"--eval-fraction must lie in [0, 1), got {args.eval_fraction}")
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
    from transformers.trainer_utils import get_last_checkpoint

    if resume and os.path.isdir(run_dir) and get_last_checkpoint(run_dir):
        return True
    return None


def _training_data(args, plan, task, tok, data: str, noise: float, seed: int):
    """The (noise, seed) training pairs in variant ``data`` and the transform's counts (printed)."""
    from gammapo.train import transforms
    from gammapo.train.tiny import build_model

    pairs = task.pairs(args.pairs, noise=noise, seed=1 + 1000 * seed)
    if data == "plain":
        if plan["data"] == ["plain"]:  # the default study: nothing to count (and no time spent on it)
            return pairs, {"read": len(pairs), "written": len(pairs)}
        flipped = transforms.count_flipped(task, pairs)
        return pairs, {"read": len(pairs), "written": len(pairs), "flipped_read": flipped, "flipped_kept": flipped}
    if data == "augmented":
        rows, counts = transforms.augmented_pairs(task, pairs, scores=args.scores)
        print(f"  data augmented (noise {noise:g}, seed {seed}, {args.scores} scores): read {counts['read']}, kept "
              f"{counts['kept']}, dropped s_w < s_l {counts['dropped_lower']}, ties dropped {counts['dropped_ties']}, "
              f"written {counts['written']} (= 2 x kept); flipped labels kept {counts['flipped_kept']} of "
              f"{counts['flipped_read']}", flush=True)
        return rows, counts
    initial = build_model(len(tok), seed=seed)  # the run's initial model (and reference), same seed
    rows, counts = transforms.selected_pairs(task, pairs, initial, tok, fraction=args.select_fraction,
                                             scores=args.scores)
    print(f"  data selected (noise {noise:g}, seed {seed}, {args.scores} scores, top {args.select_fraction:g} by "
          f"alignment potential): read {counts['read']}, invalid {counts['invalid']}, dropped {counts['filtered']}, "
          f"written {counts['written']}; flipped labels kept {counts['flipped_kept']} of {counts['flipped_read']}",
          flush=True)
    return rows, counts


def _run_embedded(args: argparse.Namespace, plan: dict[str, Any]) -> list[Any]:
    import copy

    from gammapo.train import transforms
    from gammapo.train.run import Result, RunConfig, greedy_reward, implicit_accuracy, train_method
    from gammapo.train.task import SyntheticTask
    from gammapo.train.tiny import build_model, build_tokenizer

    task = SyntheticTask()
    tokenizers = {"plain": build_tokenizer(task.words)}
    if "augmented" in plan["data"]:  # the condition words s0 … s10 join the vocabulary of these runs only
        tokenizers["augmented"] = build_tokenizer(task.words + transforms.score_words(task))
    eval_pairs = task.pairs(args.eval_pairs, noise=0.0, seed=999_999)
    save_steps = 25 if args.save_steps is None else args.save_steps
    runs = [(n, s, d, m) for n in args.noise for s in range(args.seeds) for d in plan["data"] for m in plan["methods"]]
    show_data = plan["data"] != ["plain"]
    prepared: dict[tuple[float, int, str], tuple[list[dict], dict]] = {}
    plan["data_counts"] = []
    results = []
    for i, (noise, seed, data, method) in enumerate(runs, start=1):
        label = f"[{i}/{len(runs)}] {display_name(method)} noise {noise:g} seed {seed}" + (f" data {data}" if show_data else "")
        print(f"  {label}", flush=True)
        tok = tokenizers.get(data, tokenizers["plain"])
        if (noise, seed, data) not in prepared:
            prepared[noise, seed, data] = _training_data(args, plan, task, tok, data, noise, seed)
            plan["data_counts"].append({"data": data, "noise": noise, "seed": seed, "scores": args.scores,
                                        **prepared[noise, seed, data][1]})
        train_pairs = prepared[noise, seed, data][0]
        model = build_model(len(tok), seed=seed)
        reference = copy.deepcopy(model).eval()
        run_dir = _run_dir(args.out, method, noise, seed, data)
        run = RunConfig(run_dir, epochs=plan["epochs"], batch_size=args.batch_size, grad_accum=args.grad_accum,
                        learning_rate=plan["lr"], seed=seed, max_steps=args.max_steps, save_steps=save_steps)
        t0 = time.perf_counter()
        trainer = train_method(
            method=method, loss=method, loss_kwargs=plan["loss_kwargs"][method], model=model, tokenizer=tok,
            train_pairs=train_pairs, run=run, ref_model=copy.deepcopy(reference),
            callbacks=[_progress_callback(display_name(method))], resume=_resume_flag(run_dir, args.resume),
        )
        seconds = time.perf_counter() - t0
        model.eval()
        # a reward-augmented model is asked for its best: every evaluation prompt carries the top-score condition
        prompt_fn = (lambda p: transforms.condition(p, task)) if data == "augmented" else None
        evals = [dict(p, prompt=prompt_fn(p["prompt"])) for p in eval_pairs] if prompt_fn else eval_pairs
        acc = implicit_accuracy(model, reference, tok, evals, reference_free=not trainer.pair_loss.needs_reference)
        results.append(Result(
            method=display_name(method), loss=method, noise=noise, seed=seed, accuracy=acc,
            gen_reward=greedy_reward(model, tok, task, prompt_fn), ref_gen_reward=greedy_reward(reference, tok, task, prompt_fn),
            seconds=seconds, steps=trainer.state.global_step,
            history=[{k: v for k, v in h.items() if isinstance(v, (int, float))} for h in trainer.state.log_history],
            data=data, train_pairs=len(train_pairs),
        ))
        print(f"    → clean-pair accuracy {acc:.3f}, greedy r* {results[-1].gen_reward:.3f} "
              f"(reference {results[-1].ref_gen_reward:.3f}), {seconds:.1f}s", flush=True)
    return results


def _run_real(args: argparse.Namespace, plan: dict[str, Any]) -> list[Any]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from gammapo.train.run import Result, RunConfig, train_method

    save_steps = 100 if args.save_steps is None else args.save_steps
    results = []
    for seed in range(args.seeds):
        for method in plan["methods"]:
            print(f"  {display_name(method)} seed {seed} on {args.model}", flush=True)
            tok = AutoTokenizer.from_pretrained(args.model)
            model = AutoModelForCausalLM.from_pretrained(args.model, dtype="float32")
            run_dir = _run_dir(args.out, method, None, seed)
            run = RunConfig(run_dir, epochs=plan["epochs"], batch_size=args.batch_size, grad_accum=args.grad_accum,
                            learning_rate=plan["lr"], seed=seed, max_steps=args.max_steps, save_steps=save_steps,
                            max_length=args.max_length)
            t0 = time.perf_counter()
            trainer = train_method(
                method=method, loss=method, loss_kwargs=plan["loss_kwargs"][method], model=model, tokenizer=tok,
                train_pairs=plan["rows_train"], eval_pairs=plan["rows_eval"] or None, run=run,
                ref_model=None, callbacks=[_progress_callback(display_name(method))],
                resume=_resume_flag(run_dir, args.resume),
            )
            seconds = time.perf_counter() - t0
            acc = trainer.evaluate().get("eval_rewards/accuracies") if plan["rows_eval"] else None
            trainer.save_model(os.path.join(args.out, "models", f"{method}-seed{seed}"))
            results.append(Result(
                method=display_name(method), loss=method, noise=0.0, seed=seed, accuracy=acc, gen_reward=None,
                ref_gen_reward=None, seconds=seconds, steps=trainer.state.global_step,
                history=[{k: v for k, v in h.items() if isinstance(v, (int, float))} for h in trainer.state.log_history],
            ))
    return results


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
    real = bool(args.model)
    what = f"{args.model} on {args.dataset}" if real else "a tiny Llama on the embedded synthetic task"
    print(f"gammapo train: {', '.join(display_name(m) for m in plan['methods'])} — {what}; preset {plan['preset']}, "
          f"{plan['epochs']:g} epoch(s), lr {plan['lr']:g}" + ("" if real else f", noise {args.noise}, "
          f"{args.seeds} seed(s), {args.pairs} pairs" + ("" if plan["data"] == ["plain"] else
          f", data {','.join(plan['data'])} ({args.scores} scores)")), flush=True)
    results = _run_real(args, plan) if real else _run_embedded(args, plan)

    from gammapo.train.report import format_table, summarise, write_report

    settings = {"methods": plan["methods"], "preset": plan["preset"], "epochs": plan["epochs"], "lr": plan["lr"],
                "batch_size": args.batch_size, "loss_kwargs": plan["loss_kwargs"]}
    if real:
        settings.update(model=args.model, dataset=args.dataset)
    else:
        settings.update(noise=args.noise, seeds=args.seeds, pairs=args.pairs, eval_pairs=args.eval_pairs)
        if plan["data"] != ["plain"]:
            settings.update(data=plan["data"], scores=args.scores, data_counts=plan["data_counts"])
            if "selected" in plan["data"]:
                settings["select_fraction"] = args.select_fraction
    paths = write_report(args.out, results, settings)
    print()
    print(format_table(summarise(results)))
    if args.seeds == 1 and not real:
        print("\nOne seed per method: differences of a few points are within the seed-to-seed spread; "
              "use --seeds 3 for mean ± std (and --noise 0,0.1,0.2,0.3,0.4 for the robustness sweep).")
    print(f"\nreport: {paths['markdown']}  plot: {paths['plot']}  data: {paths['json']}  "
          f"({time.perf_counter() - t_start:.0f}s)")
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
