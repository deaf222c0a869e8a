"""TextSpec and TextOptions: the public description of an env's text setup, and its one set of options."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch

import textenv
from textenv import TextGenEnv, TextOptions, TextSpec, text_spec
from textenv.options import OPTION_NAMES
from textenv.vector import TextGenVectorEnv


def test_every_env_takes_the_same_options_and_refuses_others():
    assert set(OPTION_NAMES) == {
        "tokenizer",
        "prompts",
        "reward",
        "max_prompt_tokens",
        "max_new_tokens",
        "vocab_size",
        "eos_token_id",
        "device",
        "prompt_column",
        "chat_template",
        "responder",
        "max_turns",
        "end_of_turn",
        "stop_strings",
    }
    for make in (TextGenEnv, TextGenVectorEnv, lambda **kw: gym.make("TextGen-Copy-v0", **kw)):
        with pytest.raises(
            TypeError, match=r"unknown keyword argument\(s\) \['max_tokens'\]; valid options are"
        ):
            make(max_tokens=8)


def test_text_spec_describes_the_env_through_wrappers_and_vector_envs():
    env = gym.make("TextGen-Copy-v0", max_new_tokens=7)  # a wrapped env
    spec = text_spec(env)
    assert isinstance(spec, TextSpec) and spec is env.unwrapped.text_spec
    assert (spec.max_prompt_tokens, spec.max_new_tokens, spec.length) == (24, 7, 31)
    assert spec.vocab_size == len(spec.tokenizer) and spec.eos_token_ids == (spec.tokenizer.eos_token_id,)
    assert spec.prompts[0].references  # the prompt source, as records
    vec = gym.make_vec("TextGen-Copy-v0", num_envs=2, vectorization_mode="vector_entry_point")
    assert text_spec(vec).prompts == spec.prompts
    with pytest.raises(TypeError, match="textenv TextGenEnv or TextGenVectorEnv"):
        text_spec(gym.make("CartPole-v1"))


def test_encode_prompts_is_what_the_env_writes_into_observations():
    env = TextGenEnv(prompts=["The movie was", "I liked the film a lot"], max_prompt_tokens=4)
    spec = env.text_spec
    for i in range(2):
        obs, _ = env.reset(options={"prompt_index": i})
        ids, mask = spec.encode_prompts([spec.prompts[i]])
        np.testing.assert_array_equal(obs["input_ids"][:4], ids[0].numpy())
        np.testing.assert_array_equal(obs["attention_mask"][:4], mask[0].numpy())
    ids, mask = spec.encode_prompts(["I liked the film a lot"])  # texts too; long ones keep their tail
    assert int(mask.sum()) == 4 and ids.dtype == torch.long


def test_options_are_validated_once_and_named():
    with pytest.raises(ValueError, match="max_new_tokens must be >= 1, got 0"):
        TextSpec.from_options(TextOptions(max_new_tokens=0))
    with pytest.raises(ValueError, match="chat_template must be True, False or 'auto'"):
        TextGenEnv(chat_template="yes")
    assert TextOptions(max_new_tokens=3).replace(max_prompt_tokens=5).as_dict()["max_prompt_tokens"] == 5
    assert textenv.TextOptions is TextOptions
