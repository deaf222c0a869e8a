"""PPOConfig: PPO's own hyper-parameters on top of :class:`~agents.common.config.OnPolicyConfig`.

An iteration collects ``episodes_per_iteration`` episodes, then runs ``ppo_epochs`` passes over them in
minibatches of ``minibatch_size`` episodes (one optimizer step each).
"""

from __future__ import annotations

from dataclasses import dataclass

from agents.common.config import OnPolicyConfig

__all__ = ["PPOConfig"]


# The learning rate is tuned on TextGen-Sentiment-v0 (1e-4 reaches the threshold too but lets the KL drift).
@dataclass
class PPOConfig(OnPolicyConfig, defaults={"learning_rate": 5e-5, "minibatch_size": 8}):
    """Hyper-parameters of the PPO agent for causal LMs (see :mod:`agents.common.config` for batch terms).

    Every field is validated in ``__post_init__``: a wrong type raises ``TypeError`` and an out-of-range
    value raises ``ValueError``, both naming the field and the bad value.
    """

    ppo_epochs: int = 4
    """Passes over each rollout batch."""

    # --- advantages and returns ---------------------------------------------------------------------
    gamma: float = 1.0
    """Discount factor, in ``(0, 1]``. 1.0 is usual for episodic text generation."""

    gae_lambda: float = 0.95
    """GAE lambda, in ``[0, 1]`` (0: one-step TD advantages, 1: Monte-Carlo returns minus values)."""

    whiten_advantages: bool = True
    """Normalise advantages to zero mean and unit variance over the valid tokens of the rollout batch."""

    reward_scale: float = 1.0
    """Multiplier applied to every env reward before GAE. Must be > 0."""

    reward_clip: float | None = None
    """If set, rewards (after scaling) are clipped to ``[-reward_clip, reward_clip]``. Must be > 0."""

    # --- losses -------------------------------------------------------------------------------------
    clip_range_value: float | None = 0.2
    """Value clip: new values are clipped to ``old ± clip_range_value`` in the value loss (in reward
    units, so rescale it with ``reward_scale``); ``None`` disables value clipping. Must be > 0."""

    value_learning_rate: float | None = None
    """Adam learning rate of the value head (the linear layer on the trunk; the shared trunk learns at
    ``learning_rate``). ``None``: ``learning_rate``. A freshly initialised head predicts noise of about
    the rewards' size, and at a small policy learning rate it stays noise for thousands of episodes,
    so its GAE advantages are mostly noise too (``explained_variance`` far below 0). Must be > 0."""

    vf_coef: float = 0.1
    """Weight of the value loss. 0.1 (as TRL) rather than SB3's 0.5 because the value head shares the LM
    trunk, and large value gradients disturb the policy. Must be >= 0."""

    ent_coef: float = 0.0
    """Weight of the entropy bonus (subtracted from the loss). Must be >= 0."""

    target_approx_kl: float | None = None
    """Early stopping (as stable-baselines3): when the approximate KL (k3 estimator) between the rollout
    policy and the current policy on a minibatch exceeds ``1.5 * target_approx_kl``, the remaining
    minibatches and epochs of the iteration are skipped. ``None`` disables it. Must be > 0."""

    def check(self) -> None:
        """PPO's ranges on top of the shared ones."""
        super().check()
        self._require("reward_scale", self.reward_scale > 0, "> 0")
        for name in ("reward_clip", "clip_range_value", "target_approx_kl", "value_learning_rate"):
            value = getattr(self, name)
            self._require(name, value is None or value > 0, "> 0 or None")
        for name in ("vf_coef", "ent_coef"):
            self._require(name, getattr(self, name) >= 0, ">= 0")
        self._require("gamma", 0 < self.gamma <= 1, "in (0, 1]")
        self._require("gae_lambda", 0 <= self.gae_lambda <= 1, "in [0, 1]")
        self._require("ppo_epochs", self.ppo_epochs >= 1, ">= 1")
