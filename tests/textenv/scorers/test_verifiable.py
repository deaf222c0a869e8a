"""Verifiable-reward scorers: Answer against hand cases, Similarity against difflib, Format, specs, envs."""

from __future__ import annotations

import dataclasses
import difflib

import pytest

from tests.textenv.scorers.forced import force_episode, forced_env
from textenv.scorers import Answer, Format, Similarity, parse_spec
from textenv.scorers.answer import last_boxed, parse_number

from .test_reference import batch_of

# (generated text, reference answer, extracted answer, reward with the defaults correct=1, format=0.1)
ANSWER_CASES = [
    ("48 + 24 = 72. #### 72", "72", "72", 1.0),  # GSM8K marker
    ("Answer: 12 because 5 + 8 = 13", 12, "12", 1.0),  # marker beats a later number
    ("#### 7\nthen #### 8", "8", "8", 1.0),  # the last marker counts
    ("#### 41", "42", "41", 0.1),  # well-formed, wrong
    ("the result is \\boxed{42}.", "42", "42", 1.0),
    ("\\boxed{\\frac{1}{2}} no, \\boxed{-3.50}", "-3.5", "-3.50", 1.0),  # last box, nested braces, decimals
    ("\\boxed{7", "7", "7", 1.0),  # unclosed box: falls back to the last number
    ("it drops to -15 degrees", -15, "-15", 1.0),  # negative number
    ("5-3=2", "-3", "2", 0.1),  # a minus between digits is no sign
    ("total: 1,234 apples", "1234", "1,234", 1.0),  # thousands separators
    ("#### $1,234,567.5", 1234567.5, "1,234,567.5", 1.0),
    ("list 1,2,3", "3", "3", 1.0),  # commas that are no thousands separators
    ("first 3, then 4, finally 5", 5, "5", 1.0),  # several numbers: the last
    ("first 3, then 4, finally 5", 3, "5", 0.1),
    ("I do not know", "5", None, 0.0),  # no answer at all
    ("", "5", None, 0.0),
    ("#### 72.0000001", 72, "72.0000001", 1.0),  # within the default tolerance 1e-6
    ("#### 72.01", 72, "72.01", 0.1),
]


@pytest.mark.parametrize(("text", "reference", "extracted", "reward"), ANSWER_CASES)
def test_answer_hand_cases(text, reference, extracted, reward):
    scorer = Answer()
    assert scorer.extract_answer(text) == extracted
    assert scorer.score_text(text, reference) == reward


def test_answer_options():
    strict = Answer(extract=("marker",))
    assert strict.score_text("the answer is 72", "72") == 0.0  # no marker: not well-formed
    assert strict.score_text("#### 72", "72") == 1.0
    assert Answer(correct=2.0, format=-0.5).score_text("#### 3", 4) == -0.5
    assert Answer(correct=2.0).score_text("#### 4", 4) == 2.0
    assert Answer(tolerance=0.1).score_text("#### 4.05", 4) == 1.0
    assert Answer(markers=("=>",)).score_text("=> 9 and 10", "9") == 1.0
    exact = Answer(compare="exact")
    assert exact.extract_answer("Answer: Paris\nbecause") == "Paris"
    assert exact.score_text("Answer: Paris", "Paris") == 1.0
    assert exact.score_text("Answer: paris", "Paris") == 0.1
    assert Answer(compare="exact", case_sensitive=False).score_text("Answer: paris", "Paris") == 1.0
    assert exact.score_text("\\boxed{x + 1}", "x + 1") == 1.0
    assert Answer(key="solution").score(_batch("#### 5", {"solution": 5})) == [1.0]


def _batch(text, meta):
    return dataclasses.replace(batch_of([(text, [])]), metadata=[meta])


def test_answer_helpers():
    assert last_boxed("a \\boxed{1} b \\boxed{{2}}") == "{2}"
    assert last_boxed("none") is None
    assert parse_number(" 1,234 ") == 1234.0 and parse_number("$-5.5") == -5.5
    assert parse_number("12 apples") is None and parse_number("1,23") is None


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"compare": "fuzzy"}, ValueError, "compare must be one of"),
        ({"extract": ("marker", "first_number")}, ValueError, "extract must be"),
        ({"extract": "marker"}, ValueError, "extract must be"),
        ({"markers": ()}, ValueError, "markers is empty"),
        ({"tolerance": -1.0}, ValueError, "tolerance must be >= 0"),
        ({"format": float("nan")}, TypeError, "format must be a finite number"),
    ],
)
def test_answer_bad_options(kwargs, error, match):
    with pytest.raises(error, match=match):
        Answer(**kwargs)


