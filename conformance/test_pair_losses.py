r"""Conformance of ``pair_losses`` ℓ(z): values over the whole real line (|z| up to 1e4: no overflow)."""

import numpy as np
from hypothesis import given, note
from hypothesis import strategies as st

import gammapo_spec as R
from gammapo_spec.config import SMOOTHED_LOSSES
from gammapo_conformance.strategies import configs, dtypes

ZS = st.lists(
    st.one_of(st.floats(-50, 50), st.sampled_from([-1e4, -800.0, -100.0, 0.0, 100.0, 800.0, 1e4])), min_size=1, max_size=64
)


@given(config=configs(), z=ZS, dtype=dtypes())
def test_pair_losses_values(conf, config, z, dtype):
    conf.example(dtype)
    note(f"config = R.{config!r}\nz = np.array({z!r})")
    with conf.ad.precision(dtype):
        bz = conf.ad.array(z, dtype)
        got = conf.ad.numpy(conf.B.pair_losses(config, bz))
        ref = R.pair_losses(config, conf.ad.numpy(bz))
    assert np.all(np.isfinite(got)), f"pair_losses: non-finite values {got[~np.isfinite(got)][:5]} (overflow?)"
    conf.close(got, ref, dtype, "values", "pair_losses", scale=1.0)


@given(
    loss=st.sampled_from(["dpo", "simpo", "rdpo", "robust", "gamma-dpo", "gamma-simpo", "gamma-robust"]),
    eps=st.sampled_from([0.01, 0.1, 0.3, 0.49]),
    z=ZS,
    dtype=dtypes(),
)
def test_pair_losses_label_smoothing(conf, loss, eps, z, dtype):
    """The smoothed losses (cDPO; robust's assumed flip rate) for every ε, both signs of z."""
    conf.example(dtype)
    config = R.GammaPOConfig(loss=loss, label_smoothing=eps)
    note(f"config = R.{config!r}\nz = np.array({z!r})")
    with conf.ad.precision(dtype):
        bz = conf.ad.array(z, dtype)
        got = conf.ad.numpy(conf.B.pair_losses(config, bz))
        ref = R.pair_losses(config, conf.ad.numpy(bz))
    conf.close(got, ref, dtype, "values", "pair_losses (label smoothing)", scale=1.0)


#: A dense grid over the range where a soft-plus / log-sigmoid switches formulas (a threshold such as
#: "softplus(z) = z for z > 20" or an asymptotic branch is visible here), plus tiny and huge |z|.
GRID = np.concatenate([np.linspace(-60.0, 60.0, 1201), [-1e-12, 1e-12, -1e-300, 1e-300, -1e4, 1e4, -745.0, 745.0]])


@given(loss=st.sampled_from(R.BASE_LOSSES), eps=st.sampled_from([0.0, 0.0, 0.1, 0.3]),
       dtype=st.sampled_from(["float64", "float64", "float32", "bfloat16"]))
def test_pair_losses_dense_grid(conf, loss, eps, dtype):
    """ℓ(z) on every tenth in [-60, 60] and at the extremes, for every base loss, with and without
    smoothing: a changed switch-over point of a stable soft-plus differs there by more than the
    tolerance (at z = 15, e^{-15} = 3e-7)."""
    if eps and loss not in SMOOTHED_LOSSES:
        eps = 0.0
    config = R.GammaPOConfig(loss=loss, label_smoothing=eps)
    conf.example(dtype, config)
    with conf.ad.precision(dtype):
        bz = conf.ad.array(GRID, dtype)
        got = conf.ad.numpy(conf.B.pair_losses(config, bz))
        ref = R.pair_losses(config, conf.ad.numpy(bz))
    assert np.all(np.isfinite(got)), f"pair_losses: non-finite values at z = {conf.ad.numpy(bz)[~np.isfinite(got)][:5]}"
    conf.close(got, ref, dtype, "values", f"pair_losses ({loss}, smoothing {eps}) on a dense grid", scale=1.0)
