"""How ``Answer`` reads numbers: whole or not at all, every sign, exact decimals, no float range limits.

Hand cases for each form, then a property test against Python's own parsing (``Decimal``, ``float``,
``int``) of the same number written with ASCII signs and no separators.
"""

from __future__ import annotations

import decimal
import math
from decimal import Decimal
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.textenv.scorers.forced import force_episode, forced_env
from textenv.scorers import Answer
from textenv.scorers.answer import parse_number, read_number

MINUS = {"-": "ASCII", "\u2212": "minus sign", "\u2013": "en dash", "\ufe63": "small", "\uff0d": "fullwidth"}
MINUS_FORMS = [*MINUS, "\u2796"]
PLUS_FORMS = ["+", "\ufe62", "\uff0b", "\u2795"]

# (generated text, reference, reward with the defaults correct=1, format=0.1)
NUMBER_CASES = [
    # An exponent is part of the number: 1e3 is 1000, never its mantissa 1.
    ("#### 1e3", 1, 0.1),
    ("#### 1e3", 1000, 1.0),
    ("#### 1E3", "1,000", 1.0),
    ("#### 1.5e-2", 0.015, 1.0),
    ("#### 2e+2", 200, 1.0),
    ("#### 1e\u22123", 0.001, 1.0),  # a Unicode minus in the exponent
    ("#### 1,234.5e1", 12345, 1.0),
    ("so it is 4e2.", 400, 1.0),  # last number, sentence full stop
    # Outside the float range: compared exactly, never an OverflowError.
    ("#### 1e309", 1, 0.1),
    ("#### 1e309", "1e309", 1.0),
    ("#### 1e400", 10**400, 1.0),
    ("#### " + "1" + "0" * 400, 10**400, 1.0),
    ("#### " + "1" + "0" * 400, 10**400 + 1, 0.1),
    ("#### -" + "9" * 500, -(10**500), 0.1),
    ("#### 1e99999999999999999999", 1, 0.1),  # an exponent beyond any size: a wrong answer
    ("#### 100000000000000001", 10**17, 0.1),  # floats would round both to 1e17
    ("#### 100000000000000001", "100000000000000001", 1.0),
    # Signs of every kind.
    ("#### \u22125", 5, 0.1),
    ("#### \u22125", -5, 1.0),
    *[(f"#### {m}5", 5, 0.1) for m in MINUS_FORMS],
    *[(f"#### {m}5", -5, 1.0) for m in MINUS_FORMS],
    *[(f"#### {p}5", 5, 1.0) for p in PLUS_FORMS],
    ("#### \u22121,234.5", -1234.5, 1.0),
    ("3\u22125 = -2", -2, 1.0),  # a minus between digits is no sign, whatever its form
    ("it is \u22123\u00b0C", "\u22123", 1.0),  # a Unicode minus in the reference too
    # A number that runs on into a fraction, power or another number is refused, not read in part.
    ("#### 1/2", 1, 0.0),
    ("#### 3/-4", 4, 0.0),
    ("#### 2^10", 2, 0.0),
    ("#### 10**400", 10, 0.0),
    ("#### 1.5 \u00d7 10^3", 1.5, 0.0),
    ("#### 1.5 x 10^3", 1.5, 0.0),
    ("version 1.2.3", 3, 0.0),
    ("#### 1e3.5", 1000, 0.0),
    ("#### **42**", 42, 1.0),  # Markdown bold is no power
    ("#### 7, then 8", 7, 1.0),  # the first number after the marker
]


@pytest.mark.parametrize(("text", "reference", "reward"), NUMBER_CASES)
def test_numbers_are_read_whole(text, reference, reward):
    assert Answer().score_text(text, reference) == reward


@pytest.mark.parametrize(
    "reference",
    [np.int64(1000), np.int32(1000), np.uint16(1000), np.float32(1000.0), np.float64(1000.0), Decimal("1e3")],
)
def test_numpy_and_decimal_references_count_as_numbers(reference):
    assert Answer().score_text("#### 1e3", reference) == 1.0
    assert Answer().score_text("#### 999", reference) == 0.1


def test_float_references_count_as_their_shortest_repr():
    exact = Answer(tolerance=0.0)
    assert exact.score_text("#### 0.1", np.float32(0.1)) == 1.0  # float(np.float32(0.1)) is 0.10000000149...
    assert exact.score_text("#### 0.1", 0.1) == 1.0
    assert exact.score_text("#### 0.3333333333", Fraction(1, 3)) == 0.1
    assert Answer(tolerance=1e-9).score_text("#### 0.3333333333", Fraction(1, 3)) == 1.0


