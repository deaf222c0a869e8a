"""TextGenVectorEnv: equal to a SyncVectorEnv of single TextGenEnvs, in every autoreset mode."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.vector import AutoresetMode, SyncVectorEnv
from transformers import PreTrainedTokenizerFast

import textenv  # noqa: F401  (registers the ids)
from tests import builders
from tests.assertions import assert_same
from textenv import TextGenEnv
from textenv.scorers import Callable, KLPenalty
from textenv.vector import TextGenVectorEnv

WORDS = [
    "the",
    "a",
    "cat",
    "dog",
    "bird",
    "sat",
    "ran",
    "on",
    "under",
    "mat",
    "log",
    "movie",
    "film",
    "was",
    "is",
    "very",
    "good",
    "bad",
    "great",
    "awful",
]
PROMPTS = [
    "the cat sat",
    "a dog ran on the mat",
    "the movie was",
    "film",
    "the bird sat on a log",
    "very good",
]
EOS = 1
MODES = [AutoresetMode.NEXT_STEP, AutoresetMode.SAME_STEP, AutoresetMode.DISABLED]


@pytest.fixture(scope="module")
def word_tokenizer() -> PreTrainedTokenizerFast:
    """A word-level tokenizer over WORDS (EOS id 1): every word one token, so the tests script actions."""
    return builders.word_tokenizer(WORDS)


def text_length(prompt: str, text: str, references: list[str], meta: dict[str, Any]) -> float:
    return float(len(text))


def prompt_overlap(prompt: str, text: str, references: list[str], meta: dict[str, Any]) -> float:
    return float(len(set(prompt.split()) & set(text.split()))) / 3


def env_kwargs(tokenizer, **overrides: Any) -> dict[str, Any]:
    # Two terms, so infos carry a nested reward_terms dict with two keys.
    kwargs = {
        "tokenizer": tokenizer,
        "prompts": PROMPTS,
        "reward": Callable(text_length) + 0.5 * Callable(prompt_overlap),
        "max_prompt_tokens": 6,
        "max_new_tokens": 5,
    }
    kwargs.update(overrides)
    return kwargs


def make_pair(
    tokenizer, num_envs: int, mode: AutoresetMode, **overrides: Any
) -> tuple[gym.vector.VectorEnv, ...]:
    kwargs = env_kwargs(tokenizer, **overrides)
    ours = gym.make_vec("TextGen-v0", num_envs=num_envs, autoreset_mode=mode, **kwargs)
    sync = gym.make_vec(
        "TextGen-v0",
        num_envs=num_envs,
        vectorization_mode="sync",
        vector_kwargs={"autoreset_mode": mode},
        **kwargs,
    )
    return ours, sync


def scripted_actions(rng: np.random.Generator, num_envs: int, vocab: int) -> np.ndarray:
    """Random words with EOS 30% of the time, so episodes end by EOS and by length at different steps."""
    actions = rng.integers(3, vocab, size=num_envs)
    actions[rng.random(num_envs) < 0.3] = EOS
    return actions


def run_both(ours, sync, steps: int, *, seed: object, action_seed: int = 0) -> dict[str, int]:
    """Steps both envs with the same actions, comparing every output; returns how episodes ended."""
    assert_same(ours.reset(seed=seed), sync.reset(seed=seed))
    rng = np.random.default_rng(action_seed)
    vocab = int(ours.single_action_space.n)
    counts = {"eos": 0, "length": 0, "truncated": 0, "end_steps": set()}
    disabled = ours.metadata["autoreset_mode"] is AutoresetMode.DISABLED
    for t in range(steps):
        actions = scripted_actions(rng, ours.num_envs, vocab)
        out, expected = ours.step(actions), sync.step(actions)
        assert_same(out, expected, f"step {t}")
        _, _, terminated, truncated, infos = out
        final = infos.get("final_info", infos)
        for r in np.flatnonzero(terminated):
            counts[final["finish_reason"][r]] += 1
        counts["truncated"] += int((truncated & ~terminated).sum())
        if (terminated | truncated).any():
            counts["end_steps"].add(t)
        if disabled and (terminated | truncated).any():
            mask = terminated | truncated
            assert_same(
                ours.reset(options={"reset_mask": mask}), sync.reset(options={"reset_mask": mask.copy()})
            )
    counts["end_steps"] = len(counts["end_steps"])
    return counts


def test_make_vec_returns_the_batched_env(word_tokenizer):
    envs = gym.make_vec("TextGen-v0", num_envs=64, **env_kwargs(word_tokenizer))
    assert isinstance(envs, TextGenVectorEnv) and envs.num_envs == 64
    single = gym.make("TextGen-v0", **env_kwargs(word_tokenizer))
    assert envs.single_observation_space == single.observation_space
    assert envs.single_action_space == single.action_space
    assert envs.observation_space == gym.vector.utils.batch_space(single.observation_space, 64)
    assert envs.action_space == gym.vector.utils.batch_space(single.action_space, 64)
    assert envs.metadata["autoreset_mode"] is AutoresetMode.NEXT_STEP
    assert envs.spec is not None and envs.spec.id == "TextGen-v0"
    sync = gym.make_vec("TextGen-v0", num_envs=2, vectorization_mode="sync", **env_kwargs(word_tokenizer))
    assert isinstance(sync, SyncVectorEnv) and isinstance(sync.envs[0].unwrapped, TextGenEnv)
    same_step = gym.make_vec(
        "TextGen-v0", num_envs=2, autoreset_mode="SameStep", **env_kwargs(word_tokenizer)
    )
    assert same_step.metadata["autoreset_mode"] is AutoresetMode.SAME_STEP


@pytest.mark.parametrize("mode", MODES, ids=lambda m: m.value)
@pytest.mark.parametrize("seed", [7, [3, 9, 11, 5, 0]], ids=["int-seed", "list-seed"])
def test_equals_sync_vector_env_of_single_envs(word_tokenizer, mode, seed):
    ours, sync = make_pair(word_tokenizer, 5, mode)
    counts = run_both(ours, sync, 40, seed=seed)
    # The script must exercise both ways to end, at many different steps.
    assert counts["eos"] > 5 and counts["length"] > 5 and counts["end_steps"] > 10, counts
    # A later reset without a seed continues every row's generator; then a fixed prompt for all rows.
    assert_same(ours.reset(), sync.reset())
    assert_same(ours.reset(options={"prompt_index": 2}), sync.reset(options={"prompt_index": 2}))
    run_both(ours, sync, 12, seed=None, action_seed=1)
    assert_same(ours.reset(options={"prompt": "a cat"}), sync.reset(options={"prompt": "a cat"}))


@pytest.mark.parametrize("mode", MODES, ids=lambda m: m.value)
def test_equals_sync_with_a_time_limit(word_tokenizer, mode):
    # max_episode_steps < T: some episodes are truncated (TimeLimit in the sync env), some end by EOS.
    ours, sync = make_pair(word_tokenizer, 4, mode, max_episode_steps=3, max_new_tokens=6)
    assert ours.max_episode_steps == 3
    counts = run_both(ours, sync, 30, seed=1)
    assert counts["truncated"] > 3 and counts["eos"] > 3, counts


def test_same_step_final_obs_and_info(word_tokenizer):
    envs = TextGenVectorEnv(num_envs=2, autoreset_mode=AutoresetMode.SAME_STEP, **env_kwargs(word_tokenizer))
    envs.reset(seed=0, options={"prompt": "the cat"})
    obs, _, terminated, _, info = envs.step(np.array([EOS, 4]))
    assert terminated.tolist() == [True, False]
    assert info["_final_obs"].tolist() == [True, False] and info["_final_info"].tolist() == [True, False]
    final_ids = info["final_obs"][0]["input_ids"]
    assert final_ids[6] == EOS and obs["input_ids"][0, 6] == word_tokenizer.pad_token_id  # row 0 restarted
    assert info["final_info"]["finish_reason"][0] == "eos" and info["_prompt"].tolist() == [True, False]
    assert obs["input_ids"][1, 6] == 4


def test_disabled_rows_stay_idle_until_reset(word_tokenizer):
    envs = TextGenVectorEnv(num_envs=3, autoreset_mode=AutoresetMode.DISABLED, **env_kwargs(word_tokenizer))
    envs.reset(seed=0)
    envs.step(np.array([EOS, 4, 5]))
    assert envs.ended.tolist() == [True, False, False]
    before, _ = envs.reset(options={"reset_mask": np.array([False, False, True])})
    obs, rewards, terminated, truncated, info = envs.step(np.array([7, 8, 9]))
    np.testing.assert_array_equal(obs["input_ids"][0], before["input_ids"][0])  # the idle row ignored its 7
    assert rewards[0] == 0 and not terminated[0] and not truncated[0] and info == {}
    assert obs["input_ids"][1, 6:8].tolist() == [4, 8] and obs["input_ids"][2, 6] == 9
    obs, info = envs.reset(options={"reset_mask": envs.ended})
    assert info["_prompt"].tolist() == [True, False, False] and not envs.ended.any()


def test_torch_observations_equal_numpy_and_take_torch_actions(word_tokenizer):
    kwargs = env_kwargs(word_tokenizer)
    as_numpy = TextGenVectorEnv(num_envs=4, **kwargs)
    as_torch = TextGenVectorEnv(num_envs=4, observation_format="torch", **env_kwargs(word_tokenizer))
    obs_np, _ = as_numpy.reset(seed=3)
    obs_t, _ = as_torch.reset(seed=3)
    rng = np.random.default_rng(0)
    for _ in range(12):
        for key in obs_np:
            assert isinstance(obs_t[key], torch.Tensor) and obs_t[key].device == as_torch.device
            np.testing.assert_array_equal(obs_t[key].numpy(), obs_np[key])
        actions = scripted_actions(rng, 4, int(as_numpy.single_action_space.n))
        held = obs_t["input_ids"].clone()
        obs_np, r_np, term_np, _, _ = as_numpy.step(actions)
        previous = obs_t["input_ids"]
        obs_t, r_t, term_t, _, _ = as_torch.step(torch.as_tensor(actions, dtype=torch.int32))
        assert torch.equal(previous, held)  # returned tensors are not views of the live state
        np.testing.assert_array_equal(r_np, r_t)
        np.testing.assert_array_equal(term_np, term_t)


@pytest.mark.parametrize(
    ("actions", "error", "match"),
    [
        (np.array([1, 2]), ValueError, r"shape \(3,\).*got \(2,\)"),
        (np.array([[1, 2, 3]]), ValueError, r"shape \(3,\).*got \(1, 3\)"),
        (np.array([1, 2, 999]), ValueError, r"actions\[2\] = 999 is outside the action space \[0, 23\)"),
        ([4, -1, 3], ValueError, r"actions\[1\] = -1 is outside"),
        (np.array([1.0, 2.0, 3.0]), TypeError, "integer token ids, got dtype float64"),
        (np.array([True, False, True]), TypeError, "got dtype bool"),
        (torch.tensor([1, 2, 23]), ValueError, r"actions\[2\] = 23 is outside"),
        (torch.tensor([1.0, 2.0, 3.0]), TypeError, "torch tensor of dtype torch.float32"),
        (torch.tensor([1, 2]), ValueError, r"shape \(3,\).*got \(2,\)"),
        ("abc", TypeError, "integer token ids"),
    ],
)
def test_bad_actions_raise_clear_errors(word_tokenizer, actions, error, match):
    envs = TextGenVectorEnv(num_envs=3, **env_kwargs(word_tokenizer))
    envs.reset(seed=0)
    assert envs.single_action_space.n == 23
    with pytest.raises(error, match=match):
        envs.step(actions)


def test_bad_arguments_raise_clear_errors(word_tokenizer):
    envs = TextGenVectorEnv(num_envs=2, **env_kwargs(word_tokenizer))
    with pytest.raises(ValueError, match=r"step\(\) called before reset\(\) for rows \[0, 1\]"):
        envs.step(np.array([3, 4]))
    with pytest.raises(ValueError, match=r"one seed per row, 2 of them, got shape \(3,\)"):
        envs.reset(seed=[1, 2, 3])
    with pytest.raises(TypeError, match="numpy bool array"):
        envs.reset(options={"reset_mask": [True, False]})
    with pytest.raises(ValueError, match="selects no row"):
        envs.reset(options={"reset_mask": np.zeros(2, dtype=bool)})
    with pytest.raises(ValueError, match="unknown reset options"):
        envs.reset(options={"promt": "x"})
    with pytest.raises(ValueError, match="autoreset_mode must be"):
        TextGenVectorEnv(num_envs=2, autoreset_mode="Sometimes", **env_kwargs(word_tokenizer))
    with pytest.raises(ValueError, match="observation_format must be"):
        TextGenVectorEnv(num_envs=2, observation_format="jax", **env_kwargs(word_tokenizer))
    with pytest.raises(ValueError, match="max_episode_steps must be >= 1"):
        TextGenVectorEnv(num_envs=2, max_episode_steps=0, **env_kwargs(word_tokenizer))


def test_seeds_and_render_follow_sync(word_tokenizer):
    ours, sync = make_pair(word_tokenizer, 3, AutoresetMode.NEXT_STEP, render_mode="ansi")
    ours.reset(seed=5)
    sync.reset(seed=5)
    assert ours.np_random_seed == sync.np_random_seed == (5, 6, 7)
    assert ours.render() == sync.render()
    assert ours.get_attr("max_new_tokens") == (5, 5, 5)


@pytest.mark.parametrize("mode", [AutoresetMode.NEXT_STEP, AutoresetMode.SAME_STEP])
def test_kl_penalty_rewards_equal_single_envs(word_tokenizer, mode):
    # One KLPenalty steps all rows of the vector env in one forward; each single env has its own.
    reference, policy = (
        builders.tiny_gpt2(23, seed=0, eos_token_id=EOS),
        builders.tiny_gpt2(23, seed=1, eos_token_id=EOS),
    )

    def reward():
        return KLPenalty(reference, coef=0.5, estimator="k3", policy=policy) + Callable(text_length)

    kwargs = env_kwargs(word_tokenizer)
    kwargs.pop("reward")
    ours = TextGenVectorEnv(num_envs=4, autoreset_mode=mode, reward=reward(), **kwargs)
    sync = SyncVectorEnv(
        [lambda: TextGenEnv(reward=reward(), **kwargs) for _ in range(4)], autoreset_mode=mode
    )
    ours.reset(seed=2)
    sync.reset(seed=2)
    rng = np.random.default_rng(0)
    total = 0.0
    for t in range(25):
        actions = scripted_actions(rng, 4, 23)
        obs, rewards, terminated, *_ = ours.step(actions)
        obs_s, rewards_s, terminated_s, *_ = sync.step(actions)
        np.testing.assert_array_equal(obs["input_ids"], obs_s["input_ids"], err_msg=f"step {t}")
        np.testing.assert_allclose(rewards, rewards_s, rtol=1e-5, atol=1e-6, err_msg=f"step {t}")
        np.testing.assert_array_equal(terminated, terminated_s)
        total += float(np.abs(rewards).sum())
    assert total > 0


def test_reset_with_one_prompt_index_per_row(word_tokenizer):
    envs = TextGenVectorEnv(num_envs=4, autoreset_mode=AutoresetMode.DISABLED, **env_kwargs(word_tokenizer))
    _, info = envs.reset(seed=0, options={"prompt_index": [2, 2, 0, 5]})
    assert info["prompt"].tolist() == [PROMPTS[2], PROMPTS[2], PROMPTS[0], PROMPTS[5]]
    # A scalar keeps its meaning: every row starts from that prompt.
    _, info = envs.reset(options={"prompt_index": 3})
    assert info["prompt"].tolist() == [PROMPTS[3]] * 4
    # With a reset mask, only the masked rows take their entry (numpy arrays work too).
    envs.step(np.array([EOS, 4, 4, 4]))
    _, info = envs.reset(options={"reset_mask": envs.ended, "prompt_index": np.array([1, 9, 9, 9])})
    assert info["_prompt"].tolist() == [True, False, False, False] and info["prompt"][0] == PROMPTS[1]
    assert [envs.core.row_prompts[r].text for r in range(4)] == [PROMPTS[1], *[PROMPTS[3]] * 3]


@pytest.mark.parametrize(
    ("index", "match"),
    [
        ([0, 1, 2], r"one index per row \(4\)"),
        ([0, 1, 2, 6], r"int in \[0, 6\), got 6"),
        ([0, 1, 2, -1], "got -1"),
    ],
)
def test_reset_with_bad_per_row_prompt_indices_raises_and_changes_nothing(word_tokenizer, index, match):
    envs = TextGenVectorEnv(num_envs=4, **env_kwargs(word_tokenizer))
    obs, _ = envs.reset(seed=0, options={"prompt_index": 1})
    with pytest.raises(ValueError, match=match):
        envs.reset(options={"prompt_index": index})
    assert [p.text for p in envs.core.row_prompts] == [PROMPTS[1]] * 4  # type: ignore[union-attr]
    np.testing.assert_array_equal(envs.core.input_ids.numpy(), obs["input_ids"])
