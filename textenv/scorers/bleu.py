"""``BLEU``: sentence BLEU of each generation against its prompt's references, via sacrebleu."""

from __future__ import annotations

from collections.abc import Sequence

from sacrebleu.metrics import BLEU as SacreBLEU

from textenv.scorers.base import EpisodeBatch, Scorer, ScorerContext
from textenv.scorers.references import episode_references, require_references


class BLEU(Scorer):
    """Sentence BLEU (0 to 100) of each generation against all references of its prompt.

    The value is exactly ``sacrebleu.sentence_bleu(text, references, **options).score``: the options
    below are ``sentence_bleu``'s, with its defaults. Scale it with a weight for a reward in [0, 1]:
    ``0.01 * BLEU()``.

    Args:
        smooth_method: ``"exp"``, ``"floor"``, ``"add-k"`` or ``"none"``.
        smooth_value: Value for ``"floor"`` and ``"add-k"`` (``None``: sacrebleu's default).
        lowercase: Lowercase hypothesis and references.
        tokenize: sacrebleu tokenizer name (``"13a"``, ``"intl"``, ``"char"``, ``"none"``, ...).
        use_effective_order: Ignore n-gram orders without any match (the sentence-level default).
        name: Term name in ``info["reward_terms"]``.

    Example:
        >>> env = gym.make("TextGen-v0", prompts="copy.jsonl", reward=0.01 * BLEU())  # doctest: +SKIP
    """

    def __init__(
        self,
        *,
        smooth_method: str = "exp",
        smooth_value: float | None = None,
        lowercase: bool = False,
        tokenize: str = SacreBLEU.TOKENIZER_DEFAULT,
        use_effective_order: bool = True,
        name: str = "bleu",
    ):
        # One metric object for all calls: sentence_bleu() builds the same object on every call.
        try:
            self.metric = SacreBLEU(
                lowercase=lowercase,
                tokenize=tokenize,
                force=False,
                smooth_method=smooth_method,
                smooth_value=smooth_value,
                effective_order=use_effective_order,
            )
        except KeyError:
            # sacrebleu looks the tokenizer up in a dict and lets the KeyError out.
            raise ValueError(
                f"BLEU tokenize={tokenize!r} is not a sacrebleu tokenizer; expected one of "
                f"{list(SacreBLEU.TOKENIZERS)}"
            ) from None
        self.name = name

    def attach(self, ctx: ScorerContext) -> None:
        require_references(f"{self!r}", ctx.prompts)

    def score(self, batch: EpisodeBatch) -> Sequence[float]:
        return [
            self.metric.sentence_score(text, list(episode_references(f"{self!r}", prompt, refs))).score
            for prompt, text, refs in zip(batch.prompts, batch.texts, batch.references)
        ]

    def __repr__(self) -> str:
        return f"BLEU(name={self.name!r})"
