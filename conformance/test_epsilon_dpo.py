r"""Conformance of ε-DPO (:mod:`gammapo_spec.epsilon_dpo`): the perturbed sequence log-probs, the
per-pair steps (exactly the spec's, ties included), the per-pair β, gaps and every field of the loss
output, the global-β state through accumulate / update / checkpoint round trips, and errors.

A backend provides these in its submodule ``epsilon_dpo``; a backend without one skips these tests.
Labels and masks are passed as NumPy integer / bool arrays (every backend accepts array-likes).
"""

import numpy as np
import pytest
from hypothesis import given, note
from hypothesis import strategies as st

import gammapo_spec.epsilon_dpo as E
from gammapo_conformance.adapters import assert_equal

EPSILONS = st.sampled_from([0.01, 0.1, 0.25, 0.5, 0.9])
BETAS = st.sampled_from([0.01, 0.1, 0.5, 2.0])
_PAIR = ("chosen_logps", "rejected_logps", "ref_chosen_logps", "ref_rejected_logps")
_OUTPUT = ("loss", "losses", "betas", "gaps", "chosen_rewards", "rejected_rewards")


def _ops(conf):
    mod = conf.ad.module("epsilon_dpo")
    if mod is None:
        pytest.skip(f"backend {conf.ad.name!r} has no epsilon_dpo module")
    return mod


def make_tokens(b: int, t: int, v: int, seed: int, kind: str):
    """Logits ``[b, t, v]`` (policy = reference + a drift; ``same``: equal), labels with some -100,
    and a mask (``None`` for the -100 convention)."""
    rng = np.random.default_rng(seed)
    ref = rng.normal(scale=3.0, size=(b, t, v))
    pol = ref.copy() if kind == "same" else ref + rng.normal(scale=0.5, size=(b, t, v))
    labels = rng.integers(0, v, size=(b, t))
    keep = rng.random((b, t)) < 0.7
    keep[:, 0] = True  # every row scores a token
    mask = None
    if kind == "mask":
        mask = keep
        labels = np.where(keep, labels, 10**6)  # ignored labels may hold anything
    else:
        labels = np.where(keep, labels, E.IGNORE_INDEX)
    return pol, ref, labels.astype(np.int64), mask


@given(b=st.integers(1, 4), t=st.integers(1, 6), v=st.integers(2, 9), seed=st.integers(0, 2**31 - 1),
       kind=st.sampled_from(["drift", "same", "mask"]), eps=EPSILONS, dtype=st.sampled_from(["float64", "float32"]))
def test_epsilon_dpo_sequence_logps_values(conf, b, t, v, seed, kind, eps, dtype):
    conf.example(dtype, kind=kind)
    M = _ops(conf)
    pol, ref, labels, mask = make_tokens(b, t, v, seed, kind)
    note(f"# reproduce: make_tokens({b}, {t}, {v}, {seed}, {kind!r}), epsilon={eps}, dtype {dtype}")
    with conf.ad.precision(dtype):
        bp, bq = conf.ad.array(pol, dtype), conf.ad.array(ref, dtype)
        got = M.epsilon_sequence_logps(bp, bq, labels, mask, epsilon=eps)
        want = E.epsilon_sequence_logps(conf.ad.numpy(bp), conf.ad.numpy(bq), labels, mask, epsilon=eps)
    scale = t * (1.0 + float(np.max(np.abs(pol))) + float(np.max(np.abs(ref))))
    for name, g, w in zip(("logps", "logps_plus", "logps_minus"), got, want):
        conf.close(g, w, dtype, "values", f"epsilon_sequence_logps: {name}", scale=scale)
    if kind == "same":  # z± = z exactly where the policy equals the reference: the three agree
        for name, g in zip(("logps_plus", "logps_minus"), got[1:]):
            assert_equal(conf.ad.numpy(g), conf.ad.numpy(got[0]), f"epsilon_sequence_logps: {name} with policy = reference")


def make_pairs(n: int, seed: int, tie: bool):
    """Pair columns: log-probs on a grid of quarters (differences exact), ties between ρ, ρ± when ``tie``."""
    rng = np.random.default_rng(seed)
    cols = {k: -rng.integers(4, 200, n) / 4.0 for k in _PAIR}
    plus = {"chosen_logps_plus": cols["chosen_logps"] + rng.integers(-3, 4, n) / 4.0,
            "rejected_logps_plus": cols["rejected_logps"] + (0.0 if tie else rng.integers(-3, 4, n) / 4.0)}
    minus = {"chosen_logps_minus": cols["chosen_logps"] + rng.integers(-3, 4, n) / 4.0,
             "rejected_logps_minus": cols["rejected_logps"] + rng.integers(-3, 4, n) / 4.0}
    return cols, {**plus, **minus}


