"""The same training loop on the NumPy reference: analytic gradients, the reference queue state.

Slow for real models (no autodiff, no accelerator) but the ground truth: the PyTorch and JAX tabs
print the same numbers.
"""

import numpy as np

import gammapo

B = gammapo.get_backend("numpy")
cfg = gammapo.GammaPOConfig(loss="gamma-simpo", beta=2.0, gamma_beta_ratio=0.5, tau=5.0,
                            calibration="queue", queue_size=128, sample_size=32)
rng = np.random.default_rng(0)
init_c, init_r = rng.normal(-30.0, 3.0, 64), rng.normal(-30.0, 3.0, 64)
len_c, len_r = rng.integers(10, 30, 64), rng.integers(10, 30, 64)

params = {"chosen": init_c.copy(), "rejected": init_r.copy()}
state = B.init_state(cfg, seed=0)

for i in range(12):
    idx = np.arange(16 * (i % 4), 16 * (i % 4 + 1))  # four batches of 16 pairs
    out, state, grads = B.gamma_po_loss_and_grad(cfg, state, chosen_logps=params["chosen"][idx],
                                                 rejected_logps=params["rejected"][idx],
                                                 chosen_lengths=len_c[idx], rejected_lengths=len_r[idx])
    params["chosen"][idx] -= 2000.0 * grads["chosen_logps"]  # plain SGD
    params["rejected"][idx] -= 2000.0 * grads["rejected_logps"]
    if i % 4 == 3:  # after each pass over the four batches
        print(f"step {i:2d}  loss {out.loss:.4f}  accuracy {out.metrics['rewards/accuracies']:.3f}  "
              f"margins {out.margins.min():.3f}..{out.margins.max():.3f}")

# Checkpoint: state_to_dict / state_from_dict restore the queue bit for bit.
resumed = B.state_from_dict(B.state_to_dict(state))
assert np.array_equal(resumed.buffer, state.buffer) and resumed.step == state.step
print("queue size", state.size, "step", state.step)
