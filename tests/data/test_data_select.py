"""gammapo.data.select: select_pairs equals the spec, keeps records intact, counts every record."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gammapo.data.io import DataError
from gammapo.data.select import select_pairs
from gammapo_spec import ConfigError
from gammapo_spec.alignment_potential import (
    explicit_margin,
    implicit_margin,
    select_top_fraction,
    selection_scores,
)


def _rows(n, seed=0, ref=False):
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        r = {"id": i, "prompt": f"p{i}", "chosen": "a", "rejected": "b",
             "score_chosen": float(rng.integers(1, 11)), "score_rejected": float(rng.integers(1, 11)),
             "chosen_logps": float(-rng.uniform(1, 30)), "rejected_logps": float(-rng.uniform(1, 30)),
             "chosen_lengths": int(rng.integers(1, 20)), "rejected_lengths": int(rng.integers(1, 20))}
        if ref:
            r["ref_chosen_logps"] = float(-rng.uniform(1, 30))
            r["ref_rejected_logps"] = float(-rng.uniform(1, 30))
        rows.append(r)
    return rows


def _col(rows, f):
    return np.array([r[f] for r in rows], dtype=float)


@pytest.mark.parametrize("metric", ["alignment-potential", "explicit-margin", "implicit-margin"])
@pytest.mark.parametrize("variant", ["reference-free", "reference-based"])
def test_select_pairs_matches_the_spec(metric, variant):
    rows = _rows(50, seed=1, ref=True)
    ex = explicit_margin(_col(rows, "score_chosen"), _col(rows, "score_rejected"))
    if variant == "reference-free":
        im = implicit_margin(_col(rows, "chosen_logps"), _col(rows, "rejected_logps"),
                             chosen_lengths=_col(rows, "chosen_lengths"), rejected_lengths=_col(rows, "rejected_lengths"))
        usable = [{k: v for k, v in r.items() if not k.startswith("ref_")} for r in rows]
    else:
        im = implicit_margin(_col(rows, "chosen_logps"), _col(rows, "rejected_logps"), variant=variant,
                             ref_chosen_logps=_col(rows, "ref_chosen_logps"), ref_rejected_logps=_col(rows, "ref_rejected_logps"))
        usable = rows
    scores = selection_scores(metric, explicit_margins=ex, implicit_margins=im, weight=0.7)
    res = select_pairs(usable, fraction=0.4, metric=metric, variant=variant, weight=0.7)
    assert res.indices == select_top_fraction(scores, 0.4).tolist()
    np.testing.assert_array_equal(res.scores, scores)
    assert res.data == [usable[i] for i in res.indices], "selected records were changed"
    assert res.counts == {"read": 50, "invalid": 0, "filtered": 30, "written": 20}


def test_select_pairs_on_a_dataset_equals_the_list_path():
    datasets = pytest.importorskip("datasets")
    rows = _rows(30, seed=2)
    a = select_pairs(rows, fraction=0.5, score_field="ap")
    b = select_pairs(datasets.Dataset.from_list(rows), fraction=0.5, score_field="ap")
    assert isinstance(b.data, datasets.Dataset)
    assert b.data.to_list() == a.data and a.counts == b.counts


def test_select_pairs_score_field_is_added_to_copies():
    rows = _rows(4)
    res = select_pairs(rows, fraction=0.5, score_field="ap")
    assert all("ap" in r for r in res.data) and not any("ap" in r for r in rows)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("score_rejected", None, "is missing"),
        ("chosen_logps", "x", "must be a number"),
        ("rejected_logps", float("inf"), "must be finite"),
        ("chosen_lengths", 0, "must be > 0"),
        ("score_chosen", True, "must be a number"),
    ],
)
def test_select_pairs_bad_record_names_place_and_field(field, value, message):
    rows = _rows(5)
    rows[3][field] = value
    with pytest.raises(DataError, match=rf"^<records>\[row 3\]: field '{field}' {message}") as info:
        select_pairs(rows, fraction=0.5)
    assert info.value.field == field and message in str(info.value)


def test_select_pairs_missing_column_in_a_dataset_is_a_bad_record():
    datasets = pytest.importorskip("datasets")
    rows = [{k: v for k, v in r.items() if k != "chosen_lengths"} for r in _rows(3)]
    with pytest.raises(DataError, match=r"\[row 0\]: field 'chosen_lengths' is missing"):
        select_pairs(datasets.Dataset.from_list(rows), fraction=0.5)


def test_select_pairs_options_are_checked_before_any_record():
    with pytest.raises(ConfigError) as info:
        select_pairs([{}], fraction=2.0)
    assert info.value.field == "fraction"
    with pytest.raises(ConfigError) as info:
        select_pairs([{}], fraction=0.5, weight=-1)
    assert info.value.field == "weight"
    with pytest.raises(ConfigError) as info:
        select_pairs([{}], fraction=0.5, variant="simpo")
    assert info.value.field == "variant"


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 40), st.floats(0.05, 1.0), st.sets(st.integers(0, 39)), st.integers(0, 10_000))
def test_select_pairs_never_loses_or_duplicates_a_record(n, fraction, bad, seed):
    rows = _rows(n, seed=seed)
    for i in bad:
        if i < n:
            rows[i]["chosen_logps"] = None
    res = select_pairs(rows, fraction=fraction, skip_invalid=True)
    c = res.counts
    n_bad = len([i for i in bad if i < n])
    assert c["read"] == n == c["invalid"] + c["filtered"] + c["written"]
    assert c["invalid"] == n_bad and len(res.skipped) == n_bad
    assert c["written"] == len(res.data) == int(np.floor(fraction * (n - n_bad) + 1e-9))
    ids = [r["id"] for r in res.data]
    assert len(set(ids)) == len(ids) and ids == sorted(ids)
    assert not set(ids) & {i for i in bad if i < n}, "an invalid record was selected"
