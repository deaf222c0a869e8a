"""Tests of agents.ppo.config: validation, derived sizes, serialisation, resolve_device."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch

from agents.ppo.config import PPOConfig
from textenv.lm import resolve_device

# (field, out-of-range value): each must raise ValueError naming the field.
BAD_VALUES = [
    ("learning_rate", 0.0),
    ("learning_rate", float("nan")),
    ("episodes_per_iteration", 0),
    ("minibatch_size", 0),
    ("minibatch_size", 5),  # does not divide episodes_per_iteration=16
    ("ppo_epochs", 0),
    ("gradient_accumulation_steps", 0),
    ("gradient_accumulation_steps", 3),  # does not divide minibatch_size=8
    ("max_grad_norm", 0.0),
    ("gamma", 0.0),
    ("gamma", 1.01),
    ("gae_lambda", -0.1),
    ("gae_lambda", 1.5),
    ("reward_scale", 0.0),
    ("reward_clip", -1.0),
    ("clip_range", 0.0),
    ("logits_chunk_size", -1),
    ("clip_range_value", -0.2),
    ("vf_coef", -0.5),
    ("ent_coef", -0.01),
    ("target_approx_kl", 0.0),
    ("value_learning_rate", 0.0),
    ("kl_controller", "pid"),
    ("kl_reference", "base"),
    ("init_kl_coef", -0.1),
    ("kl_target", 0.0),
    ("kl_horizon", -5.0),
    ("kl_horizon", float("inf")),
    ("temperature", 0.0),
    ("top_k", -1),
    ("top_p", 0.0),
    ("top_p", 1.5),
    ("num_envs", 0),
    ("num_envs", 5),  # does not divide episodes_per_iteration=16
    ("seed", -1),
    ("device", "gpu"),
    ("device", "cuda:x"),
    ("mixed_precision", "fp16"),
    ("checkpoint_interval", -1),
]

BAD_TYPES = [
    ("learning_rate", "1e-4"),
    ("episodes_per_iteration", 16.0),
    ("minibatch_size", True),
    ("gamma", None),
    ("top_k", 1.5),
    ("whiten_advantages", 1),
    ("gradient_checkpointing", "yes"),
    ("kl_after_rollout", 1),
    ("device", torch.device("cpu")),
    ("kl_controller", None),
    ("log_dir", 3),
]


@pytest.mark.parametrize(("field", "value"), BAD_VALUES)
def test_out_of_range_value_raises_value_error_naming_field(field, value):
    with pytest.raises(ValueError, match=field):
        PPOConfig(**{field: value})


@pytest.mark.parametrize(("field", "value"), BAD_TYPES)
def test_wrong_type_raises_type_error_naming_field(field, value):
    with pytest.raises(TypeError, match=field):
        PPOConfig(**{field: value})


def test_every_validated_field_has_a_bad_value_case():
    # A new field with a range or choice must get a bad-value case above.
    covered = {name for name, _ in BAD_VALUES}
    validated = {
        f.name
        for f in dataclasses.fields(PPOConfig)
        if f.name not in ("whiten_advantages", "gradient_checkpointing", "kl_after_rollout", "log_dir")
    }
    assert validated - covered == set()


def test_defaults_and_derived_sizes():
    cfg = PPOConfig()
    assert cfg.effective_num_envs == 16 and cfg.num_minibatches == 2 and cfg.micro_batch_size == 8
    cfg = PPOConfig(episodes_per_iteration=32, minibatch_size=8, gradient_accumulation_steps=4, num_envs=8)
    assert cfg.effective_num_envs == 8 and cfg.num_minibatches == 4 and cfg.micro_batch_size == 2


def test_numbers_are_normalised():
    cfg = PPOConfig(gamma=1, kl_horizon=10000, log_dir=Path("runs/x"))
    assert isinstance(cfg.gamma, float) and isinstance(cfg.kl_horizon, float)
    assert cfg.log_dir == str(Path("runs/x"))


def test_to_dict_from_dict_round_trip_through_json():
    cfg = PPOConfig(
        learning_rate=3e-5,
        top_k=20,
        top_p=0.9,
        reward_clip=5.0,
        target_approx_kl=0.02,
        kl_controller="adaptive",
        num_envs=4,
        log_dir="runs/a",
        mixed_precision="bf16",
        device="cpu",
    )
    data = json.loads(json.dumps(cfg.to_dict()))
    assert PPOConfig.from_dict(data) == cfg
    assert PPOConfig.from_dict({}) == PPOConfig()


def test_from_dict_rejects_unknown_keys():
    with pytest.raises(ValueError, match="lr"):
        PPOConfig.from_dict({"lr": 1e-3})
    with pytest.raises(TypeError, match="dict"):
        PPOConfig.from_dict([("gamma", 1.0)])


def test_resolve_device():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")
    expected = torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")
    assert resolve_device("auto") == expected
    with pytest.raises(ValueError, match="tpu"):
        resolve_device("tpu")
    with pytest.raises(TypeError, match="device"):
        resolve_device(0)
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            resolve_device("cuda:0")
