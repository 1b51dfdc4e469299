r"""γ-PO from final hidden states, without materialising the ``[B, T, V]`` logits.

Preference training spends most of its memory on the logits of the chosen and rejected sequences:
``2 · B · T · V`` numbers, plus their log-softmax and its gradient. γ-PO's loss depends on the
logits only through the per-sequence summed log-probs

.. math::

    \text{logp}(y) = \sum_{t:\,y_t \ne \text{ignore}} \big(z_{t,y_t} - \operatorname{logsumexp}_v z_{t,v}\big),
    \qquad z_t = W x_t + b ,

so :func:`fused_gamma_po_loss` runs in two passes over chunks of tokens:

1. **Pass 1** (forward, no graph): every sequence's log-prob, ``chunk_size`` tokens at a time (the
   chunk's logits are freed after their ``logsumexp``); then :func:`gammapo_torch.gamma_po_loss` on
   those log-probs — rewards, gaps, the calibrated margins over the *whole* batch (batch or queue
   mode, all ranks when distributed) and the next state.
2. **Pass 2** (backward): the margins are constants, so the loss reaches the logits only through
   :math:`g_s = \partial\mathcal L/\partial\,\text{logp}_s` — the per-pair VJP of
   :func:`gammapo_spec.loss_vjp`, known once pass 1 is done (autograd of the small per-pair graph
   delivers it). The logits of each chunk are recomputed and
   :math:`\partial\mathcal L/\partial z_t = g_{s(t)}(e_{y_t} - \operatorname{softmax} z_t)` is
   contracted at once into the gradients of the hidden states and of ``W`` (and ``b``).

Values and gradients equal the unfused path (:func:`unfused_gamma_po_loss`: full logits →
log-softmax → gather → :func:`gammapo_torch.gamma_po_loss` → autograd) to float rounding:
``tests/perf/test_perf_fused_loss.py`` checks 1e-10 in float64 and 2e-5 in float32. Extra memory is
``O(chunk_size · V)`` instead of ``O(B · T · V)``; the price is one more ``[tokens × H × V]`` matrix
product (the logits are computed twice). Benchmarks: ``python -m benchmarks fused_loss``.

Conventions: ``hidden[b, t]`` predicts ``labels[b, t]`` (shift before calling, as for any causal LM
loss); tokens whose label is ``ignore_index`` (prompt, padding) are skipped, and a sequence's length
(SimPO's normaliser, R-DPO's margin) is its number of scored tokens. Selecting the scored tokens
reads their count on the host (one synchronisation on an accelerator).
"""

from __future__ import annotations

from typing import Any

import torch

from gammapo_spec.config import GammaPOConfig
from gammapo_spec.errors import InputError
from gammapo_spec.gamma_po import LossOutput

from ._fused_logps import chunked_row_logps
from ._gamma_po import gamma_po_loss
from ._state import QueueState
from ._validation import value_checks_active

__all__ = ["DEFAULT_CHUNK_SIZE", "sequence_logps", "fused_gamma_po_loss", "unfused_sequence_logps", "unfused_gamma_po_loss"]

#: Tokens per chunk. 1024 rows × V = 32k float32 is 128 MiB per chunk buffer; ``benchmarks/
#: bench_fused_loss.py`` sweeps the size (results in ``benchmarks/results/fused_loss.md``).
DEFAULT_CHUNK_SIZE = 512


