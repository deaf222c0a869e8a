"""Pluggable, composable, batched reward terms.

Example:
    >>> from textenv.scorers import ROUGE, Keyword, KLPenalty
    >>> reward = 1.0 * ROUGE("rougeL") + 0.5 * Keyword(["great"])
    >>> verifiable = Answer(correct=1.0, format=0.1)  # GSM8K-style: "#### 42", \\boxed{42}, last number
"""

from textenv.scorers.answer import Answer
from textenv.scorers.base import CompositeScorer, EpisodeBatch, NoReward, Scorer, ScorerContext, ScorerError
from textenv.scorers.bleu import BLEU
from textenv.scorers.callable import Callable
from textenv.scorers.format import Format
from textenv.scorers.keyword import Keyword
from textenv.scorers.kl import AdaptersOff, KLPenalty, kl_per_token
from textenv.scorers.length import Length, MissingEOSPenalty
from textenv.scorers.reasoning_gym import ScoreAnswer
from textenv.scorers.reward_model import RewardModel
from textenv.scorers.rouge import ROUGE
from textenv.scorers.similarity import Similarity
from textenv.scorers.spec import SPECS, as_scorer, parse_spec

__all__ = [
    "BLEU",
    "ROUGE",
    "SPECS",
    "AdaptersOff",
    "Answer",
    "Callable",
    "CompositeScorer",
    "EpisodeBatch",
    "Format",
    "KLPenalty",
    "Keyword",
    "Length",
    "MissingEOSPenalty",
    "NoReward",
    "RewardModel",
    "ScoreAnswer",
    "Scorer",
    "ScorerContext",
    "ScorerError",
    "Similarity",
    "as_scorer",
    "kl_per_token",
    "parse_spec",
]
