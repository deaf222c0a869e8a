"""``Similarity``: difflib's ``SequenceMatcher`` ratio of each generation against its prompt's references.

The ratio ``2 * M / (len(a) + len(b))`` (``M`` characters in matching blocks, a longest-common-subsequence
style measure) is the reward of the reverse-text task of the ``verifiers`` library, which computes
``SequenceMatcher(None, completion, answer).ratio()``; this scorer computes exactly that.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from difflib import SequenceMatcher
from typing import Any

from textenv.scorers.base import EpisodeBatch, Scorer, ScorerContext


class Similarity(Scorer):
    """``SequenceMatcher(None, text, reference, autojunk=autojunk).ratio()``, the best over references (0 to 1).

    The targets of a prompt are its ``references``; a prompt without references uses its metadata
    ``key`` (``answer`` by default) instead.

    Args:
        key: Metadata key read when a prompt has no references.
        autojunk: difflib's heuristic that ignores very frequent characters of texts over 200
            characters (on by default, as in difflib and ``verifiers``).
        strip: Strip surrounding whitespace of the generated text first.
        name: Term name in ``info["reward_terms"]``.

    Example:
        >>> Similarity().score_text("olleh", ["olleh"])
        1.0
    """

    def __init__(
        self, *, key: str = "answer", autojunk: bool = True, strip: bool = False, name: str = "similarity"
    ):
        self.key = key
        self.autojunk = autojunk
        self.strip = strip
        self.name = name

    def attach(self, ctx: ScorerContext) -> None:
        for i, prompt in enumerate(ctx.prompts):
            self.targets(prompt.references, prompt.metadata, f"prompt {i} ({prompt.text!r})")

    def targets(self, references: Sequence[str], metadata: Mapping[str, Any], where: str) -> list[str]:
        """The texts a generation is compared with: the references, else the metadata ``key``.

        Raises:
            ValueError: Neither is there.
        """
        if references:
            return list(references)
        if self.key in metadata:
            return [str(metadata[self.key])]
        raise ValueError(
            f"{self!r} compares generations with each prompt's references (or its {self.key!r} entry), but "
            f"{where} has neither; e.g. {{'prompt': 'Reverse: a b =>', 'references': ['b a']}}"
        )

    def score_text(self, text: str, targets: Sequence[str]) -> float:
        """The best ratio of ``text`` against ``targets``."""
        text = text.strip() if self.strip else text
        return max(SequenceMatcher(None, text, t, autojunk=self.autojunk).ratio() for t in targets)

    def score(self, batch: EpisodeBatch) -> Sequence[float]:
        return [
            self.score_text(text, self.targets(refs, meta, f"prompt {prompt!r}"))
            for prompt, text, refs, meta in zip(batch.prompts, batch.texts, batch.references, batch.metadata)
        ]

    def __repr__(self) -> str:
        return f"Similarity(key={self.key!r})"
