"""GammaPOTrainer under a real 2-process data-parallel launch (torchrun, gloo, CPU): every rank
calibrates on the gathered gaps, so the γ-PO queues stay identical and grow by the global batch, and
β-DPO's running statistics are the global batch's on both ranks."""

import json
import os
import shutil
import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.distributed

pytest.importorskip("torch")
pytest.importorskip("trl")

#: What both launched scripts share: a quiet 2-process DDP run of the tiny model (argv: output dir, result dir).
SETUP = textwrap.dedent("""
    import json, sys, torch
    torch.set_num_threads(1)
    import datasets, transformers
    datasets.disable_progress_bars(); transformers.logging.set_verbosity_error()
    import torch.distributed as dist
    from datasets import Dataset
    from gammapo.integrations.trl import GammaPOTrainer
    from gammapo.train.run import RunConfig, dpo_config
    from gammapo.train.task import SyntheticTask
    from gammapo.train.tiny import build_model, build_tokenizer
    task = SyntheticTask(); tok = build_tokenizer(task.words)
    # use_cpu at construction: without it accelerate finds no GPU and runs each process on its own
    # (DistributedType.NO: no DDP, every rank sees the whole data set)
    args = dpo_config(RunConfig(sys.argv[1], batch_size=8, max_steps=3, logging_steps=1, save_steps=0),
                      use_cpu=True, ddp_backend="gloo")
    assert args.world_size == 2 and args.parallel_mode.name == "DISTRIBUTED", (args.world_size, args.parallel_mode)
    data = Dataset.from_list(task.pairs(96, noise=0.2, seed=1))
""")

GAMMA_SIMPO = textwrap.dedent("""
    tr = GammaPOTrainer(build_model(len(tok), seed=0), args=args, processing_class=tok, train_dataset=data,
                        loss="gamma-simpo",
                        loss_kwargs=dict(beta=2.0, gamma_beta_ratio=0.5, tau=1.0, queue_size=256, sample_size=64))
    tr.train()
    st = tr.pair_loss.state_dict()
    # one file per rank: the two ranks share torchrun's stdout, where lines longer than a pipe's atomic
    # write (4 KiB; the buffer is ~5 KiB of JSON) can interleave (seen once in CI: rank 0's line was lost)
    with open(f"{sys.argv[2]}/result_{dist.get_rank()}.json", "w") as f:
        json.dump({"rank": dist.get_rank(), "size": int(st["inner.queue_size"]),
                   "buffer": st["inner.queue_buffer"].tolist(),
                   "gamma_logged": "gamma/mean" in tr.state.log_history[-2]}, f)
""")

# an orderly end: both ranks leave together and the gloo group is torn down before interpreter exit (an
# exit with the group's threads still running aborted one rank once: "terminate called without an
# active exception", SIGABRT after it had written its result)
TEARDOWN = textwrap.dedent("""
    if dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
""")

BETA_DPO = textwrap.dedent("""
    # a reference unlike the policy: the gaps are data-dependent from the first step (with a copy of the
    # policy they start at exactly 0 on every rank, and per-rank statistics would look global)
    tr = GammaPOTrainer(build_model(len(tok), seed=0), ref_model=build_model(len(tok), seed=1), args=args,
                        processing_class=tok, train_dataset=data, loss="beta-dpo", loss_kwargs=dict(beta=0.1))
    tr.train()
    st = {k: v.item() for k, v in tr.pair_loss.state_dict().items()}
    with open(f"{sys.argv[2]}/result_{dist.get_rank()}.json", "w") as f:
        json.dump({"rank": dist.get_rank(), "state": st}, f)
""")

TORCHRUN = shutil.which("torchrun", path=os.path.dirname(sys.executable))
needs_torchrun = pytest.mark.skipif(TORCHRUN is None, reason="no torchrun")


