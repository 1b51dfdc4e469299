r"""Per-response summed log-probs and lengths with a local ``transformers`` causal LM.

For a prompt x and a response y tokenised as ``ids(x) + ids(y)``, the summed log-prob and the length are

.. math::

    \log \pi(y \mid x) = \sum_{t=1}^{|y|} \log \operatorname{softmax}(f(x, y_{<t}))_{y_t},
    \qquad |y| = \text{number of response tokens},

the quantities :mod:`gammapo_spec.alignment_potential` needs (``chosen_logps``, ``rejected_logps``,
``chosen_lengths``, ``rejected_lengths``, and with a reference model ``ref_chosen_logps``,
``ref_rejected_logps``).

Tokenisation: the prompt with the tokenizer's special tokens, the response without, then (by default)
the EOS token appended to the response, as TRL's DPO trainer does. Conversational records (TRL's
format) are rendered with the tokenizer's chat template (``add_generation_prompt=True`` for the
prompt; the response is its messages' contents joined). The models run in ``inference_mode`` and
never download anything (``local_files_only``).
"""

from __future__ import annotations

from typing import Any, Sequence

from gammapo_spec.errors import ConfigError

from .io import DataError, Table, as_table, progress

__all__ = ["load_model", "sequence_logprobs", "fill_logprobs"]


def load_model(path: str, *, device: str = "cpu"):
    """Load a causal LM and its tokenizer from a local directory (``save_pretrained``); no download.

    Raises:
        ConfigError: ``path`` is not a local model directory (``field="model"``).
    """
    import os

    from transformers import AutoModelForCausalLM, AutoTokenizer

    if not os.path.isdir(path):
        what = "does not exist" if not os.path.exists(path) else "is not a directory"
        raise ConfigError(f"--model {path!r} {what}: give a local model folder (save_pretrained); "
                          "nothing is downloaded", field="model")
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        model = AutoModelForCausalLM.from_pretrained(path, local_files_only=True)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot load a local causal LM from {path!r}: {exc}", field="model") from None
    model.to(device).eval()
    return model, tokenizer


def _text(value: Any, tokenizer, *, prompt: bool) -> str:
    if isinstance(value, str):
        return value
    if prompt:
        if getattr(tokenizer, "chat_template", None) is None:
            raise ConfigError("conversational prompts need a tokenizer with a chat template", field="tokenizer")
        return tokenizer.apply_chat_template(value, tokenize=False, add_generation_prompt=True)
    return "".join(m["content"] for m in value)


def sequence_logprobs(
    model,
    tokenizer,
    prompts: Sequence[Any],
    responses: Sequence[Any],
    *,
    batch_size: int = 8,
    append_eos: bool = True,
    show_progress: bool | None = None,
) -> tuple[list[float], list[int]]:
    """Summed log-probs of ``responses`` given ``prompts`` and their lengths in tokens.

    Args:
        model: a ``transformers`` causal LM.
        tokenizer: its tokenizer.
        prompts, responses: strings, or TRL conversational message lists.
        batch_size: sequences per forward pass.
        append_eos: append the EOS token to each response (as TRL does).
        show_progress: a progress bar (``None``: only on a terminal).

    Returns:
        ``(logps, lengths)``, one float and one int per sequence.

    Example:
        >>> from gammapo.train.tiny import build_model, build_tokenizer
        >>> tok = build_tokenizer(["a", "b"]); model = build_model(len(tok), seed=0)
        >>> logps, lengths = sequence_logprobs(model, tok, ["a", "a"], ["b a", "b"])
        >>> lengths, all(lp < 0 for lp in logps)
        ([3, 2], True)
    """
    import torch

    if batch_size < 1:
        raise ConfigError(f"batch_size must be >= 1, got {batch_size}", field="batch_size")
    device = next(model.parameters()).device
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (tokenizer.eos_token_id or 0)
    seqs: list[tuple[list[int], int]] = []
    for p, r in zip(prompts, responses, strict=True):
        p_ids = tokenizer(_text(p, tokenizer, prompt=True), add_special_tokens=True)["input_ids"]
        r_ids = tokenizer(_text(r, tokenizer, prompt=False), add_special_tokens=False)["input_ids"]
        if append_eos and tokenizer.eos_token_id is not None:
            r_ids = r_ids + [tokenizer.eos_token_id]
        if not p_ids:
            raise ConfigError("a prompt tokenised to no tokens; the first response token needs a context", field="prompt")
        seqs.append((p_ids + r_ids, len(r_ids)))
    logps: list[float] = []
    starts = range(0, len(seqs), batch_size)
    with torch.inference_mode():
        for start in progress(starts, total=len(starts), desc="log-probs", enabled=show_progress):
            batch = seqs[start : start + batch_size]
            width = max(len(ids) for ids, _ in batch)
            ids = torch.full((len(batch), width), pad, dtype=torch.long)
            attn = torch.zeros((len(batch), width), dtype=torch.long)
            resp = torch.zeros((len(batch), width), dtype=torch.bool)
            for b, (seq, n_resp) in enumerate(batch):  # right padding
                ids[b, : len(seq)] = torch.tensor(seq)
                attn[b, : len(seq)] = 1
                resp[b, len(seq) - n_resp : len(seq)] = True
            logits = model(input_ids=ids.to(device), attention_mask=attn.to(device)).logits.float()
            # token t is predicted by position t - 1
            target = ids[:, 1:].to(device)
            lp = torch.gather(logits[:, :-1], 2, target.unsqueeze(-1)).squeeze(-1) - torch.logsumexp(logits[:, :-1], dim=-1)
            mask = resp[:, 1:].to(device)
            logps.extend((lp * mask).sum(dim=1).double().cpu().tolist())
    return logps, [n for _, n in seqs]


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and value != value)