_STEPS = ("chosen_logps", "rejected_logps", "chosen_logps_plus", "rejected_logps_plus", "chosen_logps_minus",
          "rejected_logps_minus")


@given(n=st.integers(1, 64), seed=st.integers(0, 2**31 - 1), tie=st.booleans(), eps=EPSILONS, beta=BETAS,
       smoothing=st.sampled_from([0.0, 0.0, 0.1, 0.3]), margins=st.booleans(),
       dtype=st.sampled_from(["float64", "float32"]))
def test_epsilon_dpo_loss_values(conf, n, seed, tie, eps, beta, smoothing, margins, dtype):
    """Steps exactly the spec's (strict inequalities, ties give 0), then β_i, the gaps and every field
    of the loss output, with and without margins and label smoothing."""
    conf.example(dtype, smoothing="on" if smoothing else "off", margins=margins)
    M = _ops(conf)
    cols, pm = make_pairs(n, seed, tie)
    m = np.random.default_rng(seed + 1).normal(size=n) if margins else None
    note(f"# reproduce: make_pairs({n}, {seed}, {tie}); eps={eps}, beta={beta}, smoothing={smoothing}, margins={margins}")
    with conf.ad.precision(dtype):
        allc = {**cols, **pm}
        bi, r = conf.ad.inputs(allc, dtype)
        steps = M.epsilon_steps(*(bi[k] for k in _STEPS))
        want_steps = E.epsilon_steps(*(r[k] for k in _STEPS))
        assert_equal(conf.ad.numpy(steps), want_steps, "epsilon_steps: per-pair steps")
        conf.close(M.epsilon_betas(beta, steps, eps), E.epsilon_betas(beta, want_steps, eps), dtype, "values",
                   "epsilon_betas")
        bm = None if m is None else conf.ad.array(m, dtype)
        rm = None if m is None else conf.ad.numpy(bm)
        args = [bi[k] for k in _PAIR]
        rargs = [r[k] for k in _PAIR]
        s = 1.0 + beta * 2 * float(max(np.max(np.abs(r[k])) for k in _PAIR)) * 2
        conf.close(M.epsilon_dpo_gaps(*args, steps, beta=beta, epsilon=eps),
                   E.epsilon_dpo_gaps(*rargs, want_steps, beta=beta, epsilon=eps), dtype, "values", "epsilon_dpo_gaps", scale=s)
        out = M.epsilon_dpo_loss(*args, steps, beta=beta, epsilon=eps, label_smoothing=smoothing, margins=bm)
        ref = E.epsilon_dpo_loss(*rargs, want_steps, beta=beta, epsilon=eps, label_smoothing=smoothing, margins=rm)
        for f in _OUTPUT:
            if not hasattr(out, f):
                raise AssertionError(f"epsilon_dpo_loss: the backend's output has no field {f!r}")
            conf.close(getattr(out, f), getattr(ref, f), dtype, "values", f"epsilon_dpo_loss: {f}",
                       scale=s + (0.0 if m is None else float(np.max(np.abs(m)))))


@given(batches=st.lists(st.lists(st.sampled_from([-1, 0, 1]), min_size=1, max_size=9), min_size=0, max_size=4),
       updates=st.integers(1, 3), beta=BETAS, eps=EPSILONS, cut=st.integers(0, 3))
def test_epsilon_dpo_state(conf, batches, updates, beta, eps, cut):
    """The global-β state: accumulate micro-batches, update, repeat; every field equals the spec's
    after every call, and a checkpoint dict (the backend's, or the spec's) continues the same."""
    conf.example(micro_batches=len(batches))
    M = _ops(conf)
    with conf.ad.precision("float64"):
        st_b, st_r = M.init_epsilon_state(beta, eps), E.init_epsilon_state(beta, eps)
        for u in range(updates):
            for i, steps in enumerate(batches):
                st_b = M.epsilon_accumulate(st_b, conf.ad.array(steps, "float64"))
                st_r = E.epsilon_accumulate(st_r, steps)
                _same_state(conf, M, st_b, st_r, f"after update {u}, micro-batch {i}")
                if i == cut:
                    st_b = M.epsilon_state_from_dict(M.epsilon_state_to_dict(st_b))
                    _same_state(conf, M, st_b, st_r, f"round trip after update {u}, micro-batch {i}")
            st_b, st_r = M.epsilon_update_beta(st_b), E.epsilon_update_beta(st_r)
            _same_state(conf, M, st_b, st_r, f"after update {u + 1}")
            st_b = M.epsilon_state_from_dict(E.epsilon_state_to_dict(st_r))
            _same_state(conf, M, st_b, st_r, f"the backend's state rebuilt from the spec's dict after update {u + 1}")


