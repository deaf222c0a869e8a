"""``Answer``: verifiable reward for a final answer (GSM8K's ``#### 72``, ``\\boxed{72}``, or the last number).

The answer is extracted from the generated text and compared with the prompt's reference answer,
read from the prompt's metadata (``answer`` by default)::

    Answer()                         # numeric, markers "####" and "Answer:", then \\boxed{}, then the last number
    Answer(compare="exact")          # exact string after the marker / inside \\boxed{}
    Answer(extract=("marker",))      # only an answer after a marker counts (strict GSM8K grading)
"""

from __future__ import annotations

import decimal
import math
import numbers
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any

import numpy as np
import regex

from textenv.scorers.base import EpisodeBatch, Scorer, ScorerContext

EXTRACTORS = ("marker", "boxed", "last_number")
COMPARES = ("numeric", "exact")
DEFAULT_MARKERS = ("####", "Answer:")

# Sign characters read as "-" / "+": ASCII, the minus sign U+2212, the en dash typesetters use as a
# minus, the small and fullwidth forms and the heavy signs.
MINUS_SIGNS = "-\u2212\u2013\ufe63\uff0d\u2796"
PLUS_SIGNS = "+\ufe62\uff0b\u2795"
_SIGN = "[" + regex.escape(MINUS_SIGNS + PLUS_SIGNS) + "]"
_TO_ASCII = str.maketrans({**dict.fromkeys(MINUS_SIGNS, "-"), **dict.fromkeys(PLUS_SIGNS, "+"), ",": None})

# A number, read whole or not at all: an optional sign (not after a word character or digit, so
# "5-3" holds no -3), thousands separated by commas ("1,234") or plain digits, an optional decimal
# part and an optional exponent ("1.5e3"). The atomic group (?>...) never gives back a digit, so a
# number followed by more of a number or of a power or fraction ("1.2.3", "1e3.5", "1/2", "2^10",
# "10**400", "1.5 x 10^3") is refused instead of being read as its first part.
NUMBER = regex.compile(
    r"(?<![\d./^]|\d\*\*|[/^]" + _SIGN + r"|\d[eE]" + _SIGN + r"?)"  # not the tail of another number
    r"(?:(?<![\w.])" + _SIGN + r")?"  # the sign
    r"(?>(?:\d{1,3}(?:,\d{3})+(?!\d)|\d+)(?:\.\d+)?|\.\d+)"  # digits, atomic
    r"(?>(?:[eE]" + _SIGN + r"?\d+)?)"  # the exponent, atomic too: "1e3" is never read as 1
    r"(?![.eE]\d|[/^]" + _SIGN + r"?\d|\*\*" + _SIGN + r"?\d|\s*[x\u00d7*\u00b7]\s*10\s*\^)"
)
_WHOLE_NUMBER = regex.compile(r"\s*\$?\s*(" + NUMBER.pattern + r")\s*")
_BOXED = "\\boxed{"
# Decimal arithmetic to 60 significant digits with no exponent limits: |answer - reference| <= tolerance
# never overflows (an overflow gives Infinity instead of raising), whatever the size of the numbers.
_EXACT = decimal.Context(prec=60, Emax=decimal.MAX_EMAX, Emin=decimal.MIN_EMIN, traps=[])


def number_value(number: str) -> Decimal | None:
    """The exact value of one number as :data:`NUMBER` matches it, or ``None`` when it has none.

    Signs of every kind count (``"\u22125"`` is -5), commas are thousands separators, an exponent is
    part of the number (``"1e3"`` is 1000). ``None``: an exponent too large to represent
    (``"1e99999999999999999999"``).

    Example:
        >>> number_value("\u22121,234.5e1")
        Decimal('-12345')
    """
    try:
        return Decimal(number.translate(_TO_ASCII))
    except decimal.InvalidOperation:
        return None


