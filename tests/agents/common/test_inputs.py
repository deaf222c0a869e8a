"""Bad input to every algorithm is a clear ValueError/TypeError naming the value and what was expected:
configs (seed range, device), predict observations, generate arguments, an unavailable device."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from agents import GRPOConfig, PPOConfig, REINFORCEConfig, RLOOConfig
from tests.agents.algos import make_algo
from tests.agents.tiny import tiny_tokenizer
from tests.builders import tiny_gpt2

CONFIGS = [PPOConfig, GRPOConfig, RLOOConfig, REINFORCEConfig]


@pytest.mark.parametrize("config_cls", CONFIGS)
@pytest.mark.parametrize("seed", [2**70, 2**63, -1])
def test_seed_out_of_range_is_a_value_error(config_cls, seed):
    with pytest.raises(ValueError, match=rf"seed must be an int in \[0, 2\*\*63\), got {seed}"):
        config_cls(seed=seed)


@pytest.mark.parametrize("config_cls", CONFIGS)
def test_largest_seed_works_end_to_end(config_cls):
    assert config_cls(seed=2**63 - 1).seed == 2**63 - 1


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
@pytest.mark.parametrize("name", ["grpo", "scst"])
def test_cuda_device_without_cuda_is_a_value_error(name):
    with pytest.raises(ValueError, match=r"device 'cuda': CUDA is not available"):
        make_algo(name, device="cuda")


@pytest.fixture(scope="module")
def agent():
    return make_algo("rloo")


@pytest.mark.parametrize(
    ("observation", "error", "match"),
    [
        ({"input_ids": np.array([3, 4])}, ValueError, r"missing \['attention_mask'\]"),
        ([3, 4], TypeError, "observation must be a dict"),
        (
            {"input_ids": np.array([3, 99]), "attention_mask": np.array([1, 1])},
            ValueError,
            r"token id 99, outside \[0, 21\)",
        ),
        ({"input_ids": np.array([-1, 4]), "attention_mask": np.array([1, 1])}, ValueError, "token id -1"),
        (
            {"input_ids": np.array([3.0, 4.0]), "attention_mask": np.array([1, 1])},
            TypeError,
            "integer token ids",
        ),
        ({"input_ids": np.array([3, 4]), "attention_mask": np.array([1, 1, 1])}, ValueError, "one shape"),
        ({"input_ids": np.array([3, 4]), "attention_mask": np.array([0, 0])}, ValueError, "without any 1"),
    ],
)
def test_predict_rejects_bad_observations(agent, observation, error, match):
    with pytest.raises(error, match=match):
        agent.predict(observation)


def test_predict_accepts_good_observations(agent):
    action, _ = agent.predict({"input_ids": np.array([0, 3, 4]), "attention_mask": np.array([0, 1, 1])})
    assert isinstance(action, int) and 0 <= action < 21
    actions, _ = agent.predict({"input_ids": [[3, 4], [5, 6]], "attention_mask": [[1, 1], [1, 1]]})
    assert actions.shape == (2,)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"max_new_tokens": -1}, ValueError, "max_new_tokens must be an int >= 1 or None, got -1"),
        ({"max_new_tokens": 0}, ValueError, "got 0"),
        ({"max_new_tokens": 1.5}, ValueError, "got 1.5"),
        ({"max_new_tokens": "3"}, ValueError, "got '3'"),
        ({"max_new_tokens": True}, ValueError, "got True"),
    ],
)
def test_generate_rejects_bad_max_new_tokens(agent, kwargs, error, match):
    with pytest.raises(error, match=match):
        agent.generate(["a cat"], **kwargs)


def test_generate_rejects_bad_prompts(agent):
    with pytest.raises(TypeError, match="prompts must be a str or a non-empty list of str"):
        agent.generate([3])
    with pytest.raises(TypeError, match="non-empty"):
        agent.generate([])
    assert len(agent.generate("a cat", max_new_tokens=2)) == 1


def test_a_config_in_use_cannot_change_and_names_the_field():
    import dataclasses

    from agents import GRPOConfig

    cfg = GRPOConfig(episodes_per_iteration=8, device="cpu")
    agent = make_algo("grpo")
    agent_config = agent.config
    with pytest.raises(
        dataclasses.FrozenInstanceError, match=r"GRPOConfig.group_size cannot change: .* in use by GRPO"
    ):
        agent_config.group_size = 3
    assert agent.config.group_size == 4
    assert dataclasses.replace(agent_config, group_size=2).group_size == 2  # a new config is free
    cfg.group_size = 2  # one no algorithm uses yet changes freely
    assert cfg.group_size == 2


@pytest.mark.parametrize("config_cls", CONFIGS)
def test_an_empty_log_dir_is_refused_where_it_is_written(config_cls):
    with pytest.raises(ValueError, match="log_dir must be a directory path or None"):
        config_cls(log_dir="")
    with pytest.raises(ValueError, match="log_dir must be a directory path or None"):
        config_cls(log_dir="   ")


def test_learn_takes_numpy_integers_and_refuses_other_counts():
    import numpy as np

    agent = make_algo("grpo")
    agent.learn(np.int64(8))
    assert agent.num_episodes == 8
    for bad in (8.0, -1, True, "8"):
        with pytest.raises(ValueError, match="total_episodes must be an int >= 0"):
            agent.learn(bad)


def test_a_policy_with_fewer_positions_than_the_env_is_refused():
    from agents import GRPO, GRPOConfig
    from tests.agents.algos import make_env

    lm = tiny_gpt2(len(tiny_tokenizer()), seed=None, layers=1, width=16, positions=8)
    with pytest.raises(ValueError, match=r"reads at most 8 positions .* 10 tokens long"):
        GRPO(lm, make_env(), GRPOConfig(episodes_per_iteration=8, device="cpu"), verbose=0)
