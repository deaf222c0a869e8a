"""Forced episodes for the scorer tests: an env plays a given text, token by token, and reports its return."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from textenv import TextGenEnv


def force_episode(
    env: TextGenEnv, text: str, *, prompt_index: int = 0, eos: bool = True
) -> tuple[float, dict[str, Any]]:
    """Plays one episode whose actions are the tokens of ``text`` (then EOS); returns (return, end info)."""
    tok = env.tokenizer
    ids = tok(text, add_special_tokens=False)["input_ids"] + ([tok.eos_token_id] if eos else [])
    env.reset(seed=0, options={"prompt_index": prompt_index})
    total, info, terminated = 0.0, {}, False
    for i, token in enumerate(ids):
        assert not terminated, f"episode ended after {i} of {len(ids)} tokens"
        _, reward, terminated, _, info = env.step(token)
        total += reward
    assert terminated and info["text"] == text, (terminated, info.get("text"), text)
    return total, info


def forced_env(tokenizer, texts: Sequence[str], **kwargs: Any) -> TextGenEnv:
    """An env whose T fits the longest of ``texts`` plus EOS."""
    longest = max(len(tokenizer(t, add_special_tokens=False)["input_ids"]) for t in texts)
    kwargs.setdefault("max_new_tokens", longest + 1)
    kwargs.setdefault("max_prompt_tokens", 16)
    return TextGenEnv(tokenizer=tokenizer, **kwargs)
