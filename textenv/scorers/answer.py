"""``Answer``: verifiable reward for a final answer (GSM8K's ``#### 72``, ``\\boxed{72}``, or the last number).

The answer is extracted from the generated text and compared with the prompt's reference answer,
read from the prompt's metadata (``answer`` by default)::

    Answer()                         # numeric, markers "####" and "Answer:", then \\boxed{}, then the last number
    Answer(compare="exact")          # exact string after the marker / inside \\boxed{}
    Answer(extract=("marker",))      # only an answer after a marker counts (strict GSM8K grading)
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

from textenv.scorers.base import EpisodeBatch, Scorer, ScorerContext

EXTRACTORS = ("marker", "boxed", "last_number")
COMPARES = ("numeric", "exact")
DEFAULT_MARKERS = ("####", "Answer:")

# A number: optional minus sign (not after a word character or digit, so "5-3" holds no -3),
# thousands separated by commas ("1,234") or plain digits, an optional decimal part.
NUMBER = re.compile(r"(?:(?<![\w.])-)?(?:\d{1,3}(?:,\d{3})+(?!\d)|\d+)(?:\.\d+)?|(?:(?<![\w.])-)?\.\d+")
_WHOLE_NUMBER = re.compile(rf"\s*\$?\s*(?:{NUMBER.pattern})\s*")
_BOXED = "\\boxed{"


def parse_number(text: str) -> float | None:
    """The value of ``text`` if it is one number (commas as thousands separators, an optional ``$``)."""
    if not _WHOLE_NUMBER.fullmatch(text):
        return None
    return float(text.replace(",", "").replace("$", "").strip())


def _number_value(match: str) -> float:
    return float(match.replace(",", ""))


def last_boxed(text: str) -> str | None:
    """The content of the last ``\\boxed{...}`` in ``text`` (nested braces balanced), or ``None``."""
    start = text.rfind(_BOXED)
    while start >= 0:
        depth, i = 1, start + len(_BOXED)
        while i < len(text) and depth:
            depth += {"{": 1, "}": -1}.get(text[i], 0)
            i += 1
        if depth == 0:
            return text[start + len(_BOXED) : i - 1]
        start = text.rfind(_BOXED, 0, start)  # unclosed: try an earlier box
    return None


class Answer(Scorer):
    """``correct`` for a right final answer, ``format`` for a well-formed wrong one, 0 otherwise.

    Extraction tries ``extract``'s strategies in order and uses the first that finds an answer:

    * ``"marker"``: the text after the last occurrence of any of ``markers``; with
      ``compare="numeric"`` the first number there, with ``"exact"`` the rest of that line.
    * ``"boxed"``: the content of the last ``\\boxed{...}`` (its first number when numeric).
    * ``"last_number"``: the last number anywhere in the text.

    Numbers may be negative, have a decimal part and use commas as thousands separators
    (``-1,234.5``). With ``compare="numeric"`` the answer is right when
    ``abs(answer - reference) <= tolerance``; with ``"exact"`` when the stripped strings are equal
    (``case_sensitive=False`` compares them case-folded).

    Args:
        key: Metadata key of each prompt's reference answer (a number or a string such as ``"1,234"``).
        compare: ``"numeric"`` or ``"exact"``.
        extract: Extraction strategies, in order of preference (a subset of ``"marker"``, ``"boxed"``,
            ``"last_number"``).
        markers: Strings after which the final answer is written.
        tolerance: Absolute tolerance of the numeric comparison.
        case_sensitive: Exact comparison respects case.
        correct: Reward of a right answer.
        format: Reward of an extracted but wrong answer (a well-formed attempt).
        name: Term name in ``info["reward_terms"]``.

    Example:
        >>> Answer().score_text("6 * 7 = 42. #### 42", 42)
        1.0
        >>> Answer().score_text("I think \\\\boxed{41}", "42")
        0.1
    """

    def __init__(
        self,
        *,
        key: str = "answer",
        compare: str = "numeric",
        extract: Sequence[str] = EXTRACTORS,
        markers: Sequence[str] = DEFAULT_MARKERS,
        tolerance: float = 1e-6,
        case_sensitive: bool = True,
        correct: float = 1.0,
        format: float = 0.1,
        name: str = "answer",
    ):
        if compare not in COMPARES:
            raise ValueError(f"Answer compare must be one of {COMPARES}, got {compare!r}")
        if isinstance(extract, str) or not extract or any(e not in EXTRACTORS for e in extract):
            raise ValueError(
                f"Answer extract must be a non-empty list drawn from {EXTRACTORS}, got {extract!r}"
            )
        if isinstance(markers, str) or any(not isinstance(m, str) or not m for m in markers):
            raise ValueError(f"Answer markers must be a list of non-empty strings, got {markers!r}")
        if "marker" in extract and not markers:
            raise ValueError("Answer extract includes 'marker' but markers is empty")
        for arg, value in (("tolerance", tolerance), ("correct", correct), ("format", format)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise TypeError(
                    f"Answer {arg} must be a finite number, got {type(value).__name__}: {value!r}"
                )
        if tolerance < 0:
            raise ValueError(f"Answer tolerance must be >= 0, got {tolerance}")
        self.key = key
        self.compare = compare
        self.extract = tuple(extract)
        self.markers = tuple(markers)
        self.tolerance = float(tolerance)
        self.case_sensitive = case_sensitive
        self.correct = float(correct)
        self.format = float(format)
        self.name = name

    def attach(self, ctx: ScorerContext) -> None:
        for i, prompt in enumerate(ctx.prompts):
            self.reference(prompt.metadata, f"prompt {i} ({prompt.text!r})")

    def reference(self, metadata: Mapping[str, Any], where: str) -> float | str:
        """The reference answer of a prompt's metadata: a float (numeric) or a stripped string (exact).

        Raises:
            ValueError: The key is missing, or (numeric) the value is not a number.
        """
        if self.key not in metadata:
            raise ValueError(
                f"{self!r} reads the reference answer from each prompt's {self.key!r} entry, but {where} has "
                f"none; give every prompt one, e.g. {{'prompt': 'Q: 2+3= A:', {self.key!r}: '5'}}"
            )
        value = metadata[self.key]
        if self.compare == "exact":
            return str(value).strip()
        number = None
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            number = float(value)
        elif isinstance(value, str):
            number = parse_number(value)
        if number is None or not math.isfinite(number):
            raise ValueError(
                f"{self!r} compares numbers, but the {self.key!r} of {where} is {value!r}; expected a number "
                "(or use compare='exact')"
            )
        return number

    def extract_answer(self, text: str) -> str | None:
        """The answer in ``text`` as a string (a number when numeric), or ``None`` when there is none."""
        for strategy in self.extract:
            if strategy == "marker":
                found = self._after_marker(text)
            elif strategy == "boxed":
                found = last_boxed(text)
                if found is not None and self.compare == "numeric":
                    found = _first_number(found)
            else:
                numbers = NUMBER.findall(text)
                found = numbers[-1] if numbers else None
            if found is not None and found.strip():
                return found.strip()
        return None

    def _after_marker(self, text: str) -> str | None:
        positions = [(text.rfind(m), m) for m in self.markers]
        start, marker = max(positions)
        if start < 0:
            return None
        rest = text[start + len(marker) :]
        if self.compare == "numeric":
            return _first_number(rest)
        return rest.strip().split("\n", 1)[0] if rest.strip() else None

    def score_text(self, text: str, reference: object) -> float:
        """The reward of one generated ``text`` against a reference answer (as in the metadata)."""
        ref = self.reference({self.key: reference}, "the reference")
        found = self.extract_answer(text)
        if found is None:
            return 0.0
        if isinstance(ref, float):
            right = abs(_number_value(found) - ref) <= self.tolerance
        elif self.case_sensitive:
            right = found == ref
        else:
            right = found.casefold() == ref.casefold()
        return self.correct if right else self.format

    def score(self, batch: EpisodeBatch) -> Sequence[float]:
        values = []
        for prompt, text, meta in zip(batch.prompts, batch.texts, batch.metadata):
            self.reference(meta, f"prompt {prompt!r}")  # an ad-hoc prompt has no answer: a clear error
            values.append(self.score_text(text, meta[self.key]))
        return values

    def __repr__(self) -> str:
        return f"Answer(key={self.key!r}, compare={self.compare!r})"


def _first_number(text: str) -> str | None:
    match = NUMBER.search(text)
    return match.group(0) if match else None