def test_answer_bad_references():
    with pytest.raises(ValueError, match=r"'answer' of the reference is 'many'; expected a finite number"):
        Answer().score_text("#### 3", "many")
    with pytest.raises(ValueError, match=r"prompt 'p0' has none"):
        Answer().score(_batch("#### 3", {}))


def test_answer_in_an_env(tokenizer):
    prompts = [{"prompt": "Q: 2+3= A:", "answer": "5"}, {"prompt": "Q: 4+4= A:", "answer": 8}]
    env = forced_env(tokenizer, [" 5", " 7"], prompts=prompts, reward="answer")
    assert force_episode(env, " 5", prompt_index=0)[0] == 1.0
    total, info = force_episode(env, " 7", prompt_index=1)
    assert total == pytest.approx(0.1) and info["reward_terms"] == {"answer": pytest.approx(0.1)}
    with pytest.raises(ValueError, match=r"prompt 1 \('Q: 4\+4= A:'\) has none"):
        forced_env(tokenizer, [" 5"], prompts=[prompts[0], {"prompt": "Q: 4+4= A:"}], reward="answer")


SIMILARITY_CASES = [
    ("olleh dlrow", ["olleh dlrow"]),
    ("olleh drow", ["olleh dlrow"]),
    ("", ["abc"]),
    ("abc", ["xyz", "abd", "cba"]),
    ("the cat sat on the mat " * 12, ["the mat sat on the cat " * 12]),  # > 200 chars: autojunk applies
]


@pytest.mark.parametrize("autojunk", [True, False])
def test_similarity_equals_difflib(autojunk):
    expected = [
        max(difflib.SequenceMatcher(None, text, ref, autojunk=autojunk).ratio() for ref in refs)
        for text, refs in SIMILARITY_CASES
    ]
    assert list(Similarity(autojunk=autojunk).score(batch_of(SIMILARITY_CASES))) == expected
    assert expected[0] == 1.0 and expected[2] == 0.0 and 0 < expected[1] < 1


def test_similarity_reads_the_answer_without_references():
    assert Similarity().score(_batch("b a", {"answer": "b a"})) == [1.0]
    with pytest.raises(ValueError, match="has neither"):
        Similarity().score(_batch("b a", {}))


def test_similarity_in_an_env(tokenizer):
    prompts = [{"prompt": "Reverse: a b c =>", "references": ["c b a"]}]
    env = forced_env(tokenizer, ["c b a"], prompts=prompts, reward="similarity")
    assert force_episode(env, "c b a")[0] == 1.0
    assert force_episode(env, "c a")[0] == difflib.SequenceMatcher(None, "c a", "c b a").ratio()


def test_format():
    assert Format(r"#### -?\d+").score_text("so #### -4") == 1.0
    assert Format(r"\d+", mode="fullmatch").score_text("12 apples") == 0.0
    assert Format(r"<a>.*</a>").score_text("<a>x\ny</a>") == 1.0  # DOTALL by default
    assert Format(r"\d", value=0.5).score(batch_of([("a1", ["x"]), ("b", ["x"])])) == [0.5, 0.0]
    with pytest.raises(ValueError, match="not a valid regular expression"):
        Format("(unclosed")
    with pytest.raises(ValueError, match="mode must be one of"):
        Format("x", mode="find")


def test_specs():
    (_, _, answer), (_, weight, fmt) = parse_spec("answer:exact:0 + 0.2*format:^#### -?\\d+$").terms()
    assert isinstance(answer, Answer) and answer.compare == "exact" and answer.format == 0.0
    assert isinstance(fmt, Format) and weight == 0.2 and fmt.pattern.pattern == "^#### -?\\d+$"
    (_, _, fmt), (_, _, sim) = parse_spec("format:a:b+c + similarity").terms()
    assert fmt.pattern.pattern == "a:b+c" and isinstance(sim, Similarity)
    assert parse_spec("format:x+").pattern.pattern == "x+"  # type: ignore[attr-defined]
    assert parse_spec("answer").format == 0.1  # type: ignore[attr-defined]
    with pytest.raises(ValueError, match="needs a regular expression"):
        parse_spec("format")
    with pytest.raises(ValueError, match="is not a number"):
        parse_spec("answer:numeric:lots")
