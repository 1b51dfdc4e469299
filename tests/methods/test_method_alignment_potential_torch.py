"""gammapo_torch.alignment_potential matches gammapo_spec.alignment_potential (values, ties, errors)."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import gammapo_spec.alignment_potential as spec  # noqa: E402
import gammapo_torch.alignment_potential as tap  # noqa: E402
from gammapo_spec import GammaPOError  # noqa: E402


def _data(n=64, seed=0):
    rng = np.random.default_rng(seed)
    return {
        "sw": rng.integers(1, 11, n).astype(float), "sl": rng.integers(1, 11, n).astype(float),
        "c": -rng.uniform(1, 40, n), "r": -rng.uniform(1, 40, n),
        "cref": -rng.uniform(1, 40, n), "rref": -rng.uniform(1, 40, n),
        "lw": rng.integers(1, 30, n).astype(float), "ll": rng.integers(1, 30, n).astype(float),
    }


def _t(x, dtype=torch.float64):
    return torch.tensor(x, dtype=dtype)


@pytest.mark.parametrize(("dtype", "tol"), [(torch.float64, 1e-10), (torch.float32, 2e-5), (torch.bfloat16, None)])
@pytest.mark.parametrize("variant", ["reference-free", "reference-based"])
def test_torch_alignment_potential_matches_spec(dtype, tol, variant):
    d = _data()
    if dtype == torch.bfloat16:  # upcast: compare with the reference fed the same bf16-rounded values
        d = {k: _t(v, torch.bfloat16).double().numpy() for k, v in d.items()}
        tol = 2e-5
    kw_spec = ({"chosen_lengths": d["lw"], "rejected_lengths": d["ll"]} if variant == "reference-free"
               else {"ref_chosen_logps": d["cref"], "ref_rejected_logps": d["rref"]})
    kw_t = {k: _t(v, dtype) for k, v in kw_spec.items()}
    im_s = spec.implicit_margin(d["c"], d["r"], variant=variant, **kw_spec)
    im_t = tap.implicit_margin(_t(d["c"], dtype), _t(d["r"], dtype), variant=variant, **kw_t)
    assert im_t.dtype == (torch.float64 if dtype == torch.float64 else torch.float32)
    np.testing.assert_allclose(im_t.double().numpy(), im_s, rtol=tol, atol=tol)
    ex_s = spec.explicit_margin(d["sw"], d["sl"])
    ex_t = tap.explicit_margin(_t(d["sw"], dtype), _t(d["sl"], dtype))
    np.testing.assert_allclose(ex_t.double().numpy(), ex_s, rtol=tol, atol=tol)
    for metric in spec.METRICS:
        s_s = spec.selection_scores(metric, explicit_margins=ex_s, implicit_margins=im_s, weight=0.6)
        s_t = tap.selection_scores(metric, explicit_margins=ex_t, implicit_margins=im_t, weight=0.6)
        np.testing.assert_allclose(s_t.double().numpy(), s_s, rtol=tol, atol=tol, err_msg=metric)


def test_torch_select_top_fraction_equals_spec_with_ties():
    rng = np.random.default_rng(5)
    for n in (1, 2, 7, 50, 101):
        s = rng.integers(-2, 3, n).astype(float)  # many ties
        for f in (0.1, 0.29, 0.5, 1.0):
            got = tap.select_top_fraction(_t(s), f)
            assert got.dtype == torch.int64
            assert got.tolist() == spec.select_top_fraction(s, f).tolist(), (n, f)


def test_torch_zscore_constant_column_is_zero():
    assert tap.zscore(_t([0.1] * 3)).tolist() == [0.0, 0.0, 0.0]


def test_torch_alignment_potential_gradient_flows_to_the_margins():
    ex = _t([1.0, 2.0, 4.0]).requires_grad_()
    im = _t([0.5, 0.1, 0.3]).requires_grad_()
    tap.alignment_potential(ex, im)[2].backward()
    assert torch.isfinite(ex.grad).all() and ex.grad.abs().sum() > 0 and im.grad.abs().sum() > 0


BAD = [
    ("zscore", ([1.0, float("nan")],), {}),
    ("zscore", ([],), {}),
    ("zscore", ([[1.0, 2.0]],), {}),
    ("explicit_margin", ([1.0, 2.0], [1.0]), {}),
    ("explicit_margin", ([1.0, float("inf")], [1.0, 1.0]), {}),
    ("implicit_margin", ([1.0], [1.0]), {"variant": "simpo"}),
    ("implicit_margin", ([1.0], [1.0, 2.0]), {"chosen_lengths": [1.0], "rejected_lengths": [1.0]}),
    ("implicit_margin", ([1.0], [1.0]), {"chosen_lengths": [1.0]}),
    ("implicit_margin", ([1.0], [1.0]), {"chosen_lengths": [0.0], "rejected_lengths": [1.0]}),
    ("implicit_margin", ([1.0], [1.0]), {"chosen_lengths": [1.0], "rejected_lengths": [1.0], "ref_chosen_logps": [1.0]}),
    ("implicit_margin", ([1.0], [1.0]), {"variant": "reference-based", "ref_chosen_logps": [1.0]}),
    ("implicit_margin", ([float("nan")], [1.0]), {"chosen_lengths": [1.0], "rejected_lengths": [1.0]}),
    ("alignment_potential", ([1.0, 2.0], [1.0, 2.0]), {"weight": -1.0}),
    ("alignment_potential", ([1.0, 2.0], [1.0]), {}),
    ("selection_scores", ("random",), {}),
    ("selection_scores", ("explicit-margin",), {}),
    ("select_top_fraction", ([1.0, 2.0], 0.0), {}),
    ("select_top_fraction", ([1.0, float("nan")], 0.5), {}),
]


@pytest.mark.parametrize(("name", "args", "kwargs"), BAD, ids=[f"{b[0]}-{i}" for i, b in enumerate(BAD)])
def test_torch_alignment_potential_errors_equal_the_spec(name, args, kwargs):
    with pytest.raises(GammaPOError) as want:
        getattr(spec, name)(*args, **kwargs)
    conv = [_t(a) if isinstance(a, list) else a for a in args]
    kw = {k: (_t(v) if isinstance(v, list) else v) for k, v in kwargs.items()}
    with pytest.raises(type(want.value)) as got:
        getattr(tap, name)(*conv, **kw)
    assert str(got.value) == str(want.value) and got.value.field == want.value.field
