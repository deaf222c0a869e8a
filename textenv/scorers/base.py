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
from collections.abc import Callable as CallableType
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np
import torch

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

    from textenv.multiturn import Turn
    from textenv.prompts import Prompt


S = TypeVar("S", bound="Scorer")


@dataclass(frozen=True)
class EpisodeBatch:
    """Finished episodes handed to terminal scorers, one entry per episode.

    Attributes:
        prompts: Prompt texts.
        prompt_ids: Prompt token ids (after truncation to ``max_prompt_tokens``).
        texts: Generated texts (of the policy's last turn), decoded without special tokens (EOS is not
            part of the text).
        token_ids: Generated token ids (of the policy's last turn), including the final EOS id when the
            episode ended on one.
        references: Reference texts per episode (empty lists when the prompt has none).
        metadata: Extra keys of the prompt record (for example ``keywords``).
        finish_reasons: Why each episode ended: ``"eos"``, ``"length"`` (the token budget) and, in a
            multi-turn env, ``"responder"`` (the responder ended it) or ``"max_turns"``.
        turns: Every turn of each episode (:class:`~textenv.multiturn.Turn`: role, text, token ids,
            the responder's reward): the whole conversation of a multi-turn episode, one policy turn
            otherwise. ``texts`` and ``token_ids`` are the policy's last turn.
    """

    prompts: list[str]
    prompt_ids: list[list[int]]
    texts: list[str]
    token_ids: list[list[int]]
    references: list[list[str]]
    metadata: list[dict[str, Any]]
    finish_reasons: list[str]
    turns: list[tuple[Turn, ...]] = field(default_factory=list)

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
        """Dense scorers: reward (B,) for the token each active row just generated.

        Should change no state: the env may still fail the step (another term raises), and a failed
        step changes nothing. Record the tokens in :meth:`advance_rows`.
        """
        return torch.zeros(actions.shape[0], dtype=torch.float64, device=actions.device)

    def advance_rows(self, actions: torch.Tensor, active: torch.Tensor) -> None:
        """Dense scorers: the step whose rewards :meth:`step_rows` computed happened; record its tokens.

        Called once per successful step, after every term has scored it.
        """

    def insert_rows(self, rows: torch.Tensor, token_ids: torch.Tensor, lengths: torch.Tensor) -> None:
        """Dense scorers of a multi-turn env: the env appended tokens that the policy did not choose (a
        responder's reply) after this step's token in ``rows``: ``token_ids[i, :lengths[i]]`` for row
        ``rows[i]``. They are not scored; a scorer that follows the text (the KL reference) reads them.

        Called after :meth:`advance_rows`, on the steps that insert.
        """

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


class NoReward(Scorer):
    """No reward term: a multi-turn env whose responder gives every reward (the default reward there).

    ``terms()`` is empty, so ``info["reward_terms"]`` holds only the responder's total.
    """

    name = "no_reward"

    def terms(self) -> list[tuple[str, float, Scorer]]:
        return []

    def score(self, batch: EpisodeBatch) -> Sequence[float]:
        return [0.0] * len(batch)

    def __repr__(self) -> str:
        return "NoReward()"


class ScorerError(ValueError):
    """A scorer raised or returned an unusable value; the message names scorer, term, value and prompt."""


