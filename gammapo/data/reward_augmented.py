r"""Reward-augmented relabelling of a scored preference set (Zhang et al., arXiv 2410.08067).

Each record holds a prompt x, a chosen response :math:`y_w` with score :math:`s_w` and a rejected
response :math:`y_l` with score :math:`s_l` (``docs/theory/related.md``, "Reward-augmented data"). The
transform keeps the pairs with :math:`s_w \ge s_l` and emits, for each,

.. math::

    (\,x \mid s_w,\; y_w \succ y_l\,) \qquad\text{and}\qquad (\,x \mid s_l,\; y_l \succ y_w\,),

where :math:`x \mid s` is the prompt conditioned on the target score s: a system message or a prefix
that asks for a response of that quality (``template``, formatted with ``score``). The result has
twice the kept pairs and trains with any direct-alignment loss unchanged; at inference the model is
conditioned on the top score (:func:`condition_prompt`).

Decisions fixed here (alternatives named):

* **Ties** :math:`s_w = s_l` are *kept* (the paper's filter is :math:`s_w \ge s_l`): the two emitted
  pairs carry the same condition and opposite preferences, which, under a Bradley–Terry loss, pulls
  the pair's implicit margin toward 0 — "equal scores, no preference". ``ties="drop"`` removes them
  instead. Pairs with :math:`s_w < s_l` are always dropped (they are counted, never silently lost).
* **Record formats**: the *plain* format (``prompt``, ``chosen``, ``rejected`` are strings), TRL's
  *conversational* format with an explicit prompt (``prompt`` is a list of ``{"role", "content"}``
  messages; ``chosen``/``rejected`` are lists of assistant messages), and the reward-augmented
  authors' format (``prompt`` a string, ``chosen``/``rejected`` whole conversations ending with the
  assistant's response). The last is read as conversational (:func:`split_record`): the messages
  before the final one are the prompt (the same in both responses), the final message the response;
  the string ``prompt`` is not used, since the conversation is what a trainer trains on.
* **Filter and condition scores**: by default one pair of score fields decides both which pairs are
  kept (:math:`s_w \ge s_l`) and the conditions. ``filter_chosen_field``/``filter_rejected_field``
  name another pair for the filter, as the authors do (they keep pairs by the average fine-grained
  score and condition on the overall score); ties are then judged on the filter scores.
* **Modes**: ``"prefix"`` puts the condition text, then ``separator``, before the prompt (plain) or
  before the content of the first user message (conversational). ``"system"`` is for conversational
  prompts: it inserts a system message, or, if the prompt already starts with one, prepends the
  condition text and ``separator`` to its content (the original instructions are kept). A plain
  prompt has no system message, so ``"system"`` on a plain record is an error, not a silent prefix.
* **Output record**: ``prompt`` (conditioned), ``chosen``, ``rejected``, the two score fields and the
  two filter fields, if any (swapped in the second pair so that they keep describing
  ``chosen``/``rejected``) and ``condition_score``.
  Every other field whose name contains neither ``"chosen"`` nor ``"rejected"`` is copied; fields
  that describe one response (e.g. ``chosen_logps``) are dropped, since the conditioned prompt makes
  such values stale.

This module was ``gammapo_spec.reward_augmented`` (it formats text over records; it computes no
arrays, so it is not part of the NumPy specification). The old name still imports, with a
``DeprecationWarning``.
"""

from __future__ import annotations

import copy
import math
from typing import Any, Iterable, Mapping

from gammapo_spec.errors import ConfigError, InputError

from ._condition import DEFAULT_TEMPLATE, MODES, check_messages, condition_prompt, condition_text

__all__ = [
    "DEFAULT_TEMPLATE",
    "MODES",
    "condition_text",
    "condition_prompt",
    "augment_record",
    "split_record",
    "filter_dropped",
    "augment_records",
]


def _score(record: Mapping, field: str) -> float:
    if field not in record:
        raise InputError(f"record has no {field!r} field", field=field)
    value = record[field]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise InputError(f"{field} must be a finite number, got {value!r}", field=field)
    return float(value)


def _response(record: Mapping, field: str, conversational: bool) -> Any:
    if field not in record:
        raise InputError(f"record has no {field!r} field", field=field)
    value = record[field]
    if conversational:
        return check_messages(value, field)
    if not isinstance(value, str):
        raise InputError(f"{field} must be a string when the prompt is a string, got {type(value).__name__}", field=field)
    return value


