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
import os
import sys
import time
from typing import Sequence

from ._cli_plan import METHOD_OPTIONS, REPORT_ENTRIES, UsageError, _plan, display_name, parse_method
from ._cli_runs import _clear_report, _follow, _quiet_libraries, _run_embedded, _run_real

__all__ = ["main", "build_parser", "DEFAULT_METHODS", "METHOD_OPTIONS", "REPORT_ENTRIES", "UsageError", "display_name",
           "parse_method"]

DEFAULT_METHODS = ("dpo", "gamma-dpo", "simpo", "gamma-simpo", "gamma-simpo:tau=10")


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
