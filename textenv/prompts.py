"""Prompt sources: lists of strings or dicts, ``.txt``/``.jsonl``/``.csv`` files, ``datasets.Dataset``.

Every source becomes a list of :class:`Prompt` records, validated once at env construction::

    load_prompts(["The movie was", "I liked"])
    load_prompts([{"prompt": "Repeat: hi", "references": ["hi"], "lang": "en"}])
    load_prompts([{"messages": [{"role": "user", "content": "2+3="}], "answer": "5"}])  # a chat
    load_prompts("prompts.jsonl")
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PROMPT_KEY = "prompt"
REFERENCES_KEY = "references"
MESSAGES_KEY = "messages"
FILE_FORMATS = (".txt", ".jsonl", ".csv")


@dataclass(frozen=True)
class Prompt:
    """One prompt record.

    Attributes:
        text: The prompt text.
        references: Reference texts for reference-based scorers (BLEU, ROUGE).
        metadata: Every other key of the record; scorers receive it unchanged.
        messages: A chat (``{"role", "content"}`` dicts) that the env renders with the tokenizer's
            chat template; ``text`` is then the plain prompt that scorers see (the record's
            ``prompt``, else the content of its last user message).
    """

    text: str
    references: tuple[str, ...] = ()
    metadata: dict[str, Any] = field(default_factory=dict)
    messages: tuple[dict[str, str], ...] = ()


def load_prompts(source: object, *, column: str = PROMPT_KEY) -> list[Prompt]:
    """Reads a prompt source into validated :class:`Prompt` records.

    Args:
        source: A list of strings, a list of dicts with a ``column`` key (``references`` is a
            string or list of strings; ``messages`` a chat, which may stand in for ``column``; other
            keys become metadata), a path to a ``.txt`` (one
            prompt per line), ``.jsonl`` or ``.csv`` file, or a ``datasets.Dataset``.
        column: The key (or dataset/CSV column) that holds the prompt text.

    Returns:
        The prompt records, in source order.

    Raises:
        ValueError: an empty source, a missing file, an unknown file format or a bad record.
        TypeError: a source or record of the wrong type.
    """
    if isinstance(source, (str, os.PathLike)):
        records: Sequence[object] = _read_file(Path(source), column)
    elif _is_dataset(source):
        if column not in source.column_names:  # type: ignore[attr-defined]
            raise ValueError(
                f"dataset has no column {column!r}; its columns are {source.column_names}"  # type: ignore[attr-defined]
            )
        records = list(source)  # type: ignore[call-overload]
    elif isinstance(source, Sequence):
        records = source
    else:
        raise TypeError(
            "prompts must be a list of strings or dicts, a path to a .txt/.jsonl/.csv file or a "
            f"datasets.Dataset, got {type(source).__name__}"
        )
    if len(records) == 0:
        raise ValueError(f"the prompt source {_describe(source)} is empty; expected at least one prompt")
    return [_to_prompt(r, i, column) for i, r in enumerate(records)]


def _describe(source: object) -> str:
    return repr(str(source)) if isinstance(source, (str, os.PathLike)) else f"({type(source).__name__})"


def _is_dataset(source: object) -> bool:
    return type(source).__name__ in {"Dataset", "IterableDataset"} and hasattr(source, "column_names")


def _read_file(path: Path, column: str) -> list[object]:
    if not path.is_file():
        raise ValueError(f"prompt file {str(path)!r} does not exist")
    suffix = path.suffix.lower()
    if suffix not in FILE_FORMATS:
        raise ValueError(
            f"prompt file {str(path)!r} has unknown format {suffix!r}; expected one of {FILE_FORMATS}"
        )
    with path.open(encoding="utf-8", newline="") as f:
        if suffix == ".txt":
            return [line.rstrip("\r\n") for line in f if line.strip()]
        if suffix == ".csv":
            rows = list(csv.DictReader(f))
            if rows and column not in rows[0]:
                raise ValueError(
                    f"CSV file {str(path)!r} has no column {column!r}; columns are {list(rows[0])}"
                )
            return rows  # type: ignore[return-value]
        records = []
        for n, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as err:
                raise ValueError(f"line {n} of {str(path)!r} is not valid JSON: {err}") from err
        return records


def _to_prompt(record: object, index: int, column: str) -> Prompt:
    messages: tuple[dict[str, str], ...] = ()
    refs: tuple[str, ...] = ()
    if isinstance(record, str):
        text, refs, meta = record, (), {}
    elif isinstance(record, Mapping):
        # None: a dataset row of a column that other rows fill
        messages = _messages(record[MESSAGES_KEY], index) if record.get(MESSAGES_KEY) is not None else ()
        if column not in record and not messages:
            raise ValueError(
                f"prompt record {index} has no {column!r} key (nor {MESSAGES_KEY!r}): {dict(record)!r}"
            )
        meta = {k: v for k, v in record.items() if k not in (column, REFERENCES_KEY, MESSAGES_KEY)}
        text = record[column] if column in record else _user_text(messages)
        refs = _references(record.get(REFERENCES_KEY), index)
    else:
        raise TypeError(
            f"prompt record {index} must be a string or a dict, got {type(record).__name__}: {record!r}"
        )
    if not isinstance(text, str):
        raise TypeError(f"prompt {index} must be a string, got {type(text).__name__}: {text!r}")
    if not text.strip():
        raise ValueError(f"prompt {index} is empty ({text!r}); expected non-blank text")
    return Prompt(text=text, references=refs, metadata=dict(meta), messages=messages)


def _messages(value: object, index: int) -> tuple[dict[str, str], ...]:
    example = '[{"role": "user", "content": "2+3="}]'
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence) or not value:
        raise TypeError(
            f"messages of prompt {index} must be a non-empty list such as {example}, got {value!r}"
        )
    for m in value:
        if (
            not isinstance(m, Mapping)
            or not isinstance(m.get("role"), str)
            or not isinstance(m.get("content"), str)
        ):
            raise TypeError(
                f"messages of prompt {index} must be dicts with string 'role' and 'content', got {m!r}; "
                f"e.g. {example}"
            )
    return tuple({"role": m["role"], "content": m["content"]} for m in value)


def _user_text(messages: tuple[dict[str, str], ...]) -> str:
    """The plain prompt of a chat: its last user message (else its last message)."""
    users = [m["content"] for m in messages if m["role"] == "user"]
    return users[-1] if users else messages[-1]["content"]


def _references(value: object, index: int) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    if isinstance(value, Sequence) and all(isinstance(v, str) for v in value):
        return tuple(value)
    raise TypeError(f"references of prompt {index} must be a string or a list of strings, got {value!r}")
