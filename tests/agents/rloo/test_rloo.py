"""RLOO: leave-one-out advantages against hand-computed values, and learning on the tiny task."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from agents.rloo import leave_one_out_advantages
from tests.agents.algos import make_algo


def test_leave_one_out_baseline():
    adv = leave_one_out_advantages(torch.tensor([1.0, 2.0, 3.0, 6.0]), 4)
    # r_i minus the mean of the other three: 1 - 11/3, 2 - 10/3, 3 - 9/3, 6 - 6/3.
    torch.testing.assert_close(adv, torch.tensor([-8 / 3, -4 / 3, 0.0, 4.0], dtype=torch.float64))
    pairs = leave_one_out_advantages(torch.tensor([5.0, 1.0, 2.0, 2.0]), 2)
    torch.testing.assert_close(pairs, torch.tensor([4.0, -4.0, 0.0, 0.0], dtype=torch.float64))


def test_group_of_one_is_an_error():
    with pytest.raises(ValueError, match=">= 2"):
        leave_one_out_advantages(torch.zeros(4), 1)


def test_advantages_of_a_rollout_follow_its_groups():
    agent = make_algo("rloo", group_size=2)
    batch = agent.collect_rollout()
    expected = leave_one_out_advantages(torch.as_tensor(batch.scores), 2)
    torch.testing.assert_close(agent.compute_advantages(batch), expected[:, None] * batch.mask)


def test_rloo_learns_the_tiny_task():
    agent = make_algo("rloo", episodes_per_iteration=16, group_size=4, num_iterations=4, minibatch_size=8)
    scores = [agent.train_iteration()["score"] for _ in range(12)]
    first, last = np.mean(scores[:2]), np.mean(scores[-2:])
    assert first < 0.15 and last > 0.45, scores
