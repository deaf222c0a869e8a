"""Multi-turn episodes played at the text level: the builder's evaluation of ``tiny-agent``.

:func:`play` samples the policy one token at a time (temperature 1, the whole vocabulary) for a
batch of episodes; when a turn ends (EOS, or a stop string in the turn's decoded text) the episode's
responder gives the reply, whose token ids (``tokenizer(reply, add_special_tokens=False)``) are
appended, and the policy continues after them, as the multi-turn environments do. Every token after
the prompt, the policy's and the replies', counts toward ``max_new_tokens``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from tools.build_assets import protocols as P
from tools.build_assets import transcripts

Responder = Callable[[str, str], str | None]
"""``reply(turn_text, ended_by)``: the reply to a finished turn, or ``None`` to end the episode;
``ended_by`` is ``"eos"`` or the stop string the turn ended at."""


@dataclass
class Episode:
    """One episode's token ids and turns."""

    ids: list[int]
    """Prompt, policy and reply token ids so far."""
    prompt_tokens: int
    turns: list[str] = field(default_factory=list)
    """The policy's turns' texts (special tokens dropped); the last may be cut by the budget."""
    ended_by: list[str] = field(default_factory=list)
    """Per turn: ``"eos"``, the stop string, or ``"length"`` (the token budget ran out)."""
    replies: list[str] = field(default_factory=list)
    """The responder's replies; the last one's tokens may be cut (or left out) at the budget."""
    policy: list[bool] = field(default_factory=list)
    """Per token after the prompt: whether the policy wrote it (else a reply inserted it)."""
    turn_ids: list[int] = field(default_factory=list)
    """The current turn's token ids (EOS excluded)."""

    @property
    def tokens(self) -> int:
        """Tokens after the prompt (the policy's and the replies')."""
        return len(self.ids) - self.prompt_tokens


def _advance(
    ep: Episode, token: int, tokenizer, responder: Responder, stop: Sequence[str], max_new_tokens: int
) -> bool:
    """Appends the policy's ``token`` (and a reply when the turn ends); returns whether the episode goes on."""
    ep.ids.append(token)
    ep.policy.append(True)
    ended_by: str | None = None
    if token == tokenizer.eos_token_id:
        ended_by = "eos"
    else:
        ep.turn_ids.append(token)
        text = tokenizer.decode(ep.turn_ids, skip_special_tokens=True)
        ended_by = next((s for s in stop if s in text), None)
    if ended_by is None:
        if ep.tokens < max_new_tokens:
            return True
        ended_by = "length"
    ep.turns.append(tokenizer.decode(ep.turn_ids, skip_special_tokens=True))
    ep.ended_by.append(ended_by)
    ep.turn_ids = []
    reply = None if ended_by == "length" else responder(ep.turns[-1], ended_by)
    if reply is None:
        return False
    ep.replies.append(reply)
    # A reply that overruns the budget is cut there, and the episode ends with it.
    reply_ids = tokenizer(reply, add_special_tokens=False)["input_ids"][: max_new_tokens - ep.tokens]
    ep.ids += reply_ids
    ep.policy += [False] * len(reply_ids)
    return ep.tokens < max_new_tokens


@torch.no_grad()
def play(
    model,
    tokenizer,
    prompts: Sequence[str],
    responders: Sequence[Responder],
    *,
    stop: Sequence[str] = (),
    max_new_tokens: int,
    seed: int,
) -> list[Episode]:
    """Plays one episode per prompt, all at once, sampling at temperature 1.

    Args:
        model: A causal LM (its ``input_ids``/``attention_mask`` forward returns ``logits``).
        tokenizer: Its tokenizer; prompts and replies are encoded without special tokens.
        prompts: One prompt text per episode.
        responders: One responder per episode (see :data:`Responder`).
        stop: Stop strings: a turn whose decoded text contains one ends there.
        max_new_tokens: The token budget after the prompt; an episode that reaches it ends.
        seed: Seed of the sampling.

    Returns:
        One :class:`Episode` per prompt.

    Example:
        >>> eps = play(model, tok, ["Q: 37*48= A:"], [calculator_responder], stop=["</call>"],
        ...            max_new_tokens=48, seed=0)
        >>> eps[0].turns, eps[0].replies  # e.g.
        ([' <call>calc(37*48)</call>', ' 1776'], [' <result>1776</result>'])
    """
    gen = torch.Generator().manual_seed(seed)
    episodes = [
        Episode(ids=list(ids), prompt_tokens=len(ids))
        for ids in tokenizer(list(prompts), add_special_tokens=False)["input_ids"]
    ]
    active = list(range(len(episodes)))
    while active:
        width = max(len(episodes[r].ids) for r in active)
        ids = torch.full((len(active), width), tokenizer.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(active), width), dtype=torch.long)
        for i, r in enumerate(active):
            n = len(episodes[r].ids)
            ids[i, :n] = torch.tensor(episodes[r].ids)
            mask[i, :n] = 1
        # Right padding: each row's last real position attends to its own tokens only.
        logits = model(input_ids=ids, attention_mask=mask).logits  # (B, W, V)
        last = logits[torch.arange(len(active)), mask.sum(1) - 1].float()  # (B, V)
        drawn = torch.multinomial(torch.softmax(last, dim=-1), 1, generator=gen).squeeze(1).tolist()
        active = [
            r
            for r, token in zip(active, drawn)
            if _advance(episodes[r], token, tokenizer, responders[r], stop, max_new_tokens)
        ]
    return episodes


