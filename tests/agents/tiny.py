"""The tiny word-level tokenizer, GPT-2 and solvable task shared by the agents tests."""

from __future__ import annotations

from transformers import GPT2LMHeadModel, PreTrainedTokenizerFast

from tests.builders import tiny_gpt2, word_tokenizer

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
    """The word-level tokenizer over :data:`WORDS` (EOS id 1)."""
    return word_tokenizer(WORDS, split_punctuation=True)


def tiny_lm(vocab: int, seed: int = 0) -> GPT2LMHeadModel:
    """The agents tests' random GPT-2 (BOS/EOS id 1, as :func:`tiny_tokenizer`'s EOS)."""
    return tiny_gpt2(vocab, seed=seed, eos_token_id=1)


def good_fraction(prompt: str, text: str, refs: list, meta: dict) -> float:
    """Fraction of the T token slots that hold the word 'good': a trivially solvable task."""
    return text.split().count("good") / T
