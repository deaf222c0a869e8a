"""Resuming is all or nothing, and load-time overrides either apply or name the field
(agents/common/persistence.py)."""

from __future__ import annotations

import copy

import pytest
import torch

from agents import GRPO, PPO, GRPOConfig, PPOConfig
from tests.agents.algos import make_env
from tests.agents.tiny import tiny_lm, tiny_tokenizer


def make_ppo(num_envs: int = 8, **config) -> PPO:
    cfg = PPOConfig(
        **{
            "episodes_per_iteration": 8,
            "minibatch_size": 4,
            "device": "cpu",
            "seed": 0,
            "learning_rate": 3e-3,
            **config,
        }
    )
    return PPO(
        tiny_lm(len(tiny_tokenizer()), seed=1),
        make_env(num_envs=num_envs),
        cfg,
        verbose=0,
        progress_bar=False,
    )


def snapshot(agent) -> dict:
    return {
        "weights": copy.deepcopy(agent.policy.state_dict()),
        "optimizer": copy.deepcopy(agent.optimizer.state_dict()),
        "counters": (agent.iteration, agent.num_episodes, list(agent.history)),
        "generator": agent.generator.get_state().clone(),
        "prompt_rng": copy.deepcopy(agent.prompt_rng.bit_generator.state),
        "env_rng": agent.driver.env_rng_state(),
        "kl": agent.kl_coefficient.state_dict(),
    }


def assert_unchanged(agent, before: dict) -> None:
    after = snapshot(agent)
    assert after["weights"].keys() == before["weights"].keys()
    assert all(torch.equal(after["weights"][k], before["weights"][k]) for k in before["weights"])
    assert after["optimizer"]["state"].keys() == before["optimizer"]["state"].keys()
    assert after["counters"] == before["counters"]
    assert torch.equal(after["generator"], before["generator"])
    assert after["prompt_rng"] == before["prompt_rng"] and after["env_rng"] == before["env_rng"]
    assert after["kl"] == before["kl"]


def test_a_checkpoint_of_other_env_rows_is_refused_before_anything_changes(tmp_path):
    trained = make_ppo(num_envs=8)
    trained.train_iteration()
    path = trained.save(tmp_path / "ckpt")
    other = make_ppo(num_envs=4)  # the same model and optimizer shape; 4 env rows instead of 8
    other.train_iteration()
    before = snapshot(other)
    with pytest.raises(ValueError, match=r"prompt RNG states of 8 env rows but the env has 4.*num_envs"):
        other.load_state(path)
    assert_unchanged(other, before)
    other.train_iteration()  # and it trains on


def test_a_corrupt_value_head_is_refused_before_anything_changes(tmp_path):
    from safetensors.torch import save_file

    trained = make_ppo()
    trained.train_iteration()
    path = trained.save(tmp_path / "ckpt")
    save_file(
        {"weight": torch.zeros(1, 7), "bias": torch.zeros(1)},
        str(tmp_path / "ckpt" / "model" / "value_head.safetensors"),
    )
    fresh = make_ppo()
    before = snapshot(fresh)
    with pytest.raises(ValueError, match=r"value head file .* holds tensors"):
        fresh.load_state(path)
    assert_unchanged(fresh, before)


def test_grpo_beta_cannot_start_from_a_run_without_its_reference(tmp_path):
    env = make_env()
    agent = GRPO(
        tiny_lm(len(tiny_tokenizer()), seed=1),
        env,
        GRPOConfig(episodes_per_iteration=8, device="cpu"),
        verbose=0,
    )
    agent.train_iteration()
    path = agent.save(tmp_path / "no_beta")
    with pytest.raises(
        ValueError, match=r"beta=0.1: checkpoint .* was trained with beta=0 and holds no reference"
    ):
        GRPO.load(path, env=make_env(), beta=0.1, verbose=0)
    with_beta = GRPO(
        tiny_lm(len(tiny_tokenizer()), seed=1),
        make_env(),
        GRPOConfig(episodes_per_iteration=8, device="cpu", beta=0.1),
        verbose=0,
    )
    with_beta.train_iteration()
    saved = with_beta.save(tmp_path / "beta")
    assert GRPO.load(saved, env=make_env(), beta=0.2, verbose=0).config.beta == 0.2  # a reference is there
    assert GRPO.load(saved, env=make_env(), beta=0.0, verbose=0).ref_policy is None  # and can be dropped


def test_ppo_value_learning_rate_can_change_when_loading(tmp_path):
    agent = make_ppo()
    agent.train_iteration()
    path = agent.save(tmp_path / "ckpt")
    loaded = PPO.load(path, env=make_env(), value_learning_rate=1e-3, verbose=0)
    groups = loaded.optimizer.param_groups
    assert [g["lr"] for g in groups] == [3e-3, 1e-3]
    # Every parameter's Adam moments came back, whatever the grouping.
    saved = agent.optimizer.state_dict()["state"]
    restored = loaded.optimizer.state_dict()["state"]
    assert saved.keys() == restored.keys()
    for i in saved:
        assert torch.equal(saved[i]["exp_avg"], restored[i]["exp_avg"])
    loaded.train_iteration()
