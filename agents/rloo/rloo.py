"""RLOO: REINFORCE with a leave-one-out baseline (Kool et al. 2019; Ahmadian et al. 2024).

Each rollout samples ``group_size`` completions per prompt; a completion's advantage is its return minus
the mean return of the other ``group_size - 1`` (:func:`agents.rloo.core.leave_one_out_advantages`), the
same for every token; the update is the shared clipped surrogate (:mod:`agents.common.policy_gradient`).
"""

from __future__ import annotations

from typing import ClassVar

import torch

from agents.common.buffers import RolloutBatch
from agents.common.policy_gradient import PolicyGradientAlgorithm
from agents.rloo.config import RLOOConfig
from agents.rloo.core import leave_one_out_advantages


class RLOO(PolicyGradientAlgorithm):
    """REINFORCE Leave-One-Out for a causal LM on a textenv environment (no value head).

    Args: see :class:`~agents.common.base.BaseAlgorithm` (``config`` is an :class:`RLOOConfig`).

    Example:
        >>> from agents import RLOO, RLOOConfig
        >>> agent = RLOO("tiny-lm", "TextGen-Sentiment-v0", RLOOConfig(group_size=4))  # doctest: +SKIP
        >>> agent.learn(total_episodes=512)  # doctest: +SKIP
    """

    config: RLOOConfig
    config_class: ClassVar[type[RLOOConfig]] = RLOOConfig
    algo_name: ClassVar[str] = "rloo"

    def compute_advantages(self, batch: RolloutBatch) -> torch.Tensor:
        """Each episode's leave-one-out advantage, on every one of its tokens: ``(N, T)``."""
        scores = torch.as_tensor(batch.scores, device=self.device)  # (N,)
        return leave_one_out_advantages(scores, self.group_size)[:, None] * batch.mask  # (N, T)
