"""REINFORCE: returns-to-go, REINFORCE++ batch normalisation and the greedy baseline against hand-computed
values; the greedy baseline is the env's return of the greedy completion; learning on the tiny task."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from agents.reinforce import batch_normalized_advantages, greedy_baseline_advantages, returns_to_go
from tests.agents.algos import make_algo

MASK = torch.tensor([[True, True, False], [True, False, False]])


def test_returns_to_go_sum_the_rewards_from_each_token_on():
    rewards = torch.tensor([[0.5, 0.5, 9.0], [2.0, 9.0, 9.0]])  # padding is ignored
    expected = torch.tensor([[1.0, 0.5, 0.0], [2.0, 0.0, 0.0]], dtype=torch.float64)  # float64: no overflow
    torch.testing.assert_close(returns_to_go(rewards, MASK), expected)


def test_reinforce_plus_plus_normalises_over_all_tokens_of_the_batch():
    returns = torch.tensor([[1.0, 1.0, 0.0], [2.0, 0.0, 0.0]])
    # Valid entries 1, 1, 2: mean 4/3, unbiased variance ((1/3)^2 * 2 + (2/3)^2) / 2 = 1/3.
    std = math.sqrt(1 / 3)
    expected = torch.tensor([[-1 / 3 / std, -1 / 3 / std, 0.0], [2 / 3 / std, 0.0, 0.0]])
    torch.testing.assert_close(batch_normalized_advantages(returns, MASK), expected, rtol=1e-5, atol=1e-6)


def test_greedy_baseline_subtracts_the_greedy_return_of_the_same_prompt():
    returns = torch.tensor([[1.5, 1.0, 0.0], [2.0, 0.0, 0.0]])
    adv = greedy_baseline_advantages(returns, torch.tensor([1.0, 3.0]), MASK)
    torch.testing.assert_close(adv, torch.tensor([[0.5, 0.0, 0.0], [-1.0, 0.0, 0.0]]))


def test_greedy_baseline_is_the_env_return_of_the_greedy_completion():
    agent = make_algo("scst")
    batch = agent.collect_rollout()
    greedy = agent.greedy_scores(batch)
    # The same prompts decoded greedily outside the env, then scored like the env does.
    texts = agent.generate(batch.prompts, deterministic=True)
    expected = [t.split().count("good") / 6 for t in texts]
    torch.testing.assert_close(greedy, torch.tensor(expected, dtype=greedy.dtype))
    returns = returns_to_go(batch.rewards, batch.mask)
    torch.testing.assert_close(
        agent.compute_advantages(batch), greedy_baseline_advantages(returns, greedy, batch.mask)
    )


@pytest.mark.parametrize(("name", "iterations", "threshold"), [("reinforce++", 12, 0.45), ("scst", 24, 0.35)])
def test_reinforce_learns_the_tiny_task(name, iterations, threshold):
    agent = make_algo(name, episodes_per_iteration=16, num_iterations=4, minibatch_size=8)
    scores = [agent.train_iteration()["score"] for _ in range(iterations)]
    first, last = np.mean(scores[:2]), np.mean(scores[-2:])
    assert first < 0.15 and last > threshold, scores
