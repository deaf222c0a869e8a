"""PPO for causal LMs with a value head (Schulman et al. 2017; Ziegler et al. 2019): only PPO's own update.

Per iteration, after the shared rollout (:mod:`agents.common.on_policy`)::

    prepare   one no-grad full forward of the batch: old log-probs and values of every generated token;
              GAE over the generated tokens, returns = advantages + values, whitened advantages
    update    ppo_epochs x minibatches: one full forward per (micro-)batch over whole sequences with
              masks; clipped surrogate + clipped value loss - entropy bonus; gradient clipping; early
              stop when the approximate KL to the rollout policy exceeds 1.5 * target_approx_kl
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch

from agents.common.buffers import PER_TOKEN, RolloutBatch, TrainBatch, finite_float32
from agents.common.on_policy import MicroLoss, OnPolicyAlgorithm, place_rows
from agents.common.policies import ActorCriticPolicy, PolicyOutput
from agents.common.stats import explained_variance, masked_mean, masked_whiten
from agents.ppo.config import PPOConfig
from agents.ppo.core import compute_gae, policy_loss, value_loss


@dataclass(frozen=True, kw_only=True)
class PPOBatch(TrainBatch):
    """The shared training view plus PPO's critic fields.

    Attributes:
        old_values: ``(N, T)`` values under the rollout policy.
        returns: ``(N, T)`` float32 value targets (GAE advantages + values).
    """

    old_values: torch.Tensor = field(metadata=PER_TOKEN)
    returns: torch.Tensor = field(metadata=PER_TOKEN)


class PPO(OnPolicyAlgorithm):
    """Proximal Policy Optimization for a causal LM with a value head, on a textenv environment.

    Args: see :class:`~agents.common.base.BaseAlgorithm` (``config`` is a :class:`PPOConfig`; ``policy`` may
    also be a :class:`~agents.CausalLMWithValueHead`). The policy is an
    :class:`~agents.common.policies.ActorCriticPolicy`: the LM with a value head.

    Example:
        >>> from agents import PPO
        >>> agent = PPO("tiny-lm", "TextGen-Sentiment-v0")  # doctest: +SKIP
        >>> agent.learn(total_episodes=512)  # doctest: +SKIP
        >>> agent.generate(["The movie was"])  # doctest: +SKIP
    """

    config: PPOConfig
    config_class: ClassVar[type[PPOConfig]] = PPOConfig
    algo_name: ClassVar[str] = "ppo"
    policy_class: ClassVar[type[ActorCriticPolicy]] = ActorCriticPolicy
    policy: ActorCriticPolicy

    def param_groups(self) -> list[dict[str, Any]]:
        """The LM at ``learning_rate``, the value head at ``value_learning_rate`` (when set)."""
        lr = self.config.value_learning_rate
        if lr is None:
            return super().param_groups()
        head = self.policy.value_head
        head_ids = {id(p) for p in head.parameters()}
        trunk = [p for p in self.policy.parameters() if p.requires_grad and id(p) not in head_ids]
        return [{"params": trunk}, {"params": list(head.parameters()), "lr": lr}]

    def train(self, batch: RolloutBatch) -> dict[str, float]:
        """GAE on the batch, then the PPO epochs; returns the loss statistics and the explained variance.

        When one optimizer step covers the whole batch in one forward (one minibatch, no accumulation), the
        forward that gives the old log-probs and values is the first step's own (the weights are those of
        the rollout until that step), so the batch costs one forward fewer; the values are the same.
        """
        cfg = self.config
        first = None
        if cfg.num_minibatches == 1 and cfg.gradient_accumulation_steps == 1:
            b, first = self._prepare_with_first_forward(batch)
        else:
            b = self.prepare_batch(batch)
        stats = self.update(b, first_forward=first)
        stats["explained_variance"] = explained_variance(b.old_values, b.returns, b.mask)
        return stats

    @torch.no_grad()
    def prepare_batch(self, batch: RolloutBatch) -> PPOBatch:
        """Old log-probs, values and entropies (one no-grad forward), GAE and returns of a rollout batch.

        GAE runs in float64 on the env's float64 rewards; the advantages and value targets enter the
        float32 losses only if they fit there.

        Raises:
            FloatingPointError: Returns or advantages that the float32 losses cannot hold (named).
        """
        self.policy.eval()
        b = self._empty_batch(batch)
        return self._with_advantages(b, batch, self.evaluate_batch(b, entropy=True))

    def _empty_batch(self, batch: RolloutBatch) -> PPOBatch:
        zeros = torch.zeros_like(batch.logprobs)  # (N, T)
        return PPOBatch.from_rollout(batch, old_values=zeros, returns=zeros)

    def _prepare_with_first_forward(self, batch: RolloutBatch) -> tuple[PPOBatch, PolicyOutput]:
        """:meth:`prepare_batch` from a forward with grad over the whole batch, which the first optimizer step
        then trains on (its graph kept); returns the batch and that forward's ``(N, t)`` outputs."""
        self.policy.train()
        b = self._empty_batch(batch)
        rows = torch.arange(len(batch), device=self.device)
        mb = b.take(rows)
        out = self.evaluate(mb, entropy="grad" if self.config.ent_coef > 0 else "value")
        parts: dict[str, torch.Tensor] = {}
        place_rows(parts, out, rows, mb.mask, b.mask.shape)
        with torch.no_grad():
            b = self._with_advantages(
                b, batch, PolicyOutput(parts["logprobs"], parts["entropy"], parts["values"])
            )
        return b, out

    def _with_advantages(self, b: PPOBatch, batch: RolloutBatch, out: PolicyOutput) -> PPOBatch:
        """``b`` with the old log-probs, values and entropies of ``out`` ``(N, T)`` and GAE's advantages and
        returns."""
        cfg = self.config
        mask = batch.mask  # (N, T)
        rewards = batch.rewards.to(self.device) * cfg.reward_scale  # (N, T) float64
        if cfg.reward_clip is not None:
            rewards = rewards.clamp(-cfg.reward_clip, cfg.reward_clip)
        advantages, returns = compute_gae(rewards, _values(out), mask, cfg.gamma, cfg.gae_lambda)
        if cfg.whiten_advantages:
            advantages = masked_whiten(advantages, mask)
        return b.replace(
            old_logprobs=out.logprobs,
            old_values=out.values,
            advantages=finite_float32("PPO's advantages", advantages),
            returns=finite_float32("PPO's value targets (returns)", returns),
            entropy=out.entropy,
        )

    def update(self, b: PPOBatch, *, first_forward: PolicyOutput | None = None) -> dict[str, float]:
        """``ppo_epochs`` passes of minibatch optimizer steps over ``b``; returns the mean loss statistics.

        Args:
            b: The prepared batch.
            first_forward: The current policy's ``(N, t)`` outputs over every row of ``b`` (with grad), which
                the first step uses instead of its own forward (one minibatch of every row).
        """
        cfg = self.config
        pending = [] if first_forward is None else [first_forward]

        def step(b: PPOBatch, mb_inds: torch.Tensor) -> dict[str, float] | None:
            return self._minibatch_step(b, mb_inds, pending.pop() if pending else None)

        means, steps, early_stop = self.run_epochs(b, cfg.ppo_epochs, step)
        means["epochs"] = steps / cfg.num_minibatches
        means["early_stop"] = float(early_stop)
        means["learning_rate"] = cfg.learning_rate
        return means

    def _minibatch_step(
        self, b: PPOBatch, mb_inds: torch.Tensor, forward: PolicyOutput | None = None
    ) -> dict[str, float] | None:
        """One optimizer step over a minibatch; ``None`` (weights unchanged) when the approximate KL exceeds
        ``1.5 * target_approx_kl``. Each micro-batch's token means are weighted by its share of the
        minibatch's tokens, so the accumulated gradient equals that of the whole minibatch."""
        cfg = self.config
        mb_tokens = b.mask[mb_inds].sum().clamp(min=1)

        def micro_loss(micro: torch.Tensor) -> MicroLoss | None:
            mb = b.take(micro)
            # The entropy bonus needs the current policy's entropy; without one, the rollout policy's
            # (computed once in prepare_batch) is the statistic, which saves a (B, T, V) pass per step.
            if forward is not None:  # every row's outputs, in the batch's order: take the minibatch's
                new_logprobs, new_values = forward.logprobs[micro], _values(forward)[micro]
                entropy = forward.entropy[micro] if cfg.ent_coef > 0 and forward.entropy is not None else None
            else:
                own = self.evaluate(mb, entropy="grad" if cfg.ent_coef > 0 else "none")
                new_logprobs, entropy, new_values = own.logprobs, own.entropy, _values(own)
            pg_loss, pg_stats = policy_loss(
                new_logprobs, mb.old_logprobs, mb.advantages, mb.mask, cfg.clip_range
            )
            if cfg.target_approx_kl is not None:
                # Every process takes the same decision (the mean over processes): their steps stay in step.
                approx_kl = self.dist.mean({"approx_kl": float(pg_stats["approx_kl"])})["approx_kl"]
                if approx_kl > 1.5 * cfg.target_approx_kl:
                    return None
            v_loss, v_stats = value_loss(
                new_values,
                mb.old_values,
                mb.returns,
                mb.mask,
                cfg.clip_range_value,
            )
            entropy_mean = masked_mean(mb.entropy if entropy is None else entropy, mb.mask)
            loss = pg_loss + cfg.vf_coef * v_loss - cfg.ent_coef * entropy_mean
            stats = {
                "policy_loss": pg_loss,
                "value_loss": v_loss,
                "entropy": entropy_mean,
                "clip_frac": pg_stats["clipfrac"],
                "approx_kl": pg_stats["approx_kl"],
                "value_clip_frac": v_stats["clipfrac"],
                "loss": loss,
            }
            return loss, mb.mask.sum() / mb_tokens, stats

        return self.accumulated_step(mb_inds, micro_loss)


__all__ = ["PPO", "PPOBatch"]


def _values(out: PolicyOutput) -> torch.Tensor:
    """The value estimates of ``out``; PPO's policy is an actor-critic, which always returns them."""
    if out.values is None:
        raise TypeError("PPO needs value estimates: its policy must be an ActorCriticPolicy (a value head)")
    return out.values
