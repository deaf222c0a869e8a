"""RLOOConfig: RLOO's own hyper-parameters (none beyond the grouped critic-free update's)."""

from __future__ import annotations

from dataclasses import dataclass

from agents.common.policy_gradient import GroupConfig


@dataclass
class RLOOConfig(GroupConfig):
    """Hyper-parameters of RLOO (REINFORCE Leave-One-Out, Ahmadian et al. 2024): each completion's baseline
    is the mean return of the other ``group_size - 1`` completions of its prompt."""