def train_on_two_ranks(tmp_path, body: str) -> list[dict]:
    """Run ``SETUP + body`` under ``torchrun --nproc_per_node 2``; each rank's result file, in rank order."""
    script = tmp_path / "ddp_train.py"
    script.write_text(SETUP + body + TEARDOWN)
    env = dict(os.environ, OMP_NUM_THREADS="1", TQDM_DISABLE="1")
    proc = subprocess.run([TORCHRUN, "--standalone", "--nproc_per_node", "2", str(script), str(tmp_path / "o"),
                           str(tmp_path)], capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    files = sorted(tmp_path.glob("result_*.json"))
    results = sorted((json.loads(f.read_text()) for f in files), key=lambda r: r["rank"])
    assert [r["rank"] for r in results] == [0, 1], f"result files {[f.name for f in files]}"
    return results


@needs_torchrun
def test_trainer_two_ranks_keep_identical_queues(tmp_path):
    results = train_on_two_ranks(tmp_path, GAMMA_SIMPO)
    assert results[0]["size"] == 8 + 3 * 16, "queue = 8 warm-up draws + 3 steps x (8 pairs x 2 ranks)"
    assert results[0]["buffer"] == results[1]["buffer"], "the ranks' γ-PO queues differ"
    assert all(r["gamma_logged"] for r in results)


@needs_torchrun
def test_trainer_two_ranks_keep_identical_beta_dpo_statistics(tmp_path):
    """Each rank sees different pairs; with the gaps gathered, both hold the global running mean/std."""
    a, b = (r["state"] for r in train_on_two_ranks(tmp_path, BETA_DPO))
    assert a == b, f"the ranks' β-DPO states differ: {a} vs {b}"
    assert a["step"] == 3 and a["gap_std"] > 0.0, a


REFUSED = textwrap.dedent("""
    import sys, os
    import datasets, transformers
    datasets.disable_progress_bars(); transformers.logging.set_verbosity_error()
    import torch.distributed as dist
    from datasets import Dataset
    from gammapo.integrations.trl import GammaPOTrainer
    from gammapo.train.run import RunConfig, dpo_config
    from gammapo.train.task import SyntheticTask
    from gammapo.train.tiny import build_model, build_tokenizer
    task = SyntheticTask(); tok = build_tokenizer(task.words)
    # no-use-cpu: a user's own TrainingArguments on a CPU machine (gammapo's dpo_config would set use_cpu)
    extra = dict(use_cpu=True, ddp_backend="gloo", fsdp="full_shard") if sys.argv[3] == "fsdp" else dict(use_cpu=False, ddp_backend=None)
    args = dpo_config(RunConfig(sys.argv[1], batch_size=8, max_steps=1), **extra)
    try:
        GammaPOTrainer(build_model(len(tok)), args=args, processing_class=tok, loss="gamma-simpo",
                       train_dataset=Dataset.from_list(task.pairs(16, noise=0.0, seed=1)))
        message = "accepted"
    except ValueError as e:
        message = str(e)
    with open(f"{sys.argv[2]}/result_{os.environ['RANK']}.json", "w") as f:
        f.write(__import__("json").dumps({"rank": int(os.environ["RANK"]), "message": message}))
""")


@needs_torchrun
@pytest.mark.parametrize("case", ["fsdp", "no-use-cpu"])
def test_trainer_refuses_a_launch_accelerate_would_change(tmp_path, case):
    """fsdp on CPU (accelerate runs DDP instead) and torchrun without use_cpu (each rank alone) raise."""
    script = tmp_path / "refused.py"
    script.write_text(REFUSED)
    env = dict(os.environ, OMP_NUM_THREADS="1", TQDM_DISABLE="1")
    proc = subprocess.run([TORCHRUN, "--standalone", "--nproc_per_node", "2", str(script), str(tmp_path / "o"),
                           str(tmp_path), case], capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    messages = [json.loads(f.read_text())["message"] for f in sorted(tmp_path.glob("result_*.json"))]
    assert len(messages) == 2
    expected = "fsdp=" if case == "fsdp" else "use_cpu=True"
    assert all(expected in m for m in messages), messages
