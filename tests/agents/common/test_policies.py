"""The policy objects (agents/common/policies.py): one forward per batch, the same values whether the LM
head runs in chunks or not, values only from a policy with a value head."""

from __future__ import annotations

import pytest
import torch

from agents import registry
from agents.common.buffers import TrainBatch
from agents.common.on_policy import TIME_METRICS
from tests.agents.algos import make_env
from tests.agents.tiny import tiny_lm, tiny_tokenizer


def make_agent(name: str, chunk: int):
    entry = registry.get(name)
    cfg = entry.make_config(
        episodes_per_iteration=8,
        minibatch_size=4,
        device="cpu",
        seed=0,
        learning_rate=3e-3,
        mixed_precision="no",
        logits_chunk_size=chunk,
    )
    return entry.load()(
        tiny_lm(len(tiny_tokenizer()), seed=1), make_env(), cfg, verbose=0, progress_bar=False
    )


@pytest.mark.parametrize("name", ["ppo", "grpo"])
def test_training_with_a_chunked_lm_head_equals_the_full_logits(name):
    full, chunked = make_agent(name, 0), make_agent(name, 2)
    assert full.policy.chunk_size is None and chunked.policy.chunk_size == 2
    for _ in range(2):
        a, b = full.train_iteration(), chunked.train_iteration()
        for key in a:
            if key not in TIME_METRICS:
                assert a[key] == pytest.approx(b[key], rel=1e-4, abs=1e-5), key
    for p, q in zip(full.policy.parameters(), chunked.policy.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-3, atol=1e-4)  # Adam steps are 3e-3: a wrong gradient shows


def test_only_an_actor_critic_policy_returns_values():
    for name, has_values in (("ppo", True), ("grpo", False)):
        agent = make_agent(name, 0)
        out = agent.evaluate_batch(TrainBatch.from_rollout(agent.collect_rollout()), entropy=True)
        assert (out.values is not None) == has_values == agent.policy.has_value_head
        assert out.entropy is not None and out.logprobs.shape == out.entropy.shape
