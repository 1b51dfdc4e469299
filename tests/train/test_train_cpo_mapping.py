"""The TRL how-to's mapping from CPOConfig to gammapo holds: TRL's SimPO (CPOTrainer's own loss and NLL
functions, run on token logits) equals gammapo's `simpo` with gamma_beta_ratio = simpo_gamma / beta,
sft_weight = cpo_alpha and sft_reduction="token"; with the default per-pair reduction it does not."""

from __future__ import annotations

import os
import types

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("trl")
os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
cpo = pytest.importorskip("trl.experimental.cpo.cpo_trainer")
CPOConfig = pytest.importorskip("trl.experimental.cpo.cpo_config").CPOConfig

from gammapo_spec import GammaPOConfig  # noqa: E402
from gammapo_torch import gamma_po_loss  # noqa: E402


def _batch(seed, n=5, t=12, v=17):
    """[2n, t, v] logits, labels with a prompt part and padding at -100 (rows [chosen; rejected])."""
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(2 * n, t, v, generator=g, dtype=torch.float64) * 2
    labels = torch.randint(0, v, (2 * n, t), generator=g)
    for i in range(2 * n):
        start = int(torch.randint(1, 4, (1,), generator=g))
        end = int(torch.randint(start + 2, t + 1, (1,), generator=g))
        labels[i, :start] = -100
        labels[i, end:] = -100
    return logits, labels


@pytest.mark.parametrize("seed", range(3))
def test_trl_simpo_equals_the_mapped_gammapo_config(seed):
    args = CPOConfig("unused", loss_type="simpo", report_to="none", use_cpu=True, bf16=False)  # TRL defaults otherwise
    assert args.cpo_alpha == 1.0
    logits, labels = _batch(seed)
    n = logits.shape[0] // 2
    trainer = types.SimpleNamespace(alpha=0.0, beta=args.beta, loss_type="simpo", simpo_gamma=args.simpo_gamma,
                                    label_smoothing=args.label_smoothing, accelerator=types.SimpleNamespace(device="cpu"))
    avg = cpo.CPOTrainer.get_batch_logps(logits, labels.clone(), average_log_prob=True)
    losses, _, _ = cpo.CPOTrainer.cpo_loss(trainer, avg[:n], avg[n:])
    shifted_logits, shifted_labels = logits[:n, :-1].reshape(-1, logits.shape[-1]), labels[:n, 1:].reshape(-1)
    nll = torch.nn.CrossEntropyLoss()(shifted_logits, shifted_labels)  # what CPOTrainer's cross_entropy_loss does
    want = float(losses.mean() + args.cpo_alpha * nll)

    summed = cpo.CPOTrainer.get_batch_logps(logits, labels.clone(), average_log_prob=False)
    lengths = (labels[:, 1:] != -100).sum(-1).double()
    inputs = dict(chosen_logps=summed[:n], rejected_logps=summed[n:], chosen_lengths=lengths[:n],
                  rejected_lengths=lengths[n:])
    cfg = GammaPOConfig(loss="simpo", beta=args.beta, gamma_beta_ratio=args.simpo_gamma / args.beta,
                        sft_weight=args.cpo_alpha, sft_reduction="token")
    got, _ = gamma_po_loss(cfg, None, **inputs)
    assert float(got.loss) == pytest.approx(want, rel=1e-12)
    pair, _ = gamma_po_loss(cfg.replace(sft_reduction="pair"), None, **inputs)
    assert abs(float(pair.loss) - want) > 1e-4, "the batch does not tell the reductions apart"
