"""The critic-free policy-gradient update GRPO, RLOO and REINFORCE share: clipped surrogate on given advantages.

An algorithm on this base only says how the advantage of each token is computed from a rollout
(:meth:`PolicyGradientAlgorithm.compute_advantages`) and which prompts a rollout starts from; the rest is
here::

    prepare   advantages (the algorithm's), old log-probs (one no-grad forward, skipped when the update is
              exactly on-policy: one pass, one minibatch) and, with beta > 0, a frozen reference's log-probs
    update    num_iterations x minibatches: one full forward per (micro-)batch; clipped surrogate
              (token or sequence-level ratios) + beta * k3 KL to the reference, aggregated by loss_type

No value head is built. The env's own KL penalty (a task's ``KLPenalty``) is in the rewards, as for PPO.
"""

from __future__ import annotations

import copy
import os
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from agents.common.buffers import RolloutBatch, TrainBatch
from agents.common.config import OnPolicyConfig
from agents.common.lora import adapters_off
from agents.common.losses import IMPORTANCE_SAMPLING_LEVELS, LOSS_TYPES, policy_gradient_loss
from agents.common.on_policy import MicroLoss, OnPolicyAlgorithm
from agents.common.policies import CausalLMPolicy, PolicyOutput
from agents.common.stats import masked_mean


@dataclass
class PolicyGradientConfig(OnPolicyConfig):
    """Hyper-parameters of the critic-free update (GRPO, RLOO, REINFORCE); see :mod:`agents.common.config`."""

    num_iterations: int = 1
    """Passes over each rollout (GRPO's mu). With 1 pass and one minibatch the update is exactly on-policy
    and the old log-probs are the current ones (no extra forward)."""

    clip_range_high: float | None = None
    """Upper clip epsilon (DAPO's clip-higher, e.g. 0.28); ``None``: ``clip_range``. Must be > 0."""

    loss_type: str = "grpo"
    """How token losses are aggregated: ``"grpo"`` (mean over each sequence's tokens, then over
    sequences), ``"dr_grpo"`` (sum over tokens divided by sequences x the env's max_new_tokens, Dr. GRPO)
    or ``"dapo"`` (mean over all tokens of the minibatch, DAPO)."""

    importance_sampling_level: str = "token"
    """``"token"``: one ratio per token (GRPO); ``"sequence"``: one length-normalised ratio per sequence,
    ``exp(mean_t log ratio_t)``, clipped as a whole (GSPO)."""

    beta: float = 0.0
    """Weight of the k3 KL to a frozen copy of the initial policy, added to each token's loss (GRPO's beta;
    0 keeps no reference). Independent of the env's KL penalty. Must be >= 0."""

    def check(self) -> None:
        """The shared ranges plus the critic-free ones."""
        super().check()
        self._require("num_iterations", self.num_iterations >= 1, ">= 1")
        self._require(
            "clip_range_high", self.clip_range_high is None or self.clip_range_high > 0, "> 0 or None"
        )
        self._require("loss_type", self.loss_type in LOSS_TYPES, f"one of {LOSS_TYPES}")
        self._require(
            "importance_sampling_level",
            self.importance_sampling_level in IMPORTANCE_SAMPLING_LEVELS,
            f"one of {IMPORTANCE_SAMPLING_LEVELS}",
        )
        self._require("beta", self.beta >= 0, ">= 0")


@dataclass
class GroupConfig(PolicyGradientConfig):
    """The critic-free update on groups of completions of one prompt (GRPO, RLOO)."""

    group_size: int = 4
    """Completions sampled per prompt (G); a rollout holds ``episodes_per_iteration / group_size`` prompts,
    and each completion is compared with the others of its group. At least 2, and a divisor of
    ``episodes_per_iteration``."""

    def check(self) -> None:
        """The critic-free ranges plus ``group_size``."""
        super().check()
        self._require("group_size", self.group_size >= 2, ">= 2")
        self._require(
            "group_size",
            self.episodes_per_iteration % self.group_size == 0,
            f"a divisor of episodes_per_iteration={self.episodes_per_iteration}",
        )


