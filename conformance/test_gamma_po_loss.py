r"""Conformance of ``gamma_po_loss``: several steps of every output field and the whole state (after
each step and after a checkpoint round trip), gradients (autodiff vs the reference's analytic VJP,
margins stop-gradient), SimPO's NLL term and its gradient, the dtype policy (output dtypes and a
result only float32 arithmetic gives for half inputs), NaN propagation with value checks off, errors."""

import dataclasses

import numpy as np
from hypothesis import example, given, note
from hypothesis import strategies as st

import gammapo_spec as R
from gammapo_spec.dtype_policy import compute_dtype
from gammapo_conformance._harness import OUTPUT_FIELDS, batch_repro, gradient_scale, input_scale, loss_scale, repro
from gammapo_conformance.strategies import (all_invalid_inputs, batches, configs, dtypes, invalid_inputs,
                                            make_batch)


def _tol(config):
    return dict(solver=config.solver, tau=config.tau, gamma0=config.gamma0, iters=config.iters)


def _margin_scale(config):
    return 1 + config.gamma0 + abs(config.rdpo_alpha) * 512


def check_step(conf, config, state, inputs, dtype, what):
    """One backend step against the spec from the same state: every output field, the next state.
    Returns the backend's next state."""
    ref_state = conf.ref_state(state, what)
    bi, rounded = conf.ad.inputs(inputs, dtype)
    out, new_state = conf.B.gamma_po_loss(config, state, **bi)
    ref, ref_next = R.gamma_po_loss(config, ref_state, **rounded)
    s = input_scale(config, rounded)
    conf.close(out.margins, ref.margins, dtype, "calibration", f"{what}: margins", scale=_margin_scale(config),
               **_tol(config))
    # the other fields are compared on the backend's margins so calibration rounding is not counted twice
    ref_fixed = R.loss_with_margins(config, conf.ad.numpy(out.margins), **rounded)
    conf.loss_output(out, ref_fixed, config, dtype, what, scale=s, loss_scale=loss_scale(config, ref_fixed, s),
                     margin_scale=_margin_scale(config))
    conf.queue_state(new_state, ref_next, compute_dtype(dtype), f"{what}: next state",
                     scale=1.0 + float(np.max(np.abs(ref.gaps))))
    return new_state, out


@given(data=st.data(), config=configs(), dtype=dtypes(), steps=st.integers(1, 3))
def test_gamma_po_loss_values(conf, data, config, dtype, steps):
    conf.example(dtype, config, steps=steps)
    bs = [data.draw(batches(config, max_size=1024)) for _ in range(steps)]
    note(repro(conf.ad.name, "gamma_po_loss", config, dtype, "\n".join(batch_repro(b) for b in bs)))
    with conf.ad.precision(dtype):
        state = conf.B.init_state(config, 3)
        for step, batch in enumerate(bs):
            state, out = check_step(conf, config, state, batch.inputs, dtype, f"gamma_po_loss (step {step})")
        if state is None:
            return
        # a checkpoint round trip continues exactly as the state it came from
        bi, _ = conf.ad.inputs(bs[-1].inputs, dtype)
        a, sa = conf.B.gamma_po_loss(config, state, **bi)
        b, sb = conf.B.gamma_po_loss(config, conf.B.state_from_dict(conf.B.state_to_dict(state)), **bi)
        for f in OUTPUT_FIELDS:
            assert np.array_equal(conf.ad.numpy(getattr(a, f)), conf.ad.numpy(getattr(b, f)), equal_nan=True), (
                f"gamma_po_loss: {f} after state_from_dict(state_to_dict(state)) differs from the same step on state")
        da, db = conf.ad.state(sa), conf.ad.state(sb)
        assert all(np.array_equal(da[k], db[k]) for k in da), "the round-tripped state's next state differs"


