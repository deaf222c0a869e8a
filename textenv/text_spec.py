"""``TextSpec``: the public description of an env's text setup, for agents, benchmarks and other trainers.

Every textenv env (single or vector, wrapped or not) exposes it as ``env.unwrapped.text_spec``, as
Gymnasium exposes ``spec`` and the spaces: the tokenizer, the vocabulary size, the pad and EOS ids, the
prompt and generation lengths, the prompt source, and how prompts become observation ids
(:meth:`TextSpec.encode_prompts`, the env's own encoding, chat templates included). A trainer needs
nothing else to build a policy that fits the env::

    spec = textenv.text_spec(env)
    ids, mask = spec.encode_prompts(["The movie was"])   # (1, P) left-padded, as the env does it
    assert policy.config.vocab_size == spec.vocab_size
"""

from __future__ import annotations

import numbers
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from transformers import PreTrainedTokenizerBase

from textenv.lm import resolve_device
from textenv.multiturn import check_responder
from textenv.options import TextOptions
from textenv.prompts import Prompt, load_prompts
from textenv.tokenization import load_tokenizer, resolve_eos_ids, resolve_pad_id


def check_positive_int(name: str, value: object) -> int:
    """``value`` as an int >= 1 (NumPy integers included).

    Raises:
        TypeError: Not an integer (``bool`` included).
        ValueError: Smaller than 1.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}: {value!r}")
    if value < 1:
        raise ValueError(f"{name} must be >= 1, got {value}")
    return int(value)


@dataclass(frozen=True)
class TextSpec:
    """What an env's text setup is, resolved: read it, never write it.

    Attributes:
        tokenizer: The env's tokenizer.
        vocab_size: Width of the action space (``>= len(tokenizer)``): the policy's logits width.
        pad_token_id: The id in empty observation positions (the tokenizer's pad, else the first EOS).
        eos_token_ids: The ids that end an episode (a multi-turn env: a policy turn).
        max_prompt_tokens: P, the prompt positions of an observation.
        max_new_tokens: T, the positions after the prompt.
        prompts: The prompt source, as records (``reset(options={"prompt_index": i})`` picks ``prompts[i]``).
        chat_template: ``"auto"``, ``True`` or ``False``: which prompts the tokenizer's chat template renders.
        device: Where the env's tensors live.
        multi_turn: Whether the env has a responder (the environment speaks between the policy's turns:
            observations then hold inserted tokens, which ``policy_mask`` leaves out).
        max_turns: The most policy turns of an episode (``None``: no limit).
        end_of_turn_ids: The ids that end a policy turn (multi-turn; ``()`` in a single-turn env).
        stop_strings: Texts that end a policy turn (multi-turn).
    """

    tokenizer: PreTrainedTokenizerBase
    vocab_size: int
    pad_token_id: int
    eos_token_ids: tuple[int, ...]
    max_prompt_tokens: int
    max_new_tokens: int
    prompts: tuple[Prompt, ...]
    chat_template: bool | str
    device: torch.device
    multi_turn: bool = False
    max_turns: int | None = None
    end_of_turn_ids: tuple[int, ...] = ()
    stop_strings: tuple[str, ...] = ()

    @classmethod
    def from_options(cls, options: TextOptions) -> TextSpec:
        """Resolves the options: loads the tokenizer and the prompts, finds the ids, checks the sizes.

        Raises:
            TypeError, ValueError: An option of the wrong type or out of range (named).
        """
        from textenv import assets

        P = check_positive_int("max_prompt_tokens", options.max_prompt_tokens)
        T = check_positive_int("max_new_tokens", options.max_new_tokens)
        chat_template = options.chat_template
        if not (isinstance(chat_template, bool) or chat_template == "auto"):
            raise ValueError(f"chat_template must be True, False or 'auto', got {chat_template!r}")
        device = resolve_device(options.device)
        tokenizer = load_tokenizer(
            assets.path("tiny-tokenizer") if options.tokenizer is None else options.tokenizer
        )
        vocab_size = _vocab_size(tokenizer, options.vocab_size)
        eos = resolve_eos_ids(tokenizer, options.eos_token_id, vocab_size)
        source = assets.path("review-prompts") if options.prompts is None else options.prompts
        prompts = tuple(load_prompts(source, column=options.prompt_column))
        multi_turn = check_responder(options.responder) is not None
        return cls(
            tokenizer=tokenizer,
            vocab_size=vocab_size,
            pad_token_id=resolve_pad_id(tokenizer, eos, vocab_size),
            eos_token_ids=eos,
            max_prompt_tokens=P,
            max_new_tokens=T,
            prompts=prompts,
            chat_template=chat_template,
            device=device,
            multi_turn=multi_turn,
            **_turn_options(options, multi_turn, eos, vocab_size),
        )

    @property
    def length(self) -> int:
        """Observation length ``P + T``."""
        return self.max_prompt_tokens + self.max_new_tokens

    def encode_prompts(
        self, prompts: Sequence[Prompt | str], *, warn: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Prompts as the env writes them into observations: left-padded ``(N, P)`` ids and mask.

        A chat (a record with ``messages``, or every prompt with ``chat_template=True``) is rendered by
        the tokenizer's chat template with the generation prompt, tokenised by the template itself; a
        plain prompt is tokenised as text. A prompt longer than P keeps its last P tokens.

        Args:
            prompts: Records or texts.
            warn: Warn once about prompts that were cut to P tokens.

        Returns:
            ``(ids, mask)``, int64 on :attr:`device`.

        Raises:
            ValueError: A prompt with no tokens, a token id outside the vocabulary, or a chat without a
                chat template.
        """
        records = [Prompt(text=p) if isinstance(p, str) else p for p in prompts]
        P = self.max_prompt_tokens
        ids = torch.full((len(records), P), self.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(records), P), dtype=torch.long)
        truncated = 0
        for i, row in enumerate(self._token_ids(records)):
            if not row:
                raise ValueError(
                    f"prompt {i} ({records[i].text!r}) tokenises to no tokens; expected at least one"
                )
            if max(row) >= self.vocab_size:
                raise ValueError(f"prompt {i} has token id {max(row)} >= vocab_size={self.vocab_size}")
            truncated += len(row) > P
            row = row[-P:]
            ids[i, P - len(row) :] = torch.tensor(row)
            mask[i, P - len(row) :] = 1
        if warn and truncated:
            warnings.warn(
                f"{truncated} of {len(records)} prompts are longer than max_prompt_tokens={P}; "
                f"they keep their last {P} tokens",
                stacklevel=4,
            )
        return ids.to(self.device), mask.to(self.device)

    def chat(self, prompt: Prompt) -> list[dict[str, str]] | None:
        """The messages the chat template renders for ``prompt``, or ``None`` for a plain-text prompt."""
        if self.chat_template is False or (self.chat_template == "auto" and not prompt.messages):
            return None
        return [dict(m) for m in prompt.messages] or [{"role": "user", "content": prompt.text}]

    def _token_ids(self, prompts: Sequence[Prompt]) -> list[list[int]]:
        """Each prompt's ids: its chat rendered by the chat template (the template's own ids), or its text."""
        chats = [self.chat(p) for p in prompts]
        plain = [i for i, chat in enumerate(chats) if chat is None]
        ids: list[list[int]] = [[] for _ in prompts]
        if plain:
            # verbose=False: prompts longer than the tokenizer's limit are expected (they keep their tail).
            texts = [prompts[i].text for i in plain]
            for i, row in zip(plain, self.tokenizer(texts, verbose=False)["input_ids"]):
                ids[i] = row
        for i, chat in enumerate(chats):
            if chat is not None:
                ids[i] = self.render_chat(chat, where=f"prompt {i} ({prompts[i].text!r})")
        return ids

    def render_chat(self, messages: Sequence[dict[str, str]], *, where: str = "a chat") -> list[int]:
        """The token ids of ``messages`` rendered by the tokenizer's chat template with the generation prompt.

        Raises:
            ValueError: The tokenizer has no chat template.
        """
        if not getattr(self.tokenizer, "chat_template", None):
            raise ValueError(
                f"{where} is a chat to render with the tokenizer's chat template, but tokenizer "
                f"{type(self.tokenizer).__name__} ({self.tokenizer.name_or_path!r}) has none; set "
                "tokenizer.chat_template, use an instruction-tuned model's tokenizer, or pass "
                "chat_template=False to use the plain prompt text"
            )
        # Tokenised by the template itself: no decode and re-encode, so no drift in the ids.
        rendered: Any = self.tokenizer.apply_chat_template(
            list(messages), tokenize=True, add_generation_prompt=True, return_dict=False
        )
        return [int(t) for t in rendered]


