"""``BLEU``: sentence BLEU of each generation against its prompt's references, via sacrebleu (0-1 by default)."""

from __future__ import annotations

from collections.abc import Sequence

from sacrebleu.metrics import BLEU as SacreBLEU

from textenv.scorers.base import EpisodeBatch, Scorer, ScorerContext
from textenv.scorers.references import episode_references, require_references


class BLEU(Scorer):
    """Sentence BLEU of each generation against all references of its prompt, on 0 to 1 by default.

    The value is exactly ``sacrebleu.sentence_bleu(text, references, **options).score / 100`` (the
    scale of every other term, so ``ROUGE() + BLEU()`` weighs both alike); ``scale=100.0`` keeps
    sacrebleu's 0-100 score unchanged. The other options are ``sentence_bleu``'s, with its defaults.

    Args:
        scale: The value of a perfect match: the score is ``sacrebleu_score / (100 / scale)``, so
            ``scale=1.0`` divides by 100 and ``scale=100.0`` is sacrebleu's score itself.
        smooth_method: ``"exp"``, ``"floor"``, ``"add-k"`` or ``"none"``.
        smooth_value: Value for ``"floor"`` and ``"add-k"`` (``None``: sacrebleu's default).
        lowercase: Lowercase hypothesis and references.
        tokenize: sacrebleu tokenizer name (``"13a"``, ``"intl"``, ``"char"``, ``"none"``, ...).
        use_effective_order: Ignore n-gram orders without any match (the sentence-level default).
        name: Term name in ``info["reward_terms"]``.

    Example:
        >>> env = gym.make("TextGen-v0", prompts="copy.jsonl", reward=BLEU())  # doctest: +SKIP
        >>> BLEU(scale=100.0)  # sacrebleu's 0-100 scale
        BLEU(name='bleu', scale=100.0)
    """

    def __init__(
        self,
        *,
        scale: float = 1.0,
        smooth_method: str = "exp",
        smooth_value: float | None = None,
        lowercase: bool = False,
        tokenize: str = SacreBLEU.TOKENIZER_DEFAULT,
        use_effective_order: bool = True,
        name: str = "bleu",
    ):
        if isinstance(scale, bool) or not isinstance(scale, (int, float)):
            raise TypeError(
                f"BLEU scale must be a positive finite number, got {type(scale).__name__}: {scale!r}"
            )
        if not 0 < scale < float("inf"):
            raise ValueError(f"BLEU scale must be a positive finite number, got {scale!r}")
        self.scale = float(scale)
        # Dividing by 100 / scale keeps both ends exact: / 100.0 for scale 1, / 1.0 for scale 100.
        self._divisor = 100.0 / self.scale
        # One metric object for all calls: sentence_bleu() builds the same object on every call.
        self.metric = SacreBLEU(
            lowercase=lowercase,
            tokenize=tokenize,
            force=False,
            smooth_method=smooth_method,
            smooth_value=smooth_value,
            effective_order=use_effective_order,
        )
        self.name = name

    def attach(self, ctx: ScorerContext) -> None:
        require_references(f"{self!r}", ctx.prompts)

    def score(self, batch: EpisodeBatch) -> Sequence[float]:
        return [
            self.metric.sentence_score(text, list(episode_references(f"{self!r}", prompt, refs))).score
            / self._divisor
            for prompt, text, refs in zip(batch.prompts, batch.texts, batch.references)
        ]

    def __repr__(self) -> str:
        return f"BLEU(name={self.name!r}, scale={self.scale!r})"
