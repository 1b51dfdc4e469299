"""One γ-SimPO step with the PyTorch backend: the loss is a tensor, autograd gives the gradient."""

import torch

import gammapo

B = gammapo.get_backend("torch")
cfg = gammapo.GammaPOConfig(loss="gamma-simpo", beta=10.0, gamma_beta_ratio=0.4, tau=10.0, calibration="batch")
chosen = torch.tensor([-40.0, -52.0, -31.0, -64.0], dtype=torch.float64, requires_grad=True)
batch = dict(
    chosen_logps=chosen,
    rejected_logps=torch.tensor([-55.0, -50.0, -30.0, -80.0], dtype=torch.float64),
    chosen_lengths=torch.tensor([20, 26, 15, 30]),
    rejected_lengths=torch.tensor([22, 25, 16, 31]),
)
out, state = B.gamma_po_loss(cfg, B.init_state(cfg), **batch)
out.loss.backward()  # the margins are constants: no gradient flows through the calibration

print("loss", round(out.loss.item(), 6))
print("margins", [round(v, 6) for v in out.margins.tolist()])
print("d loss / d chosen_logps", [round(v, 6) for v in chosen.grad.tolist()])
