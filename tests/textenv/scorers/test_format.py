"""``Format`` runs a user's regular expression on generated text under a time limit.

``(a|a)+$`` backtracks catastrophically in every backtracking engine: each extra ``a`` before a
character that is no ``a`` doubles the time. A policy can write such a text, so the match times out
and the step fails with a ScorerError naming the pattern, changing nothing.
"""

from __future__ import annotations

import math
import re

import pytest
import regex
import torch

from textenv import TextGenEnv
from textenv.scorers import Format, ScorerError, parse_spec
from textenv.scorers.format import DEFAULT_TIMEOUT

CATASTROPHIC = r"(a|a)+$"
A, BANG, EOS = 66, 2, 0  # the tiny tokenizer's "a", "!" and <|endoftext|>


def test_a_catastrophic_match_times_out_as_a_scorer_error():
    fmt = Format(CATASTROPHIC, timeout=0.05)
    with pytest.raises(ScorerError, match=r"Format pattern '\(a\|a\)\+\$' took over its timeout of 0\.05 s"):
        fmt.score_text("a" * 40 + "!")
    assert fmt.score_text("a" * 40) == 1.0  # the same pattern on a text it matches at once


def test_the_spec_uses_the_default_timeout():
    fmt = parse_spec("answer + 0.1*format:" + CATASTROPHIC).terms()[1][2]
    assert isinstance(fmt, Format) and fmt.pattern.pattern == CATASTROPHIC
    assert fmt.timeout == DEFAULT_TIMEOUT == 1.0


def test_nested_repeats_the_regex_engine_handles_run_through():
    """The issue's ``(a+)+$``: the ``regex`` engine matches it without backtracking (``re`` takes ~2**n steps)."""
    nested = Format(r"(a+)+$", timeout=0.5)  # a regression fails (times out) instead of hanging
    assert nested.score_text("a" * 60 + "!") == 0.0
    assert nested.score_text("a" * 60) == 1.0


def test_failed_step_changes_nothing_and_the_env_goes_on(tokenizer):
    env = TextGenEnv(
        tokenizer=tokenizer, prompts=["x"], reward=Format(CATASTROPHIC, timeout=0.05), max_new_tokens=31
    )
    env.reset(seed=0)
    for _ in range(30):
        env.step(A)
    core = env.unwrapped.core
    before = (
        core.input_ids.clone(),
        core.attention_mask.clone(),
        core.num_generated.clone(),
        core.done.clone(),
    )
    with pytest.raises(ScorerError, match=r"Format pattern '\(a\|a\)\+\$'"):
        env.step(BANG)  # the last token: the text "aaa...a!" is scored
    after = core.input_ids, core.attention_mask, core.num_generated, core.done
    assert all(torch.equal(b, a) for b, a in zip(before, after))
    _, reward, terminated, _, info = env.step(EOS)  # retried with another token
    assert terminated and reward == 1.0 and info["text"] == "a" * 30
    env.reset(seed=0)
    assert env.step(A)[1] == 0.0


def test_compiled_patterns_keep_their_flags():
    assert Format(re.compile("ab", re.IGNORECASE)).score_text("xAB") == 1.0
    # re.ASCII (256) is regex.ASCII (128) in the regex package: \w then matches no "é".
    assert Format(re.compile(r"\w", re.ASCII), mode="fullmatch").score_text("\u00e9") == 0.0
    assert Format(re.compile(r"\w"), mode="fullmatch").score_text("\u00e9") == 1.0
    assert Format(regex.compile(r"(?i)ab")).score_text("AB") == 1.0
    assert Format("a.b").score_text("a\nb") == 1.0  # DOTALL by default
    assert Format("a.b", flags=0).score_text("a\nb") == 0.0


def test_timeout_is_checked():
    for bad in (0, -1.0, float("nan"), True, "1"):
        with pytest.raises(ValueError, match=r"Format timeout must be a positive number of seconds"):
            Format("a", timeout=bad)  # type: ignore[arg-type]
    assert Format("a", timeout=math.inf).timeout is None  # no limit
