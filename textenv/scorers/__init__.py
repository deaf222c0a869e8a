"""Pluggable, composable, batched reward terms.

Example:
    >>> from textenv.scorers import ROUGE, Keyword, KLPenalty
    >>> reward = 1.0 * ROUGE("rougeL") + 0.5 * Keyword(["great"])
"""

from textenv.scorers.base import CompositeScorer, EpisodeBatch, Scorer, ScorerContext, ScorerError
from textenv.scorers.bleu import BLEU
from textenv.scorers.callable import Callable
from textenv.scorers.keyword import Keyword
from textenv.scorers.kl import KLPenalty, kl_per_token
from textenv.scorers.length import Length, MissingEOSPenalty
from textenv.scorers.reward_model import RewardModel
from textenv.scorers.rouge import ROUGE
from textenv.scorers.spec import SPECS, as_scorer, parse_spec

__all__ = [
    "BLEU",
    "ROUGE",
    "SPECS",
    "Callable",
    "CompositeScorer",
    "EpisodeBatch",
    "KLPenalty",
    "Keyword",
    "Length",
    "MissingEOSPenalty",
    "RewardModel",
    "Scorer",
    "ScorerContext",
    "ScorerError",
    "as_scorer",
    "kl_per_token",
    "parse_spec",
]