class PolicyGradientAlgorithm(OnPolicyAlgorithm):
    """The critic-free on-policy core: subclasses implement :meth:`compute_advantages`. Args: see
    :class:`~agents.common.base.BaseAlgorithm`."""

    config: PolicyGradientConfig
    config_class: ClassVar[type[OnPolicyConfig]] = PolicyGradientConfig

    def __init__(
        self, policy: str | os.PathLike[str] | nn.Module, env: Any, config: Any = None, **kwargs: Any
    ):
        super().__init__(policy, env, config, **kwargs)
        # The reference of beta's KL is the initial policy: with LoRA the policy with its adapters off
        # (no copy), else a frozen copy (checkpoints carry it).
        self.ref_policy: CausalLMPolicy | None = None
        if self.config.beta > 0:
            self.ref_policy = (
                AdaptersOffPolicy(self.policy)
                if self.is_peft
                else CausalLMPolicy(
                    copy.deepcopy(self.lm).eval().requires_grad_(False),
                    self.sampling,
                    mixed_precision=self.mixed_precision,
                    logits_chunk_size=self.config.logits_chunk_size,
                )
            )

    @property
    def ref_lm(self) -> nn.Module | None:
        """The frozen copy of the initial LM that ``beta``'s KL is measured against (``None`` without one, or
        with LoRA, where the reference is the policy with its adapters off)."""
        return None if self.ref_policy is None or self.is_peft else self.ref_policy.lm

    @property
    def group_size(self) -> int:
        """Completions per prompt in a rollout (consecutive episodes): ``config.group_size``, else 1."""
        return self.config.group_size if isinstance(self.config, GroupConfig) else 1

    def rollout_prompt_indices(self) -> np.ndarray:
        """``episodes_per_iteration / group_size`` prompts drawn from ``prompt_rng``, each repeated
        ``group_size`` times: the episodes of a group are consecutive and share their prompt."""
        G = self.group_size
        drawn = self.prompt_rng.integers(
            self.driver.num_prompts, size=self.config.episodes_per_iteration // G
        )
        return np.repeat(drawn, G)

    def compute_advantages(self, batch: RolloutBatch) -> torch.Tensor:
        """``(N, T)`` advantage of every token of the rollout (0 outside ``batch.mask``), float64 or float32."""
        raise NotImplementedError

    def _extra_models(self) -> dict[str, nn.Module]:
        lm = self.ref_lm
        return {} if lm is None else {"reference": lm}

    def check_resume(self, saved_config: dict[str, Any], directory: str) -> None:
        """A checkpoint of a run without ``beta`` kept no reference (the initial policy): ``beta`` cannot
        start above 0 from it, except with LoRA (the reference is the policy with its adapters off)."""
        if self.ref_lm is not None and not saved_config.get("beta", 0.0) > 0:
            raise ValueError(
                f"beta={self.config.beta}: checkpoint {directory!r} was trained with beta=0 and holds no reference "
                "model (beta's reference is the initial policy, which that run did not keep); load it with beta=0, "
                "or start a new run with beta > 0"
            )

    @property
    def _fresh_old_logprobs(self) -> bool:
        # One pass in one minibatch: the weights at the first (only) step are the rollout's.
        return self.config.num_iterations == 1 and self.config.num_minibatches == 1

    def train(self, batch: RolloutBatch) -> dict[str, float]:
        """Advantages, old (and reference) log-probs, then the clipped updates; returns their statistics."""
        b = self.prepare_batch(batch)
        return self.update(b)

    @torch.no_grad()
    def prepare_batch(self, batch: RolloutBatch) -> TrainBatch:
        """The training view of a rollout: advantages and, where needed, old and reference log-probs."""
        self.policy.eval()
        b = TrainBatch.from_rollout(batch, self.compute_advantages(batch).to(self.device))
        if not self._fresh_old_logprobs:
            b = b.replace(old_logprobs=self.evaluate_batch(b).logprobs)
        if self.ref_policy is not None:
            b = b.replace(ref_logprobs=self.evaluate_batch(b, policy=self.ref_policy).logprobs)
        return b

    def update(self, b: TrainBatch) -> dict[str, float]:
        """``num_iterations`` passes of minibatch optimizer steps over ``b``; returns the mean statistics."""
        means, _, _ = self.run_epochs(b, self.config.num_iterations, self._minibatch_step)
        means["learning_rate"] = self.config.learning_rate
        return means

    def _minibatch_step(self, b: TrainBatch, mb_inds: torch.Tensor) -> dict[str, float] | None:
        """One optimizer step over a minibatch, accumulated over micro-batches so that the gradient equals
        the whole minibatch's: micro-batch losses are weighted by their share of the minibatch's tokens
        (``"dapo"``) or sequences (``"grpo"``, ``"dr_grpo"``)."""
        cfg = self.config
        mb_tokens = b.mask[mb_inds].sum().clamp(min=1)

        def micro_loss(micro: torch.Tensor) -> MicroLoss:
            mb = b.take(micro)
            new_logprobs, entropy, _ = self.evaluate(mb, entropy="value")
            old_logprobs = new_logprobs.detach() if self._fresh_old_logprobs else mb.old_logprobs
            loss, loss_stats = policy_gradient_loss(
                new_logprobs,
                old_logprobs,
                mb.advantages,
                mb.mask,
                clip_range=cfg.clip_range,
                clip_range_high=cfg.clip_range_high,
                loss_type=cfg.loss_type,
                importance_sampling_level=cfg.importance_sampling_level,
                max_tokens=self.spec.max_new_tokens,
                ref_logprobs=mb.ref_logprobs,
                beta=cfg.beta,
            )
            share = mb.mask.sum() / mb_tokens if cfg.loss_type == "dapo" else len(micro) / len(mb_inds)
            return loss, share, {"policy_loss": loss, "entropy": masked_mean(entropy, mb.mask), **loss_stats}  # type: ignore[arg-type]

        return self.accumulated_step(mb_inds, micro_loss)


class AdaptersOffPolicy(CausalLMPolicy):
    """A PEFT policy seen with its adapters disabled (the initial policy, without a copy of the weights):
    GRPO's ``beta`` reference under LoRA."""

    def __init__(self, policy: CausalLMPolicy):
        super().__init__(policy.model, policy.sampling, mixed_precision=policy.mixed_precision)
        self.chunk_size = policy.chunk_size

    def forward(self, *args: Any, **kwargs: Any) -> PolicyOutput:  # type: ignore[override]
        with adapters_off(self.lm):
            return super().forward(*args, **kwargs)


__all__ = [
    "IMPORTANCE_SAMPLING_LEVELS",
    "LOSS_TYPES",
    "GroupConfig",
    "PolicyGradientAlgorithm",
    "PolicyGradientConfig",
]