def _check_head(hidden: torch.Tensor, labels: torch.Tensor, weight: torch.Tensor, bias, side: str) -> None:
    """Shape checks of one side (``side`` = ``"chosen_"``, ``"rejected_"`` or ``""``), naming the argument."""
    h_name, y_name = f"{side}hidden", f"{side}labels"
    if hidden.dim() != 3:
        raise InputError(f"{h_name} must be [B, T, H], got shape {tuple(hidden.shape)}", field=h_name)
    if weight.dim() != 2 or weight.shape[1] != hidden.shape[2]:
        raise InputError(
            f"weight must be [V, H] with H = {hidden.shape[2]}, got shape {tuple(weight.shape)}", field="weight"
        )
    if bias is not None and tuple(bias.shape) != (weight.shape[0],):
        raise InputError(f"bias must have shape ({weight.shape[0]},), got {tuple(bias.shape)}", field="bias")
    if tuple(labels.shape) != tuple(hidden.shape[:2]):
        raise InputError(
            f"{y_name} must have shape {tuple(hidden.shape[:2])} (the [B, T] of {h_name}), got {tuple(labels.shape)}",
            field=y_name,
        )
    if labels.dtype.is_floating_point or labels.dtype == torch.bool:
        raise InputError(f"{y_name} must be integer token ids, got {labels.dtype}", field=y_name)


def _rows(hidden: torch.Tensor, labels: torch.Tensor, ignore_index: int):
    """The scored tokens: ``(x [R, H], labels [R], sequence index [R], lengths [B])``."""
    mask = labels != ignore_index
    flat = mask.reshape(-1).nonzero().squeeze(1)  # host sync: the number of scored tokens
    x = hidden.reshape(-1, hidden.shape[-1]).index_select(0, flat)
    return x, labels.reshape(-1)[flat].long(), flat // labels.shape[1], mask.sum(1)


def sequence_logps(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    labels: torch.Tensor,
    *,
    bias: torch.Tensor | None = None,
    ignore_index: int = -100,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
) -> torch.Tensor:
    r"""Summed log-probs of each sequence's labels, chunk by chunk (differentiable in hidden, W, b).

    .. math:: \text{logp}_b = \sum_{t:\,y_{b,t}\ne\text{ignore}} \log\operatorname{softmax}(W x_{b,t} + b)_{y_{b,t}}

    Args:
        hidden: ``[B, T, H]`` final hidden states (``hidden[b, t]`` predicts ``labels[b, t]``).
        weight: ``[V, H]`` LM-head weight; bias: optional ``[V]``.
        labels: ``[B, T]`` token ids; ``ignore_index`` marks unscored positions.
        chunk_size: tokens per chunk (the extra memory is ``chunk_size × V`` values, twice).

    Returns:
        ``[B]`` log-probs (float32 for half inputs, else the inputs' dtype).

    Raises:
        InputError: shapes that do not fit (always checked). Labels outside ``[0, V)`` are not
            checked here (``torch.gather`` raises); :func:`fused_gamma_po_loss` checks them.

    Example:
        >>> import torch
        >>> torch.manual_seed(0) is not None
        True
        >>> h, w = torch.randn(2, 5, 8, dtype=torch.float64), torch.randn(11, 8, dtype=torch.float64)
        >>> y = torch.randint(0, 11, (2, 5)); y[0, :2] = -100
        >>> full = unfused_sequence_logps(h, w, y)
        >>> bool(torch.allclose(sequence_logps(h, w, y, chunk_size=3), full, rtol=0, atol=1e-12))
        True
    """
    _check_head(hidden, labels, weight, bias, "")
    if not isinstance(chunk_size, int) or chunk_size < 1:
        raise InputError(f"chunk_size must be an integer >= 1, got {chunk_size!r}", field="chunk_size")
    x, y, seq, _ = _rows(hidden, labels, ignore_index)
    return chunked_row_logps(x, weight, bias, y, seq, hidden.shape[0], chunk_size)


def unfused_sequence_logps(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    labels: torch.Tensor,
    *,
    bias: torch.Tensor | None = None,
    ignore_index: int = -100,
) -> torch.Tensor:
    """The baseline of :func:`sequence_logps`: full ``[B, T, V]`` logits → log-softmax → gather → masked sum.

    This is what a TRL-style trainer computes; it is kept here as the reference the fused path is
    tested and benchmarked against. Arguments and return as :func:`sequence_logps`.
    """
    logits = hidden @ weight.t()
    if bias is not None:
        logits = logits + bias
    if logits.dtype in (torch.bfloat16, torch.float16):
        logits = logits.float()
    mask = labels != ignore_index
    tok = logits.log_softmax(-1).gather(-1, labels.masked_fill(~mask, 0).long()[..., None]).squeeze(-1)
    return (tok * mask).sum(-1)


