"""Builders of the small random parts that the tests make for themselves: a word-level tokenizer and a GPT-2.

The built-in tokenizer is the ``tokenizer`` fixture of ``tests/conftest.py``; these build what a test needs
beyond it (a vocabulary of a few words, a policy that differs from the built-in LM). Import them as
``from tests.builders import tiny_gpt2, word_tokenizer``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

SPECIAL_TOKENS = ("<pad>", "<eos>", "<unk>")
"""The first ids of every :func:`word_tokenizer`: pad 0, EOS 1, unknown 2."""


def word_tokenizer(words: Sequence[str], *, split_punctuation: bool = False) -> PreTrainedTokenizerFast:
    """A word-level tokenizer: ids 0, 1 and 2 are ``<pad>``, ``<eos>`` and ``<unk>``, then ``words`` in order.

    Args:
        words: The vocabulary after the special tokens; any other word encodes as ``<unk>``.
        split_punctuation: Pre-tokenize on word/punctuation boundaries (``Whitespace``: ``\\w+|[^\\w\\s]+``)
            instead of on whitespace only (``WhitespaceSplit``).

    Example:
        >>> tok = word_tokenizer(["good", "movie"])
        >>> tok("good movie awful")["input_ids"], tok.eos_token_id, len(tok)
        ([3, 4, 2], 1, 5)
    """
    vocab = {w: i for i, w in enumerate([*SPECIAL_TOKENS, *words])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace() if split_punctuation else pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="<pad>", eos_token="<eos>", unk_token="<unk>"
    )


def tiny_gpt2(
    vocab_size: int,
    *,
    seed: int | None = 0,
    layers: int = 2,
    width: int = 32,
    heads: int = 2,
    positions: int = 64,
    eos_token_id: int | None = None,
) -> GPT2LMHeadModel:
    """A small GPT-2 with random weights, in eval mode.

    Args:
        vocab_size: The vocabulary size (``len(tokenizer)``).
        seed: ``torch.manual_seed(seed)`` runs first, so a seed gives the same weights every time (and leaves
            the global generator where the build leaves it, as the tests' later draws expect); ``None``
            draws from the global generator as it stands.
        layers: ``n_layer``.
        width: ``n_embd``.
        heads: ``n_head``.
        positions: ``n_positions``, the longest sequence the model reads.
        eos_token_id: The config's BOS and EOS id (GPT-2 uses one token for both); ``None`` keeps
            ``GPT2Config``'s defaults.

    Example:
        >>> lm = tiny_gpt2(20, seed=1, eos_token_id=1)
        >>> lm.config.n_embd, lm.config.eos_token_id, lm.training
        (32, 1, False)
        >>> torch.equal(lm.lm_head.weight, tiny_gpt2(20, seed=1, eos_token_id=1).lm_head.weight)
        True
    """
    if seed is not None:
        torch.manual_seed(seed)
    special = {} if eos_token_id is None else {"bos_token_id": eos_token_id, "eos_token_id": eos_token_id}
    config = GPT2Config(
        vocab_size=vocab_size, n_layer=layers, n_embd=width, n_head=heads, n_positions=positions, **special
    )
    return GPT2LMHeadModel(config).eval()
