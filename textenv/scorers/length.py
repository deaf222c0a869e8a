"""Length terms: ``Length`` (how long the generation is) and ``MissingEOSPenalty`` (hit the length cap)."""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence

from textenv.scorers.base import EpisodeBatch, Scorer

UNITS = ("tokens", "words", "chars")


def _check_real(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(float(value)):
        raise TypeError(f"{name} must be a finite real number, got {type(value).__name__}: {value!r}")
    return float(value)


class Length(Scorer):
    """The generation's length, or minus its distance to a target length.

    ``target=None``: the length itself (weight it negatively to prefer short texts,
    ``-0.01 * Length()``). ``target=n``: ``-abs(length - n)``, highest (0) at exactly ``n``.
    Tokens are counted without the final EOS.

    Args:
        target: Desired length, or ``None``.
        unit: ``"tokens"`` (the env's tokens), ``"words"`` (whitespace-separated) or ``"chars"``.
        name: Term name in ``info["reward_terms"]``.

    Example:
        >>> reward = ROUGE() + 0.05 * Length(target=12)  # doctest: +SKIP
    """

    def __init__(self, *, target: int | None = None, unit: str = "tokens", name: str = "length"):
        if target is not None and (
            isinstance(target, bool) or not isinstance(target, numbers.Integral) or target < 0
        ):
            raise ValueError(f"Length target must be a non-negative int or None, got {target!r}")
        if unit not in UNITS:
            raise ValueError(f"Length unit must be one of {UNITS}, got {unit!r}")
        self.target = None if target is None else int(target)
        self.unit = unit
        self.name = name

    def _length(self, text: str, token_ids: Sequence[int], finish_reason: str) -> int:
        if self.unit == "words":
            return len(text.split())
        if self.unit == "chars":
            return len(text)
        return len(token_ids) - (finish_reason == "eos")

    def score(self, batch: EpisodeBatch) -> Sequence[float]:
        lengths = [self._length(*row) for row in zip(batch.texts, batch.token_ids, batch.finish_reasons)]
        if self.target is None:
            return [float(n) for n in lengths]
        return [-float(abs(n - self.target)) for n in lengths]

    def __repr__(self) -> str:
        return f"Length(target={self.target!r}, unit={self.unit!r})"


class MissingEOSPenalty(Scorer):
    """``-value`` for an episode that reached ``max_new_tokens`` without EOS, else 0.

    ``value`` is the size of the penalty, so it is positive and the term's reported value is
    ``-value`` or 0 (as in RLHF recipes that penalise completions that do not stop).

    Args:
        value: Penalty size (>= 0).
        name: Term name in ``info["reward_terms"]``.

    Example:
        >>> reward = Keyword(["great"]) + MissingEOSPenalty(0.1)  # doctest: +SKIP
    """

    def __init__(self, value: float = 1.0, *, name: str = "missing_eos"):
        value = _check_real("MissingEOSPenalty value", value)
        if value < 0:
            raise ValueError(f"MissingEOSPenalty value is the penalty's size and must be >= 0, got {value}")
        self.value = value
        self.name = name

    def score(self, batch: EpisodeBatch) -> Sequence[float]:
        return [-self.value if reason == "length" else 0.0 for reason in batch.finish_reasons]

    def __repr__(self) -> str:
        return f"MissingEOSPenalty({self.value:g})"
