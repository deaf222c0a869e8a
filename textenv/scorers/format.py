"""``Format``: rewards generations whose text matches a regular expression (a format check)."""

from __future__ import annotations

import re
from collections.abc import Sequence

from textenv.scorers.base import EpisodeBatch, Scorer

MODES = ("search", "match", "fullmatch")


class Format(Scorer):
    """``value`` when the generated text matches ``pattern``, 0 otherwise.

    Args:
        pattern: A regular expression (string or compiled).
        mode: ``"search"`` (anywhere in the text), ``"match"`` (at its start) or ``"fullmatch"``
            (the whole text), as the ``re`` functions of those names.
        flags: ``re`` flags for a string pattern (default ``re.DOTALL``: ``.`` crosses lines).
        value: Reward of a matching text.
        name: Term name in ``info["reward_terms"]``.

    Example:
        >>> Format(r"#### -?\\d+").score_text("so 3+4=7 #### 7")
        1.0
        >>> reward = Answer(format=0.0) + 0.2 * Format(r"<answer>.*</answer>")  # doctest: +SKIP
    """

    def __init__(
        self,
        pattern: str | re.Pattern[str],
        *,
        mode: str = "search",
        flags: int = re.DOTALL,
        value: float = 1.0,
        name: str = "format",
    ):
        if mode not in MODES:
            raise ValueError(f"Format mode must be one of {MODES}, got {mode!r}")
        if isinstance(pattern, re.Pattern):
            self.pattern = pattern
        elif isinstance(pattern, str):
            try:
                self.pattern = re.compile(pattern, flags)
            except re.error as err:
                raise ValueError(
                    f"Format pattern {pattern!r} is not a valid regular expression: {err}"
                ) from None
        else:
            raise TypeError(
                f"Format pattern must be a string or re.Pattern, got {type(pattern).__name__}: {pattern!r}"
            )
        self.mode = mode
        self.value = float(value)
        self.name = name

    def score_text(self, text: str) -> float:
        """The reward of one generated text."""
        return self.value if getattr(self.pattern, self.mode)(text) else 0.0

    def score(self, batch: EpisodeBatch) -> Sequence[float]:
        return [self.score_text(text) for text in batch.texts]

    def __repr__(self) -> str:
        return f"Format({self.pattern.pattern!r}, mode={self.mode!r})"