def read_number(text: str) -> Decimal | None:
    """The exact value of ``text`` if it is one number (see :data:`NUMBER`, an optional ``$``), else ``None``."""
    match = _WHOLE_NUMBER.fullmatch(text)
    return None if match is None else number_value(match.group(1))


def parse_number(text: str) -> float | None:
    """The value of ``text`` as a float if it is one number (see :func:`read_number`), else ``None``.

    ``None`` too for a number outside the float range (``"1e309"``): it is no number a float can hold.
    """
    value = read_number(text)
    if value is None or not math.isfinite(number := float(value)):
        return None
    return number


def exact_number(value: object) -> Decimal | None:
    """A reference number's exact value: Python and NumPy integers and floats, ``Decimal``, ``Fraction``.

    A float counts as its shortest repr (``0.1`` is 0.1, ``np.float32(0.1)`` too). ``None``: not a
    number (bools included), or not finite.
    """
    if isinstance(value, (bool, np.bool_)):
        return None
    if isinstance(value, numbers.Integral):
        return Decimal(int(value))
    if isinstance(value, (float, np.floating)):
        exact = Decimal(str(value))
    elif isinstance(value, Decimal):
        exact = value
    elif isinstance(value, numbers.Rational):
        exact = _EXACT.divide(Decimal(int(value.numerator)), Decimal(int(value.denominator)))
    else:
        return None
    return exact if exact.is_finite() else None


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

    Numbers may have a sign (``-``, the minus sign ``\u2212`` and the other minus and plus forms of
    :data:`MINUS_SIGNS` / :data:`PLUS_SIGNS`), a decimal part, an exponent and commas as thousands
    separators (``-1,234.5``, ``1.5e3``). A number is read whole or not at all: ``1e3`` is 1000, never
    1, and a number that runs on into a fraction, power or another number (``1/2``, ``2^10``,
    ``10**400``, ``1.2.3``) is no answer. With ``compare="numeric"`` the answer is right when
    ``abs(answer - reference) <= tolerance``, computed exactly in decimal: no float rounding, so no
    size limit (``10**400`` is a reference like any other, and ``1e309`` a wrong answer to it, not an
    overflow); with ``"exact"`` when the stripped strings are equal (``case_sensitive=False`` compares
    them case-folded).

    Args:
        key: Metadata key of each prompt's reference answer: a number (Python or NumPy, ``Decimal``,
            ``Fraction``; a float as its shortest repr) or a string such as ``"1,234"``.
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

    def reference(self, metadata: Mapping[str, Any], where: str) -> Decimal | str:
        """The reference answer of a prompt's metadata: its exact value (numeric) or a stripped string (exact).

        Raises:
            ValueError: The key is missing, or (numeric) the value is not a finite number (bools, NaN,
                infinity and strings that are not one number included).
        """
        if self.key not in metadata:
            raise ValueError(
                f"{self!r} reads the reference answer from each prompt's {self.key!r} entry, but {where} has "
                f"none; give every prompt one, e.g. {{'prompt': 'Q: 2+3= A:', {self.key!r}: '5'}}"
            )
        value = metadata[self.key]
        if self.compare == "exact":
            return str(value).strip()
        number = read_number(value) if isinstance(value, str) else exact_number(value)
        if number is None or not number.is_finite():
            raise ValueError(
                f"{self!r} compares numbers, but the {self.key!r} of {where} is {value!r}; expected a finite "
                "number (or use compare='exact')"
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
        if isinstance(ref, Decimal):
            right = self._close(found, ref)
        elif self.case_sensitive:
            right = found == ref
        else:
            right = found.casefold() == ref.casefold()
        return self.correct if right else self.format

    def _close(self, found: str, reference: Decimal) -> bool:
        value = number_value(found)  # None: an exponent beyond any size, so no reference's value
        if value is None:
            return False
        with decimal.localcontext(_EXACT):
            return abs(value - reference) <= Decimal(repr(self.tolerance))

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
