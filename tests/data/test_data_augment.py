"""gammapo.data.augment: augment_pairs on lists and datasets, record locations, counts."""

from __future__ import annotations

import pytest

from gammapo.data.augment import augment_pairs
from gammapo.data.io import DataError
from gammapo_spec import ConfigError
from gammapo.data.reward_augmented import augment_records

CONV = [
    {"prompt": [{"role": "user", "content": f"q{i}"}], "chosen": [{"role": "assistant", "content": "good"}],
     "rejected": [{"role": "assistant", "content": "bad"}], "score_chosen": s, "score_rejected": t, "id": i}
    for i, (s, t) in enumerate([(9, 2), (5, 5), (3, 7), (8, 1)])
]


def test_augment_pairs_list_equals_the_spec_transform():
    res = augment_pairs(CONV, mode="system", template="Score {score}.")
    out, counts = augment_records(CONV, mode="system", template="Score {score}.")
    assert res.data == out
    assert res.counts == {"read": 4, "invalid": 0, "kept": 3, "dropped_lower": 1, "dropped_ties": 0, "written": 6}


def test_augment_pairs_on_a_dataset_equals_the_list_path():
    datasets = pytest.importorskip("datasets")
    res = augment_pairs(datasets.Dataset.from_list(CONV), mode="system", ties="drop")
    assert isinstance(res.data, datasets.Dataset)
    assert res.data.to_list() == augment_pairs(CONV, mode="system", ties="drop").data
    assert res.counts["dropped_ties"] == 1 and res.counts["written"] == 4


def test_augment_pairs_bad_record_names_place_and_field():
    rows = [dict(CONV[0]), dict(CONV[1])]
    rows[1]["score_rejected"] = "high"
    with pytest.raises(DataError, match=r"^<records>\[row 1\]: score_rejected must be a finite number") as info:
        augment_pairs(rows, mode="system")
    assert info.value.field == "score_rejected"


def test_augment_pairs_skip_invalid_counts_them():
    rows = [CONV[0], {"prompt": "p"}, CONV[3]]
    res = augment_pairs(rows, mode="system", skip_invalid=True)
    assert res.counts == {"read": 3, "invalid": 1, "kept": 2, "dropped_lower": 0, "dropped_ties": 0, "written": 4}
    assert res.skipped[0][0] == "<records>[row 1]"


def test_augment_pairs_config_errors_are_raised_even_when_skipping():
    with pytest.raises(ConfigError):
        augment_pairs(CONV, mode="system", template="no score", skip_invalid=True)
