"""The one method shape (gammapo_spec.methods): init/step equal the method functions they dispatch to, for
γ-PO, β-DPO and ε-DPO; the configs validate with the one hyper-parameter validator; errors name their field;
states round-trip through their checkpoint dicts and continue exactly."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

import gammapo_spec as S
from gammapo_spec import BetaDPOConfig, ConfigError, EpsilonDPOConfig, GammaPOConfig, InputError, Pairs, StateError
from gammapo_spec import beta_dpo as BD
from gammapo_spec import epsilon_dpo as E


def _logps(n: int, seed: int) -> dict[str, np.ndarray]:
    """Four log-prob columns and ε-DPO's perturbed ones (some pairs perturbed so that s = ±1, some tied)."""
    rng = np.random.default_rng(seed)
    c, r, cr, rr = (-rng.uniform(5.0, 30.0, n) for _ in range(4))
    d = rng.normal(0.0, 0.5, n)
    d[::4] = 0.0  # ties: s = 0
    return dict(chosen_logps=c, rejected_logps=r, ref_chosen_logps=cr, ref_rejected_logps=rr,
                chosen_logps_plus=c + d, rejected_logps_plus=r - d, chosen_logps_minus=c - d,
                rejected_logps_minus=r + rng.normal(0.0, 0.5, n))


def _pairs(x: dict, *names: str) -> Pairs:
    return Pairs(**{k: x[k] for k in names})


_BETA = ("chosen_logps", "rejected_logps", "ref_chosen_logps", "ref_rejected_logps")
_EPS = _BETA + E._STEP_FIELDS[2:]


def _assert_same(a, b) -> None:
    """Two outputs (dataclasses) or states, field by field, bit for bit."""
    da = a.to_dict() if hasattr(a, "to_dict") else dataclasses.asdict(a)
    db = b.to_dict() if hasattr(b, "to_dict") else dataclasses.asdict(b)
    assert da.keys() == db.keys()
    for k in da:
        if isinstance(da[k], dict):
            assert da[k] == db[k], k
        else:
            np.testing.assert_array_equal(np.asarray(da[k]), np.asarray(db[k]), err_msg=k)


# --- step equals the method functions ---------------------------------------------------------------
@pytest.mark.parametrize("config", [
    GammaPOConfig(loss="gamma-simpo", queue_size=16, sample_size=8),
    GammaPOConfig(loss="gamma-dpo", beta=0.1, gamma_beta_ratio=2.0, calibration="batch"),
    GammaPOConfig(loss="rdpo", beta=0.1, rdpo_alpha=0.2),
])
def test_gamma_po_step_is_gamma_po_loss(config):
    x = _logps(7, 0)
    x["chosen_lengths"], x["rejected_lengths"] = np.arange(1, 8), np.arange(3, 10)
    needed = S.validation.required_fields(config)
    state_a, state_b = S.init(config, seed=5), S.init_state(config, 5)
    for _ in range(3):
        out_a, state_a = S.step(config, state_a, _pairs(x, *needed))
        out_b, state_b = S.gamma_po_loss(config, state_b, **{k: x[k] for k in needed})
        _assert_same(out_a, out_b)
        assert (state_a is None) == (state_b is None) == (not config.stateful)
        if state_a is not None:
            _assert_same(state_a, state_b)
        x["chosen_logps"] = x["chosen_logps"] + 1.0


def test_beta_dpo_step_is_beta_dpo_step():
    config = BetaDPOConfig(beta0=0.2, alpha=0.4, rho=0.6, momentum=0.5)
    state_a, state_b = S.init(config, seed=9), BD.init_beta_dpo_state(9)
    for seed in range(3):
        x = _logps(10, seed)
        out_a, state_a = S.step(config, state_a, _pairs(x, *_BETA))
        out_b = BD.beta_dpo_step(state_b, *(x[k] for k in _BETA), beta0=0.2, alpha=0.4, rho=0.6, momentum=0.5)
        state_b = out_b.state
        _assert_same(out_a, out_b)
        assert state_a == state_b and out_a.state == state_a
    assert state_a.step == 3 and state_a.seed == 9


