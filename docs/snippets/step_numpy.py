"""One γ-SimPO step with the NumPy reference: loss, margins and the gradient w.r.t. the log-probs."""

import numpy as np

import gammapo

B = gammapo.get_backend("numpy")
cfg = gammapo.GammaPOConfig(loss="gamma-simpo", beta=10.0, gamma_beta_ratio=0.4, tau=10.0, calibration="batch")
batch = dict(
    chosen_logps=np.array([-40.0, -52.0, -31.0, -64.0]),
    rejected_logps=np.array([-55.0, -50.0, -30.0, -80.0]),
    chosen_lengths=np.array([20, 26, 15, 30]),
    rejected_lengths=np.array([22, 25, 16, 31]),
)
# The reference computes the gradient analytically (gammapo_spec.loss_vjp), margins held constant.
out, state, grads = B.gamma_po_loss_and_grad(cfg, B.init_state(cfg), **batch)

print("loss", round(float(out.loss), 6))
print("margins", np.round(out.margins, 6).tolist())
print("d loss / d chosen_logps", np.round(grads["chosen_logps"], 6).tolist())
