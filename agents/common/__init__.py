"""What every on-policy algorithm shares: the policy objects, the env driver and KV-cached rollout collector,
sampling, masked statistics, the batch types, the clipped surrogate, construction, inference and persistence
(:class:`BaseAlgorithm`), the training loop (:class:`OnPolicyAlgorithm`), checkpoints, logging and the KL
coefficient."""

from agents.common.base import BaseAlgorithm
from agents.common.buffers import RolloutBatch, TrainBatch
from agents.common.config import OnPolicyConfig, field_docs
from agents.common.kl import (
    AdaptiveKLController,
    FixedKLController,
    KLCoefficient,
    KLController,
    make_kl_controller,
)
from agents.common.losses import aggregate_loss, policy_gradient_loss
from agents.common.on_policy import TIME_METRICS, OnPolicyAlgorithm
from agents.common.policies import ActorCriticPolicy, CausalLMPolicy, PolicyOutput
from agents.common.rollout import EnvDriver, RolloutCollector, make_env
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
    "ActorCriticPolicy",
    "AdaptiveKLController",
    "BaseAlgorithm",
    "CausalLMPolicy",
    "CausalLMWithValueHead",
    "EnvDriver",
    "FixedKLController",
    "KLCoefficient",
    "KLController",
    "OnPolicyAlgorithm",
    "OnPolicyConfig",
    "PolicyOutput",
    "RolloutBatch",
    "RolloutCollector",
    "SamplingParams",
    "TrainBatch",
    "aggregate_loss",
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
    "policy_gradient_loss",
    "sample",
    "sample_tokens",
    "sampling_logprobs",
]
