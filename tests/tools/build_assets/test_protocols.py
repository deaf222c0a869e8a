"""The multi-turn tasks' text protocols (tools/build_assets/protocols.py): replies and returns, by hand."""

from __future__ import annotations

import pytest

from tools.build_assets import protocols as P


def test_calculator_strings_are_exact():
    assert P.calculator_prompt(37, 48) == "Q: 37*48= A:"
    assert P.call_text(37, 48) == " <call>calc(37*48)</call>"
    assert P.result_text(1776) == " <result>1776</result>"
    assert P.answer_text(1776) == " 1776"
    assert P.CALL_END == "</call>" and P.ERROR_REPLY == " <error>bad call</error>"


@pytest.mark.parametrize(
    ("turn", "reply"),
    [
        (" <call>calc(37*48)</call>", " <result>1776</result>"),
        (" <call>calc(99*99)</call>", " <result>9801</result>"),
        (" <call>calc(12+30)</call>", " <result>42</result>"),
        (" <call>calc(12-30)</call>", " <result>-18</result>"),
        (" I will call <call>calc(10*10)</call>", " <result>100</result>"),  # text before the call
        (" <call>calc(1*2)</call><call>calc(3*4)</call>", " <error>bad call</error>"),
        (" <call>calc(37*)</call>", " <error>bad call</error>"),
        (" <call>calc(37/48)</call>", " <error>bad call</error>"),
        (" <call>calc( 37*48)</call>", " <error>bad call</error>"),
        (" <call>37*48</call>", " <error>bad call</error>"),
        (" <call>calc(__import__('os'))</call>", " <error>bad call</error>"),
        (" <call>calc(1234567*2)</call>", " <error>bad call</error>"),  # operands of at most 6 digits
        (" calc(37*48)</call>", " <error>bad call</error>"),  # no <call>
    ],
)
def test_calculator_reply(turn, reply):
    assert P.calculator_reply(turn) == reply


def test_calculator_return_scores_the_last_number():
    assert P.calculator_return(" 1776", "1776") == 1.0
    assert P.calculator_return(" 17 76", "1776") == 0.0
    assert P.calculator_return(" maybe 12 or 1776", "1776") == 1.0
    assert P.calculator_return(" <call>calc(37*48)</call>", "1776") == 0.0  # the call's last number is 48
    assert P.calculator_return("", "1776") == 0.0


def test_guess_return_by_turn():
    assert [P.guess_return(k) for k in (1, 2, 3, 4)] == pytest.approx([1.0, 0.9, 0.8, 0.7])
    assert P.guess_return(None) == 0.0


def test_guess_game_replies_and_ends_at_the_right_guess():
    game = P.GuessGame(secret=5)
    assert [game.reply(t) for t in (" 4", " 7", " 5")] == [" higher", " lower", None]
    assert game.guesses == [4, 7, 5] and game.solved_at == 3
    assert game.episode_return == pytest.approx(0.8)


def test_guess_game_ends_after_the_last_guess_without_a_reply():
    game = P.GuessGame(secret=8)
    assert [game.reply(t) for t in (" 1", " 2", " 3", " 4")] == [" higher", " higher", " higher", None]
    assert game.solved_at is None and game.episode_return == 0.0


def test_guess_game_invalid_turns_use_a_guess():
    game = P.GuessGame(secret=1)
    assert game.reply(" nine") == " invalid"
    assert game.reply(" 9") == " invalid"  # out of range
    assert game.reply(" 0") == " invalid"
    assert game.reply(" 3 then 1") is None  # the last number counts
    assert game.guesses == [None, None, None, 1] and game.solved_at == 4


def test_token_counts_in_the_docstring(tokenizer):
    def count(text: str) -> int:
        return len(tokenizer(text, add_special_tokens=False)["input_ids"])

    assert count(P.calculator_prompt(37, 48)) == 12
    assert count(P.call_text(37, 48)) == 20
    assert count(P.result_text(1776)) == 18 and count(P.result_text(100)) == 17
    assert count(P.answer_text(1776)) + 1 == 6  # with EOS
    assert count(P.ERROR_REPLY) == 16
    assert count(P.call_text(37, 48)) + count(P.result_text(9801)) + count(P.answer_text(9801)) + 1 == 44
    assert 12 + P.CALCULATOR_MAX_NEW_TOKENS >= 12 + 44
    assert count(P.GUESS_PROMPT) == 15
    assert count(" 5") + 1 == 3
    assert (count(P.HIGHER), count(P.LOWER), count(P.INVALID)) == (2, 3, 4)
    assert 4 * 3 + 3 * 3 == 21 <= P.GUESS_MAX_NEW_TOKENS
