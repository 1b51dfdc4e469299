r"""Conformance of ``gamma_po_loss``: several steps of values and state, gradients (autodiff vs the
reference's analytic VJP, margins stop-gradient), dtype of the outputs, errors."""

import numpy as np
from hypothesis import given, note
from hypothesis import strategies as st

import gammapo_spec as R
from gammapo_spec.dtype_policy import compute_dtype
from gammapo_conformance._harness import batch_repro, gradient_scale, input_scale, loss_scale, repro
from gammapo_conformance.strategies import batches, configs, dtypes, invalid_inputs, make_batch


def _ref_state(conf, state):
    d = conf.ad.state(state)
    return None if d is None else R.state_from_dict(d)


@given(data=st.data(), config=configs(), dtype=dtypes(), steps=st.integers(1, 3))
def test_gamma_po_loss_values(conf, data, config, dtype, steps):
    conf.example(dtype)
    bs = [data.draw(batches(config, max_size=1024)) for _ in range(steps)]
    note(repro(conf.ad.name, "gamma_po_loss", config, dtype, "\n".join(batch_repro(b) for b in bs)))
    with conf.ad.precision(dtype):
        state = conf.B.init_state(config, 3)
        for step, batch in enumerate(bs):
            ref_state = _ref_state(conf, state)
            bi, rounded = conf.ad.inputs(batch.inputs, dtype)
            out, state = conf.B.gamma_po_loss(config, state, **bi)
            ref, ref_next = R.gamma_po_loss(config, ref_state, **rounded)
            s = input_scale(config, rounded)
            tol = dict(solver=config.solver, tau=config.tau, gamma0=config.gamma0, iters=config.iters)
            conf.close(out.margins, ref.margins, dtype, "calibration", f"gamma_po_loss: margins (step {step})",
                       scale=1 + config.gamma0 + abs(config.rdpo_alpha) * 512, **tol)
            conf.close(out.gaps, ref.gaps, dtype, "values", f"gamma_po_loss: gaps (step {step})", scale=s)
            # losses are compared on the backend's margins so calibration rounding is not counted twice
            ref_fixed = R.loss_with_margins(config, conf.ad.numpy(out.margins), **rounded)
            ls = loss_scale(config, ref_fixed, s)  # the gap's rounding times the loss's slope (IPO: 2|z − ½|/β²)
            conf.close(out.losses, ref_fixed.losses, dtype, "values", f"gamma_po_loss: losses (step {step})", scale=ls)
            conf.close(out.loss, ref_fixed.loss, dtype, "values", f"gamma_po_loss: loss (step {step})", scale=ls)
            if ref_next is not None:
                got = conf.ad.state(state)
                want = R.state_to_dict(ref_next)
                for k in ("size", "head", "step", "seed"):
                    assert got[k] == want[k], f"gamma_po_loss: state.{k} (step {step}) {got[k]} != {want[k]}"
            else:
                assert state is None, "gamma_po_loss: a stateless config must return state None"


@given(data=st.data(), config=configs(), dtype=dtypes())
def test_gamma_po_loss_gradients(conf, data, config, dtype):
    """Backend autodiff = reference analytic VJP at the backend's margins (margins are stop-gradient)."""
    conf.example(dtype)
    batch = data.draw(batches(config, max_size=1024))
    note(repro(conf.ad.name, "gamma_po_loss_and_grad", config, dtype, batch_repro(batch)))
    with conf.ad.precision(dtype):
        bi, rounded = conf.ad.inputs(batch.inputs, dtype)
        out, _, grads = conf.B.gamma_po_loss_and_grad(config, conf.B.init_state(config, 1), **bi)
        margins = conf.ad.numpy(out.margins)
        want = R.loss_vjp(config, margins, **rounded)
        assert set(grads) == set(want), f"gradient keys {sorted(grads)} != reference {sorted(want)}"
        z = R.reward_gap(config, **rounded) - margins
        s = input_scale(config, rounded)
        for k, g in want.items():
            scale = gradient_scale(config, g, z, s, dtype)  # max|g| + 1/N + the gap's rounding times ℓ''
            conf.close(grads[k], g, dtype, "gradients", f"gamma_po_loss: d loss / d {k}", scale=scale)


@given(config=configs(), dtype=dtypes())
def test_gamma_po_loss_dtypes(conf, config, dtype):
    """Outputs follow the dtype policy (float64 → float64, float32 and half → float32)."""
    conf.example(dtype)
    with conf.ad.precision(dtype):
        bi, _ = conf.ad.inputs(make_batch(config, 5, "normal", 0).inputs, dtype)
        out, _ = conf.B.gamma_po_loss(config, conf.B.init_state(config, 0), **bi)
    got = str(getattr(out.losses, "dtype", "?"))
    if isinstance(out.losses, np.ndarray) and got == "float64":
        return  # a NumPy reference-style backend computes in float64 for every input (documented)
    want = compute_dtype(dtype)
    assert want in got, f"gamma_po_loss: losses dtype {got} for {dtype} inputs; the dtype policy says {want}"
    for f in ("margins", "gaps"):
        assert want in str(getattr(getattr(out, f), "dtype", want)), f"gamma_po_loss: {f} dtype"


@given(data=st.data(), config=configs())
def test_gamma_po_loss_errors(conf, data, config):
    conf.example()
    bad, how = data.draw(invalid_inputs(config))
    note(f"broken input: {how}")
    with conf.ad.precision("float64"):
        bi = {k: conf.ad.array(v, "float64") for k, v in bad.items()}
        conf.same_error(lambda: R.gamma_po_loss(config, R.init_state(config), **bad),
                        lambda: conf.B.gamma_po_loss(config, conf.B.init_state(config), **bi), f"gamma_po_loss ({how})")