def _loss_inputs(config: GammaPOConfig, logps: dict[str, Any], lengths: tuple[torch.Tensor, torch.Tensor], refs) -> dict:
    inputs = dict(logps)
    if refs[0] is not None or refs[1] is not None or not config.reference_free:
        inputs["ref_chosen_logps"], inputs["ref_rejected_logps"] = refs
    if config.reference_free or config.base_loss == "rdpo":
        inputs["chosen_lengths"], inputs["rejected_lengths"] = lengths
    return inputs


def fused_gamma_po_loss(
    config: GammaPOConfig,
    state: QueueState | None,
    *,
    chosen_hidden: torch.Tensor,
    rejected_hidden: torch.Tensor,
    weight: torch.Tensor,
    chosen_labels: torch.Tensor,
    rejected_labels: torch.Tensor,
    bias: torch.Tensor | None = None,
    ref_chosen_logps=None,
    ref_rejected_logps=None,
    ignore_index: int = -100,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    process_group: Any = None,
) -> tuple[LossOutput, QueueState | None]:
    r"""γ-PO (any loss of the config) from final hidden states and the LM head, in two chunked passes.

    Same result as :func:`unfused_gamma_po_loss` (and so as :func:`gammapo_torch.gamma_po_loss` on the
    sequences' log-probs) without the ``[B, T, V]`` logits; the method is in the module docstring.
    ``out.loss.backward()`` runs pass 2 and fills the gradients of the hidden states (hence the
    model below them), of ``weight`` and of ``bias``.

    Args:
        config: the loss configuration (``gamma-simpo``, ``gamma-dpo``, plain ``simpo`` …).
        state: from :func:`gammapo_torch.init_state` (``None`` when the config carries none).
        chosen_hidden, rejected_hidden: ``[B, T_w, H]`` / ``[B, T_l, H]`` final hidden states.
        weight: ``[V, H]`` LM-head weight; bias: optional ``[V]``.
        chosen_labels, rejected_labels: ``[B, T_w]`` / ``[B, T_l]`` token ids, ``ignore_index`` where
            a position is not scored (prompt, padding). Lengths are the counts of scored tokens.
        ref_chosen_logps, ref_rejected_logps: ``[B]`` reference-model log-probs (reference-based
            losses such as γ-DPO; leave ``None`` for SimPO).
        ignore_index: the label of unscored positions.
        chunk_size: tokens per chunk in both passes.
        process_group: as :func:`gammapo_torch.gamma_po_loss` (distributed calibration).

    Returns:
        ``(output, new_state)`` exactly as :func:`gammapo_torch.gamma_po_loss`.

    Raises:
        InputError: shapes that do not fit; with ``config.check_values``, labels outside
            ``[0, V)`` and everything :func:`gammapo_torch.gamma_po_loss` checks (a sequence with no
            scored token has length 0, which SimPO rejects).
        StateError: a state that does not fit the config.

    Example:
        >>> import torch
        >>> from gammapo_spec import GammaPOConfig
        >>> g = torch.Generator().manual_seed(0)
        >>> hw, hl = torch.randn(2, 6, 16, generator=g), torch.randn(2, 6, 16, generator=g)
        >>> w = torch.randn(50, 16, generator=g, requires_grad=True)
        >>> yw, yl = torch.randint(0, 50, (2, 6), generator=g), torch.randint(0, 50, (2, 6), generator=g)
        >>> cfg = GammaPOConfig(loss="gamma-simpo", beta=2.0, calibration="batch")
        >>> out, _ = fused_gamma_po_loss(cfg, None, chosen_hidden=hw, rejected_hidden=hl, weight=w,
        ...                              chosen_labels=yw, rejected_labels=yl, chunk_size=4)
        >>> ref, _ = unfused_gamma_po_loss(cfg, None, chosen_hidden=hw, rejected_hidden=hl, weight=w,
        ...                                chosen_labels=yw, rejected_labels=yl)
        >>> bool(torch.allclose(out.loss, ref.loss, rtol=1e-5)), out.margins.shape
        (True, torch.Size([2]))
    """
    _check_head(chosen_hidden, chosen_labels, weight, bias, "chosen_")
    _check_head(rejected_hidden, rejected_labels, weight, bias, "rejected_")
    if chosen_hidden.shape[0] != rejected_hidden.shape[0] or chosen_hidden.shape[2] != rejected_hidden.shape[2]:
        raise InputError(
            f"rejected_hidden has shape {tuple(rejected_hidden.shape)}, which does not pair with chosen_hidden "
            f"{tuple(chosen_hidden.shape)} (same B and H needed)",
            field="rejected_hidden",
        )
    if not isinstance(chunk_size, int) or chunk_size < 1:
        raise InputError(f"chunk_size must be an integer >= 1, got {chunk_size!r}", field="chunk_size")
    b = chosen_hidden.shape[0]
    xw, yw, sw, lw = _rows(chosen_hidden, chosen_labels, ignore_index)
    xl, yl, sl, ll = _rows(rejected_hidden, rejected_labels, ignore_index)
    if value_checks_active(config.check_values):
        vocab = weight.shape[0]
        for field, y in (("chosen", yw), ("rejected", yl)):
            if not bool(((y >= 0) & (y < vocab)).all()):
                raise InputError(
                    f"{field}_labels must be token ids in [0, {vocab}) or the ignore index", field=f"{field}_labels"
                )
    logps = chunked_row_logps(
        torch.cat([xw, xl]), weight, bias, torch.cat([yw, yl]), torch.cat([sw, sl + b]), 2 * b, chunk_size
    )
    inputs = _loss_inputs(
        config, {"chosen_logps": logps[:b], "rejected_logps": logps[b:]}, (lw, ll), (ref_chosen_logps, ref_rejected_logps)
    )
    return gamma_po_loss(config, state, process_group=process_group, **inputs)


