"""The scorer contract: batched terminal scores, dense per-token rewards, and composition.

A scorer turns finished episodes into rewards. Terminal scorers are called once per batch of
finished episodes (``score``); dense scorers return a reward for every generated token
(``step_rows``), delivered on the step that generated it. Scorers compose with ``+`` and ``*``::

    reward = 1.0 * ROUGE("rougeL") + 0.5 * Keyword(["great"])
    reward.terms()  # [("rouge_rougeL", 1.0, ROUGE(...)), ("keyword", 0.5, Keyword(...))]
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np
import torch

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

    from textenv.prompts import Prompt


S = TypeVar("S", bound="Scorer")


@dataclass(frozen=True)
class EpisodeBatch:
    """Finished episodes handed to terminal scorers, one entry per episode.

    Attributes:
        prompts: Prompt texts.
        prompt_ids: Prompt token ids (after truncation to ``max_prompt_tokens``).
        texts: Generated texts, decoded without special tokens (EOS is not part of the text).
        token_ids: Generated token ids, including the final EOS id when the episode ended on one.
        references: Reference texts per episode (empty lists when the prompt has none).
        metadata: Extra keys of the prompt record (for example ``keywords``).
        finish_reasons: ``"eos"`` or ``"length"`` per episode.
    """

    prompts: list[str]
    prompt_ids: list[list[int]]
    texts: list[str]
    token_ids: list[list[int]]
    references: list[list[str]]
    metadata: list[dict[str, Any]]
    finish_reasons: list[str]

    def __len__(self) -> int:
        return len(self.texts)


@dataclass(frozen=True)
class ScorerContext:
    """What an env tells its scorers once, when they are attached.

    Attributes:
        tokenizer: The env's tokenizer.
        prompts: The env's prompt records (scorers that need references check them here).
        num_rows: Number of episodes stepped together (1 for a single env).
        max_prompt_tokens: P, prompt positions in the observation.
        max_new_tokens: T, generated positions in the observation.
        vocab_size: Width of the action space.
        device: Device of the env's tensors.
    """

    tokenizer: PreTrainedTokenizerBase
    prompts: Sequence[Prompt]
    num_rows: int
    max_prompt_tokens: int
    max_new_tokens: int
    vocab_size: int
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))


class Scorer:
    """Base class of every reward term.

    Subclasses override :meth:`score` (terminal scorers) or set ``dense = True`` and override
    :meth:`reset_rows` and :meth:`step_rows` (dense scorers). A dense scorer may also give a
    terminal score.
    """

    name: str = "scorer"
    dense: bool = False

    def attach(self, ctx: ScorerContext) -> None:
        """Called once by the env that uses this scorer: validate the prompts, allocate state."""

    def score(self, batch: EpisodeBatch) -> Sequence[float]:
        """Terminal score of each finished episode (one float per episode)."""
        if self.dense:
            return [0.0] * len(batch)
        raise NotImplementedError(f"{type(self).__name__} must implement score()")

    def reset_rows(self, rows: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> None:
        """Dense scorers: rows ``rows`` start new episodes with these left-padded prompts (R, P)."""

    def step_rows(self, actions: torch.Tensor, active: torch.Tensor) -> torch.Tensor:
        """Dense scorers: reward (B,) for the token each active row just generated."""
        return torch.zeros(actions.shape[0], dtype=torch.float64, device=actions.device)

    def terms(self) -> list[tuple[str, float, Scorer]]:
        """The weighted terms this scorer is made of: ``[(name, weight, scorer)]``."""
        return [(self.name, 1.0, self)]

    def find(self, kind: type[S]) -> list[S]:
        """The scorers among :meth:`terms` that are instances of ``kind``.

        Example:
            >>> env = gym.make("TextGen-Sentiment-v0")  # doctest: +SKIP
            >>> (kl,) = env.unwrapped.reward.find(KLPenalty)  # doctest: +SKIP
        """
        return [scorer for _, _, scorer in self.terms() if isinstance(scorer, kind)]

    def __mul__(self, weight: object) -> CompositeScorer:
        return CompositeScorer([(name, _check_weight(weight) * w, s) for name, w, s in self.terms()])

    __rmul__ = __mul__

    def __add__(self, other: object) -> CompositeScorer:
        if not isinstance(other, Scorer):
            raise TypeError(f"can only add a Scorer to a Scorer, got {type(other).__name__}: {other!r}")
        return CompositeScorer(self.terms() + other.terms())

    def __radd__(self, other: object) -> Scorer:
        # sum([a, b]) starts from 0
        if isinstance(other, numbers.Number) and other == 0:
            return self
        raise TypeError(f"can only add a Scorer to a Scorer, got {type(other).__name__}: {other!r}")

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"


def _check_weight(weight: object) -> float:
    if isinstance(weight, bool) or not isinstance(weight, numbers.Real) or not math.isfinite(float(weight)):
        raise TypeError(
            f"a scorer weight must be a finite real number, got {type(weight).__name__}: {weight!r}"
        )
    return float(weight)


class CompositeScorer(Scorer):
    """A weighted sum of scorers; each term keeps its own name (made unique with a suffix)."""

    def __init__(self, terms: list[tuple[str, float, Scorer]]):
        if not terms:
            raise ValueError("a CompositeScorer needs at least one term")
        self._terms: list[tuple[str, float, Scorer]] = []
        seen: dict[str, int] = {}
        for name, weight, scorer in terms:
            seen[name] = seen.get(name, 0) + 1
            unique = name if seen[name] == 1 else f"{name}_{seen[name]}"
            self._terms.append((unique, _check_weight(weight), scorer))
        self.name = "+".join(n for n, _, _ in self._terms)
        self.dense = any(s.dense for _, _, s in self._terms)

    def terms(self) -> list[tuple[str, float, Scorer]]:
        return list(self._terms)

    def attach(self, ctx: ScorerContext) -> None:
        for _, _, scorer in self._terms:
            scorer.attach(ctx)

    def __repr__(self) -> str:
        return " + ".join(f"{w:g} * {s!r}" for _, w, s in self._terms)


class ScorerError(ValueError):
    """A scorer raised or returned an unusable value; the message names scorer, term, value and prompt."""


def check_scores(name: str, scorer: Scorer, values: object, batch: EpisodeBatch) -> np.ndarray:
    """Validates a terminal scorer's output: one finite float per episode.

    Raises:
        ScorerError: wrong count, non-numeric, NaN or infinite values.
    """
    try:
        arr = np.asarray(values, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError) as err:
        raise ScorerError(
            f"scorer {scorer!r} (term {name!r}) returned {values!r}, expected {len(batch)} floats "
            f"for prompts {batch.prompts!r}"
        ) from err
    if arr.shape[0] != len(batch):
        raise ScorerError(
            f"scorer {scorer!r} (term {name!r}) returned {arr.shape[0]} values, expected {len(batch)} "
            f"(one per finished episode) for prompts {batch.prompts!r}"
        )
    bad = ~np.isfinite(arr)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ScorerError(
            f"scorer {scorer!r} (term {name!r}) returned {float(arr[i])!r} for prompt {batch.prompts[i]!r} "
            f"and text {batch.texts[i]!r}; expected a finite float"
        )
    return arr