def fill_logprobs(
    data: Any,
    model,
    tokenizer,
    *,
    prefix: str = "",
    batch_size: int = 8,
    overwrite: bool = False,
    show_progress: bool | None = None,
) -> tuple[Any, int]:
    """Fill in ``{prefix}chosen_logps``, ``{prefix}rejected_logps`` (and, with ``prefix=""``, the lengths).

    Only the records missing one of those fields (absent, ``None`` or NaN) are computed, unless
    ``overwrite``; values already present are kept.

    Args:
        data: ``list[dict]``, ``datasets.Dataset`` or a :class:`~gammapo.data.io.Table`.
        model, tokenizer: the causal LM (``prefix=""``: the policy; ``prefix="ref_"``: the reference).
        prefix: ``""`` or ``"ref_"``.
        batch_size: sequences per forward pass.
        overwrite: recompute every record.
        show_progress: a progress bar (``None``: only on a terminal).

    Returns:
        ``(data, computed)``: the data (same kind; a list is updated in place, new dicts not made) and
        how many records were computed.

    Raises:
        DataError: a record to compute lacks ``prompt``, ``chosen`` or ``rejected`` (its place named).

    Example:
        >>> from gammapo.train.tiny import build_model, build_tokenizer
        >>> tok = build_tokenizer(["a", "b"]); model = build_model(len(tok), seed=0)
        >>> rows = [{"prompt": "a", "chosen": "b", "rejected": "a b"}]
        >>> rows, n = fill_logprobs(rows, model, tok)
        >>> n, rows[0]["chosen_lengths"], rows[0]["rejected_lengths"]
        (1, 2, 3)
    """
    if prefix not in ("", "ref_"):
        raise ConfigError(f"prefix must be '' or 'ref_', got {prefix!r}", field="prefix")
    table: Table = as_table(data)
    targets = [f"{prefix}chosen_logps", f"{prefix}rejected_logps"]
    if prefix == "":
        targets += ["chosen_lengths", "rejected_lengths"]
    rows = table.data.to_list() if table.kind == "datasets" else table.data
    todo = [i for i, r in enumerate(rows) if overwrite or any(_missing(r.get(f)) for f in targets)]
    for i in todo:
        for f in ("prompt", "chosen", "rejected"):
            if f not in rows[i] or _missing(rows[i][f]):
                raise DataError(f"field {f!r} is missing; it is needed to compute log-probs", field=f, location=table.where(i))
    prompts = [rows[i]["prompt"] for i in todo]
    values: dict[str, list] = {}
    for side in ("chosen", "rejected"):
        lp, n = sequence_logprobs(model, tokenizer, prompts, [rows[i][side] for i in todo], batch_size=batch_size,
                                  show_progress=show_progress)
        values[f"{prefix}{side}_logps"], values[f"{side}_lengths"] = lp, n
    for k, i in enumerate(todo):
        for f in targets:
            if overwrite or _missing(rows[i].get(f)):
                rows[i][f] = values[f][k]
    if table.kind == "datasets":
        import datasets

        return datasets.Dataset.from_list(rows), len(todo)
    return table.data, len(todo)