SFT_CONFIGS = st.builds(
    lambda loss, w, beta, cal, ratio: R.GammaPOConfig(loss=loss, sft_weight=w, beta=beta, gamma_beta_ratio=ratio,
                                                      calibration=cal, tau=10.0, queue_size=16, sample_size=8),
    st.sampled_from(["simpo", "gamma-simpo"]), st.sampled_from([0.1, 0.5, 1.0, 2.0, 5.0]),
    st.sampled_from([0.5, 2.0, 2.5, 10.0]), st.sampled_from(["batch", "queue"]), st.sampled_from([0.0, 0.4, 1.0]))


@given(config=SFT_CONFIGS, n=st.integers(1, 40), seed=st.integers(0, 2**31 - 1),
       dtype=st.sampled_from(["float64", "float32"]))
@example(config=R.GammaPOConfig(sft_weight=1.0), n=1, seed=0, dtype="float64")
def test_gamma_po_loss_sft_term(conf, config, n, seed, dtype):
    r"""SimPO's NLL term: every output field and the gradient, and — independently of the reference's
    code — the term itself, :math:`\ell_i(w) - \ell_i(0) = w\,(-c_i/|y_w|)`, and its gradient
    :math:`-w/(N|y_w|)` on the chosen log-probs only (no gradient on the rejected)."""
    conf.example(dtype, config)
    inputs = make_batch(config, n, "normal", seed).inputs
    note(repro(conf.ad.name, "gamma_po_loss", config, dtype, f"inputs = make_batch(cfg, {n}, 'normal', {seed}).inputs"))
    plain = dataclasses.replace(config, sft_weight=0.0)
    with conf.ad.precision(dtype):
        check_step(conf, config, conf.B.init_state(config, 5), inputs, dtype, "gamma_po_loss (NLL term)")
        bi, rounded = conf.ad.inputs(inputs, dtype)
        out, _, grads = conf.B.gamma_po_loss_and_grad(config, conf.B.init_state(config, 5), **bi)
        out0, _, grads0 = conf.B.gamma_po_loss_and_grad(plain, conf.B.init_state(plain, 5), **bi)
        term = config.sft_weight * (-rounded["chosen_logps"] / rounded["chosen_lengths"])
        s = 1.0 + float(np.max(np.abs(term))) + input_scale(config, rounded)
        conf.close(conf.ad.numpy(out.losses) - conf.ad.numpy(out0.losses), term, dtype, "values",
                   "gamma_po_loss: losses(sft_weight) - losses(0), the NLL term w*(-c/|y_w|)", scale=s)
        g_term = -config.sft_weight / (n * rounded["chosen_lengths"])
        gs = 1.0 / n + float(np.max(np.abs(g_term)))
        conf.close(conf.ad.numpy(grads["chosen_logps"]) - conf.ad.numpy(grads0["chosen_logps"]), g_term, dtype,
                   "gradients", "d loss / d chosen_logps: the NLL term's part -w/(N |y_w|)", scale=gs)
        conf.close(conf.ad.numpy(grads["rejected_logps"]) - conf.ad.numpy(grads0["rejected_logps"]), np.zeros(n), dtype,
                   "gradients", "d loss / d rejected_logps: the NLL term has no part in it", scale=gs)
        want = R.loss_vjp(config, conf.ad.numpy(out.margins), **rounded)
        z = R.reward_gap(config, **rounded) - conf.ad.numpy(out.margins)
        for k, g in want.items():
            conf.close(grads[k], g, dtype, "gradients", f"gamma_po_loss (NLL term): d loss / d {k}",
                       scale=gradient_scale(config, g, z, input_scale(config, rounded), dtype) + gs)