def unfused_gamma_po_loss(
    config: GammaPOConfig,
    state: QueueState | None,
    *,
    chosen_hidden: torch.Tensor,
    rejected_hidden: torch.Tensor,
    weight: torch.Tensor,
    chosen_labels: torch.Tensor,
    rejected_labels: torch.Tensor,
    bias: torch.Tensor | None = None,
    ref_chosen_logps=None,
    ref_rejected_logps=None,
    ignore_index: int = -100,
    process_group: Any = None,
) -> tuple[LossOutput, QueueState | None]:
    """The unfused baseline of :func:`fused_gamma_po_loss`: full logits, then :func:`gammapo_torch.gamma_po_loss`.

    Arguments, returns and errors as :func:`fused_gamma_po_loss` (no ``chunk_size``); autograd
    keeps the ``[B, T, V]`` logits and their log-softmax for the backward pass.
    """
    _check_head(chosen_hidden, chosen_labels, weight, bias, "chosen_")
    _check_head(rejected_hidden, rejected_labels, weight, bias, "rejected_")
    kw = {"bias": bias, "ignore_index": ignore_index}
    logps = {
        "chosen_logps": unfused_sequence_logps(chosen_hidden, weight, chosen_labels, **kw),
        "rejected_logps": unfused_sequence_logps(rejected_hidden, weight, rejected_labels, **kw),
    }
    lengths = ((chosen_labels != ignore_index).sum(1), (rejected_labels != ignore_index).sum(1))
    inputs = _loss_inputs(config, logps, lengths, (ref_chosen_logps, ref_rejected_logps))
    return gamma_po_loss(config, state, process_group=process_group, **inputs)
