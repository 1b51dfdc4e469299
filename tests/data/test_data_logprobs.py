"""gammapo.data.logprobs: summed response log-probs with a tiny local Llama (built from a config, no hub)."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from gammapo.data.io import DataError  # noqa: E402
from gammapo.data.logprobs import fill_logprobs, load_model, sequence_logprobs  # noqa: E402
from gammapo.train.tiny import build_model, build_tokenizer  # noqa: E402
from gammapo_spec import ConfigError  # noqa: E402

WORDS = ["q0", "q1", "a", "b", "c"]


@pytest.fixture(scope="module")
def lm():
    tok = build_tokenizer(WORDS)
    return build_model(len(tok), seed=3), tok


def _by_hand(model, tok, prompt, response):
    """One unpadded sequence: sum over response tokens y_t of log softmax(logits[t-1])[y_t]."""
    p = tok(prompt)["input_ids"]
    r = tok(response, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
    ids = torch.tensor([p + r])
    with torch.no_grad():
        logp = torch.log_softmax(model(input_ids=ids).logits[0].double(), dim=-1)
    return sum(float(logp[len(p) + j - 1, t]) for j, t in enumerate(r)), len(r)


def test_sequence_logprobs_equals_a_hand_computation(lm):
    model, tok = lm
    prompts, responses = ["q0", "q1 a", "q0 b c"], ["a b c", "c", "a a a a"]
    logps, lengths = sequence_logprobs(model, tok, prompts, responses, batch_size=2)
    for (p, r), lp, n in zip(zip(prompts, responses), logps, lengths):
        want, want_n = _by_hand(model, tok, p, r)
        assert n == want_n
        assert lp == pytest.approx(want, rel=1e-5, abs=1e-5), f"{p!r} -> {r!r}"


def test_sequence_logprobs_do_not_depend_on_the_batch_size(lm):
    model, tok = lm
    prompts, responses = ["q0", "q1 a b", "q0"] * 2, ["a", "c c", "a b c a"] * 2
    one, _ = sequence_logprobs(model, tok, prompts, responses, batch_size=1)
    many, _ = sequence_logprobs(model, tok, prompts, responses, batch_size=4)
    assert many == pytest.approx(one, abs=1e-5)


def test_fill_logprobs_fills_only_missing_values(lm):
    model, tok = lm
    rows = [{"prompt": "q0", "chosen": "a", "rejected": "b c"},
            {"prompt": "q1", "chosen": "c", "rejected": "a", "chosen_logps": -1.0, "rejected_logps": -2.0,
             "chosen_lengths": 5, "rejected_lengths": 6}]
    out, n = fill_logprobs(rows, model, tok)
    assert n == 1 and out is rows
    assert rows[1] == {"prompt": "q1", "chosen": "c", "rejected": "a", "chosen_logps": -1.0, "rejected_logps": -2.0,
                       "chosen_lengths": 5, "rejected_lengths": 6}
    assert (rows[0]["chosen_lengths"], rows[0]["rejected_lengths"]) == (2, 3)
    assert rows[0]["chosen_logps"] == pytest.approx(_by_hand(model, tok, "q0", "a")[0], abs=1e-5)


def test_fill_logprobs_reference_prefix_and_datasets(lm):
    datasets = pytest.importorskip("datasets")
    model, tok = lm
    ds = datasets.Dataset.from_list([{"prompt": "q0", "chosen": "a", "rejected": "b"}])
    out, n = fill_logprobs(ds, model, tok, prefix="ref_")
    assert n == 1 and set(out.column_names) == {"prompt", "chosen", "rejected", "ref_chosen_logps", "ref_rejected_logps"}


def test_fill_logprobs_record_without_a_response_names_it(lm):
    model, tok = lm
    with pytest.raises(DataError, match=r"\[row 1\]: field 'rejected' is missing") as info:
        fill_logprobs([{"prompt": "q0", "chosen": "a", "rejected": "b"}, {"prompt": "q0", "chosen": "a"}], model, tok)
    assert info.value.field == "rejected"


def test_load_model_from_a_local_directory(lm, tmp_path):
    model, tok = lm
    model.save_pretrained(tmp_path / "m")
    tok.save_pretrained(tmp_path / "m")
    loaded, tok2 = load_model(str(tmp_path / "m"))
    a, _ = sequence_logprobs(model, tok, ["q0"], ["a b"])
    b, _ = sequence_logprobs(loaded, tok2, ["q0"], ["a b"])
    assert b == pytest.approx(a, abs=1e-6)
    with pytest.raises(ConfigError) as info:
        load_model(str(tmp_path / "nothing"))
    assert info.value.field == "model" and "does not exist" in str(info.value), str(info.value)
    with pytest.raises(ConfigError, match="not a directory"):
        load_model(str(tmp_path / "m" / "config.json"))
    with pytest.raises(ConfigError, match="/nonexistent"):  # an absolute path is not sent to the hub's id checks
        load_model("/nonexistent")
