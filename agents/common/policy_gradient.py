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
from agents.common.on_policy import MicroLoss, OnPolicyAlgorithm
from agents.common.stats import as_bool_mask, masked_mean

LOSS_TYPES = ("grpo", "dr_grpo", "dapo")
IMPORTANCE_SAMPLING_LEVELS = ("token", "sequence")


@dataclass
class PolicyGradientConfig(OnPolicyConfig):
    """Hyper-parameters of the critic-free update (GRPO, RLOO, REINFORCE); see :mod:`agents.common.config`."""

    learning_rate: float = 1e-4
    """Adam learning rate. The default suits the built-in ``tiny-lm``; for pretrained GPT-2-sized models
    use about ``1e-6`` to ``1e-5``."""

    num_iterations: int = 1
    """Passes over each rollout (GRPO's mu). With 1 pass and one minibatch the update is exactly on-policy
    and the old log-probs are the current ones (no extra forward)."""

    clip_range: float = 0.2
    """Lower clip epsilon: ratios are clipped to ``[1 - clip_range, 1 + clip_range_high]``. Must be > 0."""

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
        self._require("clip_range", self.clip_range > 0, "> 0")
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

    def check_group_size(self, group_size: int, minimum: int) -> None:
        """Checks a ``group_size`` field: at least ``minimum`` and a divisor of ``episodes_per_iteration``."""
        self._require("group_size", group_size >= minimum, f">= {minimum}")
        self._require(
            "group_size",
            self.episodes_per_iteration % group_size == 0,
            f"a divisor of episodes_per_iteration={self.episodes_per_iteration}",
        )


def aggregate_loss(
    per_token: torch.Tensor, mask: torch.Tensor, loss_type: str, max_tokens: int
) -> torch.Tensor:
    """Reduces ``(B, T)`` token losses to one number as ``loss_type`` says (see :class:`PolicyGradientConfig`).

    Args:
        per_token: ``(B, T)`` token losses.
        mask: ``(B, T)`` valid tokens.
        loss_type: ``"grpo"``, ``"dr_grpo"`` or ``"dapo"``.
        max_tokens: The constant of ``"dr_grpo"`` (the env's ``max_new_tokens``).

    Returns:
        A 0-d tensor.
    """
    m = as_bool_mask(mask, per_token)
    total = torch.where(m, per_token, torch.zeros((), dtype=per_token.dtype, device=per_token.device))
    if loss_type == "grpo":
        return (total.sum(1) / m.sum(1).clamp(min=1)).mean()  # each sequence's mean, then the mean
    if loss_type == "dr_grpo":
        return total.sum() / (per_token.shape[0] * max_tokens)
    if loss_type == "dapo":
        return total.sum() / m.sum().clamp(min=1)
    raise ValueError(f"loss_type must be one of {LOSS_TYPES}, got {loss_type!r}")


