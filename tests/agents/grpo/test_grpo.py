"""GRPO: group-normalised advantages against hand-computed values, and learning on the tiny task."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from agents.grpo import group_advantages
from agents.grpo.core import STD_EPS
from tests.agents.algos import make_algo


def test_group_normalisation_with_std():
    adv = group_advantages(torch.tensor([1.0, 2.0, 3.0, 6.0, 0.0, 1.0, 0.0, 1.0]), 4)
    std = math.sqrt((4 + 1 + 0 + 9) / 3)  # unbiased std of 1, 2, 3, 6 (mean 3)
    std2 = math.sqrt((4 * 0.25) / 3)  # of 0, 1, 0, 1 (mean 0.5)
    expected = [d / (std + STD_EPS) for d in (-2, -1, 0, 3)] + [
        d / (std2 + STD_EPS) for d in (-0.5, 0.5, -0.5, 0.5)
    ]
    torch.testing.assert_close(adv, torch.tensor(expected, dtype=torch.float64))


def test_group_normalisation_without_std_is_dr_grpo_centring():
    adv = group_advantages(torch.tensor([1.0, 2.0, 3.0, 6.0]), 4, scale_rewards=False)
    torch.testing.assert_close(adv, torch.tensor([-2.0, -1.0, 0.0, 3.0], dtype=torch.float64))


@pytest.mark.parametrize("scale_rewards", [True, False])
def test_all_equal_group_gives_zero_advantage_without_nan(scale_rewards):
    adv = group_advantages(torch.tensor([0.7, 0.7, 0.7, 1.0, 0.0, 0.5]), 3, scale_rewards=scale_rewards)
    assert torch.isfinite(adv).all() and adv[:3].tolist() == [0.0, 0.0, 0.0] and adv[3] > 0


def test_bad_group_shapes_are_errors():
    with pytest.raises(ValueError, match="multiple of group_size=4"):
        group_advantages(torch.zeros(6), 4)


def test_advantages_of_a_rollout_follow_its_groups():
    agent = make_algo("grpo", group_size=4)
    batch = agent.collect_rollout()
    adv = agent.compute_advantages(batch)
    expected = group_advantages(torch.as_tensor(batch.scores), 4)
    torch.testing.assert_close(adv, expected[:, None] * batch.mask)


@pytest.mark.parametrize(
    "variant",
    [
        {},
        {"loss_type": "dapo", "clip_range_high": 0.28},
        {"loss_type": "dr_grpo", "scale_rewards": False, "beta": 0.02},
        {"importance_sampling_level": "sequence"},
    ],
    ids=["grpo", "dapo", "dr_grpo+beta", "gspo"],
)
def test_grpo_learns_the_tiny_task(variant):
    agent = make_algo(
        "grpo", episodes_per_iteration=16, group_size=4, num_iterations=4, minibatch_size=8, **variant
    )
    scores = [agent.train_iteration()["score"] for _ in range(12)]
    first, last = np.mean(scores[:2]), np.mean(scores[-2:])
    assert first < 0.15 and last > 0.45, scores
