"""The dtype policy every backend follows.

The reference computes in float64. A backend computes in the precision of its inputs, except that
half-precision inputs are upcast, because the calibration's normalisation and the batch mean lose
too much in 8 mantissa bits (the released code computes its gaps in float32: the transformers
version it pins casts the logits to float32):

============================  =========================================================
input dtype                   compute dtype (rewards, gaps, calibration, losses, mean)
============================  =========================================================
float64                       float64
float32                       float32
bfloat16, float16             float32 (outputs are float32 too)
============================  =========================================================

The calibration state's buffer has the compute dtype of the inputs it stores (a float32 buffer for
float32 and half inputs). Gradients flow back to the inputs in their own dtype.

How closely a backend must match the reference in each precision is the conformance suite's
tolerance policy (``gammapo_conformance``), which states each number and its reason.
"""

from __future__ import annotations

__all__ = ["COMPUTE_DTYPE", "compute_dtype"]

#: Input dtype name → the dtype name a backend computes in.
COMPUTE_DTYPE: dict[str, str] = {
    "float64": "float64",
    "float32": "float32",
    "bfloat16": "float32",
    "float16": "float32",
}


def compute_dtype(input_dtype: str) -> str:
    """The dtype a backend computes in for inputs of ``input_dtype`` (a name such as ``"bfloat16"``).

    Raises:
        TypeError: an input dtype that is not a floating type the policy covers.

    Example:
        >>> compute_dtype("bfloat16"), compute_dtype("float64")
        ('float32', 'float64')
    """
    try:
        return COMPUTE_DTYPE[input_dtype]
    except KeyError:
        raise TypeError(
            f"gammapo computes on floating inputs {sorted(COMPUTE_DTYPE)}, got dtype {input_dtype!r}"
        ) from None
