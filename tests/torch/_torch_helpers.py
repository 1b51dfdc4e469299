"""Shared helpers of the torch backend tests: inputs, the reference, and error comparison."""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
import pytest
import torch

import gammapo_spec as R
from gammapo_spec.validation import LENGTH_FIELDS, required_fields

#: dtype name → (torch dtype, rtol, atol) for comparing torch results with the float64 reference fed
#: the same (rounded) inputs. float64: rounding only; float32/bfloat16 (computed in float32): float32
#: rounding of O(1)-sized intermediates, amplified a little by the 19 mirror iterations.
TOLERANCES = {
    "float64": (torch.float64, 1e-10, 1e-10),
    "float32": (torch.float32, 2e-5, 2e-5),
    "bfloat16": (torch.bfloat16, 2e-5, 2e-5),
}


def make_inputs(config: R.GammaPOConfig, n: int, seed: int = 0, scale: float = 1.0) -> dict[str, np.ndarray]:
    """Plausible per-pair inputs for ``config``'s loss: summed log-probs and integer lengths."""
    rng = np.random.default_rng(seed)
    out: dict[str, np.ndarray] = {}
    for name in required_fields(config):
        if name in LENGTH_FIELDS:
            out[name] = rng.integers(1, 40, size=n).astype(np.float64)
        else:
            out[name] = -np.abs(rng.normal(scale=5.0 * scale, size=n)) - 0.5
    return out


def to_torch(inputs: dict[str, np.ndarray], dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """The inputs as tensors; lengths stay integer (int64), log-probs take ``dtype``."""
    return {
        k: torch.tensor(v, dtype=torch.int64 if k in LENGTH_FIELDS else dtype) for k, v in inputs.items()
    }


def rounded(inputs: dict[str, torch.Tensor]) -> dict[str, np.ndarray]:
    """What the reference should see: the float64 values of the (possibly rounded) torch inputs."""
    return {k: v.to(torch.float64).numpy() for k, v in inputs.items()}


def close(actual: Any, expected: Any, rtol: float, atol: float, what: str) -> None:
    a = actual.detach().to(torch.float64).cpu().numpy() if isinstance(actual, torch.Tensor) else np.asarray(actual)
    np.testing.assert_allclose(a, np.asarray(expected, dtype=np.float64), rtol=rtol, atol=atol, err_msg=what)


def capture(call: Callable[[], Any]) -> BaseException:
    """The exception ``call`` raises (fails the test if it raises none)."""
    try:
        call()
    except Exception as exc:  # noqa: BLE001 - we compare whatever is raised
        return exc
    pytest.fail("expected an exception, none was raised")


def assert_same_error(reference: Callable[[], Any], backend: Callable[[], Any]) -> BaseException:
    """Both calls raise the same class with the same message (and the same ``field``)."""
    ref, got = capture(reference), capture(backend)
    assert type(got) is type(ref), f"class: torch raised {type(got).__name__}, reference {type(ref).__name__}"
    assert str(got) == str(ref), f"message: torch {str(got)!r} != reference {str(ref)!r}"
    assert getattr(got, "field", None) == getattr(ref, "field", None), "field differs"
    return got