@given(data=st.data(), config=configs(), dtype=dtypes())
def test_gamma_po_loss_gradients(conf, data, config, dtype):
    """Backend autodiff = reference analytic VJP at the backend's margins (margins are stop-gradient);
    the output that comes with the gradient is the loss step's, field by field."""
    conf.example(dtype, config)
    batch = data.draw(batches(config, max_size=1024))
    note(repro(conf.ad.name, "gamma_po_loss_and_grad", config, dtype, batch_repro(batch)))
    with conf.ad.precision(dtype):
        bi, rounded = conf.ad.inputs(batch.inputs, dtype)
        state = conf.B.init_state(config, 1)
        ref_state = conf.ref_state(state, "gamma_po_loss_and_grad")
        out, new_state, grads = conf.B.gamma_po_loss_and_grad(config, state, **bi)
        ref, ref_next = R.gamma_po_loss(config, ref_state, **rounded)
        margins = conf.ad.numpy(out.margins)
        conf.close(margins, ref.margins, dtype, "calibration", "gamma_po_loss_and_grad: margins",
                   scale=_margin_scale(config), **_tol(config))
        s = input_scale(config, rounded)
        fixed = R.loss_with_margins(config, margins, **rounded)
        conf.loss_output(out, fixed, config, dtype, "gamma_po_loss_and_grad", scale=s,
                         loss_scale=loss_scale(config, fixed, s), margin_scale=_margin_scale(config))
        conf.queue_state(new_state, ref_next, compute_dtype(dtype), "gamma_po_loss_and_grad: next state",
                         scale=1.0 + float(np.max(np.abs(ref.gaps))))
        want = R.loss_vjp(config, margins, **rounded)
        assert set(grads) == set(want), f"gradient keys {sorted(grads)} != reference {sorted(want)}"
        z = R.reward_gap(config, **rounded) - margins
        for k, g in want.items():
            scale = gradient_scale(config, g, z, s, dtype)  # max|g| + 1/N + the gap's rounding times ℓ''
            conf.close(grads[k], g, dtype, "gradients", f"gamma_po_loss: d loss / d {k}", scale=scale)
            got_dtype = str(getattr(grads[k], "dtype", dtype))
            if not isinstance(grads[k], np.ndarray):
                assert dtype in got_dtype, f"d loss / d {k} has dtype {got_dtype}; gradients keep the input dtype {dtype}"


HALF = st.sampled_from(["bfloat16", "float16"])
WELL_CONDITIONED = st.builds(
    lambda loss, solver, cal: R.GammaPOConfig(loss=loss, beta=2.0, gamma_beta_ratio=0.5, tau=1.0, solver=solver,
                                              iters=5, calibration=cal, queue_size=8, sample_size=12),
    st.sampled_from(["gamma-simpo", "gamma-dpo", "gamma-ipo", "gamma-robust", "simpo", "dpo", "hinge"]),
    st.sampled_from(["exact", "mirror"]), st.sampled_from(["batch", "queue"]))


@given(config=st.one_of(WELL_CONDITIONED, configs()), dtype=st.one_of(HALF, dtypes()), seed=st.integers(0, 2**31 - 1))
def test_gamma_po_loss_dtypes(conf, config, dtype, seed):
    """The dtype policy: every output field in the compute dtype
    (float64 → float64, float32 and half → float32); for half inputs on well-conditioned settings
    (κ = γ0²/(8τ) = 0.125, exact or mirror) every field at float32's tolerance, which arithmetic in
    half precision cannot meet (it rounds to ~4e-3)."""
    conf.example(dtype, config)
    inputs = make_batch(config, 24, "normal", seed).inputs
    want = compute_dtype(dtype)
    with conf.ad.precision(dtype):
        bi, rounded = conf.ad.inputs(inputs, dtype)
        state = conf.B.init_state(config, 0)
        out, new_state = conf.B.gamma_po_loss(config, state, **bi)
        if dtype in ("bfloat16", "float16") and config.gamma0 ** 2 / (8 * config.tau) <= 0.5 and config.beta <= 2:
            ref, _ = R.gamma_po_loss(config, conf.ref_state(state, "gamma_po_loss"), **rounded)
            s = input_scale(config, rounded)
            conf.loss_output(out, ref, config, "float32", f"gamma_po_loss ({dtype} inputs, float32 compute)", scale=s,
                             loss_scale=loss_scale(config, ref, s), margin_tol=_tol(config),
                             margin_scale=_margin_scale(config))
    got = str(getattr(out.losses, "dtype", "?"))
    if isinstance(out.losses, np.ndarray) and got == "float64":
        return  # a NumPy reference-style backend computes in float64 for every input (documented)
    for f in OUTPUT_FIELDS:
        v = getattr(out, f)
        d = str(getattr(v, "dtype", type(v).__name__))
        assert want in d, f"gamma_po_loss: {f} has dtype {d} for {dtype} inputs; the dtype policy says {want}"


