"""gammapo.data.reward_augmented: the relabelling transform, its conditioning, ties, formats, errors."""

from __future__ import annotations

import copy

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gammapo_spec import ConfigError, InputError
from gammapo.data.reward_augmented import (
    DEFAULT_TEMPLATE,
    augment_record,
    augment_records,
    condition_prompt,
    condition_text,
)

PLAIN = {"prompt": "Q?", "chosen": "good", "rejected": "bad", "score_chosen": 8.0, "score_rejected": 3.5, "id": 7}
CONV = {
    "prompt": [{"role": "user", "content": "Q?"}],
    "chosen": [{"role": "assistant", "content": "good"}],
    "rejected": [{"role": "assistant", "content": "bad"}],
    "score_chosen": 8,
    "score_rejected": 3,
}


def test_condition_text_formats_integers_without_decimal_point():
    assert condition_text(8.0, "s={score}") == "s=8"
    assert condition_text(3.5, "s={score}") == "s=3.5"
    assert condition_text(10, DEFAULT_TEMPLATE).endswith("score is 10 on a scale of 1 to 10.")


def test_augment_record_plain_prefix_emits_the_two_conditioned_pairs():
    out = augment_record(PLAIN, template="[{score}]", mode="prefix", separator=" ")
    assert out == [
        {"prompt": "[8] Q?", "chosen": "good", "rejected": "bad", "score_chosen": 8.0, "score_rejected": 3.5,
         "condition_score": 8.0, "id": 7},
        {"prompt": "[3.5] Q?", "chosen": "bad", "rejected": "good", "score_chosen": 3.5, "score_rejected": 8.0,
         "condition_score": 3.5, "id": 7},
    ]


def test_augment_record_conversational_system_mode():
    out = augment_record(CONV, template="Quality {score}.", mode="system")
    assert out[0]["prompt"] == [{"role": "system", "content": "Quality 8."}, {"role": "user", "content": "Q?"}]
    assert out[1]["prompt"] == [{"role": "system", "content": "Quality 3."}, {"role": "user", "content": "Q?"}]
    assert out[1]["chosen"] == CONV["rejected"] and out[1]["rejected"] == CONV["chosen"]


def test_augment_record_conversational_system_mode_keeps_an_existing_system_message():
    rec = dict(CONV, prompt=[{"role": "system", "content": "Be terse."}, {"role": "user", "content": "Q?"}])
    out = augment_record(rec, template="Quality {score}.", mode="system", separator=" ")
    assert out[0]["prompt"] == [{"role": "system", "content": "Quality 8. Be terse."}, {"role": "user", "content": "Q?"}]


def test_augment_record_conversational_prefix_mode_prefixes_first_user_message():
    rec = dict(CONV, prompt=[{"role": "system", "content": "S"}, {"role": "user", "content": "Q?"},
                             {"role": "assistant", "content": "A"}, {"role": "user", "content": "Q2"}])
    out = augment_record(rec, template="<{score}>", mode="prefix", separator="")
    assert [m["content"] for m in out[0]["prompt"]] == ["S", "<8>Q?", "A", "Q2"]


def test_augment_record_does_not_modify_its_input():
    before = copy.deepcopy(CONV)
    out = augment_record(CONV, mode="system")
    out[0]["chosen"][0]["content"] = "changed"
    assert CONV == before


def test_augment_record_ties_are_kept_by_default_and_dropped_on_request():
    tie = dict(PLAIN, score_rejected=8.0)
    kept = augment_record(tie, mode="prefix", template="{score}")
    assert len(kept) == 2 and kept[0]["prompt"] == kept[1]["prompt"]
    assert (kept[0]["chosen"], kept[1]["chosen"]) == ("good", "bad")
    assert augment_record(tie, mode="prefix", ties="drop") == []


def test_augment_record_drops_lower_chosen_score():
    assert augment_record(dict(PLAIN, score_chosen=1.0), mode="prefix") == []


def test_augment_record_drops_per_response_fields_and_copies_the_rest():
    rec = dict(PLAIN, chosen_logps=-3.0, ref_rejected_logps=-4.0, chosen_lengths=3, source="uf")
    out = augment_record(rec, mode="prefix")
    for r in out:
        assert "chosen_logps" not in r and "ref_rejected_logps" not in r and "chosen_lengths" not in r
        assert r["source"] == "uf" and r["id"] == 7


def test_augment_record_custom_score_fields():
    rec = {"prompt": "p", "chosen": "a", "rejected": "b", "sw": 4, "sl": 2}
    out = augment_record(rec, mode="prefix", template="{score}", chosen_score_field="sw", rejected_score_field="sl")
    assert [(r["sw"], r["sl"], r["condition_score"]) for r in out] == [(4, 2, 4), (2, 4, 2)]


