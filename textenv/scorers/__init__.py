"""Pluggable, composable, batched reward terms."""

from textenv.scorers.base import CompositeScorer, EpisodeBatch, Scorer, ScorerContext, ScorerError
from textenv.scorers.callable import Callable
from textenv.scorers.spec import as_scorer, parse_spec

__all__ = [
    "Callable",
    "CompositeScorer",
    "EpisodeBatch",
    "Scorer",
    "ScorerContext",
    "ScorerError",
    "as_scorer",
    "parse_spec",
]