def split_record(record: Mapping[str, Any]) -> tuple[Any, Any, Any]:
    r"""The ``(prompt, chosen, rejected)`` of a record in any of the three formats (see the module docs).

    * plain: three strings, returned as they are;
    * conversational (explicit prompt): the message lists, checked;
    * the authors' format — a string ``prompt`` and ``chosen``/``rejected`` message lists that end with
      an ``assistant`` message: the prompt is the conversation before that message (it must be the same
      in both; a bare ``[assistant]`` response gets ``[{"role": "user", "content": prompt}]``), and each
      response is its last message.

    Raises:
        InputError: a missing or malformed field, or two responses whose conversations before the
            response differ (``field`` names it).

    Example:
        >>> from gammapo.data.reward_augmented import split_record
        >>> rec = {"prompt": "Hi", "chosen": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}],
        ...        "rejected": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Go away."}]}
        >>> split_record(rec)
        ([{'role': 'user', 'content': 'Hi'}], [{'role': 'assistant', 'content': 'Hello!'}], [{'role': 'assistant', 'content': 'Go away.'}])
    """
    if "prompt" not in record:
        raise InputError("record has no 'prompt' field (the implicit-prompt conversational format is not supported)", field="prompt")
    prompt = record["prompt"]
    if not isinstance(prompt, str):
        check_messages(prompt, "prompt")
        return prompt, _response(record, "chosen", True), _response(record, "rejected", True)
    if not isinstance(record.get("chosen"), list):
        return prompt, _response(record, "chosen", False), _response(record, "rejected", False)
    chosen = _response(record, "chosen", True)
    rejected = _response(record, "rejected", True)
    for field, msgs in (("chosen", chosen), ("rejected", rejected)):
        if msgs[-1]["role"] != "assistant":
            raise InputError(f"{field}: a conversation with a string prompt must end with the assistant's response, "
                             f"got a {msgs[-1]['role']!r} message last", field=field)
    if chosen[:-1] != rejected[:-1]:
        raise InputError("chosen and rejected hold different conversations before their responses", field="rejected")
    context = chosen[:-1] or [{"role": "user", "content": prompt}]
    return context, chosen[-1:], rejected[-1:]


def _filter_fields(chosen: str | None, rejected: str | None) -> tuple[str, str] | None:
    if (chosen is None) != (rejected is None):
        raise ConfigError("filter_chosen_field and filter_rejected_field are given together or not at all, "
                          f"got {chosen!r} and {rejected!r}", field="filter_chosen_field" if chosen is None else "filter_rejected_field")
    return None if chosen is None else (chosen, rejected)


def augment_record(
    record: Mapping[str, Any],
    *,
    template: str = DEFAULT_TEMPLATE,
    mode: str = "system",
    separator: str = "\n\n",
    chosen_score_field: str = "score_chosen",
    rejected_score_field: str = "score_rejected",
    ties: str = "keep",
    filter_chosen_field: str | None = None,
    filter_rejected_field: str | None = None,
) -> list[dict]:
    r"""Relabel one scored pair: ``[]`` if it is filtered out, else the two conditioned pairs.

    With :math:`f_w \ge f_l` (or :math:`f_w > f_l` when ``ties="drop"``) — the filter scores, which are
    the condition scores :math:`s_w, s_l` unless ``filter_chosen_field``/``filter_rejected_field`` are
    given — returns

    1. prompt conditioned on :math:`s_w`, ``chosen`` = :math:`y_w`, ``rejected`` = :math:`y_l`;
    2. prompt conditioned on :math:`s_l`, ``chosen`` = :math:`y_l`, ``rejected`` = :math:`y_w`.

    Args:
        record: a plain, conversational (explicit-prompt) or authors'-format preference record with the
            scores (see :func:`split_record`).
        template, mode, separator: the conditioning (see :func:`condition_prompt`).
        chosen_score_field, rejected_score_field: where :math:`s_w, s_l` are.
        ties: ``"keep"`` (default, the paper's :math:`\ge`) or ``"drop"``.
        filter_chosen_field, filter_rejected_field: where :math:`f_w, f_l` are (both or neither; by
            default the condition scores filter).

    Returns:
        A list of 0 or 2 new records (``record`` is not modified).

    Raises:
        InputError: a missing field, a non-finite score or a malformed prompt/response
            (``field`` names it).
        ConfigError: bad ``mode``, ``ties`` or template, or only one filter field.

    Example:
        >>> from gammapo.data.reward_augmented import augment_record
        >>> rec = {"prompt": "2+2?", "chosen": "4", "rejected": "5", "score_chosen": 9, "score_rejected": 2}
        >>> for r in augment_record(rec, template="<{score}>", mode="prefix", separator=" "):
        ...     print(r)
        {'prompt': '<9> 2+2?', 'chosen': '4', 'rejected': '5', 'score_chosen': 9, 'score_rejected': 2, 'condition_score': 9}
        {'prompt': '<2> 2+2?', 'chosen': '5', 'rejected': '4', 'score_chosen': 2, 'score_rejected': 9, 'condition_score': 2}
        >>> augment_record(dict(rec, score_chosen=1), template="<{score}>", mode="prefix")
        []
    """
    if ties not in ("keep", "drop"):
        raise ConfigError(f"ties must be 'keep' or 'drop', got {ties!r}", field="ties")
    if mode not in MODES:
        raise ConfigError(f"mode must be one of {list(MODES)}, got {mode!r}", field="mode")
    filters = _filter_fields(filter_chosen_field, filter_rejected_field)
    prompt, chosen, rejected = split_record(record)
    sw = _score(record, chosen_score_field)
    sl = _score(record, rejected_score_field)
    fw, fl = (sw, sl) if filters is None else (_score(record, filters[0]), _score(record, filters[1]))
    if fw < fl or (fw == fl and ties == "drop"):
        return []
    pairs = [(chosen_score_field, rejected_score_field)] + ([filters] if filters and filters[0] != chosen_score_field else [])
    carried = {name for pair in pairs for name in pair}
    rest = {
        k: copy.deepcopy(v)
        for k, v in record.items()
        if k not in ("prompt", "condition_score") and k not in carried
        and "chosen" not in k
        and "rejected" not in k
    }
    raw_w, raw_l = record[chosen_score_field], record[rejected_score_field]
    out = []
    for s, raw_s, win, lose, swap in ((sw, raw_w, chosen, rejected, False), (sl, raw_l, rejected, chosen, True)):
        new = {
            "prompt": condition_prompt(prompt, s, template=template, mode=mode, separator=separator),
            "chosen": copy.deepcopy(win),
            "rejected": copy.deepcopy(lose),
        }
        for cf, rf in pairs:  # score fields keep describing chosen / rejected
            new[cf], new[rf] = (record[rf], record[cf]) if swap else (record[cf], record[rf])
        new["condition_score"] = raw_s
        new.update(rest)
        out.append(new)
    return out


