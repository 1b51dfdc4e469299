"""Running ``gammapo train``: the embedded study's runs in a process pool, or each method on your model.

Part of :mod:`gammapo.train.cli`: the plan (:mod:`gammapo.train._cli_plan`) is already checked; this
trains, reports progress, and leaves the checkpoints and models under ``--out``.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time
from typing import Any

from ._cli_plan import REPORT_ENTRIES, display_name, parse_method


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
