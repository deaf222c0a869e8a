"""``as_scorer``: turns what a user passes as ``reward=`` into a scorer."""

from __future__ import annotations

from textenv.scorers.base import Scorer
from textenv.scorers.callable import Callable


def as_scorer(reward: object) -> Scorer:
    """A scorer from a scorer, a plain callable, a string spec, or ``None`` (the default reward)."""
    if reward is None:
        return parse_spec("sentiment")
    if isinstance(reward, Scorer):
        return reward
    if isinstance(reward, str):
        return parse_spec(reward)
    if callable(reward):
        return Callable(reward)
    raise TypeError(
        f"reward must be a Scorer, a callable or a string spec such as 'rouge', got {type(reward).__name__}"
    )


def parse_spec(spec: str) -> Scorer:
    """Parses a string spec (``"rouge"``, ``"bleu"``, ``"keyword:great,fun"``, ``"reward_model:PATH"``)."""
    raise ValueError(f"reward spec {spec!r} names no scorer")
