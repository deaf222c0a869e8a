"""Shared checks of reference-based scorers (BLEU, ROUGE): every prompt must carry references."""

from __future__ import annotations

from collections.abc import Sequence

from textenv.prompts import Prompt


def require_references(scorer: str, prompts: Sequence[Prompt]) -> None:
    """Raises a ValueError naming the first prompt that has no reference text.

    Args:
        scorer: The scorer's name, for the message.
        prompts: The env's prompt records.

    Raises:
        ValueError: A prompt without references.
    """
    for i, prompt in enumerate(prompts):
        if not prompt.references:
            raise ValueError(
                f"{scorer} compares generations with references, but prompt {i} ({prompt.text!r}) has none; "
                "give every prompt a 'references' entry (a string or a list of strings), e.g. "
                "prompts=[{'prompt': 'Repeat: hi =>', 'references': ['hi']}]"
            )


def episode_references(scorer: str, prompt: str, references: Sequence[str]) -> Sequence[str]:
    """The references of one finished episode; an ad-hoc prompt (``reset(options={"prompt": ...})``) has none.

    Raises:
        ValueError: No references.
    """
    if not references:
        raise ValueError(f"{scorer} needs references, but prompt {prompt!r} has none")
    return references
