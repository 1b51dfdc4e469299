"""One bf16 training step of γ-SimPO through :class:`GammaPOTrainer` against TRL's own SimPO step.

The model is a ~106M-parameter Llama built from a config (vocabulary 32000, hidden 768, 8 layers, 12
heads, untied head; random weights, bf16), the data 16 random pairs of a 32k-word vocabulary (prompt 128
words, responses 384), 8 pairs per batch. Arms, each with its own copy of the model and its own AdamW,
on the same rows: ``TRL SimPO`` (``trl.experimental.cpo.CPOTrainer``, ``loss_type="simpo"``,
``cpo_alpha=0``: TRL's SimPO), ``gammapo SimPO`` (:class:`GammaPOTrainer` with ``loss="simpo"``, the same
trainer with a constant margin) and ``gammapo γ-SimPO`` (queue calibration; β = 10, γ0 = 4, τ = 10 for
all three). A step is ``compute_loss`` (each trainer's own: forward, log-probs, loss, metrics), backward
and the optimiser step; timed by CUDA events, peak memory by ``torch.cuda.max_memory_allocated`` above
what was allocated before the step. Rounds are interleaved with rotated order after 3 warm-up rounds.
Dry run: a tiny model on the CPU, 2 rounds.
"""

from __future__ import annotations

import copy
import random
import tempfile

from ._child import cuda, median

BETA, GAMMA0, TAU = 10.0, 4.0, 10.0


def _data(words: list[str], rows: int, prompt: int, response: int) -> list[dict]:
    rng = random.Random(0)

    def text(k: int) -> str:
        return " ".join(rng.choice(words) for _ in range(k))

    return [{"prompt": text(prompt), "chosen": text(response), "rejected": text(response)} for _ in range(rows)]


def _model(vocab: int, dry: bool, device: str):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    size = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=2) if dry \
        else dict(hidden_size=768, intermediate_size=2048, num_hidden_layers=8, num_attention_heads=12, num_key_value_heads=12)
    config = LlamaConfig(vocab_size=vocab, max_position_embeddings=1024, pad_token_id=0, eos_token_id=1, bos_token_id=None,
                         tie_word_embeddings=False, **size)
    torch.manual_seed(0)
    return LlamaForCausalLM(config).to(device=device, dtype=torch.bfloat16)


def _arms(base, tok, dataset, batch: int, on_cuda: bool) -> dict:
    from trl import DPOConfig

    from gammapo.integrations.trl import GammaPOTrainer

    common = dict(per_device_train_batch_size=batch, max_steps=1, report_to=[], save_strategy="no", logging_steps=1,
                  disable_tqdm=True, use_cpu=not on_cuda, bf16=False, dataloader_num_workers=0, max_length=1024)
    arms = {}
    try:
        from trl.experimental.cpo import CPOConfig, CPOTrainer

        args = CPOConfig(output_dir=tempfile.mkdtemp(), loss_type="simpo", cpo_alpha=0.0, beta=BETA, simpo_gamma=GAMMA0, **common)
        arms["TRL SimPO (CPOTrainer)"] = CPOTrainer(copy.deepcopy(base), args=args, train_dataset=dataset, processing_class=tok)
    except Exception as exc:  # noqa: BLE001 - reported; the gammapo arms still run
        arms["TRL SimPO (CPOTrainer)"] = exc
    for name, loss, kw in (("gammapo SimPO", "simpo", dict(beta=BETA, gamma_beta_ratio=GAMMA0 / BETA)),
                           ("gammapo γ-SimPO", "gamma-simpo", dict(beta=BETA, gamma_beta_ratio=GAMMA0 / BETA, tau=TAU,
                                                                  check_values=False))):
        args = DPOConfig(output_dir=tempfile.mkdtemp(), **common)
        arms[name] = GammaPOTrainer(copy.deepcopy(base), args=args, train_dataset=dataset, processing_class=tok, loss=loss,
                                    loss_kwargs=kw)
    return arms


def run(rec, dry: bool) -> None:
    import time

    import torch

    on_cuda = cuda()
    device = "cuda" if on_cuda else "cpu"
    vocab, prompt, response, rows, batch = (64, 4, 8, 8, 4) if dry else (32000, 128, 384, 16, 8)
    warm, rounds = (1, 2) if dry else (3, 15)
    with rec.part("build the model and the three trainers") as p:
        from datasets import Dataset

        from gammapo.train.tiny import build_tokenizer

        tok = build_tokenizer([f"w{i}" for i in range(vocab - 3)])
        base = _model(len(tok), dry, device)
        params = sum(q.numel() for q in base.parameters())
        arms = _arms(base, tok, Dataset.from_list(_data([f"w{i}" for i in range(vocab - 3)], rows, prompt, response)), batch, on_cuda)
        broken = {k: f"{type(v).__name__}: {v}"[:300] for k, v in arms.items() if isinstance(v, Exception)}
        arms = {k: v for k, v in arms.items() if not isinstance(v, Exception)}
        p["detail"] = f"Llama with {params / 1e6:.1f}M parameters, bf16, on {device}" + (f"; failed: {broken}" if broken else "")
        if broken:
            p["status"] = "fail"
        rec.measure("trainer.params", params)
    if "arms" not in locals() or not arms:
        rec.skip("interleaved steps", "skipped: no trainer could be built (see the part above)")
        return
    with rec.part("interleaved steps") as p:
        state = {}
        for name, tr in arms.items():
            model = tr.model
            model.train()
            inputs = tr._prepare_inputs(next(iter(tr.get_train_dataloader())))
            state[name] = (tr, model, torch.optim.AdamW(model.parameters(), lr=1e-6), inputs)
        times: dict = {k: [] for k in state}
        peaks: dict = {k: [] for k in state}

        def step(name):
            tr, model, opt, inputs = state[name]
            loss = tr.compute_loss(model, inputs)
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)

        names = list(state)
        for r in range(warm + rounds):
            for name in names[r % len(names):] + names[: r % len(names)]:
                if on_cuda:
                    torch.cuda.synchronize()
                    torch.cuda.reset_peak_memory_stats()
                    before = torch.cuda.memory_allocated()
                    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                    start.record()
                    step(name)
                    end.record()
                    end.synchronize()
                    ms, peak = start.elapsed_time(end), (torch.cuda.max_memory_allocated() - before) / 2**20
                else:
                    t = time.perf_counter()
                    step(name)
                    ms, peak = (time.perf_counter() - t) * 1e3, None
                if r >= warm:
                    times[name].append(ms)
                    peaks[name].append(peak)
        table = [[k, f"{median(v):.2f}", f"{min(v):.2f}–{max(v):.2f}", "—" if peaks[k][0] is None else f"{max(peaks[k]):.0f}"]
                 for k, v in times.items()]
        rec.table("One bf16 training step", ["arm", "median ms", "range ms", "peak extra MiB"], table)
        gamma, simpo, trl = (median(times[k]) if k in times else None
                             for k in ("gammapo γ-SimPO", "gammapo SimPO", "TRL SimPO (CPOTrainer)"))
        p["detail"] = ", ".join(f"{k} {median(v):.1f} ms" for k, v in times.items())
        if on_cuda and gamma is not None:
            if trl is not None:
                rec.measure("trainer.overhead_vs_trl", gamma / trl - 1.0)
            if simpo is not None:
                rec.measure("trainer.overhead_vs_simpo", gamma / simpo - 1.0)
            for k in times:
                rec.measure(f"trainer.{k}.ms", median(times[k]))
                rec.measure(f"trainer.{k}.peak_mib", max(peaks[k]))