@given(config=configs(), where=st.integers(0, 7), field=st.sampled_from(["chosen_logps", "rejected_logps"]))
def test_gamma_po_loss_nan_propagates(conf, config, where, field):
    """With ``check_values=False`` a NaN input is not an error and is never repaired: every output
    field is the spec's, NaN where the spec has NaN (a backend that masks or zeroes it fails)."""
    config = dataclasses.replace(config, check_values=False)
    conf.example("float64", config)
    inputs = make_batch(config, 8, "normal", where)
    inputs = {k: v.copy() for k, v in inputs.inputs.items()}
    inputs[field][where] = np.nan
    with conf.ad.precision("float64"):
        state = conf.B.init_state(config, 2)
        bi, rounded = conf.ad.inputs(inputs, "float64")
        out, new_state = conf.B.gamma_po_loss(config, state, **bi)
        ref, ref_next = R.gamma_po_loss(config, R.init_state(config, 2), **rounded)
        s = input_scale(config, {k: np.nan_to_num(v) for k, v in rounded.items()})
        slope = R.pair_loss_derivative(config, np.asarray(ref.gaps) - np.asarray(ref.margins))
        ls = s * max(1.0, float(np.max(np.abs(slope), initial=0.0, where=np.isfinite(slope))))
        conf.loss_output(out, ref, config, "float64", "gamma_po_loss (NaN input, check_values=False)", scale=s,
                         loss_scale=ls, margin_tol=_tol(config), margin_scale=_margin_scale(config))
        if ref_next is not None:
            got = conf.ad.state(new_state)["buffer"]
            want = R.state_to_dict(ref_next)["buffer"]
            assert np.array_equal(np.isnan(got), np.isnan(want)), "the NaN gap is not stored where the spec stores it"


@given(data=st.data(), config=configs())
def test_gamma_po_loss_errors(conf, data, config):
    conf.example("float64", config)
    bad, how = data.draw(invalid_inputs(config))
    note(f"broken input: {how}")
    with conf.ad.precision("float64"):
        bi = {k: conf.ad.array(v, "float64") for k, v in bad.items()}
        conf.same_error(lambda: R.gamma_po_loss(config, R.init_state(config), **bad),
                        lambda: conf.B.gamma_po_loss(config, conf.B.init_state(config), **bi), f"gamma_po_loss ({how})")


ERROR_CONFIGS = [R.GammaPOConfig(loss="dpo"), R.GammaPOConfig(loss="simpo", sft_weight=1.0),
                 R.GammaPOConfig(loss="gamma-rdpo", rdpo_alpha=0.1, calibration="batch"),
                 R.GammaPOConfig(loss="gamma-simpo", queue_size=8, sample_size=4)]


@given(which=st.sampled_from(range(len(ERROR_CONFIGS))))
def test_gamma_po_loss_every_error_path(conf, which):
    """Every field broken in every way (:func:`~gammapo_conformance.strategies.all_invalid_inputs`):
    NaN, ±inf, zero and negative lengths, N = 0, shapes, missing and extra fields raise the spec's
    error naming the spec's field, for each family of inputs."""
    config = ERROR_CONFIGS[which]
    conf.example("float64", config)
    with conf.ad.precision("float64"):
        for bad, how in all_invalid_inputs(config):
            bi = {k: conf.ad.array(v, "float64") for k, v in bad.items()}
            conf.same_error(lambda: R.gamma_po_loss(config, R.init_state(config), **bad),
                            lambda: conf.B.gamma_po_loss(config, conf.B.init_state(config), **bi),
                            f"gamma_po_loss ({how})")
