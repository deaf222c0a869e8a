"""``ROUGE``: ROUGE-N / ROUGE-L of each generation against its prompt's references, via rouge-score."""

from __future__ import annotations

import re
from collections.abc import Sequence

from rouge_score.rouge_scorer import RougeScorer

from textenv.scorers.base import EpisodeBatch, Scorer, ScorerContext
from textenv.scorers.references import episode_references, require_references

MEASURES = ("fmeasure", "precision", "recall")


class ROUGE(Scorer):
    """One ROUGE measure (0 to 1) of each generation against the references of its prompt.

    With several references the value is rouge-score's ``RougeScorer.score_multi``: the reference
    with the highest F-measure is chosen and its ``measure`` is returned (for ``"fmeasure"`` that is
    the maximum over references). With one reference this equals ``RougeScorer.score``.

    Args:
        kind: ``"rouge1"`` ... ``"rouge9"``, ``"rougeL"`` or ``"rougeLsum"`` (sentences split on newlines).
        measure: ``"fmeasure"``, ``"precision"`` or ``"recall"``.
        use_stemmer: Porter-stem words before matching (rouge-score's option; default off, as there).
        split_summaries: For ``rougeLsum``, split sentences with nltk instead of newlines.
        tokenizer: A rouge-score tokenizer object (with ``tokenize(text)``); default rouge-score's, which
            lowercases and keeps only ``[a-z0-9]`` words, so non-ASCII text scores as no words.
        name: Term name (default ``"rouge_<kind>"``, plus ``"_<measure>"`` when not the F-measure).

    Example:
        >>> reward = ROUGE("rougeL") + 0.5 * ROUGE("rouge2", measure="recall")
    """

    def __init__(
        self,
        kind: str = "rougeL",
        *,
        measure: str = "fmeasure",
        use_stemmer: bool = False,
        split_summaries: bool = False,
        tokenizer: object = None,
        name: str | None = None,
    ):
        if not isinstance(kind, str) or not re.fullmatch(r"rouge[1-9]|rougeL|rougeLsum", kind):
            raise ValueError(f"ROUGE kind must be 'rouge1'..'rouge9', 'rougeL' or 'rougeLsum', got {kind!r}")
        if measure not in MEASURES:
            raise ValueError(f"ROUGE measure must be one of {MEASURES}, got {measure!r}")
        self.kind = kind
        self.measure = measure
        self.scorer = RougeScorer(
            [kind], use_stemmer=use_stemmer, split_summaries=split_summaries, tokenizer=tokenizer
        )
        self.name = name or (f"rouge_{kind}" if measure == "fmeasure" else f"rouge_{kind}_{measure}")

    def attach(self, ctx: ScorerContext) -> None:
        require_references(f"{self!r}", ctx.prompts)

    def score(self, batch: EpisodeBatch) -> Sequence[float]:
        values = []
        for prompt, text, refs in zip(batch.prompts, batch.texts, batch.references):
            refs = list(episode_references(f"{self!r}", prompt, refs))
            values.append(getattr(self.scorer.score_multi(refs, text)[self.kind], self.measure))
        return values

    def __repr__(self) -> str:
        return f"ROUGE({self.kind!r}, measure={self.measure!r})"
