"""What every on-policy algorithm shares: the env driver and KV-cached rollout collector, sampling, masked
statistics, the batch types, the training loop (:class:`OnPolicyAlgorithm`), checkpoints, logging, KL
controllers, policy loading and PPO's value head."""

from agents.common.buffers import RolloutBatch, TrainBatch
from agents.common.config import OnPolicyConfig, field_docs, resolve_device
from agents.common.kl import AdaptiveKLController, FixedKLController, KLController, make_kl_controller
from agents.common.on_policy import TIME_METRICS, OnPolicyAlgorithm
from agents.common.rollout import EnvDriver, RolloutCollector, make_env, text_core
from agents.common.sampling import (
    SamplingParams,
    entropy_from_logprobs,
    logprobs_of,
    sample,
    sample_tokens,
    sampling_logprobs,
)
from agents.common.stats import explained_variance, masked_mean, masked_sum, masked_var, masked_whiten
from agents.common.value_head import CausalLMWithValueHead

__all__ = [
    "TIME_METRICS",
    "AdaptiveKLController",
    "CausalLMWithValueHead",
    "EnvDriver",
    "FixedKLController",
    "KLController",
    "OnPolicyAlgorithm",
    "OnPolicyConfig",
    "RolloutBatch",
    "RolloutCollector",
    "SamplingParams",
    "TrainBatch",
    "entropy_from_logprobs",
    "explained_variance",
    "field_docs",
    "logprobs_of",
    "make_env",
    "make_kl_controller",
    "masked_mean",
    "masked_sum",
    "masked_var",
    "masked_whiten",
    "resolve_device",
    "sample",
    "sample_tokens",
    "sampling_logprobs",
    "text_core",
]
