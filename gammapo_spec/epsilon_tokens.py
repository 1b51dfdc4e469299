r"""ε-DPO's token-level op: the sequence log-probs of the labels under the policy and the perturbed policies.

.. math::

    z^\pm = z^\pi \pm \varepsilon\,(z^\pi - z^\text{ref}),\qquad
    \log\pi^{(\cdot)}(y_b) = \sum_{t:\,\text{mask}_{bt}} \operatorname{log\_softmax}(z^{(\cdot)}_{bt})[y_{bt}].

Part of :mod:`gammapo_spec.epsilon_dpo` (which re-exports every name here and states the method's
decisions: the token convention, the arithmetic of the perturbation). The caller aligns logits and
labels: ``logits[b, t]`` scores ``labels[b, t]``; the tokens that count are ``mask`` (or the labels
``!= -100``, :data:`IGNORE_INDEX`, without one).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from .errors import InputError
from .hyperparams import check_epsilon
from .validation import check_finite

__all__ = [
    "IGNORE_INDEX",
    "SequenceLogps",
    "check_token_shapes",
    "token_mask",
    "epsilon_sequence_logps",
    "sequence_logps_vjp",
]

#: Labels equal to this are not scored when no ``mask`` is given (TRL's convention).
IGNORE_INDEX = -100


def check_token_shapes(policy_shape, ref_shape, labels_shape, mask_shape=None) -> tuple[int, int, int]:
    """Check the token inputs' shapes: logits ``[B, T, V]`` (both), labels and mask ``[B, T]``, all ≥ 1.

    Returns:
        ``(B, T, V)``.

    Raises:
        InputError: naming ``policy_logits``, ``ref_logits``, ``labels`` or ``mask``.

    Example:
        >>> check_token_shapes((2, 3, 5), (2, 3, 5), (2, 3))
        (2, 3, 5)
    """
    p = tuple(policy_shape)
    if len(p) != 3 or min(p) < 1:
        raise InputError(f"policy_logits must be [B, T, V] with every size >= 1, got shape {p}", field="policy_logits")
    if tuple(ref_shape) != p:
        raise InputError(f"ref_logits must have the shape of policy_logits {p}, got {tuple(ref_shape)}",
                         field="ref_logits")
    if tuple(labels_shape) != p[:2]:
        raise InputError(f"labels must be [B, T] = {p[:2]}, got shape {tuple(labels_shape)}", field="labels")
    if mask_shape is not None and tuple(mask_shape) != p[:2]:
        raise InputError(f"mask must be [B, T] = {p[:2]}, got shape {tuple(mask_shape)}", field="mask")
    return p


def _check_labels_in_range(ok: bool, vocab: int) -> None:
    if not ok:
        raise InputError(f"labels must lie in [0, {vocab}) wherever the mask is set", field="labels")


def _check_rows_nonempty(ok: bool) -> None:
    if not ok:
        raise InputError("mask has a row without any scored token; every sequence needs at least one", field="mask")


def _check_integer_labels(is_integer: bool) -> None:
    if not is_integer:
        raise InputError("labels must be an integer array", field="labels")


def token_mask(labels, mask=None) -> np.ndarray:
    """The ``[B, T]`` boolean mask of scored tokens: ``mask != 0``, or ``labels != -100`` without a mask.

    Example:
        >>> token_mask([[3, -100], [1, 2]]).tolist()
        [[True, False], [True, True]]
    """
    if mask is None:
        return np.asarray(labels) != IGNORE_INDEX
    return np.asarray(mask) != 0


class SequenceLogps(NamedTuple):
    """Per-sequence log-probs of the labels: ``logps`` under the policy, ``logps_plus`` / ``logps_minus``
    under the perturbed logits :math:`z^\\pm` (each ``[B]``)."""

    logps: Any
    logps_plus: Any
    logps_minus: Any


def _log_softmax(z: np.ndarray) -> np.ndarray:
    top = np.max(z, axis=-1, keepdims=True)
    return z - (top + np.log(np.sum(np.exp(z - top), axis=-1, keepdims=True)))


def _prepare_tokens(policy_logits, ref_logits, labels, mask):
    p = np.asarray(policy_logits, dtype=np.float64)
    q = np.asarray(ref_logits, dtype=np.float64)
    y = np.asarray(labels)
    mask_shape = None if mask is None else np.shape(mask)
    _, _, vocab = check_token_shapes(p.shape, q.shape, y.shape, mask_shape)
    _check_integer_labels(np.issubdtype(y.dtype, np.integer))
    m = token_mask(y, mask)
    _check_labels_in_range(bool(np.all(~m | ((y >= 0) & (y < vocab)))), vocab)
    _check_rows_nonempty(bool(np.all(m.any(axis=1))))
    check_finite("policy_logits", bool(np.all(np.isfinite(p))))
    check_finite("ref_logits", bool(np.all(np.isfinite(q))))
    return p, q, np.where(m, y, 0).astype(np.int64), m


def epsilon_sequence_logps(policy_logits, ref_logits, labels, mask=None, *, epsilon: float) -> SequenceLogps:
    r"""Sequence log-probs of the labels under the policy and the two perturbed policies.

    .. math::

        \log\pi^{(\cdot)}(y_b) = \sum_{t:\,\text{mask}_{bt}} \operatorname{log\_softmax}(z^{(\cdot)}_{bt})[y_{bt}],
        \quad z^{(\cdot)} \in \{z^\pi,\; (1+\varepsilon) z^\pi - \varepsilon z^\text{ref},\;
        (1-\varepsilon) z^\pi + \varepsilon z^\text{ref}\}.

    Args:
        policy_logits: ``[B, T, V]`` policy logits, aligned with ``labels`` (already shifted).
        ref_logits: ``[B, T, V]`` reference-model logits.
        labels: ``[B, T]`` integer token ids; in ``[0, V)`` wherever the mask is set.
        mask: ``[B, T]`` bool or 0/1, the tokens that count; ``None``: ``labels != -100``.
        epsilon: :math:`\varepsilon \in (0, 1)`.

    Returns:
        :class:`SequenceLogps` of three ``[B]`` float64 arrays.

    Raises:
        ConfigError: ``epsilon`` outside (0, 1).
        InputError: a bad shape, non-integer or out-of-range labels, a row with no scored token,
            or non-finite logits (``field`` names the argument).

    Example:
        >>> import numpy as np
        >>> z = np.log(np.array([[[0.5, 0.25, 0.25]]]))      # B = T = 1, V = 3
        >>> z_ref = np.log(np.array([[[0.25, 0.5, 0.25]]]))
        >>> out = epsilon_sequence_logps(z, z_ref, [[0]], epsilon=0.5)
        >>> [round(float(v[0]), 6) for v in out]   # log .5, log(.7071/1.1339), log(.3536/.9571)
        [-0.693147, -0.472222, -0.99588]
    """
    eps = check_epsilon(epsilon)
    p, q, y, m = _prepare_tokens(policy_logits, ref_logits, labels, mask)
    out = []
    d = eps * (p - q)  # z± = z ± ε(z − z_ref): exactly z where the policy equals the reference
    for z in (p, p + d, p - d):
        tok = np.take_along_axis(_log_softmax(z), y[..., None], axis=-1)[..., 0]
        out.append(np.sum(np.where(m, tok, 0.0), axis=1))
    return SequenceLogps(*out)


def sequence_logps_vjp(policy_logits, labels, mask=None, grad_logps=None) -> np.ndarray:
    r"""The gradient of :math:`\sum_b g_b \log\pi(y_b)` with respect to the policy logits.

    .. math:: \frac{\partial}{\partial z_{btv}} = g_b\,\text{mask}_{bt}\,\big([v = y_{bt}] - \operatorname{softmax}(z_{bt})_v\big).

    Only the unperturbed log-probs carry a gradient (the perturbed ones decide :math:`s_i` only).

    Args:
        policy_logits: ``[B, T, V]``; labels, mask: as :func:`epsilon_sequence_logps`.
        grad_logps: ``[B]`` incoming gradient :math:`g` (default ones).

    Returns:
        ``[B, T, V]`` float64 gradient.

    Example:
        >>> import numpy as np
        >>> sequence_logps_vjp(np.zeros((1, 1, 2)), [[1]]).tolist()
        [[[-0.5, 0.5]]]
    """
    p, _, y, m = _prepare_tokens(policy_logits, policy_logits, labels, mask)
    g = np.ones(p.shape[0]) if grad_logps is None else np.asarray(grad_logps, dtype=np.float64)
    if g.shape != (p.shape[0],):
        raise InputError(f"grad_logps must be [B] = ({p.shape[0]},), got shape {g.shape}", field="grad_logps")
    soft = np.exp(_log_softmax(p))
    onehot = np.zeros_like(p)
    np.put_along_axis(onehot, y[..., None], 1.0, axis=-1)
    return (g[:, None, None] * m[..., None]) * (onehot - soft)
