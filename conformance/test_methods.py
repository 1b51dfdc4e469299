r"""Conformance of the one method shape (:mod:`gammapo_spec.methods`): a backend's
``step(config, state, pairs)`` equals the spec's for γ-PO, β-DPO and ε-DPO over several steps from
``init(config, seed)`` — every output field and the next state after each step — and raises the spec's
errors (class and field) for a bad config, pairs or state.

A backend provides ``Pairs``, ``init`` and ``step`` in its submodule ``methods``
(:data:`gammapo.protocol.METHOD_OPS`); a backend without one skips these tests. The maths of each method
is checked in depth by its own tests (``test_gamma_po_loss``, ``test_beta_dpo``, ``test_epsilon_dpo``);
these check what the dispatch adds: which function each config reaches, with which hyper-parameters and
columns, ε-DPO's order (steps, loss with the current β, accumulate, update) and the state threading.
Float64 inputs (JAX under ``jax_enable_x64``); ε-DPO's log-probs lie on a grid of quarters, so its steps
are exact and must equal the spec's.
"""

import numpy as np
import pytest
from hypothesis import given, note
from hypothesis import strategies as st

import gammapo_spec as R
import gammapo_spec.epsilon_dpo as E
from gammapo_conformance._harness import input_scale, loss_scale
from gammapo_conformance.adapters import assert_equal
from gammapo_conformance.strategies import batches, configs
from gammapo_conformance.test_beta_dpo import make_logps
from gammapo_conformance.test_epsilon_dpo import make_pairs

DTYPE = "float64"


def _ops(conf):
    mod = conf.ad.module("methods")
    if mod is None:
        pytest.skip(f"backend {conf.ad.name!r} has no methods module")
    return mod


def _pairs(conf, M, columns: dict):
    """``(backend Pairs, spec Pairs)`` of the same values (the spec's fed the backend's rounded inputs)."""
    bi, rounded = conf.ad.inputs(columns, DTYPE)
    return M.Pairs(**bi), R.Pairs(**rounded)


def _beta_configs():
    return st.builds(R.BetaDPOConfig, beta0=st.sampled_from([1e-3, 0.1, 0.5, 2.0]),
                     alpha=st.sampled_from([-1.0, 0.0, 0.6, 3.0]), rho=st.sampled_from([0.1, 0.5, 0.8, 1.0]),
                     momentum=st.sampled_from([0.0, 0.5, 0.9]), beta_min=st.sampled_from([1e-3, 0.05]))


def _epsilon_configs():
    return st.builds(R.EpsilonDPOConfig, beta=st.sampled_from([0.01, 0.1, 0.5, 2.0]),
                     epsilon=st.sampled_from([0.01, 0.1, 0.25, 0.5, 0.9]),
                     label_smoothing=st.sampled_from([0.0, 0.1, 0.3]), update_beta=st.booleans())


@given(data=st.data(), config=configs(), steps=st.integers(1, 3))
def test_step_gamma_po(conf, data, config, steps):
    """γ-PO: every field of the output and the queue state after each step, as the spec's step."""
    conf.example(DTYPE, config, steps=steps)
    M = _ops(conf)
    bs = [data.draw(batches(config, max_size=256)) for _ in range(steps)]
    note(f"# reproduce: cfg = {config!r}; batches {[b.short() for b in bs]}")
    with conf.ad.precision(DTYPE):
        state = M.init(config, 3)
        for k, batch in enumerate(bs):
            what = f"step (gamma-po, step {k})"
            ref_state = conf.ref_state(state, what)
            pb, pr = _pairs(conf, M, batch.inputs)
            out, state = M.step(config, state, pb)
            ref, ref_next = R.step(config, ref_state, pr)
            tol = dict(solver=config.solver, tau=config.tau, gamma0=config.gamma0, iters=config.iters)
            ms = 1 + config.gamma0 + abs(config.rdpo_alpha) * 512
            conf.close(out.margins, ref.margins, DTYPE, "calibration", f"{what}: margins", scale=ms, **tol)
            # the other fields on the backend's margins, so calibration rounding is not counted twice
            fixed = R.loss_with_margins(config, conf.ad.numpy(out.margins),
                                        **{f: v for f, v in pr._asdict().items() if v is not None})
            s = input_scale(config, batch.inputs)
            conf.loss_output(out, fixed, config, DTYPE, what, scale=s, loss_scale=loss_scale(config, fixed, s),
                             margin_tol=tol, margin_scale=ms)
            conf.queue_state(state, ref_next, DTYPE, f"{what}: next state",
                             scale=1.0 + float(np.max(np.abs(ref.gaps))))


@given(config=_beta_configs(), n=st.integers(1, 128), seeds=st.lists(st.integers(0, 2**31 - 1), min_size=1, max_size=3),
       seed=st.integers(0, 2**32 - 1))