def policy_gradient_loss(
    new_logprobs: torch.Tensor,
    old_logprobs: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    *,
    clip_range: float,
    clip_range_high: float | None = None,
    loss_type: str = "grpo",
    importance_sampling_level: str = "token",
    max_tokens: int = 1,
    ref_logprobs: torch.Tensor | None = None,
    beta: float = 0.0,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Clipped surrogate on given advantages, with token or sequence ratios and a k3 KL to a reference.

    ``r = exp(new - old)`` per token, or ``exp(mean_t(new - old))`` per sequence (GSPO);
    ``l_t = -min(r A_t, clip(r, 1 - c_low, 1 + c_high) A_t) + beta * k3_t`` with
    ``k3_t = exp(ref_t - new_t) - (ref_t - new_t) - 1``; then :func:`aggregate_loss`.

    Args:
        new_logprobs: ``(B, T)`` current log-probs of the taken tokens (with grad).
        old_logprobs: ``(B, T)`` their log-probs at rollout time.
        advantages: ``(B, T)`` advantages.
        mask: ``(B, T)`` valid tokens.
        clip_range: ``c_low`` > 0.
        clip_range_high: ``c_high``; ``None``: ``clip_range``.
        loss_type: See :func:`aggregate_loss`.
        importance_sampling_level: ``"token"`` or ``"sequence"``.
        max_tokens: See :func:`aggregate_loss`.
        ref_logprobs: ``(B, T)`` a frozen reference's log-probs (needed when ``beta > 0``).
        beta: Weight of the k3 KL.

    Returns:
        ``(loss, stats)``; detached 0-d stats ``clipfrac`` (tokens whose ratio lies outside the clip range),
        ``approx_kl`` (k3 of old vs new), ``ratio_mean`` and, with a reference, ``kl_ref`` (mean k3 to it).
    """
    if importance_sampling_level not in IMPORTANCE_SAMPLING_LEVELS:
        raise ValueError(
            f"importance_sampling_level must be one of {IMPORTANCE_SAMPLING_LEVELS}, got {importance_sampling_level!r}"
        )
    high = clip_range if clip_range_high is None else clip_range_high
    m = as_bool_mask(mask, new_logprobs)
    zero = torch.zeros((), dtype=new_logprobs.dtype, device=new_logprobs.device)
    token_log_ratio = torch.where(m, new_logprobs - old_logprobs.detach(), zero)  # (B, T)
    log_ratio = token_log_ratio
    if importance_sampling_level == "sequence":
        log_ratio = masked_mean(token_log_ratio, m, dim=1).unsqueeze(1)  # (B, 1)
    ratio = torch.exp(log_ratio)  # (B, T) or (B, 1)
    adv = torch.where(m, advantages.detach().to(new_logprobs.dtype), zero)  # (B, T)
    clipped = torch.clamp(ratio, 1.0 - clip_range, 1.0 + high)
    per_token = -torch.minimum(ratio * adv, clipped * adv)  # (B, T)
    kl_ref = None
    if beta > 0:
        if ref_logprobs is None:
            raise ValueError("beta > 0 needs ref_logprobs, the reference's log-probs of the tokens")
        delta = torch.where(m, ref_logprobs.detach() - new_logprobs, zero)  # (B, T)
        kl_ref = torch.exp(delta) - delta - 1.0  # (B, T) k3 >= 0
        per_token = per_token + beta * kl_ref
    loss = aggregate_loss(per_token, m, loss_type, max_tokens)
    with torch.no_grad():
        r = ratio.expand_as(adv)
        stats = {
            "clipfrac": masked_mean(((r < 1.0 - clip_range) | (r > 1.0 + high)).to(r.dtype), m),
            "approx_kl": masked_mean(torch.expm1(token_log_ratio) - token_log_ratio, m),
            "ratio_mean": masked_mean(r, m),
        }
        if kl_ref is not None:
            stats["kl_ref"] = masked_mean(kl_ref, m)
    return loss, stats


class PolicyGradientAlgorithm(OnPolicyAlgorithm):
    """The critic-free on-policy core: subclasses implement :meth:`compute_advantages` (and set
    ``group_size`` when completions of one prompt are compared). Args: see :class:`OnPolicyAlgorithm`."""

    config: PolicyGradientConfig
    config_class: ClassVar[type[OnPolicyConfig]] = PolicyGradientConfig

    def __init__(
        self, policy: str | os.PathLike[str] | nn.Module, env: Any, config: Any = None, **kwargs: Any
    ):
        super().__init__(policy, env, config, **kwargs)
        self.ref_lm: nn.Module | None = None
        # The reference of beta's KL is the initial policy: with LoRA the policy with its adapters off
        # (no copy), else a frozen copy (checkpoints carry it).
        self.ref_adapters_off = self.config.beta > 0 and self.is_peft
        if self.config.beta > 0 and not self.is_peft:
            self.ref_lm = copy.deepcopy(self.lm).eval().requires_grad_(False)

    @property
    def group_size(self) -> int:
        """Completions per prompt in a rollout (consecutive episodes); 1 unless the algorithm groups."""
        return 1

    def rollout_prompt_indices(self) -> np.ndarray:
        """``episodes_per_iteration / group_size`` prompts drawn from ``prompt_rng``, each repeated
        ``group_size`` times: the episodes of a group are consecutive and share their prompt."""
        G = self.group_size
        drawn = self.prompt_rng.integers(
            self.driver.num_prompts, size=self.config.episodes_per_iteration // G
        )
        return np.repeat(drawn, G)

    def compute_advantages(self, batch: RolloutBatch) -> torch.Tensor:
        """``(N, T)`` advantage of every generated token of the rollout (0 outside ``batch.mask``)."""
        raise NotImplementedError

    def _extra_models(self) -> dict[str, nn.Module]:
        return {} if self.ref_lm is None else {"reference": self.ref_lm}

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
            b = b._replace(old_logprobs=self.evaluate_batch(b)[0])
        if self.ref_lm is not None or self.ref_adapters_off:
            with adapters_off(self.lm):  # LoRA: the reference is the policy with its adapters off
                b = b._replace(ref_logprobs=self.evaluate_batch(b, model=self.ref_lm or self.lm)[0])
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
            new_logprobs, _, entropy = self.evaluate_tokens(
                mb.input_ids, mb.attention_mask, mb.position_ids, mb.tokens, with_entropy=True
            )
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
                max_tokens=int(self.core.max_new_tokens),
                ref_logprobs=mb.ref_logprobs,
                beta=cfg.beta,
            )
            share = mb.mask.sum() / mb_tokens if cfg.loss_type == "dapo" else len(micro) / len(mb_inds)
            return loss, share, {"policy_loss": loss, "entropy": masked_mean(entropy, mb.mask), **loss_stats}  # type: ignore[arg-type]

        return self.accumulated_step(mb_inds, micro_loss)


__all__ = [
    "IMPORTANCE_SAMPLING_LEVELS",
    "LOSS_TYPES",
    "PolicyGradientAlgorithm",
    "PolicyGradientConfig",
    "aggregate_loss",
    "policy_gradient_loss",
]
