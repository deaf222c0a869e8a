"""The tiny word-level tokenizer, GPT-2 and solvable task shared by the agents tests."""

from __future__ import annotations

import torch
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

WORDS = [
    "the",
    "a",
    "cat",
    "dog",
    "bird",
    "sat",
    "ran",
    "on",
    "mat",
    "good",
    "bad",
    "movie",
    "was",
    "is",
    "very",
    "not",
    "great",
    "awful",
]
PROMPTS = ["the movie was", "a cat", "the dog is very", "bad", "a bird sat"]
P, T = 4, 6


def tiny_tokenizer() -> PreTrainedTokenizerFast:
    vocab = {"<pad>": 0, "<eos>": 1, "<unk>": 2, **{w: i + 3 for i, w in enumerate(WORDS)}}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="<pad>", eos_token="<eos>", unk_token="<unk>"
    )


def tiny_lm(vocab: int, seed: int = 0) -> GPT2LMHeadModel:
    torch.manual_seed(seed)
    cfg = GPT2Config(
        n_layer=2, n_embd=32, n_head=2, vocab_size=vocab, n_positions=64, bos_token_id=1, eos_token_id=1
    )
    return GPT2LMHeadModel(cfg).eval()


def good_fraction(prompt: str, text: str, refs: list, meta: dict) -> float:
    """Fraction of the T token slots that hold the word 'good': a trivially solvable task."""
    return text.split().count("good") / T
