"""GRPO: group-relative policy optimisation (Shao et al. 2024), with the Dr. GRPO, DAPO and GSPO variants.

Each rollout samples ``group_size`` completions of ``episodes_per_iteration / group_size`` prompts; a
completion's advantage is its return against its group's (:func:`agents.grpo.core.group_advantages`),
the same for every token; the update is the shared clipped surrogate
(:mod:`agents.common.policy_gradient`).
"""

from __future__ import annotations

from typing import ClassVar

import torch

from agents.common.buffers import RolloutBatch
from agents.common.policy_gradient import PolicyGradientAlgorithm
from agents.grpo.config import GRPOConfig
from agents.grpo.core import group_advantages


class GRPO(PolicyGradientAlgorithm):
    """Group Relative Policy Optimization for a causal LM on a textenv environment (no value head).

    Args: see :class:`~agents.common.base.BaseAlgorithm` (``config`` is a :class:`GRPOConfig`).

    Example:
        >>> from agents import GRPO, GRPOConfig
        >>> agent = GRPO("tiny-lm", "TextGen-Sentiment-v0", GRPOConfig(group_size=4))  # doctest: +SKIP
        >>> agent.learn(total_episodes=512)  # doctest: +SKIP
    """

    config: GRPOConfig
    config_class: ClassVar[type[GRPOConfig]] = GRPOConfig
    algo_name: ClassVar[str] = "grpo"

    def compute_advantages(self, batch: RolloutBatch) -> torch.Tensor:
        """Each episode's group-relative advantage, on every one of its tokens: ``(N, T)``."""
        scores = torch.as_tensor(batch.scores, device=self.device)  # (N,)
        adv = group_advantages(scores, self.group_size, self.config.scale_rewards)  # (N,)
        return adv[:, None] * batch.mask  # (N, T)
