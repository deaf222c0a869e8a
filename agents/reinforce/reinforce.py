"""REINFORCE with a baseline: REINFORCE++ (batch-normalised returns), SCST / ReMax (greedy baseline), plain.

Advantages are returns-to-go of the env's per-token rewards (:func:`agents.reinforce.core.returns_to_go`)
with the configured baseline; the update is the shared clipped surrogate
(:mod:`agents.common.policy_gradient`). With ``baseline="greedy"`` each iteration also plays the greedy
completion of every sampled prompt through the same env (its reward, KL penalty included, is the baseline);
those episodes are not trained on.
"""

from __future__ import annotations

from typing import ClassVar

import torch

from agents.common.buffers import RolloutBatch
from agents.common.policy_gradient import PolicyGradientAlgorithm
from agents.reinforce.config import REINFORCEConfig
from agents.reinforce.core import batch_normalized_advantages, greedy_baseline_advantages, returns_to_go


class REINFORCE(PolicyGradientAlgorithm):
    """REINFORCE for a causal LM on a textenv environment (no value head).

    Args: see :class:`~agents.common.base.BaseAlgorithm` (``config`` is a :class:`REINFORCEConfig`).

    Example:
        >>> from agents import REINFORCE, REINFORCEConfig
        >>> scst = REINFORCE("tiny-lm", "TextGen-Sentiment-v0", REINFORCEConfig(baseline="greedy"))  # doctest: +SKIP
        >>> scst.learn(total_episodes=512)  # doctest: +SKIP
    """

    config: REINFORCEConfig
    config_class: ClassVar[type[REINFORCEConfig]] = REINFORCEConfig
    algo_name: ClassVar[str] = "reinforce"

    def compute_advantages(self, batch: RolloutBatch) -> torch.Tensor:
        """``(N, T)`` returns-to-go with the configured baseline."""
        returns = returns_to_go(batch.rewards.to(self.device), batch.mask)  # (N, T)
        if self.config.baseline == "batch":
            return batch_normalized_advantages(returns, batch.mask)
        if self.config.baseline == "greedy":
            return greedy_baseline_advantages(returns, self.greedy_scores(batch), batch.mask)
        return returns

    def greedy_scores(self, batch: RolloutBatch) -> torch.Tensor:
        """``(N,)`` returns of the greedy completions of the batch's prompts, played through the env."""
        greedy = self.collector.collect(len(batch), prompt_indices=batch.prompt_indices, deterministic=True)
        self._greedy_score = float(greedy.scores.mean())
        return torch.as_tensor(greedy.scores, device=self.device)

    def train(self, batch: RolloutBatch) -> dict[str, float]:
        """The shared update; with the greedy baseline, also the greedy completions' mean return."""
        stats = super().train(batch)
        if self.config.baseline == "greedy":
            stats["greedy_score"] = self._greedy_score
        return stats
