"""Reward-augmented relabelling on records in the authors' format (string prompt, whole conversations as
responses, UltraFeedback score fields): separate filter and condition fields, the conversation read as
the prompt, the counts; the expected records are written out by hand."""

from __future__ import annotations

import pytest

from gammapo.data.augment import augment_pairs
from gammapo_spec.errors import ConfigError, InputError
from gammapo.data.reward_augmented import augment_record, augment_records, split_record

U = {"role": "user", "content": "Name a prime."}


def _rec(good, bad, overall=(8.0, 3.0), fine=(4.5, 2.25), **extra):
    return {"prompt": "Name a prime.", "prompt_id": "p1",
            "chosen": [dict(U), {"role": "assistant", "content": good}],
            "rejected": [dict(U), {"role": "assistant", "content": bad}],
            "messages": [dict(U), {"role": "assistant", "content": good}],
            "overall_score_chosen": overall[0], "overall_score_rejected": overall[1],
            "avg_fine_score_chosen": fine[0], "avg_fine_score_rejected": fine[1], **extra}


FIELDS = dict(chosen_score_field="overall_score_chosen", rejected_score_field="overall_score_rejected",
              filter_chosen_field="avg_fine_score_chosen", filter_rejected_field="avg_fine_score_rejected")


def test_an_authors_format_record_relabels_into_two_conversational_pairs():
    out = augment_record(_rec("7", "9"), template="Overall score: {score}.", mode="system", **FIELDS)
    system = lambda s: [{"role": "system", "content": f"Overall score: {s}."}, dict(U)]  # noqa: E731
    assert out == [
        {"prompt": system(8), "chosen": [{"role": "assistant", "content": "7"}],
         "rejected": [{"role": "assistant", "content": "9"}],
         "overall_score_chosen": 8.0, "overall_score_rejected": 3.0,
         "avg_fine_score_chosen": 4.5, "avg_fine_score_rejected": 2.25, "condition_score": 8.0,
         "prompt_id": "p1", "messages": [dict(U), {"role": "assistant", "content": "7"}]},
        {"prompt": system(3), "chosen": [{"role": "assistant", "content": "9"}],
         "rejected": [{"role": "assistant", "content": "7"}],
         "overall_score_chosen": 3.0, "overall_score_rejected": 8.0,
         "avg_fine_score_chosen": 2.25, "avg_fine_score_rejected": 4.5, "condition_score": 3.0,
         "prompt_id": "p1", "messages": [dict(U), {"role": "assistant", "content": "7"}]},
    ]


def test_the_filter_uses_its_own_fields_and_the_condition_its_own():
    # overall scores say keep (8 >= 3), fine scores say drop (2.0 < 2.5): the filter decides
    rows = [_rec("7", "9"), _rec("7", "9", fine=(2.0, 2.5)), _rec("7", "9", overall=(2.0, 6.0))]
    out, counts = augment_records(rows, template="{score}", mode="prefix", **FIELDS)
    assert counts == {"read": 3, "kept": 2, "dropped_lower": 1, "dropped_ties": 0, "written": 4}
    assert [r["condition_score"] for r in out] == [8.0, 3.0, 2.0, 6.0]
    assert out[0]["prompt"] == [{"role": "user", "content": "8\n\nName a prime."}]
    # one field for both (gammapo's default): the overall scores filter, so the third record is dropped
    _, single = augment_records(rows, template="{score}", mode="prefix", chosen_score_field="overall_score_chosen",
                                rejected_score_field="overall_score_rejected")
    assert (single["kept"], single["dropped_lower"]) == (2, 1)


def test_augment_pairs_reads_the_authors_format_with_auto_mode():
    rows = [_rec("7", "9"), _rec("11", "4", fine=(3.0, 3.0))]
    res = augment_pairs(rows, template="Overall score: {score}.", ties="drop", **FIELDS)
    assert res.counts == {"read": 2, "invalid": 0, "kept": 1, "dropped_lower": 0, "dropped_ties": 1, "written": 2}
    assert [r["prompt"][0] for r in res.data] == [{"role": "system", "content": "Overall score: 8."},
                                                 {"role": "system", "content": "Overall score: 3."}]


def test_split_record_formats_and_errors():
    plain = {"prompt": "p", "chosen": "a", "rejected": "b"}
    assert split_record(plain) == ("p", "a", "b")
    bare = {"prompt": "p", "chosen": [{"role": "assistant", "content": "a"}],
            "rejected": [{"role": "assistant", "content": "b"}]}
    assert split_record(bare)[0] == [{"role": "user", "content": "p"}]
    with pytest.raises(InputError, match="different conversations") as e:
        split_record(dict(_rec("a", "b"), rejected=[{"role": "user", "content": "other"},
                                                     {"role": "assistant", "content": "b"}]))
    assert e.value.field == "rejected"
    with pytest.raises(InputError, match="must end with the assistant") as e:
        split_record(dict(_rec("a", "b"), chosen=[dict(U)]))
    assert e.value.field == "chosen"


def test_one_filter_field_alone_is_refused():
    with pytest.raises(ConfigError) as e:
        augment_record(_rec("a", "b"), filter_chosen_field="avg_fine_score_chosen",
                       chosen_score_field="overall_score_chosen", rejected_score_field="overall_score_rejected")
    assert e.value.field == "filter_rejected_field"
    with pytest.raises(ConfigError):
        augment_pairs([_rec("a", "b")], filter_rejected_field="avg_fine_score_rejected")


def test_the_command_reads_the_authors_format_with_filter_fields(tmp_path):
    import json

    from gammapo.data.cli import augment_main

    src, dst = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    rows = [_rec("7", "9"), _rec("7", "9", fine=(2.0, 2.5))]
    src.write_text("".join(json.dumps(r) + "\n" for r in rows))
    status = augment_main([str(src), str(dst), "--mode", "system", "--template", "Overall score: {score}.",
                           "--chosen-score-field", "overall_score_chosen", "--rejected-score-field",
                           "overall_score_rejected", "--filter-chosen-field", "avg_fine_score_chosen",
                           "--filter-rejected-field", "avg_fine_score_rejected", "--quiet"])
    assert status == 0
    out = [json.loads(line) for line in dst.read_text().splitlines()]
    assert [r["prompt"][0]["content"] for r in out] == ["Overall score: 8.", "Overall score: 3."]
    assert augment_main([str(src), str(tmp_path / "x.jsonl"), "--filter-chosen-field", "avg_fine_score_chosen"]) == 2
