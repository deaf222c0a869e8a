"""``ScoreAnswer``: a reasoning-gym dataset's own verifier, ``dataset.score_answer(answer=..., entry=...)``.

reasoning-gym (``pip install 'textenv[reasoning]'``) checks an answer with the method of the dataset
that generated the question; its evaluation script extracts the answer from a reply first, the last
``<answer>...</answer>`` (``reasoning_gym.utils.extract_answer``). This scorer does the same for each
finished episode, reading the dataset entry from the prompt's metadata (``entry``, as the prompts of
:mod:`textenv.reasoning_gym` hold it)::

    dataset = reasoning_gym.create_dataset("chain_sum", size=100, seed=0)
    ScoreAnswer(dataset)                                  # the last <answer>...</answer>
    ScoreAnswer(dataset, answer_format="text")            # the whole generated text, stripped
    ScoreAnswer(dataset, answer_format=r"regex:=\\s*(-?\\d+)")  # the last match (group 1 if any)
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from textenv.scorers.base import EpisodeBatch, Scorer, ScorerContext

ENTRY_KEY = "entry"
ANSWER_TAG = "answer"
ANSWER_FORMATS = ("tags", "text", "regex:<pattern>")
REGEX_PREFIX = "regex:"
# reasoning_gym.utils.extract_answer's pattern, without its capture: the text holds a tagged answer.
TAGS_PATTERN = rf"<{ANSWER_TAG}>.*?</{ANSWER_TAG}>"


def answer_extractor(answer_format: str | re.Pattern[str]) -> Callable[[str], str | None]:
    """The function that finds the answer in a generated text (``None``: no answer).

    Args:
        answer_format: ``"tags"`` (the last ``<answer>...</answer>``, through reasoning-gym's own
            ``extract_answer``), ``"text"`` (the whole text, stripped; a blank text is no answer),
            ``"regex:<pattern>"`` or a compiled pattern (the last match, its first group when the
            pattern has one, stripped).

    Raises:
        ValueError: An unknown format or an invalid regular expression.
        TypeError: Neither a string nor a compiled pattern.

    Example:
        >>> answer_extractor("regex:= (\\\\d+)")("3 + 4 = 7")
        '7'
    """
    if isinstance(answer_format, re.Pattern):
        return _regex_extractor(answer_format)
    if not isinstance(answer_format, str):
        raise TypeError(
            f"answer_format must be one of {ANSWER_FORMATS} or a compiled re.Pattern, got "
            f"{type(answer_format).__name__}: {answer_format!r}"
        )
    if answer_format == "tags":
        from reasoning_gym.utils import extract_answer  # reasoning-gym's parser: the same answers it grades

        return lambda text: extract_answer(text, tag_name=ANSWER_TAG)
    if answer_format == "text":
        return lambda text: text.strip() or None
    if answer_format.startswith(REGEX_PREFIX):
        pattern = answer_format[len(REGEX_PREFIX) :]
        try:
            return _regex_extractor(re.compile(pattern, re.DOTALL))
        except re.error as err:
            raise ValueError(
                f"answer_format {answer_format!r}: {pattern!r} is not a valid regular expression: {err}"
            ) from None
    raise ValueError(
        f"answer_format must be one of {ANSWER_FORMATS} or a compiled re.Pattern, got {answer_format!r}"
    )


def format_pattern(answer_format: str | re.Pattern[str]) -> str | re.Pattern[str] | None:
    """A regular expression that a text with an answer in ``answer_format`` matches (for a ``Format``
    term); ``None`` for ``"text"``, where every non-blank text is an answer.

    Example:
        >>> format_pattern("tags")
        '<answer>.*?</answer>'
    """
    answer_extractor(answer_format)  # the same errors for a bad format
    if isinstance(answer_format, re.Pattern):
        return answer_format
    if answer_format == "tags":
        return TAGS_PATTERN
    if answer_format.startswith(REGEX_PREFIX):
        return answer_format[len(REGEX_PREFIX) :]
    return None


def _regex_extractor(pattern: re.Pattern[str]) -> Callable[[str], str | None]:
    def extract(text: str) -> str | None:
        matches = list(pattern.finditer(text))
        if not matches:
            return None
        return matches[-1].group(1 if pattern.groups else 0).strip()

    return extract


class ScoreAnswer(Scorer):
    """``dataset.score_answer(answer=<the answer in the text>, entry=<the prompt's entry>)``.

    The reward is exactly the dataset's: most datasets give 1.0 for a right answer and 0.0 or partial
    credit otherwise (each dataset defines its own). A text without an answer is scored as
    reasoning-gym's evaluation scores it, ``score_answer(answer=None, ...)``.

    Args:
        dataset: A reasoning-gym dataset (``reasoning_gym.create_dataset(...)``, a composite included:
            it forwards each entry to the dataset that generated it).
        answer_format: Where the answer is in the text: ``"tags"``, ``"text"``, ``"regex:<pattern>"``
            or a compiled pattern (see :func:`answer_extractor`).
        key: Metadata key of each prompt's dataset entry (``{"question", "answer", "metadata"}``).
        name: Term name in ``info["reward_terms"]``.

    Example:
        >>> dataset = reasoning_gym.create_dataset("chain_sum", size=1, seed=0)  # doctest: +SKIP
        >>> entry = dataset[0]  # doctest: +SKIP
        >>> ScoreAnswer(dataset).score_text(f"<answer>{entry['answer']}</answer>", entry)  # doctest: +SKIP
        1.0
    """

    def __init__(
        self,
        dataset: Any,
        *,
        answer_format: str | re.Pattern[str] = "tags",
        key: str = ENTRY_KEY,
        name: str = "score_answer",
    ):
        if not callable(getattr(dataset, "score_answer", None)):
            raise TypeError(
                "ScoreAnswer needs a reasoning-gym dataset (an object with score_answer(answer, entry), e.g. "
                f"reasoning_gym.create_dataset('chain_sum')), got {type(dataset).__name__}: {dataset!r}"
            )
        self.dataset = dataset
        self.answer_format = answer_format
        self.extract_answer = answer_extractor(answer_format)
        self.key = key
        self.name = name

    @property
    def format_pattern(self) -> str | re.Pattern[str] | None:
        """See :func:`format_pattern`."""
        return format_pattern(self.answer_format)

    def attach(self, ctx: ScorerContext) -> None:
        for i, prompt in enumerate(ctx.prompts):
            self.entry(prompt.metadata, f"prompt {i} ({prompt.text[:80]!r})")

    def entry(self, metadata: Mapping[str, Any], where: str) -> Mapping[str, Any]:
        """The dataset entry of a prompt's metadata.

        Raises:
            ValueError: The prompt has none (a prompt that is not from the dataset).
        """
        entry = metadata.get(self.key)
        if not isinstance(entry, Mapping) or "question" not in entry:
            raise ValueError(
                f"{self!r} scores each prompt's reasoning-gym entry (its {self.key!r} metadata: the dataset item "
                f"with 'question', 'answer' and 'metadata'), but {where} has {entry!r}; use prompts from "
                "textenv.reasoning_gym.reasoning_gym_prompts(dataset)"
            )
        return entry

    def score_text(self, text: str, entry: Mapping[str, Any]) -> float:
        """The dataset's score of one generated ``text`` for its ``entry``."""
        return self.dataset.score_answer(answer=self.extract_answer(text), entry=entry)

    def score(self, batch: EpisodeBatch) -> Sequence[float]:
        return [
            self.score_text(text, self.entry(meta, f"prompt {prompt[:80]!r}"))
            for prompt, text, meta in zip(batch.prompts, batch.texts, batch.metadata)
        ]

    def __repr__(self) -> str:
        return f"ScoreAnswer({type(self.dataset).__name__}, answer_format={self.answer_format!r})"
