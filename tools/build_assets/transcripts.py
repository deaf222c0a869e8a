"""The prompt files of the multi-turn tasks and ``tiny-agent``'s training transcripts.

A transcript is a list of :class:`Segment`: the prompt, the policy's turns and the environment's
replies (written by :mod:`tools.build_assets.protocols`, so the transcripts and the environment can
never disagree). Only the policy's turns are learned; the prompt and the replies are read.

Calculator transcripts either call the tool (:data:`CALL_RATE` of them) or answer directly with a
wrong number, the product of nearby numbers (the model cannot multiply). A call copies each digit of
the operands wrongly with probability :data:`COPY_NOISE`; the result is the tool's answer to the call
as written and the final answer copies it. Game transcripts guess from :func:`feedback_mix`: with
probability :data:`FOLLOW_RATE` a number the replies still allow, else any number.

Every function draws from its own string-seeded ``random.Random``, so no part moves another.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tools.build_assets import protocols as P
from tools.build_assets.training import last_number

# Calculator transcripts: the fraction that calls the tool, the chance that a call copies one
# operand digit wrongly (each digit on its own: 4 digits right with 0.88**4 = 0.6), and the largest
# offset of the nearby numbers whose product is a direct (wrong) answer.
CALL_RATE = 0.4
COPY_NOISE = 0.12
NEARBY = 4
# Game transcripts: the chance that a guess respects the replies so far (else it is any number).
FOLLOW_RATE = 0.5

Strategy = Callable[[int, int], dict[int, float]]
"""A guessing strategy: the distribution of the next guess given the interval ``[lo, hi]`` the replies allow."""


@dataclass(frozen=True)
class Segment:
    """A piece of a transcript: the prompt, a policy turn or an inserted reply."""

    text: str
    policy: bool
    """The policy's own tokens (learned); the prompt and the environment's replies are only read."""
    eos: bool = False
    """EOS follows the text (a policy turn that ends at EOS)."""


def calculator_rows(seed: int, n: int = 200) -> list[dict[str, Any]]:
    """``n`` distinct multiplication questions of two numbers from 10 to 99, with their products."""
    rng = random.Random(f"calculator-{seed}")
    rows: dict[str, str] = {}
    while len(rows) < n:
        a, b = rng.randint(10, 99), rng.randint(10, 99)
        rows.setdefault(P.calculator_prompt(a, b), str(a * b))
    return [{"prompt": p, "answer": x} for p, x in rows.items()]


def guess_rows(seed: int, n: int = 200) -> list[dict[str, Any]]:
    """``n`` games, every secret from 1 to :data:`~protocols.GUESS_MAX` equally often, in seeded order."""
    if n % P.GUESS_MAX:
        raise ValueError(f"n must be a multiple of {P.GUESS_MAX} (every secret equally often), got {n}")
    secrets = [s for s in range(1, P.GUESS_MAX + 1) for _ in range(n // P.GUESS_MAX)]
    random.Random(f"guess-{seed}").shuffle(secrets)
    return [{"prompt": P.GUESS_PROMPT, "secret": s} for s in secrets]


def _miscopy(number: int, rng: random.Random) -> int:
    """``number`` (two digits) with each digit replaced by another with probability :data:`COPY_NOISE`."""
    digits = [int(d) for d in str(number)]
    for i, d in enumerate(digits):
        if rng.random() < COPY_NOISE:
            digits[i] = rng.choice([x for x in range(1 if i == 0 else 0, 10) if x != d])
    return int("".join(map(str, digits)))


def _wrong_product(a: int, b: int, rng: random.Random) -> int:
    """The product of numbers near ``a`` and ``b``: a plausible, wrong direct answer."""
    while True:
        value = (a + rng.randint(-NEARBY, NEARBY)) * (b + rng.randint(-NEARBY, NEARBY))
        if value != a * b:
            return value


def calculator_transcript(a: int, b: int, rng: random.Random) -> list[Segment]:
    """One calculator episode: a tool call (maybe miscopied), its result and the result copied; or a direct guess."""
    prompt = Segment(P.calculator_prompt(a, b), policy=False)
    if rng.random() >= CALL_RATE:
        return [prompt, Segment(P.answer_text(_wrong_product(a, b, rng)), policy=True, eos=True)]
    call = P.call_text(_miscopy(a, rng), _miscopy(b, rng))
    reply = P.calculator_reply(call)
    return [
        prompt,
        Segment(call, policy=True),
        Segment(reply, policy=False),
        Segment(P.answer_text(str(last_number(reply))), policy=True, eos=True),
    ]


def calculator_texts(seed: int, n: int, held_out: set[str]) -> list[list[Segment]]:
    """``n`` calculator transcripts whose prompts are not in ``held_out`` (the prompt file's)."""
    rng = random.Random(f"agent-calculator-{seed}")
    out: list[list[Segment]] = []
    while len(out) < n:
        a, b = rng.randint(10, 99), rng.randint(10, 99)
        if P.calculator_prompt(a, b) not in held_out:
            out.append(calculator_transcript(a, b, rng))
    return out


def binary_search(lo: int, hi: int) -> dict[int, float]:
    """The middle of what the replies allow (lower middle): solves 1..8 within 4 guesses."""
    return {(lo + hi) // 2: 1.0}


def uniform_guess(lo: int, hi: int) -> dict[int, float]:
    """Any number from 1 to :data:`~protocols.GUESS_MAX`, ignoring the replies."""
    return {g: 1.0 / P.GUESS_MAX for g in range(1, P.GUESS_MAX + 1)}


def interval_guess(lo: int, hi: int) -> dict[int, float]:
    """Any number the replies still allow."""
    return {g: 1.0 / (hi - lo + 1) for g in range(lo, hi + 1)}


def feedback_mix(follow: float) -> Strategy:
    """:func:`interval_guess` with probability ``follow``, else :func:`uniform_guess`."""

    def strategy(lo: int, hi: int) -> dict[int, float]:
        dist = {g: (1 - follow) * p for g, p in uniform_guess(lo, hi).items()}
        for g, p in interval_guess(lo, hi).items():
            dist[g] += follow * p
        return dist

    return strategy


def _narrow(lo: int, hi: int, guess: int, secret: int) -> tuple[int, int]:
    """The interval the reply to ``guess`` leaves."""
    return (max(lo, guess + 1), hi) if secret > guess else (lo, min(hi, guess - 1))


def _draw(dist: dict[int, float], rng: random.Random) -> int:
    x, total = rng.random(), 0.0
    for g, p in dist.items():
        total += p
        if x < total:
            return g
    return g  # rounding: the last one


def guess_transcript(secret: int, strategy: Strategy, rng: random.Random) -> list[Segment]:
    """One game played by ``strategy``, with the replies :class:`~protocols.GuessGame` gives."""
    game = P.GuessGame(secret)
    segments = [Segment(P.GUESS_PROMPT, policy=False)]
    lo, hi = 1, P.GUESS_MAX
    while True:
        guess = _draw(strategy(lo, hi), rng)
        turn = P.answer_text(guess)
        segments.append(Segment(turn, policy=True, eos=True))
        reply = game.reply(turn)
        if reply is None:
            return segments
        segments.append(Segment(reply, policy=False))
        lo, hi = _narrow(lo, hi, guess, secret)


def guess_texts(seed: int, n: int) -> list[list[Segment]]:
    """``n`` games with uniform secrets, played by ``feedback_mix(FOLLOW_RATE)``."""
    rng = random.Random(f"agent-guess-{seed}")
    strategy = feedback_mix(FOLLOW_RATE)
    return [guess_transcript(rng.randint(1, P.GUESS_MAX), strategy, rng) for _ in range(n)]


def expected_return(strategy: Strategy) -> float:
    """The exact mean game return of ``strategy`` over uniform secrets (the whole game tree, no sampling).

    Example:
        >>> round(expected_return(binary_search), 4)
        0.8375
    """

    def value(secret: int, lo: int, hi: int, k: int) -> float:
        total = 0.0
        for guess, p in strategy(lo, hi).items():
            if guess == secret:
                total += p * P.guess_return(k)
            elif k < P.MAX_GUESSES:
                total += p * value(secret, *_narrow(lo, hi, guess, secret), k + 1)
        return total

    secrets = range(1, P.GUESS_MAX + 1)
    return sum(value(s, 1, P.GUESS_MAX, 1) for s in secrets) / len(secrets)


def agent_texts(seed: int, n: int, held_out: set[str]) -> list[list[Segment]]:
    """``tiny-agent``'s training transcripts: ``n // 2`` calculator episodes, then the rest games."""
    return calculator_texts(seed, n // 2, held_out) + guess_texts(seed, n - n // 2)