def test_step_beta_dpo(conf, config, n, seeds, seed):
    """β-DPO: the kept subset exactly, β, gaps, losses and the running statistics after each step."""
    conf.example(DTYPE, steps=len(seeds))
    M, B = _ops(conf), conf.ad.module("beta_dpo")
    note(f"# reproduce: cfg = {config!r}; make_logps({n}, 'normal', s) for s in {seeds}; seed {seed}")
    with conf.ad.precision(DTYPE):
        state, ref_state = M.init(config, seed), R.init(config, seed)
        for k, s in enumerate(seeds):
            what = f"step (beta-dpo, step {k})"
            pb, pr = _pairs(conf, M, make_logps(n, "normal", s))
            out, state = M.step(config, state, pb)
            ref, ref_state = R.step(config, ref_state, pr)
            assert_equal(conf.ad.numpy(out.mask), ref.mask, f"{what}: kept subset (mask)")
            scale = 1.0 + float(np.max(np.abs(ref.gaps)))
            conf.close(out.beta, ref.beta, DTYPE, "values", f"{what}: beta")
            conf.close(out.gaps, ref.gaps, DTYPE, "values", f"{what}: gaps", scale=scale)
            conf.close(out.losses, ref.losses, DTYPE, "values", f"{what}: losses", scale=1.0 + ref.beta * scale)
            conf.close(out.loss, ref.loss, DTYPE, "values", f"{what}: loss", scale=1.0 + ref.beta * scale)
            got = B.beta_dpo_state_to_dict(state)
            for f in ("gap_mean", "gap_std"):
                conf.close(np.asarray(float(got[f])), getattr(ref_state, f), DTYPE, "values", f"{what}: state.{f}",
                           scale=scale)
            assert (int(got["step"]), int(got["seed"])) == (ref_state.step, ref_state.seed), (
                f"{what}: state step/seed {got['step']}/{got['seed']}, the spec's {ref_state.step}/{ref_state.seed}")


@given(config=_epsilon_configs(), n=st.integers(1, 64), seeds=st.lists(st.integers(0, 2**31 - 1), min_size=1, max_size=3),
       tie=st.booleans())
def test_step_epsilon_dpo(conf, config, n, seeds, tie):
    """ε-DPO: the steps exactly, every loss field (with the β before the update), then the state."""
    conf.example(DTYPE, steps=len(seeds), update_beta=config.update_beta)
    M, EB = _ops(conf), conf.ad.module("epsilon_dpo")
    note(f"# reproduce: cfg = {config!r}; make_pairs({n}, s, {tie}) for s in {seeds}")
    with conf.ad.precision(DTYPE):
        state, ref_state = M.init(config), R.init(config)
        for k, s in enumerate(seeds):
            what = f"step (epsilon-dpo, step {k})"
            cols, perturbed = make_pairs(n, s, tie)
            pb, pr = _pairs(conf, M, {**cols, **perturbed})
            out, state = M.step(config, state, pb)
            ref, ref_state = R.step(config, ref_state, pr)
            assert_equal(conf.ad.numpy(out.steps), ref.steps, f"{what}: steps")
            scale = 1.0 + 2.0 * config.beta * float(max(np.max(np.abs(v)) for v in cols.values()))
            conf.close(out.betas, ref.betas, DTYPE, "values", f"{what}: betas")
            for f in ("gaps", "chosen_rewards", "rejected_rewards", "losses", "loss"):
                conf.close(getattr(out, f), getattr(ref, f), DTYPE, "values", f"{what}: {f}", scale=scale)
            got, want = EB.epsilon_state_to_dict(state), E.epsilon_state_to_dict(ref_state)
            for f in ("step_sum", "step_count", "updates"):
                assert int(got[f]) == want[f], f"{what}: state.{f} = {got[f]}, the spec's is {want[f]}"
            for f in ("beta", "epsilon"):
                conf.close(np.asarray(float(got[f])), want[f], DTYPE, "values", f"{what}: state.{f}")


def _bad_cases():
    cols, perturbed = make_pairs(3, 0, False)
    beta, eps = R.BetaDPOConfig(), R.EpsilonDPOConfig(epsilon=0.1)
    return [
        ("config", lambda N, P: N.step({"beta0": 0.1}, None, P(cols))),
        ("init config", lambda N, P: N.init("beta-dpo")),
        ("pairs", lambda N, P: N.step(beta, N.init(beta), dict(cols))),
        ("missing column", lambda N, P: N.step(beta, N.init(beta), P({**cols, "ref_rejected_logps": None}))),
        ("unused column", lambda N, P: N.step(beta, N.init(beta), P({**cols, "chosen_lengths": [1, 2, 3]}))),
        ("missing perturbed", lambda N, P: N.step(eps, N.init(eps), P(cols))),
        ("gamma-po unused", lambda N, P: N.step(R.GammaPOConfig(loss="dpo"), None, P({**cols, **perturbed}))),
        ("other state", lambda N, P: N.step(eps, N.init(beta), P({**cols, **perturbed}))),
        ("other epsilon", lambda N, P: N.step(eps, N.init(eps.replace(epsilon=0.2)), P({**cols, **perturbed}))),
        ("bad seed", lambda N, P: N.init(beta, seed=-1)),
        ("mismatched", lambda N, P: N.step(beta, N.init(beta), P({**cols, "rejected_logps": cols["rejected_logps"][:2]}))),
    ]


@given(case=st.sampled_from(_bad_cases()))
def test_step_errors(conf, case):
    conf.example()
    M = _ops(conf)
    what, call = case

    def pairs(array):
        return lambda columns: M.Pairs(**{k: None if v is None else array(v) for k, v in columns.items()})

    with conf.ad.precision(DTYPE):
        conf.same_error(lambda: call(R, pairs(lambda v: np.asarray(v, dtype=np.float64))),
                        lambda: call(M, pairs(lambda v: conf.ad.array(v, DTYPE))), f"step ({what})")
