r"""Conditioning a prompt on a target score: the condition text and where it goes.

Part of reward-augmented relabelling (:mod:`gammapo.data.reward_augmented`, which documents the
modes and re-exports these names; import them from there).
"""

from __future__ import annotations

import functools
import math
import re
import string
from typing import Any, Mapping

from gammapo_spec.errors import ConfigError, InputError

__all__ = ["DEFAULT_TEMPLATE", "MODES", "check_messages", "condition_prompt", "condition_text"]

#: The default condition: asks for a response of a given overall score on a 1–10 scale.
DEFAULT_TEMPLATE = "You are a helpful assistant. Write a response whose overall quality score is {score} on a scale of 1 to 10."
#: Where the condition goes.
MODES = ("system", "prefix")


#: A template's format spec: ``[[fill]align][sign][z][#][0][width][grouping][.precision][type]``, numeric types only.
_SPEC = re.compile(r"(?:.?[<>=^])?[+\- ]?z?#?0?(?P<width>\d{0,9})[_,]?(?:\.(?P<precision>\d{1,9}))?[eEfFgG%n]?\Z")
#: The largest width and precision a template may ask for (a condition is a sentence, not a page).
MAX_WIDTH, MAX_PRECISION = 100, 20


@functools.lru_cache(maxsize=64)
def _check_template(template: str) -> None:
    """Accept only literal text and plain ``{score}`` fields with a bounded numeric format.

    No attribute or index access (``{score.__class__}``, ``{score[0]}``), no conversion (``!r``),
    no nested or other fields, width at most :data:`MAX_WIDTH`, precision at most :data:`MAX_PRECISION`.
    """
    try:
        parts = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise ConfigError(f"template {template!r} is not a format string: {exc}", field="template") from None
    fields = 0
    for _, name, spec, conversion in parts:
        if name is None:
            continue
        if name != "score":
            raise ConfigError(f"template {template!r}: only the plain field {{score}} is allowed, got {{{name}}}",
                              field="template")
        if conversion is not None:
            raise ConfigError(f"template {template!r}: {{score}} takes no conversion (!{conversion})", field="template")
        m = _SPEC.match(spec or "")
        if m is None or "{" in spec:
            raise ConfigError(f"template {template!r}: {{score:{spec}}} is not a plain number format "
                              "(fill, align, sign, width, precision and one of e f g %)", field="template")
        if int(m["width"] or 0) > MAX_WIDTH or int(m["precision"] or 0) > MAX_PRECISION:
            raise ConfigError(f"template {template!r}: width at most {MAX_WIDTH} and precision at most "
                              f"{MAX_PRECISION}, got {{score:{spec}}}", field="template")
        fields += 1
    if not fields:
        raise ConfigError(f"template must be a string with a {{score}} field, got {template!r}", field="template")


def _format_score(score: float) -> str | float:
    # integers print without a trailing ".0"; other values keep Python's shortest repr
    return int(score) if float(score).is_integer() else score


def condition_text(score: float, template: str = DEFAULT_TEMPLATE) -> str:
    r"""The condition for target score ``score``: ``template.format(score=...)``.

    An integer-valued score is formatted as an integer (``8``, not ``8.0``); a template may choose
    its own format (``"{score:.1f}"``). A template holds literal text and plain ``{score}`` fields
    only: no attribute or index access, no conversion, no other field, a numeric format with width
    at most 100 and precision at most 20 (a template is user input; ``str.format`` would otherwise
    reach into the score object or build a string of any size).

    Args:
        score: the target score (finite).
        template: a ``str.format`` template with a ``{score}`` field.

    Returns:
        The condition text.

    Raises:
        ConfigError: ``template`` has no ``{score}`` field, another field or format, or does not
            format (``field="template"``).
        InputError: ``score`` is not a finite number (``field="score"``).

    Example:
        >>> from gammapo.data.reward_augmented import condition_text
        >>> condition_text(8.0, "Answer with quality {score}/10.")
        'Answer with quality 8/10.'
        >>> condition_text(7.5, "Score: {score:.2f}")
        'Score: 7.50'
    """
    if not isinstance(template, str):
        raise ConfigError(f"template must be a string with a {{score}} field, got {template!r}", field="template")
    _check_template(template)
    if isinstance(score, bool) or not isinstance(score, (int, float)) or not math.isfinite(score):
        raise InputError(f"score must be a finite number, got {score!r}", field="score")
    try:
        return template.format(score=_format_score(score))
    except (KeyError, IndexError, ValueError) as exc:
        raise ConfigError(f"template {template!r} does not format with a score: {exc}", field="template") from None


def check_messages(value: Any, field: str) -> list[dict]:
    if not isinstance(value, list) or not value or not all(
        isinstance(m, Mapping) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str) for m in value
    ):
        raise InputError(
            f"{field} must be a string or a non-empty list of {{'role', 'content'}} string messages", field=field
        )
    return [dict(m) for m in value]


def condition_prompt(
    prompt: str | list[dict],
    score: float,
    *,
    template: str = DEFAULT_TEMPLATE,
    mode: str = "system",
    separator: str = "\n\n",
) -> str | list[dict]:
    r"""Condition a prompt on a target score (the transform's conditioning, and the inference helper).

    At inference, call it with the top score of the scale (10 for the default template) to ask the
    model for its best response.

    Args:
        prompt: a string (plain format) or a list of chat messages (conversational format).
        score: the target score.
        template: the condition template (see :func:`condition_text`).
        mode: ``"system"`` (conversational prompts only) or ``"prefix"``.
        separator: put between the condition and the text it precedes.

    Returns:
        The conditioned prompt, of the same kind as ``prompt`` (the input is not modified).

    Raises:
        ConfigError: unknown ``mode``, or ``"system"`` with a plain-string prompt (``field="mode"``);
            a bad template.
        InputError: ``prompt`` is neither a string nor a list of messages, or a prefix is asked for
            a conversation without a user message (``field="prompt"``); a non-finite score.

    Example:
        >>> from gammapo.data.reward_augmented import condition_prompt
        >>> condition_prompt("Name a colour.", 10, template="[score {score}]", mode="prefix", separator=" ")
        '[score 10] Name a colour.'
        >>> condition_prompt([{"role": "user", "content": "Hi"}], 3, template="Quality {score}.")
        [{'role': 'system', 'content': 'Quality 3.'}, {'role': 'user', 'content': 'Hi'}]
    """
    if mode not in MODES:
        raise ConfigError(f"mode must be one of {list(MODES)}, got {mode!r}", field="mode")
    text = condition_text(score, template)
    if isinstance(prompt, str):
        if mode == "system":
            raise ConfigError(
                "mode 'system' needs conversational prompts (lists of messages); use mode 'prefix' for plain-string prompts",
                field="mode",
            )
        return text + separator + prompt
    messages = check_messages(prompt, "prompt")
    if mode == "system":
        if messages[0]["role"] == "system":
            messages[0]["content"] = text + separator + messages[0]["content"]
            return messages
        return [{"role": "system", "content": text}] + messages
    for m in messages:
        if m["role"] == "user":
            m["content"] = text + separator + m["content"]
            return messages
    raise InputError("prompt has no user message to prefix", field="prompt")
