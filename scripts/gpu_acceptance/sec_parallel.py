"""GammaPOTrainer under accelerate's FSDP2 and under DeepSpeed ZeRO-2/ZeRO-3, one process on one GPU.

Each arm is a short training run of :mod:`scripts.gpu_acceptance._parallel_worker` (γ-SimPO, queue
calibration, the embedded task's tiny Llama, 3 steps of 8 pairs, a checkpoint at the end) in its own
process, started by ``torch.distributed.run`` with one process, side by side with the reference: the same
run without any wrapper. An arm passes when accelerate ran the parallelism asked for (the trainer itself
refuses a launch that does not), the parameters are sharded as asked (FSDP2: DTensor parameters; ZeRO-3:
partitioned parameters), every step's loss and the loss state after training equal the reference's (to
float32 rounding of another reduction order) and the checkpoint is complete (the trainer's record and
its loss-state file beside DeepSpeed's or FSDP's own files).

What one process proves: the trainer's whole path runs under each wrapper (accelerate's preparation,
FSDP2's DTensor parameters and its all-gather/reduce-scatter hooks, ZeRO-3's partitioned parameters
gathered in the forward, DeepSpeed's optimizer and its checkpoint), and the loss state, a module buffer
outside the wrapped model, is trained and saved. What it does not: the gather of the gaps across ranks
(with one rank it is the identity) and the sharding across ranks; those run on CPU with two gloo ranks in
``tests/train/test_train_fsdp.py`` (FSDP2 by hand) and ``tests/train/test_train_deepspeed.py`` (ZeRO on
DeepSpeed's CPU accelerator). Without CUDA, or without the package, an arm is skipped with the reason;
the reference still runs (it proves the worker on a CPU).
"""

from __future__ import annotations

import importlib.util
import json
import os
import pathlib
import subprocess
import sys
import tempfile

from ._child import NO_CUDA, cuda

ARMS = {"fsdp2": "accelerate FSDP2 (full_shard, auto_wrap LlamaDecoderLayer), 1 process",
        "zero2": "DeepSpeed ZeRO-2 through accelerate, 1 process",
        "zero3": "DeepSpeed ZeRO-3 through accelerate, 1 process (parameters partitioned)"}
LOSS_ATOL, STATE_ATOL = 1e-4, 1e-3
WORKER = "scripts.gpu_acceptance._parallel_worker"


def _start(arm: str, work: pathlib.Path) -> tuple[subprocess.Popen, pathlib.Path]:
    out = work / f"{arm}.json"
    launcher = [] if arm == "plain" else ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "1"]
    cmd = [sys.executable, *launcher, "-m", WORKER, arm, str(out)]
    log = open(work / f"{arm}.log", "w")  # noqa: SIM115 - closed by the caller after the process ends
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "TQDM_DISABLE": "1"})
    proc.log = log  # type: ignore[attr-defined]
    return proc, out


def _finish(proc: subprocess.Popen, out: pathlib.Path, timeout: float) -> dict:
    try:
        proc.wait(timeout=max(timeout, 1.0))
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    proc.log.close()  # type: ignore[attr-defined]
    tail = pathlib.Path(proc.log.name).read_text(errors="replace")[-1500:]  # type: ignore[attr-defined]
    if proc.returncode != 0 or not out.is_file():
        raise RuntimeError(f"the run exited with {proc.returncode}: {tail}")
    return json.loads(out.read_text())


def _max_diff(a: dict, b: dict) -> float:
    if a.keys() != b.keys():
        return float("inf")
    return max((abs(x - y) for k in a for x, y in zip(a[k], b[k], strict=True)), default=0.0)


def compare(arm: str, got: dict, ref: dict) -> tuple[str, str, list]:
    """``(status, detail, table row)`` of one arm against the reference run."""
    wanted = "FSDP" if arm == "fsdp2" else "DEEPSPEED"
    dloss = max((abs(x - y) for x, y in zip(got["losses"], ref["losses"], strict=True)), default=float("inf")) \
        if len(got["losses"]) == len(ref["losses"]) else float("inf")
    dstate = _max_diff(got["state"], ref["state"])
    checks = {f"accelerate ran {wanted}": got["distributed_type"] == wanted,
              "parameters sharded as asked": bool(got["sharding"].get("sharded")),
              f"losses within {LOSS_ATOL:g} of the reference": dloss <= LOSS_ATOL,
              f"loss state within {STATE_ATOL:g} of the reference": dstate <= STATE_ATOL,
              "checkpoint complete (record and loss state)": bool(got["checkpoint"]["complete"])}
    failed = [k for k, ok in checks.items() if not ok]
    detail = (f"{got['distributed_type']}, {got['num_processes']} process on {got['device']}; sharding "
              f"{got['sharding']}; max |Δloss| {dloss:.2e}, max |Δstate| {dstate:.2e}; checkpoint "
              f"{got['checkpoint']['incomplete'] or 'complete'}") + (f"; FAILED: {failed}" if failed else "")
    row = [arm, got["distributed_type"], "yes" if got["sharding"].get("sharded") else "NO",
           ", ".join(f"{v:.5f}" for v in got["losses"]), f"{dloss:.1e}", f"{dstate:.1e}",
           "yes" if got["checkpoint"]["complete"] else "NO", got["seconds"]]
    return ("fail" if failed else "ok"), detail, row


def run(rec, dry: bool) -> None:
    on_cuda = cuda()
    reasons = {}
    for arm in ARMS:
        if not on_cuda:
            reasons[arm] = f"{NO_CUDA} (accelerate runs FSDP and DeepSpeed only on accelerators)"
        elif arm.startswith("zero") and importlib.util.find_spec("deepspeed") is None:
            reasons[arm] = "skipped: deepspeed is not installed (its wheel is not among the carried ones)"
    work = pathlib.Path(tempfile.mkdtemp(prefix="gammapo_par_"))
    procs = {arm: _start(arm, work) for arm in ["plain", *ARMS] if arm not in reasons}  # side by side
    ref = None
    with rec.part("reference: the same run without a wrapper, one process") as p:
        ref = _finish(*procs.pop("plain"), timeout=rec.left(90.0) - 5.0)
        p["detail"] = f"{ref['distributed_type']} on {ref['device']}, losses {ref['losses']}, {ref['seconds']} s"
        rec.measure("parallel.plain.losses", ref["losses"])
    rows = []
    for arm, name in ARMS.items():
        if arm in reasons:
            rec.skip(name, reasons[arm])
            continue
        with rec.part(name) as p:
            got = _finish(*procs.pop(arm), timeout=rec.left(90.0) - 5.0)
            if ref is None:
                raise RuntimeError("no reference run to compare with (see the part above)")
            p["status"], p["detail"], row = compare(arm, got, ref)
            rows.append(row)
            rec.measure(f"parallel.{arm}.ok", p["status"] == "ok")
            rec.measure(f"parallel.{arm}.sharding", got["sharding"])
    for proc, _ in procs.values():  # a part that raised leaves its process: end it
        proc.kill()
    if rows:
        rec.table("GammaPOTrainer under FSDP2 and DeepSpeed, one process", ["arm", "distributed type", "sharded",
                  "losses per step", "max |Δloss|", "max |Δstate|", "checkpoint complete", "s"], rows)
