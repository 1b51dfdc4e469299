r"""The calibration's share of a data-parallel training step as the number of ranks grows (CPU, gloo).

Run: ``python -m benchmarks scaling`` (5 to 15 minutes on a shared 2-core machine) or ``--quick``. Writes
``scaling.{md,json}`` into the output folder.

γ-PO adds one collective to a data-parallel step: the all-gather of every rank's N detached gaps
(N·P values for P ranks, in the gaps' dtype: float32 for float32 log-probs, 4 bytes a gap), after
which every rank runs the same queue step on the global gaps. Two measurements:

1. **Ranks on this machine** (P = 1, 2, 4 under ``torchrun``, gloo, one thread per rank; repeated in
   rounds, the order of P reversed every other round): a training step of the embedded task's model
   (:func:`gammapo.train.tiny.build_model`, a 2-layer Llama) under ``DistributedDataParallel`` with N
   pairs per rank and the released recipe (γ-SimPO, β = 10, γ0/β = 0.4, τ = 10, queue mode, 256
   sampled gaps). In every step, rank 0 times the whole step (forward, :func:`gammapo_torch.gamma_po_loss`,
   backward with DDP's gradient all-reduce, AdamW) and the calibration of that step once more on its
   own, right after it: the all-gather of the step's gaps plus the queue step on the gathered gaps,
   from the state the step started from (the calls the loss makes, with the default value checks:
   a second small all-gather of the batch sizes). The ratio calibration /
   step is taken per step; the tables give its median over all steps of all rounds. The ranks meet at
   a barrier before the loss (not counted) so that skew between them is not counted as gather time;
   an empty barrier after the calibration is timed too (the latency of one collective here).
   On a 2-core machine P = 4 oversubscribes the cores (4 processes on 2 cores).
2. **The queue step at large P, one process**: the queue step on N·P global gaps for P up to 512
   (the compute every rank repeats), measured directly; its cost per gap is fitted as
   t ≈ a + b·max(S, N·P) over the sizes above the sample size S (the calibration set holds
   max(S, N·P) gaps once the queue is full).
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
FULL = {"ranks": [1, 2, 4], "rounds": 3, "pairs": 8, "warmup": 5, "steps": 60,
        "large_ranks": [1, 8, 32, 64, 128, 256, 512], "calls": 40}
QUICK = {"ranks": [1, 2], "rounds": 1, "pairs": 4, "warmup": 1, "steps": 4, "large_ranks": [1, 64, 128], "calls": 3}
RECIPE = dict(loss="gamma-simpo", beta=10.0, gamma_beta_ratio=0.4, tau=10.0, calibration="queue",
              queue_size=2048, sample_size=256)


def _worker(pairs: int, warmup: int, steps: int, dest: str) -> None:
    """One rank: DDP steps of the embedded model; the step and, after it, its calibration timed."""
    import torch
    import torch.distributed as dist
    from gammapo_spec import GammaPOConfig

    import gammapo_torch as T
    from gammapo.train.tiny import build_model
    from gammapo_torch._distributed import gather_gaps
    from gammapo_torch._state import queue_step

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
    step_t, calib_t, gather_t, barrier_t, share = [], [], [], [], []
    itemsize = 0
    for i in range(warmup + steps):
        dist.barrier()
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        logits = model(input_ids=ids).logits[:, :-1]
        tok = logits.log_softmax(-1).gather(-1, labels.masked_fill(~mask, 0)[..., None]).squeeze(-1)
        logps = (tok * mask).sum(-1)
        wait = time.perf_counter()
        dist.barrier()  # the ranks enter the loss together: the loss call is the gather and the work, not skew
        wait = time.perf_counter() - wait
        inputs = dict(chosen_logps=logps[:pairs], rejected_logps=logps[pairs:],
                      chosen_lengths=lengths[:pairs], rejected_lengths=lengths[pairs:])
        before = state
        out, state = T.gamma_po_loss(cfg, state, **inputs)
        out.loss.backward()
        opt.step()
        t1 = time.perf_counter()
        # the step's calibration once more, alone: the gaps' all-gather and the queue step from the same state
        u_w, u_l = T.implicit_rewards(cfg, **{k: v.detach() for k, v in inputs.items()})
        gaps = u_w - u_l
        dist.barrier()
        t2 = time.perf_counter()
        gathered = gather_gaps(gaps, check_sizes=cfg.check_values)  # as the loss does (default: sizes checked)
        t3 = time.perf_counter()
        queue_step(cfg, before, gathered)
        t4 = time.perf_counter()
        dist.barrier()  # an empty collective: the latency every collective pays on this machine
        t5 = time.perf_counter()
        itemsize = gathered.element_size()
        if i >= warmup:
            step_t.append(t1 - t0 - wait)
            calib_t.append(t4 - t2)
            gather_t.append(t3 - t2)
            barrier_t.append(t5 - t4)
            share.append((t4 - t2) / (t1 - t0 - wait))
    if rank == 0:
        with open(dest + ".part", "w") as f:
            json.dump({"world": dist.get_world_size(), "step": step_t, "calibration": calib_t, "gather": gather_t,
                       "barrier": barrier_t, "share": share, "gap_bytes": itemsize, "queue_size": int(state.size)}, f)
        os.replace(dest + ".part", dest)
    dist.barrier()
    sys.stdout.flush()
    # no destroy_process_group: on this loaded machine gloo's teardown once hung for minutes after the
    # other rank had exited; the results are written and every rank has passed the barrier
    os._exit(0)


def _launch(common: dict[str, Any], world: int, out: str) -> dict[str, Any]:
    torchrun = shutil.which("torchrun", path=os.path.dirname(sys.executable)) or shutil.which("torchrun")
    if torchrun is None:
        raise SystemExit("scaling: torchrun is not on PATH (it comes with torch)")
    cmd = [torchrun, "--standalone", "--nproc_per_node", str(world), "-m", "benchmarks.bench_scaling",
           "--worker", str(common["pairs"]), str(common["warmup"]), str(common["steps"]), out]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ, OMP_NUM_THREADS="1"), timeout=900)
    if proc.returncode != 0:
        raise SystemExit(f"scaling: the {world}-rank run failed:\n{proc.stderr[-2000:]}")
    with open(out) as f:
        return json.load(f)


def _ms(values) -> dict[str, float]:
    return {k: (v * 1e3 if k != "n" else v) for k, v in stats(values).items()}


def _ranks(common: dict[str, Any], log) -> list[dict[str, Any]]:
    runs: dict[int, list[dict[str, Any]]] = {w: [] for w in common["ranks"]}
    with tempfile.TemporaryDirectory() as tmp:
        for rnd in range(common["rounds"]):
            order = common["ranks"] if rnd % 2 == 0 else common["ranks"][::-1]
            for world in order:
                r = _launch(common, world, os.path.join(tmp, f"w{world}-r{rnd}.json"))
                runs[world].append(r)
                log(f"  round {rnd + 1}, {world} rank(s): step {1e3 * stats(r['step'])['median']:.2f} ms, "
                    f"calibration {1e3 * stats(r['calibration'])['median']:.3f} ms "
                    f"({100 * stats(r['share'])['median']:.2f}% of the step)")
    rows = []
    for world, rs in runs.items():
        pooled = {k: [v for r in rs for v in r[k]] for k in ("step", "calibration", "gather", "barrier", "share")}
        share = stats(pooled["share"])
        rows.append({"ranks": world, "global_pairs": world * common["pairs"], "step_ms": _ms(pooled["step"]),
                     "calibration_ms": _ms(pooled["calibration"]), "gather_ms": _ms(pooled["gather"]),
                     "barrier_ms": _ms(pooled["barrier"]),
                     "share": share, "share_per_round": [stats(r["share"])["median"] for r in rs],
                     "gathered_bytes": rs[0]["gap_bytes"] * world * common["pairs"], "gap_bytes": rs[0]["gap_bytes"],
                     "queue_size": rs[0]["queue_size"]})
        log(f"  {world} rank(s), all rounds: calibration {100 * share['median']:.2f}% of the step "
            f"(IQR {100 * share['q1']:.2f}–{100 * share['q3']:.2f}%)")
    return rows


def _fit(points: list[tuple[int, float]]) -> dict[str, float]:
    """Least-squares ``t = a + b·n`` (seconds)."""
    n = len(points)
    mx = sum(x for x, _ in points) / n
    my = sum(y for _, y in points) / n
    b = sum((x - mx) * (y - my) for x, y in points) / sum((x - mx) ** 2 for x, _ in points)
    return {"fixed_us": 1e6 * (my - b * mx), "per_gap_ns": 1e9 * b, "points": n}


def _large(common: dict[str, Any], log) -> dict[str, Any]:
    """The queue step on N·P gaps in one process (what every rank repeats at P ranks), from a full queue."""
    import torch
    from gammapo_spec import GammaPOConfig

    import gammapo_torch as T
    from gammapo_torch._state import queue_step

    torch.set_num_threads(1)
    cfg = GammaPOConfig(**RECIPE)
    rows = []
    for p in common["large_ranks"]:
        n = common["pairs"] * p
        gen = torch.Generator().manual_seed(p)
        state = T.init_state(cfg, seed=0)
        _, state = T.calibrate_step(cfg, state, torch.randn(RECIPE["queue_size"], generator=gen) * 3)  # a full queue
        gaps = torch.randn(n, dtype=torch.float32, generator=gen) * 3
        for _ in range(3):
            _, state = queue_step(cfg, state, gaps)
        times = []
        for _ in range(common["calls"]):
            t0 = time.perf_counter()
            _, state = queue_step(cfg, state, gaps)
            times.append(time.perf_counter() - t0)
        s = stats(times)
        rows.append({"ranks": p, "global_gaps": n, "calibration_set": max(RECIPE["sample_size"], n),
                     "queue_step_us": {k: v * 1e6 if k != "n" else v for k, v in s.items()},
                     "gathered_bytes": gaps.element_size() * n})
        log(f"  P={p}: queue step on {n} gaps {1e6 * s['median']:.0f} us, all-gather {gaps.element_size() * n} bytes")
    above = [(r["calibration_set"], r["queue_step_us"]["median"] * 1e-6) for r in rows
             if r["global_gaps"] >= RECIPE["sample_size"]]
    fit = _fit(above) if len(above) >= 2 else None
    if fit:
        log(f"  fit over {fit['points']} sizes ≥ S: {fit['fixed_us']:.1f} us + {fit['per_gap_ns']:.1f} ns per gap")
    return {"rows": rows, "fit": fit}


def _iqr(s: dict[str, float], scale: float = 1.0, fmt: str = ".2f") -> str:
    return f"{scale * s['median']:{fmt}} ({scale * s['q1']:{fmt}}–{scale * s['q3']:{fmt}})"


def _at_scale(data: dict[str, Any]) -> list[str]:
    """The cost at 64 and 512 ranks: measured compute, message size, and the communication formula."""
    n, s_size = data["config"]["pairs"], RECIPE["sample_size"]
    fit, rows = data["large"]["fit"], {r["ranks"]: r for r in data["large"]["rows"]}
    gap_bytes = data["ranks"][0]["gap_bytes"]
    lines = ["", "### At 64 and 512 ranks", "",
             f"Per step, every rank (N = {n} pairs per rank, {gap_bytes}-byte gaps):", "",
             f"- **message**: the all-gather collects N·P gaps, {gap_bytes}·N·P bytes, of which each rank receives "
             f"(P − 1)·{gap_bytes}·N; a ring all-gather takes P − 1 steps of {gap_bytes}·N bytes: "
             "t_gather ≈ (P − 1)·(α + " f"{gap_bytes}·N/BW) for the latency α of one message and the link "
             "bandwidth BW (assumption: the ring algorithm; a log-depth algorithm has ⌈log₂ P⌉ latency terms instead "
             "of P − 1). The gradient all-reduce of the same step pays 2·(P − 1)·α in a ring too;",
             f"- **compute**: the queue step on max(S, N·P) gaps (S = {s_size}), the same on every rank: "
             + (f"t_calib ≈ {fit['fixed_us']:.0f} µs + {fit['per_gap_ns']:.0f} ns × max(S, N·P) (fit over the "
                "measured sizes ≥ S above)." if fit else "measured above."), ""]
    table = []
    for p in (64, 512):
        r = rows.get(p)
        measured = f"{r['queue_step_us']['median']:.0f}" if r else "not measured"
        formula = f"{fit['fixed_us'] + 1e-3 * fit['per_gap_ns'] * max(s_size, n * p):.0f}" if fit else "–"
        table.append([p, n * p, gap_bytes * n * p, (p - 1) * gap_bytes * n, f"{p - 1}·α + {(p - 1) * gap_bytes * n} bytes / BW",
                      measured, formula])
    lines += markdown_table(["P", "gaps N·P", "gathered bytes", "bytes received per rank", "t_gather (ring)",
                             "queue step µs (measured)", "queue step µs (fit)"], table)
    return lines


def _markdown(data: dict[str, Any]) -> list[str]:
    c, cores = data["config"], data["machine"].get("cores")
    lines = [f"# Calibration share of a data-parallel step ({'quick' if data['quick'] else 'full'} run)", "",
             machine_line(data["machine"]), "",
             f"Released recipe (γ-SimPO, β = 10, γ0/β = 0.4, τ = 10, queue of {RECIPE['queue_size']}, "
             f"{RECIPE['sample_size']} sampled gaps), {c['pairs']} pairs per rank, the embedded model "
             "(`gammapo.train.tiny.build_model`) under DDP, gloo, one thread per rank. "
             f"{c['rounds']} rounds of {c['steps']} timed steps per rank count (after {c['warmup']} warm-up steps), "
             "rank 0's times; medians (IQR) over all steps of all rounds. **Share** = (all-gather of the step's gaps "
             "(with the check of equal batch sizes, on by default) + queue step on them) / the whole step, measured in the "
             "same step. Load average during the run: "
             f"{data['load'][0]:.1f} at the start, {data['load'][1]:.1f} at the end.", "",
             "### Ranks on this machine", ""]
    rows = [[r["ranks"], r["global_pairs"], _iqr(r["step_ms"]), _iqr(r["calibration_ms"], fmt=".3f"),
             _iqr(r["gather_ms"], fmt=".3f"), _iqr(r["barrier_ms"], fmt=".3f"), f"**{_iqr(r['share'], 100)}%**",
             ", ".join(f"{100 * v:.2f}%" for v in r["share_per_round"]), r["gathered_bytes"]]
            for r in data["ranks"]]
    lines += markdown_table(["ranks", "global pairs", "step ms", "calibration ms (gather + queue step)",
                             "gather alone ms", "empty barrier ms", "calibration / step", "per round", "gathered bytes"], rows)
    lines += ["", f"With more ranks than cores ({cores} here, shared with other jobs) the processes take turns on "
              "the cores: at 4 ranks the absolute times measure that contention (a rank waiting in the gather or the "
              "gradient all-reduce for one that is not running), and only the share measured in the same step is "
              "indicative. With the default value checks the gather is two collectives (the batch sizes, then the "
              "gaps) of a few dozen bytes: its time is their latency between processes that wait for a core "
              "(compare the empty barrier, timed after it), not bandwidth.", "",
              "### The queue step at large P (one process, measured)", ""]
    rows = [[r["ranks"], r["global_gaps"], r["calibration_set"], _iqr(r["queue_step_us"], fmt=".0f"),
             r["gathered_bytes"]] for r in data["large"]["rows"]]
    lines += markdown_table(["P ranks", "global gaps N·P", "calibration set max(S, N·P)",
                             "queue step µs (every rank)", "all-gathered bytes"], rows)
    return lines + _at_scale(data)


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
    load = [os.getloadavg()[0]]
    print("scaling: the queue step at large P")
    large = _large(common, print)
    print("scaling: ranks on this machine")
    ranks = _ranks(common, print)
    load.append(os.getloadavg()[0])
    data = {"quick": args.quick, "config": common, "recipe": RECIPE, "machine": machine_info(), "ranks": ranks,
            "large": large, "load": load}
    for path in write_results(NAME, args.out, _markdown(data), data):
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
