"""The text protocols of the two multi-turn tasks ``tiny-agent`` is built for: the environment's side.

Both tasks alternate policy turns and inserted replies. The policy writes one token at a time; a turn
ends at EOS or when the turn's decoded text contains a stop string; the environment then appends its
reply (encoded once with ``tokenizer(reply, add_special_tokens=False)``) and the policy continues after
it. The policy's EOS stays in the token sequence (it is one of the policy's tokens). Every string
below is exact, leading spaces included.

Calculator (TextGen-Calculator-v0), prompts ``{"prompt": "Q: 37*48= A:", "answer": "1776"}``::

    Q: 37*48= A: <call>calc(37*48)</call> <result>1776</result> 1776<EOS>
    |-- prompt --||------ policy turn 1 ------||- inserted reply -||policy turn 2|

- A turn ends at EOS or at the stop string :data:`CALL_END` (``"</call>"``).
- A turn that ends at the stop string is a tool call: :func:`calculator_reply` answers it with
  ``" <result>1776</result>"``, or ``" <error>bad call</error>"`` when the text between the last
  ``"<call>"`` and ``"</call>"`` does not fully match ``calc(<int><op><int>)`` (:data:`CALL_PATTERN`).
- A turn that ends at EOS ends the episode: the return is 1 if the last number of that turn
  equals the answer, else 0 (:func:`calculator_return`). A direct answer is ``" 1800"`` + EOS.

Guess the number (TextGen-GuessNumber-v0), prompts ``{"prompt": "Guess my number from 1 to 8:",
"secret": 5}``::

    Guess my number from 1 to 8: 4<EOS> higher 6<EOS> lower 5<EOS>

- A guess is one policy turn, ``" <digit>"`` + EOS; every turn ends at EOS (no stop string).
- :class:`GuessGame` replies :data:`HIGHER` when the secret is higher than the guess,
  :data:`LOWER` when it is lower, :data:`INVALID` when the turn holds no number from 1 to
  :data:`GUESS_MAX` (its last number counts); any of these uses one of the :data:`MAX_GUESSES` turns.
- The episode ends at the right guess (no reply) or after :data:`MAX_GUESSES` wrong ones (no reply
  to the last). The return is ``1 - 0.1 * (k - 1)`` when guess ``k`` is right, 0 if none is
  (:func:`guess_return`): 1.0, 0.9, 0.8, 0.7.

Token counts with the built-in tokenizer (every digit is one token): the calculator prompt is 12
tokens; the call 20, the result 17 (3-digit product) or 18 (4 digits), the final answer 5 or 6 with
EOS: 44 tokens after the prompt for a 4-digit product (a direct answer: 6; the error reply: 16). The
game prompt is 15 tokens; a guess 3 with EOS, ``" higher"`` 2, ``" lower"`` 3, ``" invalid"`` 4: a
4-guess game is at most ``4 * 3 + 3 * 3 = 21`` tokens after the prompt.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

# The env's side is textenv.tasks (the tasks' responders): the builder reads its constants, never a copy.
from textenv.tasks import CALL_END, GUESS_MAX, MAX_GUESSES, TURN_COST
from tools.build_assets.training import last_number

CALL_START = "<call>"

CALL_PATTERN = re.compile(r"calc\((\d{1,6})([+\-*])(\d{1,6})\)")
"""What must stand between ``<call>`` and ``</call>``: two non-negative integers and one of ``+ - *``."""
ERROR_REPLY = " <error>bad call</error>"

GUESS_PROMPT = f"Guess my number from 1 to {GUESS_MAX}:"
HIGHER = " higher"
"""The reply when the secret is higher than the guess."""
LOWER = " lower"
INVALID = " invalid"

CALCULATOR_MAX_NEW_TOKENS = 48
"""The calculator's token budget after the prompt (policy tokens and replies): a full episode takes 44."""
GUESS_MAX_NEW_TOKENS = 24
"""The game's token budget after the prompt: a 4-guess game takes at most 21."""


def calculator_prompt(a: int, b: int) -> str:
    return f"Q: {a}*{b}= A:"


def call_text(a: int, b: int) -> str:
    """The policy's tool call, ``" <call>calc(37*48)</call>"``."""
    return f" {CALL_START}calc({a}*{b}){CALL_END}"


def result_text(value: int) -> str:
    """The reply to a good call, ``" <result>1776</result>"``."""
    return f" <result>{value}</result>"


def answer_text(value: int | str) -> str:
    """A final answer, ``" 1776"`` (EOS follows it)."""
    return f" {value}"


def calculator_reply(turn: str) -> str:
    """The environment's reply to a turn that ended at :data:`CALL_END`.

    Only ``calc(<int><op><int>)`` is evaluated (by integer arithmetic; nothing is ``eval``-ed).

    Example:
        >>> calculator_reply(" <call>calc(37*48)</call>")
        ' <result>1776</result>'
        >>> calculator_reply(" <call>calc(37*)</call>")
        ' <error>bad call</error>'
    """
    start, end = turn.rfind(CALL_START), turn.find(CALL_END)
    if start < 0 or end < start:
        return ERROR_REPLY
    match = CALL_PATTERN.fullmatch(turn[start + len(CALL_START) : end])
    if match is None:
        return ERROR_REPLY
    a, op, b = int(match[1]), match[2], int(match[3])
    value = a * b if op == "*" else a + b if op == "+" else a - b
    return result_text(value)


def calculator_return(final_turn: str, answer: str) -> float:
    """1.0 if the last number of the final policy turn is ``answer``, else 0.0."""
    return float(last_number(final_turn) == answer)


def guess_return(guesses: int | None) -> float:
    """The game's return when guess number ``guesses`` (1-based) was right; 0.0 for ``None`` (unsolved)."""
    return 0.0 if guesses is None else 1.0 - TURN_COST * (guesses - 1)


@dataclass
class GuessGame:
    """One game's environment side: replies to each guess turn and remembers how it went.

    Example:
        >>> game = GuessGame(secret=5)
        >>> game.reply(" 4"), game.reply(" 6"), game.reply(" 5"), game.solved_at
        (' higher', ' lower', None, 3)
    """

    secret: int
    guesses: list[int | None] = field(default_factory=list)
    solved_at: int | None = None

    def reply(self, turn: str) -> str | None:
        """The reply to a finished guess turn, or ``None`` when the episode ends (right or out of turns)."""
        number = last_number(turn)
        guess = int(number) if number is not None and 1 <= int(number) <= GUESS_MAX else None
        self.guesses.append(guess)
        if guess == self.secret:
            self.solved_at = len(self.guesses)
            return None
        if len(self.guesses) == MAX_GUESSES:
            return None
        if guess is None:
            return INVALID
        return HIGHER if self.secret > guess else LOWER

    @property
    def episode_return(self) -> float:
        return guess_return(self.solved_at)