@pytest.mark.parametrize("update_beta", [True, False])
def test_epsilon_dpo_step_is_steps_loss_accumulate_update(update_beta):
    """The order: steps, the loss with the state's current β, accumulate, then (by default) the update."""
    config = EpsilonDPOConfig(beta=0.5, epsilon=0.2, label_smoothing=0.1, update_beta=update_beta)
    state_a = S.init(config)
    state_b = E.init_epsilon_state(0.5, 0.2)
    betas_used = []
    for seed in range(3):
        x = _logps(9, seed)
        out_a, state_a = S.step(config, state_a, _pairs(x, *_EPS))
        s = E.epsilon_steps(*(x[k] for k in E._STEP_FIELDS))
        out_b = E.epsilon_dpo_loss(*(x[k] for k in _BETA), s, beta=state_b.beta, epsilon=0.2, label_smoothing=0.1)
        betas_used.append(state_b.beta)
        state_b = E.epsilon_accumulate(state_b, s)
        if update_beta:
            state_b = E.epsilon_update_beta(state_b)
        np.testing.assert_array_equal(out_a.steps, s)
        _assert_same(dataclasses.replace(out_a, steps=None), out_b)
        assert state_a == state_b
    assert {-1, 0, 1} <= set(np.concatenate([E.epsilon_steps(*(_logps(9, k)[f] for f in E._STEP_FIELDS))
                                             for k in range(3)]).tolist())  # the data exercise every step
    if update_beta:
        assert state_a.updates == 3 and state_a.step_count == 0 and len(set(betas_used)) == 3
    else:
        assert state_a.updates == 0 and state_a.step_count == 27 and state_a.beta == 0.5
        assert E.epsilon_update_beta(state_a).beta != 0.5  # the caller's update after the optimiser step


def test_init_per_method():
    assert S.init(GammaPOConfig(calibration="batch")) is None
    assert S.init(GammaPOConfig(loss="simpo")) is None
    q = S.init(GammaPOConfig(queue_size=8, sample_size=4, queue_warmup=3), seed=2)
    assert q.size == 3 and q.seed == 2
    assert S.init(BetaDPOConfig(), seed=4) == BD.init_beta_dpo_state(4)
    assert S.init(EpsilonDPOConfig(beta=0.3, epsilon=0.05)) == E.init_epsilon_state(0.3, 0.05)


# --- the state round trip ------------------------------------------------------------------------------
@pytest.mark.parametrize("config", [GammaPOConfig(queue_size=16, sample_size=8), BetaDPOConfig(rho=0.5),
                                    EpsilonDPOConfig(beta=0.5, epsilon=0.3)], ids=lambda c: type(c).__name__)
def test_state_round_trip_continues_exactly(config):
    to_dict, from_dict = {
        GammaPOConfig: (S.state_to_dict, S.state_from_dict),
        BetaDPOConfig: (BD.beta_dpo_state_to_dict, BD.beta_dpo_state_from_dict),
        EpsilonDPOConfig: (E.epsilon_state_to_dict, E.epsilon_state_from_dict),
    }[type(config)]
    fields = ("chosen_logps", "rejected_logps", "chosen_lengths", "rejected_lengths") \
        if isinstance(config, GammaPOConfig) else (_BETA if isinstance(config, BetaDPOConfig) else _EPS)
    x = _logps(6, 1)
    x["chosen_lengths"], x["rejected_lengths"] = np.full(6, 3), np.full(6, 4)
    state = S.init(config, seed=1)
    for _ in range(2):
        _, state = S.step(config, state, _pairs(x, *fields))
    restored = from_dict(to_dict(state))
    a, sa = S.step(config, state, _pairs(x, *fields))
    b, sb = S.step(config, restored, _pairs(x, *fields))
    _assert_same(a, b)
    _assert_same(sa, sb)


