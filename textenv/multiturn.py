"""Multi-turn episodes: the environment's side of the conversation (a responder) and what it is given.

An env built with ``responder=R`` plays a conversation token by token. The policy acts one token per
step; its turn ends at an end-of-turn token (``end_of_turn``, by default the EOS ids) or when its text
ends with one of ``stop_strings``. On that step the env calls ``R`` with the :class:`Episode` so far and
appends the :class:`Reply`'s tokens to the observation (encoded once, never re-encoded); the policy's next
action continues after them. The episode ends when the responder says so (``Reply(done=True)``), after
``max_turns`` policy turns, when the token budget is spent, or at an EOS that is not an end-of-turn token.

A responder is a callable ``R(episode) -> Reply | str`` or an object with ``respond(episode)`` (and,
optionally, ``reset(episode)``, called when a row starts an episode, before the policy's first token).
One responder serves every row of a vector env: a stateful one keys its state by ``episode.row``.

Example:
    >>> def referee(episode: Episode) -> Reply:
    ...     guess = episode.turns[-1].text.strip()
    ...     secret = str(episode.prompt.metadata["secret"])
    ...     if guess == secret:
    ...         return Reply(reward=1.0, done=True)
    ...     return Reply(" higher" if guess < secret else " lower")
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from textenv.prompts import Prompt

POLICY_ROLE = "assistant"
"""The role of the policy's turns (what a chat template calls the model's messages)."""


@dataclass(frozen=True)
class Reply:
    """The environment's reply to the policy's turn.

    Attributes:
        text: The reply's text, appended after the policy's turn (encoded once; with a chat template,
            rendered as the template renders a ``role`` message after the conversation). ``None`` (or
            ``""``) inserts nothing.
        token_ids: The reply's token ids, appended as they are (instead of ``text``).
        reward: The reward for the turn the policy just played (given on the step that ended it).
        done: The episode ends after this turn (the reply is recorded in ``info["turns"]``, not inserted).
        role: The reply's role in the conversation (``"user"``, ``"tool"``, ...).
    """

    text: str | None = None
    token_ids: Sequence[int] | None = None
    reward: float = 0.0
    done: bool = False
    role: str = "user"


@dataclass(frozen=True)
class Turn:
    """One turn of a conversation.

    Attributes:
        role: ``"assistant"`` for the policy, the reply's role for the environment.
        text: The turn's text (the policy's: decoded without special tokens).
        token_ids: The turn's token ids as they stand in the observation (a final reply that ended the
            episode was not inserted; its ids are those it would have had).
        reward: The reward the responder gave for the policy's turn (environment turns), else 0.
    """

    role: str
    text: str
    token_ids: tuple[int, ...] = ()
    reward: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        """The turn as a plain dict (what ``info["turns"]`` holds)."""
        return {
            "role": self.role,
            "text": self.text,
            "token_ids": list(self.token_ids),
            "reward": self.reward,
        }


@dataclass(frozen=True)
class Episode:
    """An episode so far, as a responder sees it.

    Attributes:
        row: The env row (0 in a single env): a stateful responder keys its state by it.
        prompt: The prompt record (its ``metadata`` holds what the prompt source gave, e.g. a secret).
        turns: Every turn so far, the policy's last one included (at ``reset``: none).
    """

    row: int
    prompt: Prompt
    turns: tuple[Turn, ...] = field(default_factory=tuple)

    @property
    def policy_turns(self) -> int:
        """How many turns the policy has played."""
        return sum(t.role == POLICY_ROLE for t in self.turns)

    @property
    def last(self) -> Turn:
        """The last turn (after the policy's turn: that turn).

        Raises:
            ValueError: No turn yet.
        """
        if not self.turns:
            raise ValueError("the episode has no turn yet")
        return self.turns[-1]

    def messages(self) -> list[dict[str, str]]:
        """The turns as chat messages (``{"role", "content"}``), after the prompt's own."""
        return [{"role": t.role, "content": t.text} for t in self.turns]


class ResponderError(ValueError):
    """A responder raised or returned something that is not a reply; the message names the responder."""


def describe_responder(responder: object) -> str:
    name = getattr(responder, "__qualname__", None) or type(responder).__name__
    return f"responder {name}"


def check_responder(responder: object) -> object:
    """``responder`` if it is a callable or has ``respond``.

    Raises:
        TypeError: Anything else.
    """
    if responder is None or callable(getattr(responder, "respond", None)) or callable(responder):
        return responder
    raise TypeError(
        f"responder must be a callable responder(episode) -> Reply or an object with respond(episode), "
        f"got {type(responder).__name__}: {responder!r}"
    )


def call_responder(responder: object, episode: Episode, method: str = "respond") -> object:
    """Calls ``responder.respond(episode)`` (or ``responder(episode)``, or ``responder.reset(episode)``).

    Raises:
        ResponderError: The responder raised (chained) or, for ``respond``, returned no reply.
    """
    fn = getattr(responder, method, None)
    if fn is None and method == "respond":
        fn = responder
    if not callable(fn):
        return None
    try:
        out = fn(episode)
    except Exception as err:
        raise ResponderError(
            f"{describe_responder(responder)} raised {type(err).__name__}: {err} in {method}() for row "
            f"{episode.row} (prompt {episode.prompt.text!r}, after {episode.policy_turns} policy turn(s))"
        ) from err
    return out if method == "respond" else None


def as_reply(value: object, responder: object, episode: Episode, vocab_size: int) -> Reply:
    """A responder's output as a :class:`Reply`: a reply, a string (its text) or ``None`` (nothing).

    Raises:
        ResponderError: Anything else, or a reply with bad fields (named).
    """
    if value is None:
        return Reply()
    if isinstance(value, str):
        return Reply(text=value)
    where = f"{describe_responder(responder)} (row {episode.row}, prompt {episode.prompt.text!r})"
    if not isinstance(value, Reply):
        raise ResponderError(
            f"{where} returned {type(value).__name__}: {value!r}; expected a textenv.Reply, a str or None"
        )
    if value.text is not None and not isinstance(value.text, str):
        raise ResponderError(f"{where} returned Reply.text={value.text!r}; expected a str or None")
    if value.text and value.token_ids is not None:
        raise ResponderError(f"{where} returned a Reply with both text and token_ids; expected one of them")
    if value.token_ids is not None:
        ids = list(value.token_ids)
        bad = [
            i
            for i in ids
            if isinstance(i, bool) or not isinstance(i, numbers.Integral) or not 0 <= i < vocab_size
        ]
        if bad:
            raise ResponderError(
                f"{where} returned Reply.token_ids with {bad[0]!r}; expected ints in [0, {vocab_size})"
            )
    reward = value.reward
    if isinstance(reward, bool) or not isinstance(reward, numbers.Real) or not float(reward) == float(reward):
        raise ResponderError(f"{where} returned Reply.reward={reward!r}; expected a finite number")
    if abs(float(reward)) == float("inf"):
        raise ResponderError(f"{where} returned Reply.reward={reward!r}; expected a finite number")
    if not isinstance(value.done, bool):
        raise ResponderError(f"{where} returned Reply.done={value.done!r}; expected a bool")
    if not isinstance(value.role, str) or not value.role:
        raise ResponderError(f"{where} returned Reply.role={value.role!r}; expected a non-empty str")
    return value


__all__ = [
    "POLICY_ROLE",
    "Episode",
    "Reply",
    "ResponderError",
    "Turn",
    "as_reply",
    "call_responder",
    "check_responder",
]
