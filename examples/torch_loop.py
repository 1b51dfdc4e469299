"""γ-SimPO in a plain PyTorch training loop with gammapo's `GammaPOLoss` (CPU, a few seconds).

    python examples/torch_loop.py [--steps 25] [--compile]

A tiny causal language model (embeddings → running mean → MLP → vocabulary logits) learns a synthetic preference:
for every prompt the chosen response continues it with "even" tokens, the rejected one with "odd"
tokens. Each step computes the summed log-probabilities of both responses, and `GammaPOLoss` turns
them into the γ-SimPO loss: length-normalised rewards β·logp/len, per-pair target margins calibrated
against a queue of recent reward gaps (the paper's Algorithm 2), and `-log σ(h - γ)`. The loss module
keeps the queue as buffers, so `model.state_dict()` checkpoints it with the weights.

With `--compile` the loss step runs under `torch.compile(fullgraph=True)`: the calibration never
leaves the device (no `.item()`, no host sampling) and compiles into the same graph.
"""

from __future__ import annotations

import argparse
import time

import torch
from torch import nn

import gammapo
from gammapo_torch import GammaPOLoss

VOCAB, PROMPT_LEN, MAX_RESPONSE = 16, 4, 6


class TinyLM(nn.Module):
    """A causal next-token model: ``logits[b, t]`` (from tokens ``0..t``: their running mean embedding
    and the current token's) predicts token ``t + 1``."""

    def __init__(self, vocab: int = VOCAB, width: int = 32):
        super().__init__()
        self.embed = nn.Embedding(vocab, width)
        self.mlp = nn.Sequential(nn.Linear(2 * width, width), nn.Tanh(), nn.Linear(width, vocab))

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        e = self.embed(tokens)
        running = e.cumsum(dim=1) / torch.arange(1, tokens.shape[1] + 1, device=tokens.device)[:, None]
        return self.mlp(torch.cat([running, e], dim=-1))


def sequence_logps(model: nn.Module, prompt: torch.Tensor, response: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Summed log-probability of each (padded) response given its prompt: ``[B]``."""
    tokens = torch.cat([prompt, response], dim=1)
    logp = torch.log_softmax(model(tokens[:, :-1]), dim=-1)
    per_token = logp[:, prompt.shape[1] - 1 :].gather(-1, response.unsqueeze(-1)).squeeze(-1)
    return (per_token * mask).sum(dim=1)


def preference_batch(n: int, g: torch.Generator) -> dict[str, torch.Tensor]:
    """Prompts, chosen (even tokens) and rejected (odd tokens) responses of random lengths 2..6."""
    prompt = torch.randint(0, VOCAB, (n, PROMPT_LEN), generator=g)
    chosen = 2 * torch.randint(0, VOCAB // 2, (n, MAX_RESPONSE), generator=g)
    rejected = 2 * torch.randint(0, VOCAB // 2, (n, MAX_RESPONSE), generator=g) + 1
    positions = torch.arange(MAX_RESPONSE)
    len_w = torch.randint(2, MAX_RESPONSE + 1, (n,), generator=g)
    len_l = torch.randint(2, MAX_RESPONSE + 1, (n,), generator=g)
    return dict(prompt=prompt, chosen=chosen, rejected=rejected, len_w=len_w, len_l=len_l,
                mask_w=(positions < len_w[:, None]).float(), mask_l=(positions < len_l[:, None]).float())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--compile", action="store_true", help="compile the loss step (fullgraph)")
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)

    model = TinyLM()
    config = gammapo.GammaPOConfig(loss="gamma-simpo", beta=2.0, gamma_beta_ratio=0.5, tau=10.0,
                                   calibration="queue", queue_size=256, sample_size=64)
    loss_fn = GammaPOLoss(config, seed=0)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)

    def step(batch: dict[str, torch.Tensor]):
        out = loss_fn(
            chosen_logps=sequence_logps(model, batch["prompt"], batch["chosen"], batch["mask_w"]),
            rejected_logps=sequence_logps(model, batch["prompt"], batch["rejected"], batch["mask_l"]),
            chosen_lengths=batch["len_w"],
            rejected_lengths=batch["len_l"],
        )
        return out.loss, out.margins, out.metrics["rewards/accuracies"]

    if args.compile:
        step = torch.compile(step, fullgraph=True)

    start, losses = time.perf_counter(), []
    for i in range(args.steps):
        loss, margins, accuracy = step(preference_batch(args.batch, g))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
        if i % 10 == 0 or i == args.steps - 1:
            print(f"step {i:3d}  loss {losses[-1]:.4f}  accuracy {float(accuracy):.2f}  "
                  f"margins mean {float(margins.mean()):.3f} std {float(margins.std()):.3f}  "
                  f"queue {int(loss_fn.queue_size)}/{config.queue_size}")
    window = max(1, min(5, len(losses) // 2))  # mean loss of the first and of the last few steps
    first, last = sum(losses[:window]) / window, sum(losses[-window:]) / window
    print(f"loss {first:.4f} -> {last:.4f} in {time.perf_counter() - start:.1f} s "
          f"({'fell' if last < first else 'did NOT fall'}); "
          f"checkpoint keys include {[k for k in model.state_dict()][:1]} + {list(loss_fn.state_dict())[:2]} ...")
    return 0 if last < first else 1


if __name__ == "__main__":
    raise SystemExit(main())