def check_scores(
    name: str,
    scorer: Scorer,
    values: object,
    *,
    prompts: Sequence[str],
    texts: Sequence[str] | None = None,
    active: torch.Tensor | None = None,
    device: torch.device | str = "cpu",
    weight: float = 1.0,
) -> torch.Tensor:
    """Validates what a scorer returned, terminal or dense: one finite number per episode (or row).

    The one check every scorer output goes through. Accepted: a sequence of real numbers (Python
    numbers, NumPy scalars, one-element NumPy arrays or tensors, 0-d ones included; bools,
    ``np.bool_`` included, count as 0/1), a 1-D NumPy array or a 1-D torch tensor of a numeric or
    bool dtype, of length ``len(prompts)``. Rows where ``active`` is False (dense scorers' idle
    rows) are not checked for finiteness. With a ``weight`` the weighted values are returned, and
    checked too: ``10.0 * 1e308`` overflows to infinity although both factors are finite.

    Args:
        name: The term's name.
        scorer: The scorer that returned ``values``.
        values: Its output.
        prompts: The prompt of each episode (row), for the error message.
        texts: The generated text of each episode, when known.
        active: (B,) bool, the rows whose value counts (dense scorers).
        device: Where the returned tensor lives.
        weight: The term's weight.

    Returns:
        (N,) float64 tensor on ``device``: ``weight`` times the values.

    Raises:
        ScorerError: ``None``, strings or other non-numbers, numbers too large for a float, the wrong
            shape or count, NaN or infinity, before or after weighting; the message names scorer,
            term, value and prompt.
    """
    n = len(prompts)
    where = f"scorer {scorer!r} (term {name!r})"
    expected = f"expected {n} finite float{'s' if n != 1 else ''} (one per episode)"
    if isinstance(values, torch.Tensor):
        if values.dtype == torch.bool or values.is_floating_point() or values.dtype in _TORCH_INTS:
            out = values.detach().to(device=device, dtype=torch.float64)
        else:
            raise ScorerError(
                f"{where} returned a tensor of dtype {values.dtype}; {expected} for prompts {list(prompts)!r}"
            )
    else:
        out = torch.as_tensor(_to_float_array(where, expected, values, prompts), device=device)
    if tuple(out.shape) != (n,):
        raise ScorerError(
            f"{where} returned {_short(values)} of shape {tuple(out.shape)}; {expected} for prompts {list(prompts)!r}"
        )
    weighted = out * weight
    bad = ~(torch.isfinite(out) & torch.isfinite(weighted))
    if active is not None:
        bad &= active.to(out.device, torch.bool)
    if bad.any():
        i = int(bad.nonzero()[0, 0])
        value = float(out[i])
        if math.isfinite(value):  # finite, but not once weighted: 10.0 * 1e308
            value_text = f"{value!r} (weighted by {weight!r}: {float(weighted[i])!r})"
        else:
            value_text = repr(value)
        text = "" if texts is None else f" and text {texts[i]!r}"
        raise ScorerError(
            f"{where} returned {value_text} for prompt {prompts[i]!r}{text}; expected a finite float"
        )
    return weighted


_TORCH_INTS = (torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64)


def _short(values: object) -> str:
    text = repr(values)
    return text if len(text) <= 200 else text[:200] + "..."


def _to_float_array(where: str, expected: str, values: object, prompts: Sequence[str]) -> np.ndarray:
    """``values`` as float64, or a ScorerError naming the first element that is not a real number."""
    if values is None or isinstance(values, (str, bytes, Mapping)):
        raise ScorerError(f"{where} returned {_short(values)}; {expected} for prompts {list(prompts)!r}")
    if isinstance(values, np.ndarray) and values.dtype.kind in "biuf":
        return values.astype(np.float64)
    if not isinstance(values, (Sequence, np.ndarray)) or np.ndim(values) != 1:  # type: ignore[arg-type]
        raise ScorerError(
            f"{where} returned {type(values).__name__} {_short(values)}; {expected} for prompts {list(prompts)!r}"
        )
    out = np.empty(len(values), dtype=np.float64)
    for i, v in enumerate(values):
        if (
            isinstance(v, torch.Tensor)
            and v.numel() == 1
            and (v.is_floating_point() or v.dtype in _TORCH_INTS or v.dtype == torch.bool)
        ) or (isinstance(v, (np.ndarray, np.generic)) and v.size == 1 and v.dtype.kind in "biuf"):
            v = v.item()  # np.bool_, a 0-d array, a tensor: the Python number it holds
        prompt = f" for prompt {prompts[i]!r}" if i < len(prompts) else ""
        if not isinstance(v, numbers.Real):
            raise ScorerError(
                f"{where} returned {type(v).__name__} {_short(v)} at index {i}{prompt}; {expected} for prompts "
                f"{list(prompts)!r}"
            )
        try:
            out[i] = float(v)
        except OverflowError:
            raise ScorerError(
                f"{where} returned {v!r} at index {i}{prompt}, too large for a float; expected a finite float"
            ) from None
    return out


def call_scorer(name: str, scorer: Scorer, fn: CallableType[[], object], prompts: Sequence[str]) -> object:
    """Runs ``fn`` (a scorer's ``score`` or ``step_rows``); any exception becomes a :class:`ScorerError`."""
    try:
        return fn()
    except ScorerError:
        raise
    except Exception as err:
        raise ScorerError(
            f"scorer {scorer!r} (term {name!r}) raised {type(err).__name__}: {err} while scoring prompts "
            f"{list(prompts)!r}"
        ) from err