# --- errors ----------------------------------------------------------------------------------------------
def test_step_rejects_other_configs_and_pairs():
    x = _logps(3, 0)
    with pytest.raises(ConfigError, match=r"^config must be one of GammaPOConfig, BetaDPOConfig, EpsilonDPOConfig") as e:
        S.step({"loss": "dpo"}, None, _pairs(x, *_BETA))
    assert e.value.field == "config"
    with pytest.raises(ConfigError) as e:
        S.init("beta-dpo")
    assert e.value.field == "config"
    with pytest.raises(InputError, match=r"^pairs must be a gammapo_spec.Pairs, got dict") as e:
        S.step(BetaDPOConfig(), S.init(BetaDPOConfig()), {k: x[k] for k in _BETA})
    assert e.value.field == "pairs"


@pytest.mark.parametrize("config, fields, field, message", [
    (BetaDPOConfig(), _BETA[:3], "ref_rejected_logps", "method 'beta-dpo' needs ref_rejected_logps"),
    (BetaDPOConfig(), _BETA + ("chosen_lengths",), "chosen_lengths", "method 'beta-dpo' does not use chosen_lengths"),
    (BetaDPOConfig(), _BETA + ("chosen_logps_plus",), "chosen_logps_plus", "method 'beta-dpo' does not use"),
    (EpsilonDPOConfig(), _EPS[:-1], "rejected_logps_minus", "method 'epsilon-dpo' needs rejected_logps_minus"),
    (EpsilonDPOConfig(), _EPS + ("rejected_lengths",), "rejected_lengths", "method 'epsilon-dpo' does not use"),
    (GammaPOConfig(calibration="batch"), ("chosen_logps", "rejected_logps", "chosen_lengths", "rejected_lengths",
                                          "chosen_logps_minus"), "chosen_logps_minus", "loss 'gamma-simpo' does not use"),
    # the γ-PO loss's own input policy, reached through step
    (GammaPOConfig(calibration="batch"), _BETA, "ref_chosen_logps", "loss 'gamma-simpo' does not use ref_chosen_logps"),
])
def test_step_names_a_missing_or_unused_field(config, fields, field, message):
    x = _logps(3, 0)
    x["chosen_lengths"], x["rejected_lengths"] = np.ones(3), np.ones(3)
    with pytest.raises(InputError, match="^" + message) as e:
        S.step(config, S.init(config), _pairs(x, *fields))
    assert e.value.field == field


def test_step_rejects_a_state_of_another_method_or_epsilon():
    x = _logps(3, 0)
    with pytest.raises(StateError) as e:
        S.step(EpsilonDPOConfig(), S.init(BetaDPOConfig()), _pairs(x, *_EPS))
    assert e.value.field == "state"
    with pytest.raises(StateError) as e:
        S.step(BetaDPOConfig(), S.init(EpsilonDPOConfig()), _pairs(x, *_BETA))
    assert e.value.field == "state"
    with pytest.raises(StateError, match="the state's epsilon 0.2 is not the config's 0.1") as e:
        S.step(EpsilonDPOConfig(epsilon=0.1), S.init(EpsilonDPOConfig(epsilon=0.2)), _pairs(x, *_EPS))
    assert e.value.field == "epsilon"


