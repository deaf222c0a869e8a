"""Argument types shared by ``python -m agents.train`` and ``textenv-compare``.

Each is an ``argparse`` ``type=``: a bad value becomes argparse's own one-line error naming the flag,
``argument --episodes: expected an int >= 1, got '0'``, and exit code 2.

Example:
    >>> parser = argparse.ArgumentParser()
    >>> _ = parser.add_argument("--episodes", type=int_at_least(1))
    >>> parser.parse_args(["--episodes", "8"]).episodes
    8
"""

from __future__ import annotations

import argparse
import json
import math
import os
from collections.abc import Callable
from typing import Any

__all__ = ["env_id", "float_above", "int_at_least", "json_object", "output_dir", "textenv_ids"]


def int_at_least(minimum: int) -> Callable[[str], int]:
    """An argparse type: an int ``>= minimum``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an int >= {minimum}, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected an int >= {minimum}, got {text!r}")
        return value

    parse.__name__ = "int"
    return parse


def float_above(minimum: float) -> Callable[[str], float]:
    """An argparse type: a finite float ``> minimum``."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number > {minimum:g}, got {text!r}") from None
        if not math.isfinite(value) or value <= minimum:
            raise argparse.ArgumentTypeError(f"expected a finite number > {minimum:g}, got {text!r}")
        return value

    parse.__name__ = "float"
    return parse


def json_object(text: str) -> dict[str, Any]:
    """An argparse type: a JSON object such as ``'{"max_new_tokens": 8}'``."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise argparse.ArgumentTypeError(
            f"expected a JSON object such as '{{\"max_new_tokens\": 8}}', got {text!r} ({err.msg})"
        ) from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(
            f"expected a JSON object such as '{{\"max_new_tokens\": 8}}', got {text!r}"
        )
    return value


def textenv_ids() -> list[str]:
    """The registered textenv ids, sorted."""
    import gymnasium as gym

    import textenv  # noqa: F401  (registers the env ids)

    return sorted(k for k in gym.registry if k.startswith("TextGen"))


def env_id(text: str) -> str:
    """An argparse type: a registered textenv id (the error lists them, on one line)."""
    ids = textenv_ids()
    if text not in ids:
        raise argparse.ArgumentTypeError(f"unknown env {text!r}; registered textenv ids: {', '.join(ids)}")
    return text


def output_dir(text: str) -> str:
    """An argparse type: a directory to write into (it may not exist yet; it may not be a file)."""
    if not text.strip():
        raise argparse.ArgumentTypeError(f"expected a directory, got the blank {text!r}")
    if os.path.exists(text) and not os.path.isdir(text):
        raise argparse.ArgumentTypeError(f"{text!r} is a file, not a directory")
    parent = os.path.dirname(os.path.abspath(text))
    while not os.path.exists(parent):  # the nearest existing ancestor must be a directory
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent):
        raise argparse.ArgumentTypeError(f"{text!r} cannot be created: {parent!r} is a file")
    return text