def filter_dropped(record: Mapping[str, Any], **kwargs: Any) -> str:
    """Why :func:`augment_record` (with the same keyword arguments) returned no pairs for ``record``:
    ``"dropped_lower"`` (:math:`f_w < f_l`) or ``"dropped_ties"``."""
    fields = _filter_fields(kwargs.get("filter_chosen_field"), kwargs.get("filter_rejected_field")) or (
        kwargs.get("chosen_score_field", "score_chosen"), kwargs.get("rejected_score_field", "score_rejected"))
    return "dropped_lower" if _score(record, fields[0]) < _score(record, fields[1]) else "dropped_ties"


def augment_records(records: Iterable[Mapping[str, Any]], **kwargs: Any) -> tuple[list[dict], dict[str, int]]:
    r"""Relabel a whole preference set: :func:`augment_record` over every record, in order.

    Args:
        records: the input records.
        **kwargs: passed to :func:`augment_record`.

    Returns:
        ``(records, counts)``: the new records (pair 1 then pair 2 of each kept input, in input
        order) and ``counts`` with ``read``, ``kept``, ``dropped_lower`` (:math:`s_w < s_l`),
        ``dropped_ties`` (judged on the filter scores) and ``written``; always ``read == kept + dropped_lower + dropped_ties`` and
        ``written == 2 * kept``.

    Raises:
        InputError: a bad record; the message starts with its 0-based position (``record 3: ...``)
            and ``field`` names the field.

    Example:
        >>> from gammapo.data.reward_augmented import augment_records
        >>> data = [{"prompt": "a", "chosen": "x", "rejected": "y", "score_chosen": 5, "score_rejected": 5},
        ...         {"prompt": "b", "chosen": "x", "rejected": "y", "score_chosen": 1, "score_rejected": 4}]
        >>> out, counts = augment_records(data, mode="prefix", template="{score}")
        >>> [r["prompt"] for r in out], counts
        (['5\n\na', '5\n\na'], {'read': 2, 'kept': 1, 'dropped_lower': 1, 'dropped_ties': 0, 'written': 2})
    """
    out: list[dict] = []
    counts = {"read": 0, "kept": 0, "dropped_lower": 0, "dropped_ties": 0, "written": 0}
    for i, record in enumerate(records):
        counts["read"] += 1
        try:
            new = augment_record(record, **kwargs)
        except InputError as exc:
            raise InputError(f"record {i}: {exc}", field=exc.field) from None
        if new:
            counts["kept"] += 1
        else:
            counts[filter_dropped(record, **kwargs)] += 1
        out.extend(new)
    counts["written"] = len(out)
    return out, counts
