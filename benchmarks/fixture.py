"""The shared benchmark fixture: an offline tokenizer and random-init GPT-2-shaped models.

Every benchmark builds its tokenizer, models and prompts here, the same way the peer scripts do
(``shared/peers/common.py``), so figures from textenv and from its peers (HF ``generate``, TextRL,
TRL) are measured on identical weights and prompts. Nothing is downloaded: the tokenizer is a
byte-level BPE trained on a small generated corpus and the models are built from configs.

Sizes (``n_layer``, ``n_embd``, ``n_head``, ``vocab``):

* ``tiny``: (2, 128, 4, 1024)
* ``small``: (6, 384, 6, 8192)
* ``gpt2``: (12, 768, 12, 50257), the shape of GPT-2 small
* ``gpt2-large``: (36, 1280, 20, 50257) and ``gpt2-xl``: (48, 1600, 25, 50257), 774M and 1.5B parameters,
  for memory figures on a GPU (``benchmarks/gpu.sh``)
* ``wide-vocab``: (2, 896, 14, 151936), Qwen2.5-0.5B's width and vocabulary with 2 layers, where the
  ``(B, T, V)`` logits dominate training memory (``benchmarks/memory.py``)

The tokenizer has at most 600 tokens; a model's vocabulary is wider, so envs built on this
fixture pass ``vocab_size=model.config.vocab_size`` and ``eos_token_id=EOS_ID``.

Example:
    >>> from benchmarks import fixture
    >>> tok = fixture.tokenizer()
    >>> model = fixture.model("tiny")
    >>> texts = fixture.prompts(16)
"""

from __future__ import annotations

import random

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

_WORD_TEXT = (
    "the a cat dog bird sat ran flew on under over mat log tree happy sad good bad "
    "movie film story was is very not great awful loved hated this that and but"
)
WORDS = _WORD_TEXT.split()
"""The vocabulary of the generated corpus and prompts (as the peers' ``common.WORDS``)."""

SIZES: dict[str, tuple[int, int, int, int]] = {
    # name: (n_layer, n_embd, n_head, vocab)
    "tiny": (2, 128, 4, 1024),
    "small": (6, 384, 6, 8192),
    "gpt2": (12, 768, 12, 50257),
    "gpt2-large": (36, 1280, 20, 50257),
    "gpt2-xl": (48, 1600, 25, 50257),
    # Qwen2.5-0.5B's width and vocabulary with 2 layers: where the (B, T, V) logits dominate memory
    "wide-vocab": (2, 896, 14, 151936),
}

PAD_ID = 0
"""Id of ``<pad>`` in :func:`tokenizer`."""
EOS_ID = 1
"""Id of ``<eos>`` in :func:`tokenizer` and the models' ``eos_token_id``."""


def corpus(n: int = 4000, seed: int = 0) -> list[str]:
    """``n`` random sentences of 4 to 16 :data:`WORDS`; the tokenizer's training text."""
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(4, 16))) for _ in range(n)]


def tokenizer(vocab_size: int = 1024) -> PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer (at most 600 tokens) with ``<pad>`` = 0, ``<eos>`` = 1, ``<unk>`` = 2.

    Args:
        vocab_size: Upper bound on the BPE vocabulary (capped at 600, as the peers do).
    """
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(
        vocab_size=min(vocab_size, 600),
        special_tokens=["<pad>", "<eos>", "<unk>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(corpus(), trainer)
    tok.decoder = decoders.ByteLevel()
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="<pad>", eos_token="<eos>", unk_token="<unk>"
    )
    fast.padding_side = "left"
    return fast


def model(size: str = "tiny", seed: int = 0) -> GPT2LMHeadModel:
    """A random-init GPT-2 of one of :data:`SIZES`, in eval mode; same ``seed`` -> same weights.

    Raises:
        ValueError: ``size`` is not one of :data:`SIZES`.
    """
    if size not in SIZES:
        raise ValueError(f"size must be one of {sorted(SIZES)}, got {size!r}")
    n_layer, n_embd, n_head, vocab = SIZES[size]
    torch.manual_seed(seed)
    cfg = GPT2Config(
        n_layer=n_layer,
        n_embd=n_embd,
        n_head=n_head,
        vocab_size=vocab,
        n_positions=1024,
        bos_token_id=EOS_ID,
        eos_token_id=EOS_ID,
        pad_token_id=PAD_ID,
    )
    return GPT2LMHeadModel(cfg).eval()


def prompts(batch: int, seed: int = 0) -> list[str]:
    """``batch`` prompt texts of 3 to 8 :data:`WORDS` (the peers' ``common.prompts``)."""
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 8))) for _ in range(batch)]