def calculator_responder(turn: str, ended_by: str) -> str | None:
    """The calculator's side: a call gets :func:`~protocols.calculator_reply`; EOS ends the episode."""
    return P.calculator_reply(turn) if ended_by == P.CALL_END else None


def evaluate_calculator(model, tokenizer, rows: Sequence[dict[str, Any]], seed: int) -> dict[str, Any]:
    """Sampled calculator episodes on ``rows``: accuracy, how often and how well the policy calls the tool.

    Returns:
        ``calculator_accuracy`` (mean return), ``call_rate`` (episodes whose first turn is a call),
        ``correct_call_rate`` (calls that copy the question exactly), ``accuracy_when_call_correct``,
        ``direct_accuracy`` (episodes answered without a call), ``calculator_samples`` and
        ``mean_tokens`` (after the prompt).
    """
    episodes = play(
        model,
        tokenizer,
        [r["prompt"] for r in rows],
        [calculator_responder] * len(rows),
        stop=[P.CALL_END],
        max_new_tokens=P.CALCULATOR_MAX_NEW_TOKENS,
        seed=seed,
    )
    returns = [P.calculator_return(ep.turns[-1], r["answer"]) for ep, r in zip(episodes, rows)]
    called = [ep.ended_by[0] == P.CALL_END for ep in episodes]
    correct = [
        c and ep.turns[0].endswith(P.call_text(*_operands(r["prompt"])))
        for c, ep, r in zip(called, episodes, rows)
    ]
    return {
        "calculator_accuracy": _mean(returns),
        "call_rate": _mean(called),
        "correct_call_rate": _mean([x for x, c in zip(correct, called) if c]),
        "accuracy_when_call_correct": _mean([x for x, c in zip(returns, correct) if c]),
        "direct_accuracy": _mean([x for x, c in zip(returns, called) if not c]),
        "calculator_samples": len(rows),
        "mean_tokens": _mean([ep.tokens for ep in episodes]),
    }


def _operands(prompt: str) -> tuple[int, int]:
    a, b = prompt.removeprefix("Q: ").removesuffix("= A:").split("*")
    return int(a), int(b)


def guess_responder(game: P.GuessGame) -> Responder:
    """The game's side for :func:`play`: every turn (they end at EOS) is a guess for ``game``."""

    def reply(turn: str, ended_by: str) -> str | None:
        return game.reply(turn)

    return reply


def evaluate_guess(model, tokenizer, rows: Sequence[dict[str, Any]], seed: int) -> dict[str, Any]:
    """Sampled games on ``rows``: the mean return, the solve rate and the reference policies' returns.

    ``binary_search_return`` and ``uniform_random_return`` (guesses that ignore the replies) and
    ``interval_random_return`` (random guesses the replies allow) are exact expectations over
    uniform secrets; ``training_mix_return`` is that of the strategy the training games were
    played by.
    """
    games = [P.GuessGame(secret=r["secret"]) for r in rows]
    episodes = play(
        model,
        tokenizer,
        [r["prompt"] for r in rows],
        [guess_responder(game) for game in games],
        max_new_tokens=P.GUESS_MAX_NEW_TOKENS,
        seed=seed,
    )
    guesses = [g for game in games for g in game.guesses]
    solved = [game.solved_at for game in games if game.solved_at is not None]
    return {
        "guess_return": _mean([game.episode_return for game in games]),
        "solve_rate": _mean([game.solved_at is not None for game in games]),
        "mean_guesses_when_solved": _mean(solved),
        "invalid_guess_rate": _mean([g is None for g in guesses]),
        "guess_samples": len(rows),
        "mean_tokens": _mean([ep.tokens for ep in episodes]),
        "binary_search_return": round(transcripts.expected_return(transcripts.binary_search), 4),
        "uniform_random_return": round(transcripts.expected_return(transcripts.uniform_guess), 4),
        "interval_random_return": round(transcripts.expected_return(transcripts.interval_guess), 4),
        "training_mix_return": round(
            transcripts.expected_return(transcripts.feedback_mix(transcripts.FOLLOW_RATE)), 4
        ),
    }


def _mean(values: Sequence[float]) -> float:
    return round(sum(values) / len(values), 4) if values else 0.0