# --- the configs and the one validator -------------------------------------------------------------------
@pytest.mark.parametrize("cls, field, value, message", [
    (BetaDPOConfig, "beta0", 0.0, "beta0 must be a finite number > 0, got 0.0"),
    (BetaDPOConfig, "beta0", math.inf, "beta0 must be a finite number > 0, got inf"),
    (BetaDPOConfig, "alpha", math.nan, "alpha must be a finite number, got nan"),
    (BetaDPOConfig, "alpha", True, "alpha must be a finite number, got True"),
    (BetaDPOConfig, "rho", 0.0, "rho must be a number in (0, 1], got 0.0"),
    (BetaDPOConfig, "rho", 1.5, "rho must be a number in (0, 1], got 1.5"),
    (BetaDPOConfig, "momentum", 1.0, "momentum must be a number in [0, 1), got 1.0"),
    (BetaDPOConfig, "beta_min", -1e-3, "beta_min must be a finite number > 0, got -0.001"),
    (EpsilonDPOConfig, "beta", 0.0, "beta must be a finite number > 0, got 0.0"),
    (EpsilonDPOConfig, "beta", "0.1", "beta must be a finite number > 0, got '0.1'"),
    (EpsilonDPOConfig, "epsilon", 1.0, "epsilon must be a number in (0, 1), got 1.0"),
    (EpsilonDPOConfig, "epsilon", 0.0, "epsilon must be a number in (0, 1), got 0.0"),
    (EpsilonDPOConfig, "label_smoothing", 0.5, "label_smoothing must be a number in [0, 0.5), got 0.5"),
    (EpsilonDPOConfig, "update_beta", 1, "update_beta must be a bool, got 1"),
])
def test_method_configs_validate_on_construction(cls, field, value, message):
    with pytest.raises(ConfigError) as e:
        cls(**{field: value})
    assert str(e.value) == message and e.value.field == field


def test_one_validator_one_message():
    """The same hyper-parameter gives the same error in every config and in the method functions."""
    msgs = set()
    for make in (lambda: GammaPOConfig(beta=-1.0), lambda: EpsilonDPOConfig(beta=-1.0), lambda: E.check_beta(-1.0),
                 lambda: E.epsilon_dpo_loss([0.0], [0.0], [0.0], [0.0], [0], beta=-1.0, epsilon=0.1)):
        with pytest.raises(ConfigError) as e:
            make()
        msgs.add((str(e.value), e.value.field))
    assert msgs == {("beta must be a finite number > 0, got -1.0", "beta")}
    with pytest.raises(ConfigError) as a:
        BetaDPOConfig(rho=2.0)
    with pytest.raises(ConfigError) as b:
        BD.beta_dpo_step(BD.init_beta_dpo_state(), [0.0], [0.0], [0.0], [0.0], rho=2.0)
    assert (str(a.value), a.value.field) == (str(b.value), b.value.field)
    with pytest.raises(ConfigError) as a:
        GammaPOConfig(label_smoothing=0.7)
    with pytest.raises(ConfigError) as b:
        EpsilonDPOConfig(label_smoothing=0.7)
    assert (str(a.value), a.value.field) == (str(b.value), b.value.field)


def test_method_configs_store_python_numbers_and_round_trip():
    c = BetaDPOConfig(beta0=np.float32(0.5), alpha=np.int64(1), rho=1)
    assert type(c.beta0) is float and type(c.alpha) is float and c.rho == 1.0 and type(c.rho) is float
    assert c == BetaDPOConfig(beta0=0.5, alpha=1.0, rho=1.0) and hash(c) == hash(BetaDPOConfig(beta0=0.5, alpha=1.0, rho=1.0))
    e = EpsilonDPOConfig(beta=0.2, epsilon=np.float64(0.05), update_beta=False)
    assert EpsilonDPOConfig.from_dict(e.to_dict()) == e and e.replace(epsilon=0.1).epsilon == 0.1
    with pytest.raises(ConfigError) as err:
        BetaDPOConfig.from_dict({"beta": 0.1})
    assert err.value.field == "beta"
    with pytest.raises(ConfigError):
        e.replace(epsilon=2.0)
    with pytest.raises(dataclasses.FrozenInstanceError):
        e.beta = 1.0  # type: ignore[misc]


def test_epsilon_state_from_dict_reads_zero_dim_arrays():
    d = {k: np.asarray(v) for k, v in E.epsilon_state_to_dict(E.init_epsilon_state(0.1, 0.01)).items()}
    assert E.epsilon_state_from_dict(d) == E.init_epsilon_state(0.1, 0.01)
