"""GRPOConfig: GRPO's own hyper-parameters on top of the critic-free update's."""

from __future__ import annotations

from dataclasses import dataclass

from agents.common.policy_gradient import GroupConfig


@dataclass
class GRPOConfig(GroupConfig):
    """Hyper-parameters of GRPO (Shao et al. 2024) and its variants: Dr. GRPO (``scale_rewards=False``,
    ``loss_type="dr_grpo"``), DAPO (``loss_type="dapo"``, ``clip_range_high``) and GSPO
    (``importance_sampling_level="sequence"``).

    Example:
        >>> GRPOConfig(group_size=8, episodes_per_iteration=32, loss_type="dapo", clip_range_high=0.28)  # doctest: +SKIP
    """

    scale_rewards: bool = True
    """Divide each advantage by its group's reward standard deviation (GRPO); ``False`` only centres it on
    the group mean (Dr. GRPO)."""
