r"""The embedded study: every (method, noise model, noise, seed, data) run, in parallel, and its evaluation.

A run trains one method on the embedded task's pairs (:mod:`gammapo.train.task`) and measures, on the
held-out clean pairs, the implicit-reward accuracy overall and by the true reward difference
:math:`\Delta r^\star` (``hard``: 0.2, one word apart; ``medium``: 0.4; ``easy``: ≥ 0.6), the greedy
response's true reward, and for a γ- method the mechanism diagnostics of :mod:`gammapo.train.diagnostics`
on its training pairs at the end of training (the trainer's own γ logs are in the run's history).

Runs with the same seed see the same training pairs (up to the data variant: the ``oracle`` variant
removes the flipped pairs), the same initial model and, for the same data, the same batch order, so the
difference of two methods' accuracies on one seed is a paired comparison (:mod:`gammapo.train.compare`).

The runs are independent: :func:`run_jobs` spreads them over a process pool (one torch thread each).
"""

from __future__ import annotations

import dataclasses
import os
import time
from typing import Any, Sequence

__all__ = ["MethodSpec", "Job", "BUCKETS", "bucket_of", "run_job", "run_jobs", "available_cores"]

#: Held-out pairs by true reward difference: (name, lowest Δr*, highest Δr*), Δr* in steps of 1/L = 0.2.
BUCKETS = (("hard", 0.0, 0.3), ("medium", 0.3, 0.5), ("easy", 0.5, 10.0))


def bucket_of(delta: float) -> str:
    """The :data:`BUCKETS` name of a true reward difference ``delta`` > 0."""
    for name, lo, hi in BUCKETS:
        if lo < delta <= hi:
            return name
    raise ValueError(f"no bucket for a reward difference of {delta}")


@dataclasses.dataclass(frozen=True)
class MethodSpec:
    """One row of the study: a registered ``loss`` with its keywords, trained on ``data``, shown as ``name``.

    ``tag`` names its checkpoint folder; ``family`` is the base loss its paired Δ is taken against."""

    name: str
    loss: str
    loss_kwargs: dict[str, Any]
    data: str = "plain"
    tag: str = ""

    @property
    def family(self) -> str:
        return self.loss.removeprefix("gamma-")


@dataclasses.dataclass(frozen=True)
class Job:
    """Everything one run needs (picklable: it crosses into a worker process)."""

    spec: MethodSpec
    noise: float
    noise_model: str
    seed: int
    pairs: int
    eval_pairs: int
    epochs: float
    lr: float
    batch_size: int
    grad_accum: int
    max_steps: int
    save_steps: int
    out: str
    resume: bool
    scores: str = "truth"
    select_fraction: float = 0.4
    threads: int = 1
    progress: bool = True


def available_cores() -> int:
    """CPU cores this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def _training_pairs(job: Job, task, tok):
    """The run's training pairs (after its data variant) and the variant's counts."""
    from gammapo.train import transforms
    from gammapo.train.tiny import build_model

    pairs = task.pairs(job.pairs, noise=job.noise, seed=1 + 1000 * job.seed, noise_model=job.noise_model)
    flipped = transforms.count_flipped(task, pairs)
    data = job.spec.data
    if data == "plain":
        return pairs, {"read": len(pairs), "written": len(pairs), "flipped_read": flipped, "flipped_kept": flipped}
    if data == "oracle":
        kept = [p for p in pairs if task.reward_gap(p) > 0]
        return kept, {"read": len(pairs), "filtered": len(pairs) - len(kept), "written": len(kept),
                      "flipped_read": flipped, "flipped_kept": 0}
    where = f"{job.noise_model} noise {job.noise:g}, seed {job.seed}, {job.scores} scores"
    if data == "augmented":
        rows, counts = transforms.augmented_pairs(task, pairs, scores=job.scores)
        print(f"  data augmented ({where}): read {counts['read']}, kept {counts['kept']}, dropped s_w < s_l "
              f"{counts['dropped_lower']}, ties dropped {counts['dropped_ties']}, written {counts['written']} "
              f"(= 2 x kept); flipped labels kept {counts['flipped_kept']} of {counts['flipped_read']}", flush=True)
        return rows, counts
    initial = build_model(len(tok), seed=job.seed)  # the run's initial model (and reference), same seed
    rows, counts = transforms.selected_pairs(task, pairs, initial, tok, fraction=job.select_fraction, scores=job.scores)
    print(f"  data selected ({where}, top {job.select_fraction:g} by alignment potential): read {counts['read']}, "
          f"invalid {counts['invalid']}, dropped {counts['filtered']}, written {counts['written']}; flipped labels "
          f"kept {counts['flipped_kept']} of {counts['flipped_read']}", flush=True)
    return rows, counts


def _settings(config) -> dict[str, Any]:
    """The loss's hyper-parameters in the units that say what it can do."""
    out: dict[str, Any] = {"beta": config.beta}
    if config.base_loss == "simpo" or config.dynamic_margins:
        out["gamma0"] = config.gamma0
    if config.dynamic_margins:
        out.update(tau=config.tau, solver=config.solver, calibration=config.calibration,
                   spread_bound=config.gamma0 / config.tau, kappa=config.gamma0**2 / (8.0 * config.tau))
    return out


