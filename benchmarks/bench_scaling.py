r"""The calibration's share of a data-parallel training step as the number of ranks grows (CPU, gloo).

Run: ``python -m benchmarks scaling`` (a few minutes on 2 cores) or ``--quick``. Writes
``scaling.{md,json}`` into the output folder.

γ-PO adds one collective to a data-parallel step: the all-gather of every rank's N detached gaps
(float64, N·P values for P ranks), after which every rank runs the same queue step on the global
gaps. Two measurements, side by side in one run:

1. **Ranks on this machine** (P = 1, 2, 4 under ``torchrun``, gloo, one thread per rank): a training
   step of the embedded task's model (:func:`gammapo.train.tiny.build_model`, a 2-layer Llama) under
   ``DistributedDataParallel`` with N pairs per rank and the released recipe (γ-SimPO, β = 10,
   γ0/β = 0.4, τ = 10, queue mode, 256 sampled gaps). Timed per step (medians over steps, rank 0;
   the ranks meet at a barrier before the loss, not counted, so that skew between them is not
   counted as gather time): the whole step, and the loss call (:func:`gammapo_torch.gamma_po_loss`: gap gather, queue step,
   loss), whose share of the step is what γ-PO costs. On a 2-core machine P = 4 oversubscribes the
   cores (4 processes on 2 cores): its absolute times are not a scaling result, only the share is
   indicative.
2. **The calibration at large P, one process**: the queue step on N·P global gaps for P up to 512
   (the compute every rank repeats), measured directly, not extrapolated. The communication at
   large P is given by its formula beside the message size (module table): a ring all-gather moves
   (P − 1)/P · 8·N·P bytes into each rank, time ≈ (P − 1)·α + 8·N·(P − 1)/B for link latency α and
   bandwidth B.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from typing import Any, Sequence

from benchmarks._perf_common import machine_info, machine_line, markdown_table, stats, write_results

NAME = "scaling"
FULL = {"ranks": [1, 2, 4], "pairs": 8, "warmup": 5, "steps": 40, "large_ranks": [1, 8, 64, 512], "calls": 30}
QUICK = {"ranks": [1, 2], "pairs": 4, "warmup": 1, "steps": 4, "large_ranks": [1, 64], "calls": 3}
RECIPE = dict(loss="gamma-simpo", beta=10.0, gamma_beta_ratio=0.4, tau=10.0, calibration="queue",
              queue_size=2048, sample_size=256)


def _worker(pairs: int, warmup: int, steps: int, dest: str) -> None:
    """One rank: DDP steps of the embedded model, the loss call timed inside each step."""
    import torch
    import torch.distributed as dist
    from gammapo_spec import GammaPOConfig

    import gammapo_torch as T
    from gammapo.train.tiny import build_model
    from gammapo_torch._distributed import gather_gaps

    torch.set_num_threads(1)
    dist.init_process_group("gloo")
    rank = dist.get_rank()
    vocab, seq, prompt = 23, 8, 2
    model = torch.nn.parallel.DistributedDataParallel(build_model(vocab, seed=0))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    cfg = GammaPOConfig(**RECIPE)
    state = T.init_state(cfg, seed=0)
    g = torch.Generator().manual_seed(1 + rank)
    ids = torch.randint(0, vocab, (2 * pairs, seq), generator=g)
    labels = ids[:, 1:].clone()
    labels[:, : prompt - 1] = -100
    mask = labels != -100
    lengths = mask.sum(1)
    step_t, loss_t, gather_t = [], [], []
    for i in range(warmup + steps):
        dist.barrier()
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        logits = model(input_ids=ids).logits[:, :-1]
        tok = logits.log_softmax(-1).gather(-1, labels.masked_fill(~mask, 0)[..., None]).squeeze(-1)
        logps = (tok * mask).sum(-1)
        wait = time.perf_counter()
        dist.barrier()  # the ranks enter the loss together: the loss call is the gather and the work, not skew
        t1 = time.perf_counter()
        wait = t1 - wait
        out, state = T.gamma_po_loss(cfg, state, chosen_logps=logps[:pairs], rejected_logps=logps[pairs:],
                                     chosen_lengths=lengths[:pairs], rejected_lengths=lengths[pairs:])
        t2 = time.perf_counter()
        out.loss.backward()
        opt.step()
        t3 = time.perf_counter()
        dist.barrier()
        t4 = time.perf_counter()
        gather_gaps(logps.detach().double()[:pairs], check_sizes=False)  # the same collective alone, outside the step
        t5 = time.perf_counter()
        if i >= warmup:
            gather_t.append(t5 - t4)
            step_t.append(t3 - t0 - wait)
            loss_t.append(t2 - t1)
    if rank == 0:
        with open(dest, "w") as f:
            json.dump({"world": dist.get_world_size(), "step": step_t, "loss_call": loss_t, "gather": gather_t,
                       "queue_size": int(state.size)}, f)
    dist.barrier()
    dist.destroy_process_group()


def _ranks(common: dict[str, Any], log) -> list[dict[str, Any]]:
    torchrun = shutil.which("torchrun", path=os.path.dirname(sys.executable)) or shutil.which("torchrun")
    if torchrun is None:
        raise SystemExit("scaling: torchrun is not on PATH (it comes with torch)")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for world in common["ranks"]:
            out = os.path.join(tmp, f"w{world}.json")
            cmd = [torchrun, "--standalone", "--nproc_per_node", str(world), "-m", "benchmarks.bench_scaling",
                   "--worker", str(common["pairs"]), str(common["warmup"]), str(common["steps"]), out]
            env = dict(os.environ, OMP_NUM_THREADS="1")
            proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900)
            if proc.returncode != 0:
                raise SystemExit(f"scaling: the {world}-rank run failed:\n{proc.stderr[-2000:]}")
            with open(out) as f:
                r = json.load(f)
            step, call, gather = stats(r["step"]), stats(r["loss_call"]), stats(r["gather"])
            share = stats(c / s for c, s in zip(r["loss_call"], r["step"]))
            rows.append({"ranks": world, "global_pairs": world * common["pairs"], "step_ms": step, "loss_call_ms": call, "gather_ms": gather,
                         "share": share, "queue_size": r["queue_size"]})
            log(f"  {world} rank(s): step {1e3 * step['median']:.2f} ms, loss call {1e3 * call['median']:.3f} ms "
                f"({100 * share['median']:.1f}% of the step; the gather alone {1e3 * gather['median']:.3f} ms)")
    return rows


def _large(common: dict[str, Any], log) -> list[dict[str, Any]]:
    """The queue step on N·P gaps in one process (what every rank repeats at P ranks)."""
    import torch
    from gammapo_spec import GammaPOConfig

    import gammapo_torch as T

    torch.set_num_threads(1)
    cfg = GammaPOConfig(**RECIPE)
    rows = []
    for p in common["large_ranks"]:
        n = common["pairs"] * p
        gaps = torch.randn(n, dtype=torch.float32, generator=torch.Generator().manual_seed(p)) * 3
        state = T.init_state(cfg, seed=0)
        for _ in range(3):
            _, state = T.calibrate_step(cfg, state, gaps)
        times = []
        for _ in range(common["calls"]):
            t0 = time.perf_counter()
            _, state = T.calibrate_step(cfg, state, gaps)
            times.append(time.perf_counter() - t0)
        s = stats(times)
        rows.append({"ranks": p, "global_gaps": n, "queue_step_us": {k: v * 1e6 if k != "n" else v for k, v in s.items()},
                     "gathered_bytes": 8 * n})
        log(f"  P={p}: queue step on {n} gaps {1e6 * s['median']:.0f} us, all-gather {8 * n} bytes per rank")
    return rows


def _markdown(data: dict[str, Any]) -> list[str]:
    c = data["config"]
    lines = [f"# Calibration share of a data-parallel step ({'quick' if data['quick'] else 'full'} run)", "",
             machine_line(data["machine"]), "",
             f"Released recipe (γ-SimPO, β = 10, γ0/β = 0.4, τ = 10, queue of {RECIPE['queue_size']}, "
             f"{RECIPE['sample_size']} sampled gaps), {c['pairs']} pairs per rank, embedded model under DDP, gloo, "
             f"one thread per rank; medians over {c['steps']} steps (rank 0).", "",
             "## Ranks on this machine", ""]
    rows = [[r["ranks"], r["global_pairs"], f"{1e3 * r['step_ms']['median']:.2f}",
             f"{1e3 * r['loss_call_ms']['median']:.3f}", f"{1e3 * r['gather_ms']['median']:.3f}",
             f"{100 * r['share']['median']:.1f}% ({100 * r['share']['q1']:.1f}–{100 * r['share']['q3']:.1f})"]
            for r in data["ranks"]]
    lines += markdown_table(["ranks", "global pairs", "step ms", "loss call ms (gather + queue step + loss)",
                             "gather alone ms",
                             "share of step (IQR)"], rows)
    cores = data["machine"].get("cores")
    lines += ["", f"With more ranks than cores ({cores} here) the processes share cores: the times then measure the "
              "contention, and only the share is indicative.", "",
              "## The queue step at large P (one process, measured)", ""]
    rows = [[r["ranks"], r["global_gaps"], f"{r['queue_step_us']['median']:.0f}", r["gathered_bytes"]]
            for r in data["large"]]
    lines += markdown_table(["P ranks", "global gaps N·P", "queue step µs (every rank)", "all-gather bytes per rank"],
                            rows)
    lines += ["", "Communication at P ranks (ring all-gather of 8·N·P bytes): time ≈ (P − 1)·α + 8·N·(P − 1)/B, "
              "for link latency α and bandwidth B. It is one message of a few KiB to tens of KiB, next to the "
              "gradient all-reduce of the whole model every step."]
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--worker"]:
        pairs, warmup, steps, out = argv[1:5]
        _worker(int(pairs), int(warmup), int(steps), out)
        return 0
    ap = argparse.ArgumentParser(prog="python -m benchmarks scaling", description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="tiny sizes, a few steps (a smoke run)")
    ap.add_argument("--out", default=None, help="folder for scaling.md/.json (default: the benchmarks' results folder)")
    args = ap.parse_args(argv)
    common = QUICK if args.quick else FULL
    print("scaling: ranks on this machine")
    ranks = _ranks(common, print)
    print("scaling: the queue step at large P")
    large = _large(common, print)
    data = {"quick": args.quick, "config": common, "recipe": RECIPE, "machine": machine_info(), "ranks": ranks,
            "large": large}
    for path in write_results(NAME, args.out, _markdown(data), data):
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
