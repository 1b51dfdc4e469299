"""Bad inputs raise the reference's error class AND message on the JAX backend.

Eager-only (documented in ``gammapo_jax``): the value checks of ``config.check_values``
(non-finite log-probs/gaps, non-positive lengths) need concrete values; under ``jax.jit`` they are
skipped and NaN propagates (tested below). Every other check (shapes, config, state, seed,
checkpoint dicts) looks only at static information and raises under ``jax.jit`` too.
"""

from __future__ import annotations

import gammapo_spec
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from gammapo_spec import GammaPOConfig

import gammapo_jax as G

SIMPO = GammaPOConfig(loss="gamma-simpo", calibration="batch")
QUEUE = GammaPOConfig(loss="gamma-dpo", calibration="queue", queue_size=8, sample_size=6, queue_warmup=2)
GOOD = dict(chosen_logps=[-1.0, -2.0], rejected_logps=[-3.0, -1.0], chosen_lengths=[2.0, 3.0], rejected_lengths=[1.0, 4.0])

# (name, function of a module M = gammapo_spec or gammapo_jax). The module-specific state is built inside.
CASES = {
    "missing_input": lambda M: M.gamma_po_loss(SIMPO, None, chosen_logps=[-1.0], rejected_logps=[-2.0], chosen_lengths=[1.0]),
    "unexpected_input": lambda M: M.gamma_po_loss(SIMPO, None, **GOOD, ref_chosen_logps=[0.0, 0.0]),
    "not_1d": lambda M: M.gamma_po_loss(SIMPO, None, **{**GOOD, "chosen_logps": [[-1.0, -2.0]]}),
    "empty": lambda M: M.gamma_po_loss(SIMPO, None, chosen_logps=[], rejected_logps=[], chosen_lengths=[], rejected_lengths=[]),
    "mismatched": lambda M: M.gamma_po_loss(SIMPO, None, **{**GOOD, "rejected_logps": [-1.0]}),
    "nan_logps": lambda M: M.gamma_po_loss(SIMPO, None, **{**GOOD, "chosen_logps": [np.nan, -1.0]}),
    "inf_ref_logps": lambda M: M.reward_gap(GammaPOConfig(loss="dpo"), chosen_logps=[-1.0], rejected_logps=[-2.0],
                                            ref_chosen_logps=[np.inf], ref_rejected_logps=[0.0]),
    "zero_length": lambda M: M.implicit_rewards(SIMPO, **{**GOOD, "rejected_lengths": [1.0, 0.0]}),
    "state_for_batch_mode": lambda M: M.gamma_po_loss(SIMPO, M.init_state(QUEUE), **GOOD),
    "no_state_in_queue_mode": lambda M: M.calibrate_step(QUEUE, None, [1.0, 2.0]),
    "wrong_state_type": lambda M: M.calibrate_step(QUEUE, {"buffer": [0.0]}, [1.0, 2.0]),
    "wrong_capacity": lambda M: M.calibrate_step(QUEUE, M.init_state(GammaPOConfig(loss="gamma-dpo", queue_size=4, sample_size=2, queue_warmup=0)), [1.0]),
    "seed_negative": lambda M: M.init_state(QUEUE, seed=-1),
    "seed_too_large": lambda M: M.init_state(QUEUE, seed=2**32),
    "seed_float": lambda M: M.init_state(QUEUE, seed=1.5),
    "gaps_2d": lambda M: M.calibrate_margins([[1.0]], gamma0=1.0, tau=1.0),
    "gaps_empty": lambda M: M.calibrate_margins([], gamma0=1.0, tau=1.0),
    "gaps_nan": lambda M: M.calibrate_margins([1.0, np.nan], gamma0=1.0, tau=1.0),
    "step_gaps_inf": lambda M: M.calibrate_step(SIMPO, None, [np.inf]),
    "gamma0_negative": lambda M: M.calibrate_margins([1.0], gamma0=-1.0, tau=1.0),
    "tau_zero": lambda M: M.calibrate_margins([1.0], gamma0=1.0, tau=0.0),
    "solver_unknown": lambda M: M.calibrate_margins([1.0], gamma0=1.0, tau=1.0, solver="newton"),
    "iters_zero": lambda M: M.calibrate_margins([1.0], gamma0=1.0, tau=1.0, iters=0),
    "margins_wrong_length": lambda M: M.loss_with_margins(SIMPO, [1.0], **GOOD),
    "dict_missing_key": lambda M: M.state_from_dict({"buffer": [0.0], "size": 0, "head": 0, "step": 0}),
    "dict_bad_size": lambda M: M.state_from_dict({"buffer": [0.0, 0.0], "size": 3, "head": 0, "step": 0, "seed": 0}),
    "dict_bad_head": lambda M: M.state_from_dict({"buffer": [0.0, 0.0], "size": 0, "head": 2, "step": 0, "seed": 0}),
    "dict_empty_buffer": lambda M: M.state_from_dict({"buffer": [], "size": 0, "head": 0, "step": 0, "seed": 0}),
}


def _raised(fn, module):
    try:
        fn(module)
    except Exception as e:  # noqa: BLE001 - we compare whatever the reference raises
        return type(e), str(e), getattr(e, "field", None)
    return None


@pytest.mark.parametrize("case", sorted(CASES))
def test_jax_errors_match_reference(case):
    want = _raised(CASES[case], gammapo_spec)
    assert want is not None, f"{case}: the reference accepts this input; the case is wrong"
    got = _raised(CASES[case], G)
    assert got == want, f"{case}: JAX raised {got}, reference {want}"


@pytest.mark.parametrize("case", ["missing_input", "not_1d", "mismatched", "state_for_batch_mode", "wrong_capacity"])
def test_jax_errors_static_checks_raise_under_jit(case):
    """Shape/state checks need no values, so they raise identically inside ``jax.jit``."""
    want = _raised(CASES[case], gammapo_spec)

    def traced(_):
        CASES[case](G)
        return jnp.zeros(())

    got = _raised(lambda _: jax.jit(traced)(jnp.zeros(())), None)
    assert got is not None and got[:2] == want[:2], f"{case} under jit: {got} vs {want}"


def test_jax_errors_value_checks_are_eager_only():
    """Under jit the non-finite check is skipped (no host sync): NaN flows into the loss instead."""
    cfg = SIMPO
    f = jax.jit(lambda c: G.gamma_po_loss(cfg, None, chosen_logps=c, rejected_logps=jnp.array([-3.0, -1.0]),
                                          chosen_lengths=jnp.array([2.0, 3.0]), rejected_lengths=jnp.array([1.0, 4.0]))[0].loss)
    assert np.isnan(float(f(jnp.array([np.nan, -1.0]))))
    with pytest.raises(gammapo_spec.InputError, match="chosen_logps contains NaN"):
        G.gamma_po_loss(cfg, None, **{**GOOD, "chosen_logps": jnp.array([np.nan, -1.0])})
