"""``Keyword``: rewards generations that contain (or avoid) given words."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from textenv.scorers.base import EpisodeBatch, Scorer, ScorerContext

MODES = ("any", "all", "count", "fraction")
METADATA_KEY = "keywords"


class Keyword(Scorer):
    """Scores the presence of keywords in the generated text.

    Modes (``n`` = number of distinct ``words`` found in the text):

    ==============  =============================================================
    ``"any"``       1.0 if ``n >= 1`` else 0.0
    ``"all"``       1.0 if every word is found else 0.0
    ``"count"``     ``n``; each word counts once, so repeating a word earns nothing
    ``"fraction"``  ``n / len(words)``: partial credit, a denser signal than ``"all"``
    ==============  =============================================================

    Each distinct ``forbidden`` word found subtracts 1.0. With ``whole_word=True`` a word only matches
    where it is not part of a longer word ("great" is not in "greatest"); words may be phrases
    ("special effects"), and their spaces match any run of whitespace.

    Args:
        words: The keywords, or ``None`` to read each prompt's own list from its metadata
            ``"keywords"`` (as in the built-in ``keyword-prompts``).
        mode: ``"any"``, ``"all"``, ``"count"`` or ``"fraction"``.
        case_sensitive: Match case exactly.
        whole_word: Match only whole words.
        forbidden: Words whose presence costs 1.0 each.
        name: Term name in ``info["reward_terms"]``.

    Example:
        >>> reward = Keyword(["great", "awesome"], mode="count", forbidden=["boring"])
    """

    def __init__(
        self,
        words: Sequence[str] | None = None,
        *,
        mode: str = "any",
        case_sensitive: bool = False,
        whole_word: bool = True,
        forbidden: Sequence[str] = (),
        name: str = "keyword",
    ):
        if mode not in MODES:
            raise ValueError(f"Keyword mode must be one of {MODES}, got {mode!r}")
        self.mode = mode
        self.case_sensitive = case_sensitive
        self.whole_word = whole_word
        self.words = None if words is None else _check_words("words", words)
        self.forbidden = _check_words("forbidden", forbidden, allow_empty=True)
        self.name = name
        self._patterns: dict[str, re.Pattern[str]] = {}

    def attach(self, ctx: ScorerContext) -> None:
        if self.words is None:
            for i, prompt in enumerate(ctx.prompts):
                _prompt_words(prompt.metadata, f"prompt {i} ({prompt.text!r})")

    def _pattern(self, word: str) -> re.Pattern[str]:
        pattern = self._patterns.get(word)
        if pattern is None:
            body = r"\s+".join(re.escape(part) for part in word.split())
            # Look-arounds instead of \b, so words that start or end with punctuation ("C++") work.
            if self.whole_word:
                body = rf"(?<!\w){body}(?!\w)"
            pattern = re.compile(body, 0 if self.case_sensitive else re.IGNORECASE)
            self._patterns[word] = pattern
        return pattern

    def _found(self, words: Sequence[str], text: str) -> int:
        return sum(1 for w in dict.fromkeys(words) if self._pattern(w).search(text))

    def score_text(self, text: str, words: Sequence[str] | None = None) -> float:
        """The score of one text (``words`` overrides the keywords, as metadata does)."""
        words = self.words if words is None else words
        if words is None:
            raise ValueError("Keyword(words=None) needs the keywords of the prompt")
        found, distinct = self._found(words, text), len(dict.fromkeys(words))
        if self.mode == "any":
            value = float(found >= 1)
        elif self.mode == "all":
            value = float(found == distinct)
        elif self.mode == "fraction":
            value = found / distinct
        else:
            value = float(found)
        return value - self._found(self.forbidden, text)

    def score(self, batch: EpisodeBatch) -> Sequence[float]:
        return [
            self.score_text(text, self.words or _prompt_words(meta, f"prompt {prompt!r}"))
            for prompt, text, meta in zip(batch.prompts, batch.texts, batch.metadata)
        ]

    def __repr__(self) -> str:
        words = "None" if self.words is None else repr(list(self.words))
        return f"Keyword({words}, mode={self.mode!r})"


def _check_words(arg: str, words: object, *, allow_empty: bool = False) -> tuple[str, ...]:
    if isinstance(words, str) or not isinstance(words, Sequence):
        raise TypeError(f"Keyword {arg} must be a list of strings, got {type(words).__name__}: {words!r}")
    for w in words:
        if not isinstance(w, str) or not w.strip():
            raise ValueError(f"Keyword {arg} must be non-blank strings, got {w!r} in {list(words)!r}")
    if not words and not allow_empty:
        raise ValueError(
            f"Keyword {arg} is empty; expected at least one word (or words=None for prompt keywords)"
        )
    return tuple(words)


def _prompt_words(metadata: dict[str, Any], where: str) -> tuple[str, ...]:
    words = metadata.get(METADATA_KEY)
    if words is None:
        raise ValueError(
            f"Keyword(words=None) reads the keywords from each prompt's {METADATA_KEY!r} entry, but {where} has "
            f"none; give every prompt one, e.g. {{'prompt': 'The film was', 'keywords': ['great']}}, or pass words="
        )
    if isinstance(words, str):
        words = [words]
    return _check_words(f"{METADATA_KEY!r} of {where}", words)
