r"""Training-step overhead of γ-SimPO over SimPO on a tiny causal LM (CPU).

Run: ``python -m benchmarks step_overhead`` (about a minute on 2 cores) or ``--quick``. Writes
``benchmarks/results/step_overhead.{md,json}``.

A step is what a preference trainer does per batch: forward of the chosen and rejected sequences
through the model (one concatenated batch), per-sequence log-probs of the response tokens, the loss
(:func:`gammapo_torch.gamma_po_loss`), ``backward()`` and an AdamW update. The two arms differ only
in the loss config: ``simpo`` (constant margin γ0) vs ``gamma-simpo`` (queue calibration of the
margins over 256 gaps, the released recipe β = 10, γ0/β = 0.4, τ = 10; the queue advances every
step). The overhead is therefore exactly the calibration plus the queue update.

Models: ``embedded`` — the embedded task's model, :func:`gammapo.train.tiny.build_model` (a 2-layer
Llama, hidden 64; skipped if ``gammapo.train`` or ``transformers`` is missing) at the task's shapes;
``tiny_lm`` — this module's own larger tiny LM (token + position embeddings, pre-norm
``TransformerEncoderLayer`` blocks with a causal mask, tied LM head) at T = 128; ``llama_58m`` — a model
of realistic shape, ``LlamaForCausalLM`` built from a ``LlamaConfig`` (58M parameters, vocabulary 32000,
hidden 512, 8 layers) at T = 256, 4 pairs, 4 timed pairs (a step takes seconds), eager only.
Besides the step times, the CPU time of the loss calls alone is recorded: its γ-SimPO − SimPO
difference is the overhead where it arises, free of the model's step-to-step noise.

Method: paired, interleaved runs: for each of ``pairs`` repetitions both arms take one step on the
same batch, in alternating order (ABBA), each timed by the process's CPU time (``time.process_time``,
torch limited to one thread so that CPU time is the step's work even on a shared, busy machine) and
by wall time (``time.perf_counter``, reported alongside); the overhead is the
median over pairs of ``t_gamma / t_simpo − 1`` (with its interquartile range); medians of each arm
are reported too. A few warm-up steps of each arm run first.

Each model is measured three times: with the loss eager (the default CPU path: the calibration step is
one call of the C++ kernel of :mod:`gammapo_torch._cpu_calibration`), eager with that kernel turned off
(``GAMMAPO_DISABLE_CPU_KERNEL=1``: the op-by-op tensor path, for comparison), and with the loss function
(of both arms; the model stays eager) compiled by ``torch.compile`` — compilation happens in the
untimed warm-up (the full run needs a C++ compiler for inductor on CPU; ``--quick`` skips the
compiled variant).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Any, Sequence

from benchmarks._perf_common import machine_info, machine_line, markdown_table, stats, write_results

NAME = "step_overhead"
#: The embedded task's model (gammapo.train.tiny.build_model: 2-layer Llama, hidden 64) at the
#: embedded task's shapes (1 prompt word + 5 response words + EOS, 32 pairs per step), and a larger
#: tiny LM of this module (T = 128) to show how the fixed cost of calibration shrinks relative to the step.
FULL = {
    "models": {
        "embedded": {"vocab": 23, "seq": 8, "prompt": 2, "pairs": 32},
        "tiny_lm": {"vocab": 1024, "d_model": 128, "layers": 2, "heads": 4, "seq": 128, "prompt": 32, "pairs": 4},
        # a model of realistic shape (a small Llama: 58M parameters, Llama-2's vocabulary) at seq 256, 4 pairs;
        # a step takes seconds, so few pairs and no compiled variant
        "llama_58m": {"vocab": 32000, "hidden": 512, "intermediate": 1408, "layers": 8, "heads": 8, "seq": 256,
                      "prompt": 32, "pairs": 4, "pairs_timed": 4, "warmup": 1, "compile": False},
    },
    "warmup": 5,
    "pairs_timed": 100,
    "threads": 1,
}
QUICK = {
    "models": {"tiny_lm": {"vocab": 128, "d_model": 32, "layers": 1, "heads": 2, "seq": 16, "prompt": 4, "pairs": 2}},
    "warmup": 2,
    "pairs_timed": 6,
    "threads": 1,
    "compile": False,
}


def _own_model(sizes: dict[str, Any]):
    import torch
    from torch import nn

    class TinyCausalLM(nn.Module):
        """Embeddings, causal pre-norm transformer blocks, tied LM head: ``[B, T]`` ids → ``[B, T, V]`` logits."""

        def __init__(self, vocab: int, d_model: int, layers: int, heads: int, seq: int):
            super().__init__()
            self.tok = nn.Embedding(vocab, d_model)
            self.pos = nn.Embedding(seq, d_model)
            block = nn.TransformerEncoderLayer(d_model, heads, 4 * d_model, dropout=0.0, batch_first=True, norm_first=True)
            self.blocks = nn.TransformerEncoder(block, layers, enable_nested_tensor=False)
            self.norm = nn.LayerNorm(d_model)

        def forward(self, ids: torch.Tensor) -> torch.Tensor:
            t = ids.shape[1]
            x = self.tok(ids) + self.pos(torch.arange(t, device=ids.device))
            mask = nn.Transformer.generate_square_subsequent_mask(t, device=ids.device)
            x = self.norm(self.blocks(x, mask=mask, is_causal=True))
            return x @ self.tok.weight.t()

    torch.manual_seed(0)
    model = TinyCausalLM(sizes["vocab"], sizes["d_model"], sizes["layers"], sizes["heads"], sizes["seq"])
    return model, model, "this module's TinyCausalLM"


def _llama(sizes: dict[str, Any]):
    """A ``LlamaForCausalLM`` built from its config (random weights; nothing downloaded)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=sizes["vocab"], hidden_size=sizes["hidden"], intermediate_size=sizes["intermediate"],
                         num_hidden_layers=sizes["layers"], num_attention_heads=sizes["heads"],
                         num_key_value_heads=sizes["heads"], max_position_embeddings=2 * sizes["seq"],
                         tie_word_embeddings=False)
    model = LlamaForCausalLM(config)
    return model, (lambda ids: model(input_ids=ids).logits), (
        f"LlamaForCausalLM from LlamaConfig (hidden {sizes['hidden']}, {sizes['layers']} layers)")


