"""Shared fixtures of the scorer tests: the built-in tokenizer and models, and a forced-episode driver."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from textenv import TextGenEnv, assets


@pytest.fixture(scope="session")
def tokenizer():
    return AutoTokenizer.from_pretrained(assets.path("tiny-tokenizer"))


@pytest.fixture(scope="session")
def tiny_lm():
    return AutoModelForCausalLM.from_pretrained(assets.path("tiny-lm"), use_safetensors=True).eval()


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


def random_gpt2(vocab_size: int, *, seed: int = 0, layers: int = 2, width: int = 64):
    """A small random GPT-2 with the given vocabulary (a policy that differs from the reference)."""
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(seed)
    config = GPT2Config(
        vocab_size=vocab_size,
        n_embd=width,
        n_layer=layers,
        n_head=2,
        n_positions=128,
        bos_token_id=0,
        eos_token_id=0,
    )
    return GPT2LMHeadModel(config).eval()
