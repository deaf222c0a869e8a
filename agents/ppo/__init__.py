"""PPO for transformers causal LMs: configuration, tensor math, and KL-coefficient controllers."""

from agents.ppo.config import PPOConfig, resolve_device
from agents.ppo.core import (
    compute_gae,
    entropy_from_logprobs,
    explained_variance,
    logprobs_of,
    masked_mean,
    masked_sum,
    masked_var,
    masked_whiten,
    policy_loss,
    sample,
    sampling_logprobs,
    value_loss,
)
from agents.ppo.kl import AdaptiveKLController, FixedKLController, KLController, make_kl_controller

__all__ = [
    "AdaptiveKLController",
    "FixedKLController",
    "KLController",
    "PPOConfig",
    "compute_gae",
    "entropy_from_logprobs",
    "explained_variance",
    "logprobs_of",
    "make_kl_controller",
    "masked_mean",
    "masked_sum",
    "masked_var",
    "masked_whiten",
    "policy_loss",
    "resolve_device",
    "sample",
    "sampling_logprobs",
    "value_loss",
]
