"""Loading tokenizers and resolving the ids the env needs (EOS, padding)."""

from __future__ import annotations

import numbers
from collections.abc import Sequence

from transformers import AutoTokenizer, PreTrainedTokenizerBase

from textenv.loading import from_pretrained


def load_tokenizer(
    tokenizer: str | PreTrainedTokenizerBase, *, argument: str = "tokenizer"
) -> PreTrainedTokenizerBase:
    """Returns ``tokenizer`` itself, or loads a built-in name, local path or hub name with ``AutoTokenizer``.

    Remote code is never trusted here (``trust_remote_code=False``): pass a tokenizer object to use a
    custom class. See :func:`textenv.loading.from_pretrained` for names and errors.

    Raises:
        ValueError: A misspelled built-in name or a tokenizer that cannot be loaded (names ``argument``).
        TypeError: Neither a string nor a tokenizer.
    """
    if isinstance(tokenizer, PreTrainedTokenizerBase):
        return tokenizer
    if isinstance(tokenizer, str):
        return from_pretrained(AutoTokenizer, tokenizer, argument=argument)
    raise TypeError(
        f"tokenizer must be a name, a local path or a transformers tokenizer, got {type(tokenizer).__name__}"
    )


def resolve_eos_ids(
    tokenizer: PreTrainedTokenizerBase | None,
    eos_token_id: int | Sequence[int] | None,
    vocab_size: int,
    *,
    argument: str = "eos_token_id",
) -> tuple[int, ...]:
    """The EOS ids of an env: ``eos_token_id`` if given (int or list), else the tokenizer's.

    Raises:
        ValueError: no EOS anywhere, or an id outside ``[0, vocab_size)``.
        TypeError: an id that is not an integer.
    """
    if eos_token_id is None and tokenizer is not None:
        eos_token_id = tokenizer.eos_token_id
        if eos_token_id is None:
            raise ValueError(
                f"tokenizer {type(tokenizer).__name__} has no EOS token; pass eos_token_id=<id or list of ids>"
            )
    if isinstance(eos_token_id, numbers.Integral):
        raw: list[object] = [eos_token_id]
    elif isinstance(eos_token_id, Sequence) and not isinstance(eos_token_id, str):
        raw = list(eos_token_id)
    else:
        raise TypeError(f"{argument} must be an int or a list of ints, got {eos_token_id!r}")
    if not raw:
        raise ValueError(f"{argument} is an empty list; expected at least one id")
    ids = []
    for i in raw:
        if isinstance(i, bool) or not isinstance(i, numbers.Integral):
            raise TypeError(f"{argument} must be an int or a list of ints, got {eos_token_id!r}")
        if not 0 <= int(i) < vocab_size:
            raise ValueError(f"{argument} {i} is outside [0, vocab_size={vocab_size})")
        ids.append(int(i))
    return tuple(ids)


def resolve_pad_id(tokenizer: PreTrainedTokenizerBase, eos_ids: tuple[int, ...], vocab_size: int) -> int:
    """The id written into empty observation positions: the tokenizer's pad id, else the first EOS."""
    pad = tokenizer.pad_token_id
    return int(pad) if pad is not None and 0 <= pad < vocab_size else eos_ids[0]