def _turn_options(
    options: TextOptions, multi_turn: bool, eos: tuple[int, ...], vocab_size: int
) -> dict[str, Any]:
    """``max_turns``, ``end_of_turn_ids`` and ``stop_strings``, checked (they need a responder)."""
    given = [n for n in ("max_turns", "end_of_turn") if getattr(options, n) is not None]
    given += ["stop_strings"] if options.stop_strings else []
    if not multi_turn:
        if given:
            raise ValueError(f"{given} only apply with a responder= (a multi-turn env); got no responder")
        return {}
    max_turns = None if options.max_turns is None else check_positive_int("max_turns", options.max_turns)
    if options.end_of_turn is None:
        end_of_turn = eos
    elif (
        isinstance(options.end_of_turn, Sequence)
        and not isinstance(options.end_of_turn, str)
        and not options.end_of_turn
    ):
        end_of_turn = ()
    else:
        end_of_turn = resolve_eos_ids(None, options.end_of_turn, vocab_size, argument="end_of_turn")  # type: ignore[arg-type]
    stops = options.stop_strings
    if (
        isinstance(stops, str)
        or not isinstance(stops, Sequence)
        or not all(isinstance(t, str) and t for t in stops)
    ):
        raise TypeError(f"stop_strings must be a list of non-empty strings, got {stops!r}")
    if not end_of_turn and not stops:
        raise ValueError(
            "end_of_turn=[] and no stop_strings: the policy's turns would never end, so the responder would never "
            "speak; give end-of-turn ids or stop strings"
        )
    return {"max_turns": max_turns, "end_of_turn_ids": tuple(end_of_turn), "stop_strings": tuple(stops)}


def _vocab_size(tokenizer: PreTrainedTokenizerBase, vocab_size: int | None) -> int:
    tokenizer_size = len(tokenizer)
    if vocab_size is None:
        return tokenizer_size
    vocab_size = check_positive_int("vocab_size", vocab_size)
    if vocab_size < tokenizer_size:
        raise ValueError(
            f"vocab_size={vocab_size} is smaller than the tokenizer's {tokenizer_size} tokens; "
            "expected the policy's logits width, at least len(tokenizer)"
        )
    return vocab_size


def text_spec(env: Any) -> TextSpec:
    """The :class:`TextSpec` of a textenv env: single or vector, through any Gymnasium wrappers.

    Raises:
        TypeError: ``env`` is not a textenv env.

    Example:
        >>> import gymnasium as gym, textenv
        >>> textenv.text_spec(gym.make("TextGen-v0", max_new_tokens=8)).max_new_tokens
        8
    """
    spec = getattr(getattr(env, "unwrapped", env), "text_spec", None)
    if not isinstance(spec, TextSpec):
        raise TypeError(
            f"env must be a textenv TextGenEnv or TextGenVectorEnv (possibly wrapped), got {type(env).__name__}"
        )
    return spec
