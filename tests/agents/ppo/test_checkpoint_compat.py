"""A PPO checkpoint written before the agents restructure (tests/agents/fixtures/ppo_v1_checkpoint, made by
make_ppo_v1_checkpoint.py at commit 8cc4f04) still loads, and the next iteration is the one it gave then."""

from __future__ import annotations

import json
import os

import pytest
from transformers import AutoModelForCausalLM

from agents import PPO
from tests.agents.fixtures.make_ppo_v1_checkpoint import HERE, make_env


@pytest.fixture
def old_checkpoint() -> str:
    return os.path.join(HERE, "checkpoint")


def test_old_checkpoint_loads_and_resumes_exactly(old_checkpoint):
    reference = AutoModelForCausalLM.from_pretrained(os.path.join(HERE, "reference")).eval()
    agent = PPO.load(old_checkpoint, env=make_env(reference), verbose=0, progress_bar=False)
    assert (agent.iteration, agent.num_episodes) == (1, 8)
    assert agent.kl_coefficient.value == pytest.approx(0.046)
    with open(os.path.join(HERE, "expected_next.json")) as f:
        expected = json.load(f)
    metrics = agent.train_iteration()
    for key, value in expected.items():
        assert metrics[key] == pytest.approx(value, rel=1e-5, abs=1e-7), key