@pytest.mark.parametrize(
    "reference",
    [
        np.bool_(True),
        True,
        float("inf"),
        float("nan"),
        np.float32("nan"),
        Decimal("Infinity"),
        "1e99999999999999999999",
        "1/2",
        "many",
    ],
)
def test_references_that_are_no_finite_number_are_refused(reference):
    with pytest.raises(ValueError, match=r"'answer' of the reference is .*; expected a finite number"):
        Answer().score_text("#### 1", reference)


def test_unrepresentable_reference_is_an_error_at_attach_naming_the_prompt(tokenizer):
    prompts = [{"prompt": "Q: 1+1= A:", "answer": 2}, {"prompt": "Q: big A:", "answer": float("inf")}]
    with pytest.raises(ValueError, match=r"prompt 1 \('Q: big A:'\) is inf; expected a finite number"):
        forced_env(tokenizer, [" 2"], prompts=prompts, reward="answer")


def test_big_and_numpy_references_in_an_env(tokenizer):
    prompts = [
        {"prompt": "Q: 10^400= A:", "answer": 10**400},
        {"prompt": "Q: 500+500= A:", "answer": np.int64(1000)},
        {"prompt": "Q: 2-7= A:", "answer": np.float32(-5.0)},
    ]
    texts = [" #### 1e400", " #### 1e3", " #### 1", " #### \u22125", " #### 5"]
    env = forced_env(tokenizer, texts, prompts=prompts, reward="answer")
    assert force_episode(env, " #### 1e400", prompt_index=0)[0] == 1.0
    assert force_episode(env, " #### 1e3", prompt_index=1)[0] == 1.0
    assert force_episode(env, " #### 1", prompt_index=1)[0] == pytest.approx(0.1)
    assert force_episode(env, " #### \u22125", prompt_index=2)[0] == 1.0
    assert force_episode(env, " #### 5", prompt_index=2)[0] == pytest.approx(0.1)


def test_parse_number():
    assert parse_number(" \u22121,234.5e-1 ") == -123.45
    assert parse_number("$1e3") == 1000.0
    assert parse_number("1e309") is None  # outside the float range
    assert read_number("1e309") == Decimal("1e309")  # but its exact value is known
    assert parse_number("1/2") is None and parse_number("2^10") is None and parse_number("1e3.5") is None
    assert read_number("12 apples") is None and read_number("--5") is None


# --- property test: random numbers through Answer / parse_number against Python's own parsing ---------------


@st.composite
def written_numbers(draw) -> tuple[str, str]:
    """A number as a policy might write it, and the same number as Python parses it (ASCII sign, no commas)."""
    sign = draw(st.sampled_from(["", *MINUS_FORMS, *PLUS_FORMS]))
    ascii_sign = "-" if sign in MINUS_FORMS else "+" if sign else ""
    whole = draw(st.integers(min_value=0, max_value=10**30))
    grouped = draw(st.booleans())
    fraction = draw(st.one_of(st.none(), st.text("0123456789", min_size=1, max_size=12)))
    whole_text = f"{whole:,}" if grouped else str(whole)
    if fraction is not None and draw(st.booleans()):
        whole_text = ""  # ".5"
    exponent = draw(
        st.one_of(
            st.none(),
            st.tuples(st.sampled_from("eE"), st.sampled_from(["", "+", "-", "\u2212"]), st.integers(0, 400)),
        )
    )
    text, python = sign + whole_text, ascii_sign + whole_text.replace(",", "")
    if fraction is not None:
        text, python = text + "." + fraction, python + "." + fraction
    if exponent is not None:
        e, exp_sign, digits = exponent
        text += f"{e}{exp_sign}{digits}"
        python += f"{e}{'-' if exp_sign in ('-', chr(0x2212)) else exp_sign}{digits}"
    return text, python


@settings(max_examples=300, deadline=None, derandomize=True)
@given(written_numbers(), st.sampled_from(["#### {}", "the answer is {}.", "\\boxed{{{}}}", "so {} apples"]))
def test_numbers_read_as_python_reads_them(written, template):
    text, python = written
    value = Decimal(python)
    assert read_number(text) == value
    as_float = float(python)
    assert parse_number(text) == (as_float if math.isfinite(as_float) else None)
    if "." not in python and "e" not in python.lower():
        assert read_number(text) == int(python)
    generated = template.format(text)
    answer = Answer(tolerance=0.0)
    assert answer.score_text(generated, value) == 1.0
    assert answer.score_text(generated, decimal.Context(prec=1000).add(value, 1)) == 0.1  # exact: no rounding
    assert answer.score_text(generated, python) == 1.0  # the reference as a string
