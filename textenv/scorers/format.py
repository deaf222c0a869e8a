"""``Format``: rewards generations whose text matches a regular expression (a format check).

The expression runs on whatever the policy writes, and RL finds the texts on which a pattern
backtracks catastrophically (``(a|a)+$`` on ``"aaaa...!"`` doubles its time with each character).
So it runs under a time limit: the ``regex`` package's ``timeout=``, ``DEFAULT_TIMEOUT`` seconds per
text unless ``timeout=`` says otherwise. A text that runs past it fails the step with a
:class:`~textenv.scorers.base.ScorerError` naming the pattern; the step then changed nothing.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

import regex

from textenv.scorers.base import EpisodeBatch, Scorer, ScorerError

MODES = ("search", "match", "fullmatch")
DEFAULT_TIMEOUT = 1.0
"""Seconds one match may take on one generated text (the ``regex`` package checks it as it runs)."""

# The flags of the standard ``re`` module as the ``regex`` package spells them (re.ASCII is 256,
# regex.ASCII 128): a pattern compiled with ``re`` is recompiled with the same meaning.
_FLAGS = ("IGNORECASE", "LOCALE", "MULTILINE", "DOTALL", "UNICODE", "VERBOSE", "ASCII")


def regex_flags(flags: int) -> int:
    """``re`` flags (``re.I | re.S``...) as the equivalent ``regex`` package flags."""
    out = 0
    for name in _FLAGS:
        if flags & getattr(re, name):
            out |= getattr(regex, name)
    return out


class Format(Scorer):
    """``value`` when the generated text matches ``pattern``, 0 otherwise.

    Args:
        pattern: A regular expression: a string, or a pattern compiled with ``re`` or ``regex``
            (recompiled with the ``regex`` package, whose syntax is a superset of ``re``'s).
        mode: ``"search"`` (anywhere in the text), ``"match"`` (at its start) or ``"fullmatch"``
            (the whole text), as the ``re`` functions of those names.
        flags: ``re`` flags for a string pattern (default ``re.DOTALL``: ``.`` crosses lines).
        value: Reward of a matching text.
        timeout: Seconds a match may take on one text before the step fails with a
            :class:`~textenv.scorers.base.ScorerError` (``DEFAULT_TIMEOUT``; the check is periodic,
            so a match may run somewhat longer).
        name: Term name in ``info["reward_terms"]``.

    Raises:
        ValueError: An invalid expression, mode or timeout.
        TypeError: A pattern that is no string or compiled pattern.

    Example:
        >>> Format(r"#### -?\\d+").score_text("so 3+4=7 #### 7")
        1.0
        >>> reward = Answer(format=0.0) + 0.2 * Format(r"<answer>.*</answer>")  # doctest: +SKIP
    """

    def __init__(
        self,
        pattern: str | re.Pattern[str] | regex.Pattern[str],
        *,
        mode: str = "search",
        flags: int = re.DOTALL,
        value: float = 1.0,
        timeout: float = DEFAULT_TIMEOUT,
        name: str = "format",
    ):
        if mode not in MODES:
            raise ValueError(f"Format mode must be one of {MODES}, got {mode!r}")
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0:
            raise ValueError(f"Format timeout must be a positive number of seconds, got {timeout!r}")
        if isinstance(pattern, re.Pattern):
            source, compile_flags = pattern.pattern, regex_flags(pattern.flags)
        elif isinstance(pattern, regex.Pattern):
            source, compile_flags = pattern.pattern, pattern.flags
        elif isinstance(pattern, str):
            source, compile_flags = pattern, regex_flags(flags)
        else:
            raise TypeError(
                f"Format pattern must be a string or a compiled pattern, got {type(pattern).__name__}: {pattern!r}"
            )
        try:
            self.pattern = regex.compile(source, compile_flags)
        except (regex.error, re.error) as err:
            raise ValueError(f"Format pattern {source!r} is not a valid regular expression: {err}") from None
        self.mode = mode
        self.value = float(value)
        self.timeout = float(timeout) if math.isfinite(timeout) else None
        self.name = name

    def score_text(self, text: str) -> float:
        """The reward of one generated text.

        Raises:
            ScorerError: The match ran past ``timeout`` seconds.
        """
        try:
            found = getattr(self.pattern, self.mode)(text, timeout=self.timeout)
        except TimeoutError:
            raise ScorerError(
                f"Format pattern {self.pattern.pattern!r} took over its timeout of {self.timeout} s on the "
                f"generated text {_short(text)!r}: the pattern backtracks catastrophically on it. Simplify the "
                "pattern (no nested or overlapping repeats such as '(a+)+' or '(a|a)+') or raise timeout="
            ) from None
        return self.value if found else 0.0

    def score(self, batch: EpisodeBatch) -> Sequence[float]:
        return [self.score_text(text) for text in batch.texts]

    def __repr__(self) -> str:
        return f"Format({self.pattern.pattern!r}, mode={self.mode!r})"


def _short(text: str) -> str:
    return text if len(text) <= 200 else text[:200] + "..."