def _model(kind: str, sizes: dict[str, Any]):
    """``(module, forward: ids -> logits, description)``; ``None`` when the embedded model is unavailable."""
    if kind == "tiny_lm":
        return _own_model(sizes)
    if kind.startswith("llama"):
        return _llama(sizes)
    try:
        from gammapo.train.tiny import build_model
    except ImportError:
        return None
    model = build_model(sizes["vocab"], seed=0)
    return model, (lambda ids: model(input_ids=ids).logits), "gammapo.train.tiny.build_model (LlamaForCausalLM)"


def _batch(sizes: dict[str, Any]):
    import torch

    g = torch.Generator().manual_seed(1)
    b, t, v = sizes["pairs"], sizes["seq"], sizes["vocab"]
    ids = torch.randint(0, v, (2 * b, t), generator=g)
    labels = ids[:, 1:].clone()
    labels[:, : sizes["prompt"] - 1] = -100  # prompt tokens are not scored
    for i in range(2 * b):
        pad = int(torch.randint(0, max(t // 8, 1), (1,), generator=g))
        if pad:
            labels[i, -pad:] = -100  # right padding of varying length
    return ids, labels


def _make_step(forward, optimizer, config, batch, compiled: bool):
    """One training step of ``config``'s loss; with ``compiled`` the loss (not the model) goes through ``torch.compile``."""
    import torch

    import gammapo_torch as T

    ids, labels = batch
    b = ids.shape[0] // 2
    mask = labels != -100
    lengths = mask.sum(1)
    state = [T.init_state(config, seed=0)]
    loss_cpu: list[float] = []  # CPU time of each loss call (the calibration and queue step are inside it)

    def loss_fn(st, logps):
        out, new_state = T.gamma_po_loss(
            config, st, chosen_logps=logps[:b], rejected_logps=logps[b:],
            chosen_lengths=lengths[:b], rejected_lengths=lengths[b:],
        )
        return out.loss, new_state

    loss_fn = torch.compile(loss_fn) if compiled else loss_fn

    def step() -> float:
        optimizer.zero_grad(set_to_none=True)
        logits = forward(ids)[:, :-1]
        tok = logits.log_softmax(-1).gather(-1, labels.masked_fill(~mask, 0)[..., None]).squeeze(-1)
        logps = (tok * mask).sum(-1)
        start = time.process_time()
        loss, state[0] = loss_fn(state[0], logps)
        loss_cpu.append(time.process_time() - start)
        loss.backward()
        optimizer.step()
        return float(loss.detach())

    step.loss_cpu = loss_cpu
    return step


def _paired(arms: dict[str, Any], pairs: int) -> dict[str, Any]:
    """ABBA-paired timings of the ``simpo`` and ``gamma-simpo`` arms: CPU and wall time per step."""
    times: dict[str, list[float]] = {k: [] for k in arms}  # CPU time of the process
    walls: dict[str, list[float]] = {k: [] for k in arms}  # wall time
    for i in range(pairs):
        order = ["simpo", "gamma-simpo"] if i % 2 == 0 else ["gamma-simpo", "simpo"]
        for name in order:
            cpu, wall = time.process_time(), time.perf_counter()
            arms[name]()
            times[name].append(time.process_time() - cpu)
            walls[name].append(time.perf_counter() - wall)
    ratios = [g / s - 1.0 for g, s in zip(times["gamma-simpo"], times["simpo"])]
    loss_g, loss_s = (arms[k].loss_cpu[-pairs:] for k in ("gamma-simpo", "simpo"))
    wall_ratios = [g / s - 1.0 for g, s in zip(walls["gamma-simpo"], walls["simpo"])]
    return {
        "times_s": times,
        "wall_s": walls,
        "simpo_s": stats(times["simpo"]),
        "gamma_simpo_s": stats(times["gamma-simpo"]),
        "overhead": stats(ratios),
        "wall_overhead": stats(wall_ratios),
        "extra_ms": stats(1e3 * (g - s) for g, s in zip(times["gamma-simpo"], times["simpo"])),
        "overhead_of_medians": stats(times["gamma-simpo"])["median"] / stats(times["simpo"])["median"] - 1.0,
        # the loss calls alone: their extra CPU time over the SimPO step (far less noisy than the step's)
        "loss_extra_ms": stats(1e3 * (g - s) for g, s in zip(loss_g, loss_s)),
        "loss_overhead": stats((g - s) / t for g, s, t in zip(loss_g, loss_s, times["simpo"])),
    }


#: The environment switch of the C++ calibration kernel (gammapo_torch._cpu_calibration).
KERNEL_SWITCH = "GAMMAPO_DISABLE_CPU_KERNEL"


def _variant(r: dict[str, Any]) -> str:
    return "compiled" if r["compiled_loss"] else ("eager" if r.get("cpu_kernel", True) else "eager, torch ops")


def measure(kind: str, sizes: dict[str, Any], common: dict[str, Any], log=print) -> list[dict[str, Any]]:
    """Paired step timings on one model, eager loss and (unless quick) compiled loss; ``[]`` if unavailable."""
    import torch

    from gammapo_spec import GammaPOConfig

    torch.set_num_threads(common["threads"])
    built = _model(kind, sizes)
    if built is None:
        log(f"  {kind}: model not available, skipped")
        return []
    model, forward, model_name = built
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    batch = _batch(sizes)
    results = []
    common = {**common, **{k: sizes[k] for k in ("pairs_timed", "warmup", "compile") if k in sizes}}
    variants = [(False, True), (False, False)] + ([(True, True)] if common.get("compile", True) else [])
    for compiled, kernel in variants:
        previous = os.environ.get(KERNEL_SWITCH)
        if not kernel:
            os.environ[KERNEL_SWITCH] = "1"
        try:
            arms = {name: _make_step(forward, optimizer, GammaPOConfig(loss=name), batch, compiled) for name in ("simpo", "gamma-simpo")}
            start = time.perf_counter()
            for _ in range(common["warmup"]):
                for step in arms.values():
                    step()
            warm = time.perf_counter() - start
            r = _paired(arms, common["pairs_timed"])
        finally:
            if previous is None:
                os.environ.pop(KERNEL_SWITCH, None)
            else:
                os.environ[KERNEL_SWITCH] = previous
        r |= {
            "kind": kind, "model": model_name, "sizes": sizes, "compiled_loss": compiled, "cpu_kernel": kernel,
            "warmup_s": warm, "parameters": sum(p.numel() for p in model.parameters()),
        }
        o = r["overhead"]
        log(f"  {kind} ({_variant(r)} loss): simpo {1e3 * r['simpo_s']['median']:.2f} ms, "
            f"gamma-simpo {1e3 * r['gamma_simpo_s']['median']:.2f} ms, overhead median {100 * o['median']:+.2f}% "
            f"(IQR {100 * o['q1']:+.2f}% … {100 * o['q3']:+.2f}%); loss calls {r['loss_extra_ms']['median']:+.2f} ms "
            f"= {100 * r['loss_overhead']['median']:+.3f}%")
        results.append(r)
    return results


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark (``--quick``: tiny model; ``--out DIR``); returns 0."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_step_overhead", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    sizes = dict(QUICK if args.quick else FULL)
    machine = machine_info()
    print(f"[{NAME}] {machine_line(machine)}", flush=True)
    results = [r for kind, sz in sizes["models"].items() for r in measure(kind, sz, sizes, lambda s: print(s, flush=True))]
    lines = [
        "# Training-step overhead of γ-SimPO over SimPO (CPU)",
        "",
        f"Machine: {machine_line(machine)}. No GPU was available: no GPU numbers are reported.",
        "",
        "A step: forward of chosen+rejected, response log-probs, loss, backward, AdamW; float32. γ-SimPO: released "
        "recipe with queue calibration (256 gaps, the default solver, queue advancing); SimPO: same β and γ0. "
        f"{sizes['pairs_timed']} paired steps in ABBA order after {sizes['warmup']} warm-up steps per arm; "
        "overhead = median over pairs of t_γ/t_SimPO − 1, where t is the **CPU time** of the process "
        f"(`time.process_time`) with torch limited to {sizes['threads']} thread: the machine is shared by several "
        "jobs, and CPU time of a single-threaded step is far less disturbed by them than wall time (the wall-time "
        "overhead is listed too). `loss-call extra ms`: the median over pairs of the γ-SimPO loss call's CPU time "
        "minus SimPO's (the calibration and queue step are inside it), and that over the SimPO step: the same "
        "overhead measured where it arises, without the step-to-step noise of the model."
        + (" **Quick mode: tiny sizes.**" if args.quick else ""),
        "",
    ]
    rows = []
    for r in results:
        o, sz = r["overhead"], r["sizes"]
        rows.append([
            r["kind"], _variant(r), f"{r['model']}, {r['parameters']:,} params, V = {sz['vocab']}, T = {sz['seq']}, {sz['pairs']} pairs",
            f"{1e3 * r['simpo_s']['median']:.2f}", f"{1e3 * r['gamma_simpo_s']['median']:.2f}",
            f"{r['extra_ms']['median']:+.2f}", f"**{100 * o['median']:+.2f}%** ({100 * o['q1']:+.2f}% … {100 * o['q3']:+.2f}%)",
            "met" if o["median"] <= 0.02 else "NOT met",
            f"{r['loss_extra_ms']['median']:+.2f}", f"{100 * r['loss_overhead']['median']:+.3f}%",
            f"{100 * r['wall_overhead']['median']:+.2f}% ({100 * r['wall_overhead']['q1']:+.2f}% … {100 * r['wall_overhead']['q3']:+.2f}%)",
        ])
    lines += markdown_table(
        ["model", "loss", "details", "SimPO step ms (CPU)", "γ-SimPO step ms (CPU)", "extra ms (median of pairs)", "overhead (IQR)", "≤ 2%",
         "loss-call extra ms", "loss-call extra / SimPO step", "wall-time overhead (IQR)"], rows
    )
    lines += [
        "",
        "The extra time is the calibration and queue update of γ-PO (a fixed cost per step, independent of the "
        "model), so the relative overhead falls as the model grows. `eager` is the default CPU path: the whole queue "
        "step (hash sample, the default solver on 256 gaps, push) is one call of the C++ kernel of "
        "`gammapo_torch._cpu_calibration`. `eager, torch ops` turns that kernel off (`GAMMAPO_DISABLE_CPU_KERNEL=1`): "
        "the op-by-op tensor path, dominated by the dispatch of its ~250 small ops. `compiled` puts the loss function "
        "(SimPO and γ-SimPO alike, not the model) through `torch.compile` (inductor, CPU; the one-time compilation "
        "happens in the warm-up steps and is not timed), with the kernel inside the graph as a custom operator.",
    ]
    r = {"models": results}
    paths = write_results(NAME, args.out, lines, {"machine": machine, "sizes": sizes, **r})
    print("\n".join(lines[-len(rows) - 4:]))
    print(f"[{NAME}] wrote {', '.join(map(str, paths))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