def _same_state(conf, M, got, want, what):
    d, w = M.epsilon_state_to_dict(got), E.epsilon_state_to_dict(want)
    if set(d) != set(w):
        raise AssertionError(f"epsilon state {what}: keys {sorted(d)}, the spec's {sorted(w)}")
    for k in ("step_sum", "step_count", "updates"):
        if int(d[k]) != w[k]:
            raise AssertionError(f"epsilon state {what}: {k} = {d[k]}, the spec's is {w[k]}")
    for k in ("beta", "epsilon"):
        conf.close(np.asarray(float(d[k])), w[k], "float64", "values", f"epsilon state {what}: {k}")


def _bad_cases():
    pol, ref, labels, _ = make_tokens(2, 3, 4, 0, "drift")
    cols, pm = make_pairs(4, 0, False)
    args = [cols[k] for k in _PAIR]
    steps = np.array([1, 0, -1, 0])
    L = lambda **kw: ("loss", lambda M, a: M.epsilon_dpo_loss(*(a(x) for x in kw.get("args", args)),  # noqa: E731
                                                              kw.get("steps", steps), beta=kw.get("beta", 0.1),
                                                              epsilon=kw.get("eps", 0.1),
                                                              label_smoothing=kw.get("ls", 0.0),
                                                              margins=kw.get("margins")))
    nan_arg = [args[0].copy(), *args[1:]]
    nan_arg[0][2] = np.nan
    inf_arg = [args[0], args[1].copy(), *args[2:]]
    inf_arg[1][0] = -np.inf
    cases = [L(eps=0.0), L(eps=1.0), L(eps=float("nan")), L(beta=0.0), L(beta=-1.0), L(ls=0.5), L(ls=-0.1),
             L(steps=np.array([2, 0, 0, 0])), L(steps=np.array([1, 0, 0])), L(args=nan_arg), L(args=inf_arg),
             L(args=[a[:3] if i == 2 else a for i, a in enumerate(args)]), L(args=[a[:0] for a in args], steps=steps[:0]),
             L(margins=np.zeros(3)), L(margins=np.array([0.0, np.inf, 0.0, 0.0]))]
    bad_labels = labels.copy()
    bad_labels[0, 0] = 4
    empty_row = np.full_like(labels, E.IGNORE_INDEX)
    nan_pol = pol.copy()
    nan_pol[1, 1, 1] = np.nan
    S = lambda p, q, y, m=None, eps=0.1: ("sequence_logps", lambda M, a: M.epsilon_sequence_logps(  # noqa: E731
        a(p), a(q), y, m, epsilon=eps))
    cases += [S(pol, ref, bad_labels), S(pol, ref, empty_row), S(pol, ref, labels.astype(np.float64)),
              S(pol, ref[:1], labels), S(pol, ref, labels[:, :2]), S(nan_pol, ref, labels), S(pol, ref, labels, eps=0.0),
              S(pol, ref, labels, np.zeros((2, 3), bool))]
    cases += [("steps", lambda M, a: M.epsilon_steps(*(a(x) for x in (args[0], args[1], args[0], args[1], args[0]))
                                                      , a(args[1][:2]))),
              ("state", lambda M, a: M.epsilon_state_from_dict({"beta": 0.1, "epsilon": 0.1, "step_sum": 0})),
              ("state", lambda M, a: M.epsilon_state_from_dict({"beta": -1.0, "epsilon": 0.1, "step_sum": 0,
                                                                 "step_count": 0, "updates": 0})),
              ("state", lambda M, a: M.epsilon_state_from_dict({"beta": 0.1, "epsilon": 0.1, "step_sum": 0,
                                                                 "step_count": -1, "updates": 0})),
              ("init", lambda M, a: M.init_epsilon_state(0.1, 1.5)),
              ("accumulate", lambda M, a: M.epsilon_accumulate(M.init_epsilon_state(0.1, 0.1), a(np.array([0.5]))))]
    return cases


@given(case=st.sampled_from(_bad_cases()))
def test_epsilon_dpo_errors(conf, case):
    conf.example()
    M = _ops(conf)
    what, call = case
    with conf.ad.precision("float64"):
        conf.same_error(lambda: call(E, lambda v: np.asarray(v, dtype=np.float64)),
                        lambda: call(M, lambda v: conf.ad.array(v, "float64")), f"epsilon_dpo ({what})")