def run_job(job: Job):
    """Train and evaluate one run; returns its :class:`~gammapo.train.run.Result`."""
    import copy

    import numpy as np
    import torch

    from gammapo.train import _cli_runs, transforms
    from gammapo.train.diagnostics import margin_diagnostics
    from gammapo.train.run import Result, RunConfig, greedy_reward, implicit_gaps, train_method
    from gammapo.train.task import SyntheticTask
    from gammapo.train.tiny import build_model, build_tokenizer

    torch.set_num_threads(job.threads)
    spec, data = job.spec, job.spec.data
    task = SyntheticTask()
    tok = build_tokenizer(task.words + (transforms.score_words(task) if data == "augmented" else []))
    eval_pairs = task.pairs(job.eval_pairs, noise=0.0, seed=999_999)
    train_pairs, counts = _training_pairs(job, task, tok)
    model = build_model(len(tok), seed=job.seed)
    reference = copy.deepcopy(model).eval()
    method_tag = spec.tag or spec.loss
    if job.noise_model != "uniform":
        method_tag += f"-{job.noise_model}"
    run_dir = _cli_runs._run_dir(job.out, method_tag, job.noise, job.seed, data)
    run = RunConfig(run_dir, epochs=job.epochs, batch_size=job.batch_size, grad_accum=job.grad_accum,
                    learning_rate=job.lr, seed=job.seed, max_steps=job.max_steps, save_steps=job.save_steps)
    callbacks = [_cli_runs._progress_callback(spec.name)] if job.progress else []
    t0 = time.perf_counter()
    trainer = train_method(method=spec.name, loss=spec.loss, loss_kwargs=spec.loss_kwargs, model=model, tokenizer=tok,
                           train_pairs=train_pairs, run=run, ref_model=copy.deepcopy(reference), callbacks=callbacks,
                           resume=_cli_runs._resume_flag(run_dir, job.resume))
    seconds = time.perf_counter() - t0
    model.eval()
    config = trainer.pair_loss.config if hasattr(trainer.pair_loss, "config") else None
    reference_free = not trainer.pair_loss.needs_reference
    # a reward-augmented model is asked for its best: every evaluation prompt carries the top-score condition
    prompt_fn = (lambda p: transforms.condition(p, task)) if data == "augmented" else None
    evals = [dict(p, prompt=prompt_fn(p["prompt"])) for p in eval_pairs] if prompt_fn else eval_pairs
    h = implicit_gaps(model, reference, tok, evals, reference_free=reference_free).numpy()
    deltas = np.array([task.reward_gap(p) for p in eval_pairs])
    names = np.array([bucket_of(d) for d in deltas])
    buckets = {name: float(np.mean(h[names == name] > 0)) for name, _, _ in BUCKETS if np.any(names == name)}
    diagnostics = None
    if config is not None and config.dynamic_margins and config.base_loss in ("dpo", "simpo") and data == "plain":
        h_train = config.beta * implicit_gaps(model, reference, tok, train_pairs, reference_free=reference_free).numpy()
        flipped = np.array([task.reward_gap(p) < 0 for p in train_pairs])
        diagnostics = margin_diagnostics(h_train, flipped, gamma0=config.gamma0, tau=config.tau, solver=config.solver,
                                         base_margin=config.gamma0 if config.base_loss == "simpo" else 0.0,
                                         set_size=job.batch_size * _world_size())
    return Result(
        method=spec.name, loss=spec.loss, noise=job.noise, seed=job.seed, accuracy=float(np.mean(h > 0)),
        gen_reward=greedy_reward(model, tok, task, prompt_fn), ref_gen_reward=greedy_reward(reference, tok, task, prompt_fn),
        seconds=seconds, steps=trainer.state.global_step,
        history=[{k: v for k, v in e.items() if isinstance(v, (int, float))} for e in trainer.state.log_history],
        data=data, train_pairs=len(train_pairs), noise_model=job.noise_model, eval_pairs=len(eval_pairs),
        buckets=buckets, diagnostics=diagnostics,
        settings={**(_settings(config) if config is not None else {}), "counts": counts},
    )


def _world_size() -> int:
    """Processes of a torchrun / accelerate launch (1 otherwise): the global batch is batch_size times it."""
    return int(os.environ.get("WORLD_SIZE", "1") or 1)


def _worker_init(threads: int) -> None:
    import torch

    from gammapo.train._cli_runs import _quiet_libraries

    _quiet_libraries()
    torch.set_num_threads(threads)


def _describe(job: Job) -> str:
    noise = f"{job.noise_model} noise {job.noise:g}"
    return f"{job.spec.name}" + (f" [{job.spec.data}]" if job.spec.data != "plain" else "") + f", {noise}, seed {job.seed}"


def run_jobs(jobs: Sequence[Job], workers: int) -> list[Any]:
    """Run ``jobs`` (in-process for one worker, else in a process pool of ``workers``); results in job order.

    Each finished run prints one line (accuracy, greedy r*, seconds)."""
    results: list[Any] = [None] * len(jobs)

    def report(i: int, r) -> None:
        done = sum(x is not None for x in results)
        print(f"  [{done}/{len(jobs)}] {_describe(jobs[i])}: clean-pair accuracy {r.accuracy:.3f}, "
              f"greedy r* {r.gen_reward:.3f}, {r.seconds:.1f}s", flush=True)

    if workers <= 1 or len(jobs) <= 1:
        for i, job in enumerate(jobs):
            results[i] = run_job(job)
            report(i, results[i])
        return results
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    threads = jobs[0].threads
    with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"),
                             initializer=_worker_init, initargs=(threads,)) as pool:
        futures = {pool.submit(run_job, dataclasses.replace(job, progress=False)): i for i, job in enumerate(jobs)}
        for fut in as_completed(futures):
            i = futures[fut]
            results[i] = fut.result()
            report(i, results[i])
    return results
