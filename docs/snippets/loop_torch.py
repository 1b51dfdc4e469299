"""A plain PyTorch training loop with γ-SimPO in queue mode, and a checkpoint that resumes it exactly.

The "policy" is a toy: its summed log-probs of 64 chosen and 64 rejected responses are the
parameters themselves, so the loop runs in a second. In a real loop they come from the model
(sum of the response tokens' log-probs).
"""

import numpy as np
import torch

import gammapo
from gammapo_torch import GammaPOLoss

cfg = gammapo.GammaPOConfig(loss="gamma-simpo", beta=2.0, gamma_beta_ratio=0.5, tau=5.0,
                            calibration="queue", queue_size=128, sample_size=32)
rng = np.random.default_rng(0)
init_c, init_r = rng.normal(-30.0, 3.0, 64), rng.normal(-30.0, 3.0, 64)
len_c, len_r = rng.integers(10, 30, 64), rng.integers(10, 30, 64)

chosen = torch.nn.Parameter(torch.tensor(init_c))  # float64: the loss computes in float64
rejected = torch.nn.Parameter(torch.tensor(init_r))
loss_fn = GammaPOLoss(cfg, seed=0, dtype=torch.float64)  # the queue lives in the module's buffers
opt = torch.optim.SGD([chosen, rejected], lr=2000.0)


def step(i: int):
    idx = torch.arange(16 * (i % 4), 16 * (i % 4 + 1))  # four batches of 16 pairs
    out = loss_fn(chosen_logps=chosen[idx], rejected_logps=rejected[idx],
                  chosen_lengths=torch.tensor(len_c)[idx], rejected_lengths=torch.tensor(len_r)[idx])
    opt.zero_grad()
    out.loss.backward()
    opt.step()
    return out


for i in range(12):
    out = step(i)
    if i % 4 == 3:  # after each pass over the four batches
        print(f"step {i:2d}  loss {out.loss.item():.4f}  accuracy {out.metrics['rewards/accuracies']:.3f}  "
              f"margins {out.margins.min().item():.3f}..{out.margins.max().item():.3f}")

# Checkpoint: the calibration state is part of the module's state_dict and resumes bit for bit.
resumed = GammaPOLoss(cfg, seed=0, dtype=torch.float64)
resumed.load_state_dict(loss_fn.state_dict())
assert all(torch.equal(a, b) for a, b in zip(resumed.state_dict().values(), loss_fn.state_dict().values()))
print("queue size", int(loss_fn.queue_size), "step", int(loss_fn.queue_step))