def test_condition_prompt_inference_helper_conditions_on_the_top_score():
    msgs = condition_prompt([{"role": "user", "content": "Hi"}], 10)
    assert msgs[0] == {"role": "system", "content": DEFAULT_TEMPLATE.format(score=10)}
    assert condition_prompt("Hi", 10, template="({score})", mode="prefix", separator=" ") == "(10) Hi"


# --- whole data sets: counts and the no-loss / no-duplicate invariant ------------------------------
scores = st.integers(0, 10)
records = st.lists(st.tuples(scores, scores), max_size=40)


@settings(max_examples=60, deadline=None)
@given(records, st.sampled_from(["keep", "drop"]))
def test_augment_records_counts_and_invariant(pairs, ties):
    data = [{"prompt": f"p{i}", "chosen": f"w{i}", "rejected": f"l{i}", "score_chosen": a, "score_rejected": b}
            for i, (a, b) in enumerate(pairs)]
    out, counts = augment_records(data, mode="prefix", template="{score}", ties=ties)
    assert counts["read"] == len(data) == counts["kept"] + counts["dropped_lower"] + counts["dropped_ties"]
    assert counts["written"] == len(out) == 2 * counts["kept"]
    assert counts["dropped_lower"] == sum(a < b for a, b in pairs)
    assert counts["dropped_ties"] == (sum(a == b for a, b in pairs) if ties == "drop" else 0)
    # each kept input appears exactly twice, once per orientation, in input order
    expected = []
    for i, (a, b) in enumerate(pairs):
        if a > b or (a == b and ties == "keep"):
            expected += [(f"{a}\n\np{i}", f"w{i}", f"l{i}"), (f"{b}\n\np{i}", f"l{i}", f"w{i}")]
    assert [(r["prompt"], r["chosen"], r["rejected"]) for r in out] == expected


@pytest.mark.parametrize(
    ("record", "kwargs", "cls", "field"),
    [
        ({"chosen": "a", "rejected": "b", "score_chosen": 1, "score_rejected": 0}, {"mode": "prefix"}, InputError, "prompt"),
        ({"prompt": "p", "rejected": "b", "score_chosen": 1, "score_rejected": 0}, {"mode": "prefix"}, InputError, "chosen"),
        ({"prompt": "p", "chosen": "a", "rejected": "b", "score_rejected": 0}, {"mode": "prefix"}, InputError, "score_chosen"),
        ({"prompt": "p", "chosen": "a", "rejected": "b", "score_chosen": "9", "score_rejected": 0}, {"mode": "prefix"},
         InputError, "score_chosen"),
        ({"prompt": "p", "chosen": "a", "rejected": "b", "score_chosen": 1, "score_rejected": float("nan")},
         {"mode": "prefix"}, InputError, "score_rejected"),
        ({"prompt": "p", "chosen": ["a"], "rejected": "b", "score_chosen": 1, "score_rejected": 0}, {"mode": "prefix"},
         InputError, "chosen"),
        ({"prompt": [{"role": "user"}], "chosen": "a", "rejected": "b", "score_chosen": 1, "score_rejected": 0},
         {"mode": "system"}, InputError, "prompt"),
        ({"prompt": 3, "chosen": "a", "rejected": "b", "score_chosen": 1, "score_rejected": 0}, {"mode": "system"},
         InputError, "prompt"),
        (PLAIN, {"mode": "system"}, ConfigError, "mode"),
        (PLAIN, {"mode": "suffix"}, ConfigError, "mode"),
        (PLAIN, {"mode": "prefix", "ties": "maybe"}, ConfigError, "ties"),
        (PLAIN, {"mode": "prefix", "template": "no field"}, ConfigError, "template"),
        (PLAIN, {"mode": "prefix", "template": "{score} {other}"}, ConfigError, "template"),
        (dict(CONV, prompt=[{"role": "system", "content": "s"}]), {"mode": "prefix"}, InputError, "prompt"),
    ],
)
def test_augment_record_bad_input_raises_named_error(record, kwargs, cls, field):
    with pytest.raises(cls) as info:
        augment_record(record, **kwargs)
    assert info.value.field == field, f"error names {info.value.field!r}, expected {field!r}: {info.value}"


def test_augment_records_error_names_the_record_position():
    data = [PLAIN, PLAIN, {"prompt": "p", "chosen": "a", "rejected": "b", "score_chosen": 1}]
    with pytest.raises(InputError, match=r"^record 2: record has no 'score_rejected' field") as info:
        augment_records(data, mode="prefix")
    assert info.value.field == "score_rejected"


def test_the_old_spec_path_still_imports_and_warns_naming_the_new_one():
    import gammapo.data.reward_augmented as moved
    import gammapo_spec.reward_augmented as old

    with pytest.warns(DeprecationWarning, match=r"moved to gammapo\.data\.reward_augmented"):
        from gammapo_spec.reward_augmented import augment_records as old_augment_records
    assert old_augment_records is moved.augment_records
    assert old.__all__ == moved.__all__
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        old.nope  # noqa: B018
