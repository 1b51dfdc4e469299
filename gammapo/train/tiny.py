"""A tiny causal LM and a word-level tokenizer, built locally (no hub download).

The embedded task (:mod:`gammapo.train.task`) speaks a closed vocabulary of a few dozen words, so a
word-level tokenizer (``tokenizers``' ``WordLevel`` with whitespace splitting) and a two-layer Llama
with a 64-wide residual stream are enough; a step of preference training on a batch of 32 pairs takes
tens of milliseconds on one CPU core.
"""

from __future__ import annotations

from typing import Sequence

__all__ = ["PAD", "EOS", "UNK", "build_tokenizer", "build_model"]

PAD, EOS, UNK = "<pad>", "<eos>", "<unk>"


def build_tokenizer(words: Sequence[str]):
    """A ``PreTrainedTokenizerFast`` over ``words`` plus ``<pad>``, ``<eos>``, ``<unk>`` (ids 0, 1, 2).

    Words are split on whitespace; the special tokens are matched anywhere (so TRL's appended
    ``"<eos>"`` is one token). No BOS token is added.

    Example:
        >>> tok = build_tokenizer(["q0", "t1", "t2"])
        >>> tok("q0 t2 t1<eos>")["input_ids"], tok.pad_token_id, tok.eos_token_id
        ([3, 5, 4, 1], 0, 1)
    """
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {PAD: 0, EOS: 1, UNK: 2}
    for w in words:
        vocab.setdefault(w, len(vocab))
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token=UNK))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok = PreTrainedTokenizerFast(tokenizer_object=core, pad_token=PAD, eos_token=EOS, unk_token=UNK)
    tok.padding_side = "left"
    return tok


def build_model(vocab_size: int, *, seed: int = 0, hidden: int = 64, layers: int = 2, heads: int = 4):
    """A randomly initialised ``LlamaForCausalLM`` (float32) from a config, seeded.

    Example:
        >>> m = build_model(16, seed=0)
        >>> m.config.num_hidden_layers, sum(p.numel() for p in m.parameters()) < 200_000
        (2, True)
    """
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=heads,
        max_position_embeddings=64,
        pad_token_id=0,
        eos_token_id=1,
        bos_token_id=None,
        tie_word_embeddings=True,
    )
    torch.manual_seed(seed)
    return LlamaForCausalLM(config).float()
