"""ε-DPO (``epsilon-dpo``, ``gamma-epsilon-dpo``) through GammaPOTrainer: finite loss, epsilon/* metrics, β
updated once per optimiser step (gradient accumulation honoured), checkpointed state, the pair loss equal to
the spec on the same logits, evaluation keeps the state, registry and CLI display name."""

from __future__ import annotations

import copy
import os

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("trl")

from datasets import Dataset  # noqa: E402

import gammapo_spec.epsilon_dpo as spec  # noqa: E402
from gammapo.integrations.losses import make_pair_loss, registered_pair_losses  # noqa: E402
from gammapo.integrations.trl import LOSS_STATE_FILE, GammaPOTrainer  # noqa: E402
from gammapo.train.cli import display_name  # noqa: E402
from gammapo.train.run import RunConfig, dpo_config  # noqa: E402
from gammapo.train.task import SyntheticTask  # noqa: E402
from gammapo.train.tiny import build_model, build_tokenizer  # noqa: E402
from gammapo_spec.errors import ConfigError  # noqa: E402

TASK = SyntheticTask()
torch.set_num_threads(1)


def _trainer(tmp_path, loss, loss_kwargs, steps=4, grad_accum=2):
    tok = build_tokenizer(TASK.words)
    model = build_model(len(tok), seed=0)
    run = RunConfig(str(tmp_path / "run"), batch_size=4, grad_accum=grad_accum, learning_rate=3e-3, max_steps=steps,
                    logging_steps=1, warmup_ratio=0.0, scheduler="constant", save_steps=steps, save_total_limit=None)
    return GammaPOTrainer(model, ref_model=copy.deepcopy(model), args=dpo_config(run),
                          train_dataset=Dataset.from_list(TASK.pairs(64, noise=0.0, seed=3)),
                          processing_class=tok, loss=loss, loss_kwargs=loss_kwargs), run


def test_epsilon_dpo_trainer_updates_beta_once_per_optimizer_step(tmp_path):
    trainer, run = _trainer(tmp_path, "epsilon-dpo", {"beta": 0.1, "epsilon": 0.2})
    trainer.train()
    logs = [h for h in trainer.state.log_history if "loss" in h]
    assert len(logs) == 4 and all(np.isfinite(h["loss"]) for h in logs)
    for key in ("epsilon/beta", "epsilon/step_mean", "epsilon/frac_up", "epsilon/frac_down", "rewards/margins"):
        assert key in logs[-1], sorted(logs[-1])
    # step 1: the policy equals the reference, so every s is exactly 0 and β stays
    assert logs[0]["epsilon/step_mean"] == 0.0 and logs[0]["epsilon/beta"] == pytest.approx(0.1)
    assert logs[1]["epsilon/beta"] == pytest.approx(0.1)
    pl = trainer.pair_loss
    assert int(pl.updates) == 4  # once per optimiser step, not per micro-batch (8 of them)
    assert int(pl.step_count) == 0 and float(pl.beta) != 0.1  # β moved after the policy left the reference
    # each logged β is the one after the previous steps' updates
    betas = [h["epsilon/beta"] for h in logs]
    assert all(0.1 / 1.2**k - 1e-9 <= b <= 0.1 / 0.8**k + 1e-9 for k, b in enumerate(betas))
    saved = torch.load(os.path.join(run.output_dir, "checkpoint-4", LOSS_STATE_FILE), weights_only=True)
    assert sorted(saved) == ["beta", "step_count", "step_sum", "updates"] and int(saved["updates"]) == 4
    assert float(saved["beta"]) == float(pl.beta)


def test_gamma_epsilon_dpo_trainer_runs(tmp_path):
    trainer, _ = _trainer(tmp_path, "gamma-epsilon-dpo",
                          {"beta": 0.1, "epsilon": 0.2, "gamma_beta_ratio": 5.0, "tau": 1.0, "calibration": "queue",
                           "queue_size": 64, "sample_size": 16}, steps=2, grad_accum=1)
    trainer.train()
    logs = [h for h in trainer.state.log_history if "loss" in h]
    assert len(logs) == 2 and all(np.isfinite(h["loss"]) for h in logs)
    assert "gamma/mean" in logs[-1] and "epsilon/beta" in logs[-1]
    assert int(trainer.pair_loss.queue.queue_step) == 2 and int(trainer.pair_loss.updates) == 2


def test_pair_loss_equals_spec_on_the_same_logits_and_eval_keeps_state():
    rng = np.random.default_rng(0)
    B, T, V = 3, 5, 7  # 3 pairs: rows [chosen; rejected]
    p = rng.normal(size=(2 * B, T, V)) * 2
    q = p + rng.normal(size=(2 * B, T, V))
    y = rng.integers(0, V, size=(2 * B, T))
    m = rng.random((2 * B, T)) < 0.8
    m[:, 0] = True
    loss = make_pair_loss("epsilon-dpo", beta=0.3, epsilon=0.25, label_smoothing=0.1)
    pt = torch.tensor(p, requires_grad=True)
    batch = loss.token_inputs(pt, torch.tensor(q), torch.tensor(y), torch.tensor(m))
    before = {k: v.clone() for k, v in loss.state_dict().items()}
    out_eval = loss(batch, update_state=False)
    assert all(torch.equal(v, before[k]) for k, v in loss.state_dict().items())
    tok = spec.epsilon_sequence_logps(p, q, y, m, epsilon=0.25)
    ref = spec.epsilon_sequence_logps(q, q, y, m, epsilon=0.25).logps
    c, r = tok.logps[:B], tok.logps[B:]
    s = spec.epsilon_steps(c, r, tok.logps_plus[:B], tok.logps_plus[B:], tok.logps_minus[:B], tok.logps_minus[B:])
    want = spec.epsilon_dpo_loss(c, r, ref[:B], ref[B:], s, beta=0.3, epsilon=0.25, label_smoothing=0.1)
    out = loss(batch)
    assert float(out.loss.detach()) == pytest.approx(want.loss, rel=1e-10)
    assert float(out_eval.loss.detach()) == pytest.approx(want.loss, rel=1e-10)
    np.testing.assert_allclose(out.chosen_rewards.numpy(), want.chosen_rewards, rtol=1e-10)
    assert int(loss.step_sum) == int(s.sum()) and int(loss.step_count) == B
    out.loss.backward()
    assert pt.grad is not None and torch.isfinite(pt.grad).all()
    loss.on_optimizer_step()
    st = spec.epsilon_update_beta(spec.epsilon_accumulate(spec.init_epsilon_state(0.3, 0.25), s))
    assert float(loss.beta) == st.beta and int(loss.updates) == 1


def test_epsilon_dpo_registered_displayed_and_validated():
    assert {"epsilon-dpo", "gamma-epsilon-dpo"} <= set(registered_pair_losses())
    assert display_name("epsilon-dpo") == "ε-DPO" and display_name("gamma-epsilon-dpo") == "γ-ε-DPO"
    with pytest.raises(ConfigError) as e:
        make_pair_loss("epsilon-dpo", epsilon=1.0)
    assert e.value.field == "epsilon"
    with pytest.raises(ConfigError) as e:
        make_pair_loss("gamma-epsilon-dpo", beta=0.1, tau=-1.0)
    assert e.value.field == "tau"
    with pytest.raises(TypeError):
        make_pair_loss("epsilon-dpo", tau=1.0)
