"""``TextOptions``: the keyword arguments every textenv env takes, defined once.

:class:`~textenv.TextGenEnv`, :class:`~textenv.vector.TextGenVectorEnv`, every task factory and
``gymnasium.make`` / ``gymnasium.make_vec`` take these keywords; the envs add only their own
(``render_mode``; the vector env's ``num_envs``, ``autoreset_mode``, ``observation_format`` and
``max_episode_steps``). A new env option is one field here.

Example:
    >>> options = TextOptions.from_kwargs({"max_new_tokens": 8})
    >>> options.max_new_tokens, options.max_prompt_tokens
    (8, 16)
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from transformers import PreTrainedTokenizerBase

DEFAULT_MAX_PROMPT_TOKENS = 16
DEFAULT_MAX_NEW_TOKENS = 24


@dataclass(frozen=True)
class TextOptions:
    """The text setup of an env, as given (validated and resolved by :class:`~textenv.core.TextGenCore`)."""

    tokenizer: str | PreTrainedTokenizerBase | None = None
    """Name, local path or tokenizer object (default: the built-in tiny tokenizer)."""

    prompts: object = None
    """Strings, dicts with ``"prompt"`` (and ``"references"``, ``"messages"``, extra keys as metadata), a
    ``.txt``/``.jsonl``/``.csv`` path or a ``datasets.Dataset`` (default: built-in review openings)."""

    reward: object = None
    """A scorer, a callable ``fn(prompt, text, references, meta) -> float`` or a string spec such as
    ``"rouge"`` or ``"sentiment + kl:tiny-lm:0.05"`` (default: the built-in sentiment reward model; with a
    ``responder``: none, the responder's rewards only)."""

    max_prompt_tokens: int = DEFAULT_MAX_PROMPT_TOKENS
    """P, the prompt positions of the observation (a longer prompt keeps its last P tokens)."""

    max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS
    """T, the episode's token budget: the positions after the prompt (generated tokens, and in a
    multi-turn env the environment's inserted replies too; a reply that does not fit ends the episode
    with ``finish_reason="length"``, recorded in ``info["turns"]`` but not inserted)."""

    vocab_size: int | None = None
    """Action-space width (default ``len(tokenizer)``); set it to the policy's logits width when the
    model pads its vocabulary."""

    eos_token_id: int | Sequence[int] | None = None
    """EOS id or ids (default: the tokenizer's); an EOS action ends the episode (in a multi-turn env:
    the policy's turn)."""

    device: str | torch.device = "cpu"
    """``"cpu"``, ``"cuda"``, ``"cuda:N"`` or ``"auto"`` (CUDA when present): where the rows' tensors
    and model-based scorers live."""

    prompt_column: str = "prompt"
    """Key (or dataset/CSV column) of the prompt text in dict, CSV and dataset sources."""

    chat_template: bool | str = "auto"
    """``"auto"`` renders prompts that hold ``messages`` with the tokenizer's chat template (the
    observation holds the template's token ids), ``True`` every prompt (a plain one as a single user
    message), ``False`` none; scorers always get the plain prompt text."""

    responder: object = None
    """The environment's side of a multi-turn conversation: a callable ``responder(episode) -> Reply``
    (or an object with ``respond`` and optionally ``reset``), called when the policy's turn ends; its
    reply's tokens are appended to the observation (:mod:`textenv.multiturn`). ``None``: single-turn,
    the episode ends at EOS or the length cap."""

    max_turns: int | None = None
    """With a responder: the episode ends after this many policy turns (``None``: when the responder or
    the token budget ends it)."""

    end_of_turn: int | Sequence[int] | None = None
    """With a responder: the token ids that end the policy's turn (default: the EOS ids). An empty list
    leaves turn ends to ``stop_strings``; EOS ids that are not end-of-turn ids end the episode."""

    stop_strings: Sequence[str] = ()
    """With a responder: the policy's turn also ends when its text ends with one of these (``"</call>"``)."""

    @classmethod
    def from_kwargs(cls, kwargs: Mapping[str, Any], *, owner: str = "TextGenEnv") -> TextOptions:
        """Options from keyword arguments, refusing unknown names.

        Raises:
            TypeError: A keyword that is not an option (the message lists the valid ones).
        """
        names = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(kwargs) - set(names))
        if unknown:
            raise TypeError(f"{owner} got unknown keyword argument(s) {unknown}; valid options are {names}")
        return cls(**kwargs)

    def replace(self, **changes: Any) -> TextOptions:
        """A copy with ``changes`` applied (same checks as :meth:`from_kwargs`)."""
        return TextOptions.from_kwargs({**self.as_dict(), **changes})

    def as_dict(self) -> dict[str, Any]:
        """The options as keyword arguments (shallow: objects are not copied)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}


OPTION_NAMES: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(TextOptions))
"""The names of every option, in declaration order."""
