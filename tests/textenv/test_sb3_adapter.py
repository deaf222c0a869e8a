"""TextGenVecEnvAdapter: SB3's VecEnv API over the batched env, equal to DummyVecEnv of single envs."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.vector import AutoresetMode
from transformers import PreTrainedTokenizerFast

pytest.importorskip("stable_baselines3")
from stable_baselines3 import PPO
from stable_baselines3.common.vec_env import DummyVecEnv, VecMonitor

import textenv  # noqa: F401  (registers the ids)
from tests import builders
from tests.assertions import assert_same
from textenv.sb3 import TextGenVecEnvAdapter, row_info
from textenv.vector import TextGenVectorEnv

WORDS = ["the", "a", "cat", "dog", "sat", "ran", "on", "mat", "movie", "was", "good", "bad"]
PROMPTS = ["the cat sat", "a dog ran on the mat", "the movie was", "good"]
EOS = 1


@pytest.fixture(scope="module")
def word_tokenizer() -> PreTrainedTokenizerFast:
    """A word-level tokenizer over WORDS (EOS id 1)."""
    return builders.word_tokenizer(WORDS)


def good_words(prompt: str, text: str, references: list[str], meta: dict[str, Any]) -> float:
    return float(text.split().count("good")) - 0.1 * len(text.split())


def kwargs_for(tokenizer, **overrides: Any) -> dict[str, Any]:
    kwargs = {
        "tokenizer": tokenizer,
        "prompts": PROMPTS,
        "reward": good_words,
        "max_prompt_tokens": 6,
        "max_new_tokens": 5,
    }
    kwargs.update(overrides)
    return kwargs


@pytest.mark.parametrize("max_episode_steps", [None, 3], ids=["no-limit", "time-limit"])
def test_equals_dummy_vec_env_of_single_envs(word_tokenizer, max_episode_steps):
    kwargs = kwargs_for(word_tokenizer)
    limit = {} if max_episode_steps is None else {"max_episode_steps": max_episode_steps}
    adapter = TextGenVecEnvAdapter.make("TextGen-v0", num_envs=4, **limit, **kwargs)
    dummy = DummyVecEnv([lambda: gym.make("TextGen-v0", **limit, **kwargs) for _ in range(4)])
    assert adapter.observation_space == dummy.observation_space and adapter.action_space == dummy.action_space
    assert adapter.seed(3) == dummy.seed(3) == [3, 4, 5, 6]
    assert_same(adapter.reset(), dummy.reset())
    assert_same(adapter.reset_infos, dummy.reset_infos)
    rng = np.random.default_rng(0)
    ends = {"eos": 0, "length": 0, "truncated": 0}
    for t in range(30):
        actions = rng.integers(3, 15, size=4)
        actions[rng.random(4) < 0.25] = EOS
        out, expected = adapter.step(actions), dummy.step(actions)
        assert_same(out, expected, f"step {t}")
        assert_same(adapter.reset_infos, dummy.reset_infos, f"step {t} reset_infos")
        for info in out[3]:
            if info["TimeLimit.truncated"]:
                ends["truncated"] += 1
            elif "terminal_observation" in info:
                ends[info["finish_reason"]] += 1
    assert ends["eos"] > 2 and (ends["length"] > 2 or ends["truncated"] > 2), ends
    # Per-row options reach their rows only.
    adapter.set_options([{"prompt_index": 0}, {"prompt_index": 2}, {"prompt_index": 0}, {}])
    dummy.set_options([{"prompt_index": 0}, {"prompt_index": 2}, {"prompt_index": 0}, {}])
    assert_same(adapter.reset(), dummy.reset())
    assert_same(adapter.reset_infos, dummy.reset_infos)


def test_vec_monitor_and_ppo_run_on_the_adapter(word_tokenizer):
    adapter = TextGenVecEnvAdapter.make(
        "TextGen-v0", num_envs=4, **kwargs_for(word_tokenizer, max_new_tokens=4)
    )
    venv = VecMonitor(adapter)
    venv.seed(0)
    venv.reset()
    episodes = []
    for _ in range(12):
        *_, infos = venv.step(np.full(4, WORDS.index("good") + 3))
        episodes += [info["episode"] for info in infos if "episode" in info]
    assert len(episodes) == 12 and all(e["l"] == 4 for e in episodes)  # 4 tokens each: length cap
    assert episodes[0]["r"] == pytest.approx(4 - 0.4)  # good_words("good good good good")
    model = PPO(
        "MultiInputPolicy",
        venv,
        n_steps=8,
        batch_size=16,
        n_epochs=1,
        policy_kwargs={"net_arch": [16]},
        seed=0,
    )
    model.learn(total_timesteps=64)
    assert model.num_timesteps >= 64
    action, _ = model.predict(venv.reset(), deterministic=True)
    assert action.shape == (4,) and ((action >= 0) & (action < 15)).all()


def test_attribute_access(word_tokenizer):
    adapter = TextGenVecEnvAdapter.make(
        "TextGen-v0", num_envs=3, render_mode="ansi", **kwargs_for(word_tokenizer)
    )
    adapter.reset()
    assert adapter.get_attr("max_new_tokens") == [5, 5, 5]
    assert adapter.get_attr("max_new_tokens", indices=[2]) == [5]
    assert adapter.has_attr("tokenizer") and not adapter.has_attr("no_such_attribute")
    texts = adapter.env_method("render", indices=[0, 2])
    assert texts == [adapter.venv.render()[0], adapter.venv.render()[2]] and "\u2502" in texts[0]
    assert adapter.env_is_wrapped(gym.wrappers.TimeLimit) == [False, False, False]
    adapter.set_attr("observation_format", "numpy")
    with pytest.raises(ValueError, match="rows share one env"):
        adapter.set_attr("observation_format", "numpy", indices=[1])
    with pytest.raises(ValueError, match=r"env indices \[7\] are outside \[0, 3\)"):
        adapter.get_attr("max_new_tokens", indices=[7])


def test_rejects_envs_it_cannot_drive(word_tokenizer):
    with pytest.raises(ValueError, match=r"needs AutoresetMode\.SAME_STEP"):
        TextGenVecEnvAdapter(TextGenVectorEnv(num_envs=2, **kwargs_for(word_tokenizer)))
    torch_obs = TextGenVectorEnv(
        num_envs=2,
        autoreset_mode=AutoresetMode.SAME_STEP,
        observation_format="torch",
        **kwargs_for(word_tokenizer),
    )
    with pytest.raises(ValueError, match="numpy observations"):
        TextGenVecEnvAdapter(torch_obs)
    with pytest.raises(TypeError, match=r"gymnasium\.vector\.VectorEnv"):
        TextGenVecEnvAdapter(gym.make("TextGen-v0", **kwargs_for(word_tokenizer)))


def test_row_info_unpacks_vector_infos():
    info = {
        "text": np.array(["a", None], dtype=object),
        "_text": np.array([True, False]),
        "num_tokens": np.array([3, 0]),
        "_num_tokens": np.array([True, False]),
        "reward_terms": {"x": np.array([0.5, 0.0]), "_x": np.array([True, False])},
        "_reward_terms": np.array([True, False]),
    }
    assert row_info(info, 0) == {"text": "a", "num_tokens": 3, "reward_terms": {"x": 0.5}}
    assert type(row_info(info, 0)["num_tokens"]) is int
    assert row_info(info, 1) == {}
