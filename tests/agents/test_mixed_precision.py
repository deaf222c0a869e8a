"""bf16 autocast training on a task with a KL term (the KL reference steps beside the bf16 policy)."""

from __future__ import annotations

import math

import pytest
import torch

from agents import PPO, PPOConfig
from agents.common.policies import has_native_bf16
from tests.agents.tiny import PROMPTS, P, T, good_fraction, tiny_lm, tiny_tokenizer
from textenv.scorers import Callable, KLPenalty
from textenv.vector import TextGenVectorEnv

if not has_native_bf16(torch.device("cpu")):
    pytest.skip("CPU without native bf16 (AVX512-BF16 or AMX)", allow_module_level=True)


def test_ppo_trains_a_kl_task_under_bf16_autocast():
    tokenizer = tiny_tokenizer()
    torch.manual_seed(0)
    reference = tiny_lm(len(tokenizer))
    env = TextGenVectorEnv(
        num_envs=4,
        tokenizer=tokenizer,
        prompts=PROMPTS,
        reward=Callable(good_fraction) + KLPenalty(reference, coef=0.1),
        max_prompt_tokens=P,
        max_new_tokens=T,
        autoreset_mode="Disabled",
        observation_format="torch",
    )
    config = PPOConfig(
        episodes_per_iteration=8, minibatch_size=4, device="cpu", seed=0, mixed_precision="bf16"
    )
    ppo = PPO(tiny_lm(len(tokenizer)), env, config, verbose=0, progress_bar=False)
    before = {k: v.clone() for k, v in ppo.policy.lm.state_dict().items()}
    # Two iterations of two waves each: every wave resets the KL reference inside the bf16 rollout
    # and steps it with autocast off.
    ppo.learn(total_episodes=16)
    assert len(ppo.history) == 2
    for metrics in ppo.history:
        assert math.isfinite(metrics["kl"]) and math.isfinite(metrics["score"])
    # The policy has moved away from its reference, so the KL term is live, not a silent zero.
    assert ppo.history[-1]["kl"] != 0.0
    assert any(not torch.equal(v, before[k]) for k, v in ppo.policy.lm.state_dict().items())
