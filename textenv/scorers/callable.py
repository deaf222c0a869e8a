"""``Callable``: any Python function as a reward term."""

from __future__ import annotations

from collections.abc import Callable as CallableType
from collections.abc import Sequence

from textenv.scorers.base import EpisodeBatch, Scorer


class Callable(Scorer):
    """Wraps a user function as a terminal scorer.

    Args:
        fn: ``fn(prompt, text, references, meta) -> float``; with ``batched=True``
            ``fn(prompts, texts, references, metas) -> list[float]``.
        batched: Whether ``fn`` takes whole batches.
        name: Term name in ``info["reward_terms"]`` (default: the function's name).

    Example:
        >>> short = Callable(lambda prompt, text, refs, meta: -len(text.split()))
    """

    def __init__(self, fn: CallableType[..., object], *, batched: bool = False, name: str | None = None):
        if not callable(fn):
            raise TypeError(f"Callable needs a callable, got {type(fn).__name__}: {fn!r}")
        self.fn = fn
        self.batched = batched
        fn_name = getattr(fn, "__name__", "callable")
        self.name = name or ("callable" if fn_name == "<lambda>" else fn_name)

    def score(self, batch: EpisodeBatch) -> Sequence[float]:
        if self.batched:
            return self.fn(batch.prompts, batch.texts, batch.references, batch.metadata)  # type: ignore[return-value]
        return [
            self.fn(p, t, r, m)  # type: ignore[misc]
            for p, t, r, m in zip(batch.prompts, batch.texts, batch.references, batch.metadata)
        ]
