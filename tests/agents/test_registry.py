"""agents.registry: one table of algorithms for the training CLI, the comparison and the benchmarks."""

from __future__ import annotations

import dataclasses
import inspect

import pytest

import agents
from agents import registry
from agents.compare import RunSpec, agent_config


def test_names_classes_presets_and_aliases():
    assert list(registry.ALGORITHMS) == [
        "ppo",
        "grpo",
        "rloo",
        "reinforce++",
        "scst",
        "sb3-ppo",
        "sb3-a2c",
        "base-lm",
    ]
    assert registry.AGENTS == ("ppo", "grpo", "rloo", "reinforce++", "scst")
    assert registry.get("ppo").load() is agents.PPO and registry.get("rloo").load() is agents.RLOO
    assert registry.get("scst").load() is agents.REINFORCE and registry.get("scst").presets == {
        "baseline": "greedy"
    }
    assert registry.get("reinforce++").config_class is agents.REINFORCEConfig
    assert registry.get("agents-reinforce++") is registry.get("reinforce++")
    assert dict(registry.ALIASES) == {f"agents-{n}": n for n in registry.AGENTS}
    from stable_baselines3 import A2C, PPO

    assert registry.get("sb3-ppo").load() is PPO and registry.get("sb3-a2c").load() is A2C


def test_presets_win_and_a_clashing_value_is_refused():
    assert registry.get("scst").make_config(learning_rate=3e-5).baseline == "greedy"
    assert registry.get("reinforce++").make_config().baseline == "batch"
    with pytest.raises(
        ValueError, match="scst presets \\{'baseline': 'greedy'\\}; got \\{'baseline': 'batch'\\}"
    ):
        registry.get("scst").make_config(baseline="batch")


def test_bad_names_and_entries_without_a_class_or_config():
    with pytest.raises(ValueError, match="unknown algorithm 'dqn'; choose from ppo, grpo"):
        registry.get("dqn")
    with pytest.raises(ValueError, match="'base-lm' trains nothing"):
        registry.get("base-lm").load()
    with pytest.raises(ValueError, match="'sb3-ppo' is not an agents algorithm"):
        registry.get("sb3-ppo").make_config()
    with pytest.raises(ValueError, match="library must be one of"):
        registry.Algorithm("x", "jax", None)
    with pytest.raises(TypeError):
        registry.get("ppo").comparison["learning_rate"] = 1.0  # type: ignore[index]  (read-only table)


@pytest.mark.parametrize("name", registry.AGENTS)
def test_comparison_lists_only_what_differs_from_the_config_defaults(name):
    algo = registry.get(name)
    defaults = {f.name: f.default for f in dataclasses.fields(algo.config_class)}
    assert algo.comparison, name
    for key, value in algo.comparison.items():
        assert key in defaults and defaults[key] != value, (name, key)


@pytest.mark.parametrize("name", ["sb3-ppo", "sb3-a2c"])
def test_sb3_comparison_values_are_keyword_arguments_of_the_sb3_class(name):
    parameters = inspect.signature(registry.get(name).load()).parameters
    assert set(registry.get(name).comparison) <= set(parameters)


def test_comparison_configs_keep_the_values_of_the_earlier_table():
    """The effective hyper-parameters are those the README's comparison figures were made with."""
    spec = RunSpec("TextGen-Sentiment-v0", episodes=64, seed=3, num_envs=16)
    ppo = agent_config(spec, "ppo")
    assert (ppo.learning_rate, ppo.ppo_epochs, ppo.gamma, ppo.gae_lambda, ppo.clip_range) == (
        1e-4,
        4,
        1.0,
        0.95,
        0.2,
    )
    assert (ppo.max_grad_norm, ppo.episodes_per_iteration, ppo.minibatch_size, ppo.seed) == (1.0, 16, 8, 3)
    for name in ("grpo", "rloo", "reinforce++", "scst"):
        cfg = agent_config(spec, name)
        assert (cfg.learning_rate, cfg.num_iterations, cfg.clip_range, cfg.max_grad_norm) == (
            1e-4,
            4,
            0.2,
            1.0,
        )
        assert (cfg.episodes_per_iteration, cfg.minibatch_size, cfg.kl_controller) == (16, 8, "fixed")
    assert agent_config(spec, "grpo").group_size == 4 and agent_config(spec, "rloo").group_size == 4
    assert (
        agent_config(spec, "reinforce++").baseline == "batch"
        and agent_config(spec, "scst").baseline == "greedy"
    )
    assert (
        agent_config(RunSpec("TextGen-Sentiment-v0", 64, 0, learning_rate=3e-5), "grpo").learning_rate == 3e-5
    )


def test_the_command_line_and_the_benchmark_use_the_registry():
    from agents.train import algorithm, build_parser
    from benchmarks import algo_iteration

    assert algo_iteration.ALGOS == registry.AGENTS
    assert algorithm("scst") == (agents.REINFORCE, agents.REINFORCEConfig, {"baseline": "greedy"})
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--algo", "sb3-ppo"])  # not trained by agents.train
