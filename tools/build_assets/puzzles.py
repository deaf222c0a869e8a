"""Verifiable puzzles for ``tiny-solver``: two-digit addition and word-sequence reversal.

Prompt files hold ``{"prompt": "Q: 23+48= A:", "answer": "71"}`` and
``{"prompt": "Reverse: plot dull great =>", "references": ["great dull plot"]}``; the solver's training
texts are the same prompts followed by `` <answer>``, from other seeds and never a prompt of the files.
"""

from __future__ import annotations

import random
from typing import Any

from tools.build_assets.lexicon import ADJ, NEG, POS, SUBJECTS_PL, SUBJECTS_SG

REVERSE_PREFIX = "Reverse:"
REVERSE_SUFFIX = "=>"


def arithmetic_prompt(a: int, b: int) -> str:
    return f"Q: {a}+{b}= A:"


def _arithmetic_pair(rng: random.Random) -> tuple[int, int]:
    return rng.randint(10, 99), rng.randint(10, 99)


def reverse_words() -> list[str]:
    """One-word lexicon nouns and adjectives (the tokenizer knows them well)."""
    nouns = [w for w in (*SUBJECTS_SG, *SUBJECTS_PL, "movie", "film") if " " not in w]
    return sorted(set(nouns) | set(ADJ[POS]) | set(ADJ[NEG]))


def _word_sequence(rng: random.Random, words: list[str]) -> list[str]:
    return rng.sample(words, rng.randint(3, 5))


def reverse_prompt(words: list[str]) -> str:
    return f"{REVERSE_PREFIX} {' '.join(words)} {REVERSE_SUFFIX}"


def arithmetic_rows(seed: int, n: int) -> list[dict[str, Any]]:
    """``n`` distinct addition questions with their answers (as strings)."""
    rng = random.Random(f"arithmetic-{seed}")
    rows: dict[str, str] = {}
    while len(rows) < n:
        a, b = _arithmetic_pair(rng)
        rows.setdefault(arithmetic_prompt(a, b), str(a + b))
    return [{"prompt": p, "answer": x} for p, x in rows.items()]


def reverse_rows(seed: int, n: int) -> list[dict[str, Any]]:
    """``n`` distinct reversal prompts; the reference is the words in reverse order."""
    rng = random.Random(f"reverse-{seed}")
    words = reverse_words()
    rows: dict[str, str] = {}
    while len(rows) < n:
        seq = _word_sequence(rng, words)
        rows.setdefault(reverse_prompt(seq), " ".join(reversed(seq)))
    return [{"prompt": p, "references": [r]} for p, r in rows.items()]


def solver_texts(seed: int, n: int, held_out: set[str]) -> list[tuple[str, str]]:
    """``n`` training ``(prompt, " answer")`` pairs, half addition and half reversal, no prompt in ``held_out``."""
    rng = random.Random(f"solver-{seed}")
    words = reverse_words()
    out: list[tuple[str, str]] = []
    while len(out) < n:
        if rng.random() < 0.5:
            a, b = _arithmetic_pair(rng)
            prompt, answer = arithmetic_prompt(a, b), str(a + b)
        else:
            seq = _word_sequence(rng, words)
            prompt, answer = reverse_prompt(seq), " ".join(reversed(seq))
        if prompt not in held_out:
            out.append((prompt, f" {answer}"))
    return out
