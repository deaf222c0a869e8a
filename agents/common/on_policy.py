"""The on-policy training loop every algorithm shares: ``Algo(policy, env, config).learn(total_episodes)``.

One iteration::

    rollout   episodes_per_iteration finished episodes through env.step (KV-cached policy, rollout.py);
              per-token rewards are what the env gives (its KL terms scored after the rollout, by the env)
    train     the algorithm's own math (:meth:`OnPolicyAlgorithm.train`): advantages, losses, updates
    control   the KL coefficient's controller steps (only when the run asked for one)

:class:`OnPolicyAlgorithm` holds the loop: iterations, progress bar, logging, callbacks, periodic
checkpoints, and the minibatch machinery every update uses (epochs of shuffled minibatches, gradient
accumulation, one backward and one optimizer step per minibatch). Construction, inference and persistence
are :class:`~agents.common.base.BaseAlgorithm`'s. An algorithm subclass sets ``config_class``,
``algo_name`` (and ``policy_class`` when it needs a value head) and implements :meth:`~OnPolicyAlgorithm.train`.

Every gradient goes through :meth:`OnPolicyAlgorithm.backward` and every optimizer step through
:meth:`OnPolicyAlgorithm.optimizer_step`; under a multi-process launch (``accelerate launch``, ``torchrun``)
they run on Accelerate and the training forwards through its DDP wrapper (:mod:`agents.common.distributed`).

Alignment: observations are ``(B, P + T)`` with the prompt left-padded into ``[0, P)`` and token ``t`` after
the prompt at ``P + t``, so the logits (and values) at position ``P + t - 1`` belong to token ``t``.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np
import torch
from tqdm.auto import tqdm

from agents.common import checkpoint as ckpt
from agents.common.base import BaseAlgorithm, check_episode_count
from agents.common.buffers import RolloutBatch, TrainBatch
from agents.common.logger import MetricsLogger, plot_learning_curve
from agents.common.policies import Entropy, PolicyOutput

# Metrics that depend on wall-clock time (excluded when comparing runs for determinism).
TIME_METRICS = ("samples_per_s", "tokens_per_s", "iteration_time", "rollout_time", "update_time")

A = TypeVar("A", bound="OnPolicyAlgorithm")

MicroLoss = tuple[torch.Tensor, "torch.Tensor | float", dict[str, torch.Tensor]]
"""``(loss, share, stats)`` of one micro-batch (see :meth:`OnPolicyAlgorithm.accumulated_step`)."""

# Metrics that are not averaged over processes: counters and the coefficient every process shares.
_GLOBAL_METRICS = ("iteration", "episodes", "kl_coef")


def place_rows(
    parts: dict[str, torch.Tensor],
    out: PolicyOutput,
    rows: torch.Tensor,
    mask: torch.Tensor,
    shape: torch.Size,
) -> None:
    """Writes a forward's ``(R, t)`` outputs of ``rows`` into ``(N, T)`` tensors of ``parts`` (by field name,
    made on first use), detached and 0 outside ``mask`` ``(R, t)``."""
    t = mask.shape[1]
    for name, part in out._asdict().items():
        if part is not None:
            dest = parts.setdefault(name, torch.zeros(shape, device=part.device))  # (N, T)
            dest[rows, :t] = torch.where(mask, part.detach(), 0.0)


class OnPolicyAlgorithm(BaseAlgorithm):
    """The shared on-policy loop for causal LMs on textenv environments. Args: see
    :class:`~agents.common.base.BaseAlgorithm`."""

    _last_batch: RolloutBatch | None = None

    # --- one iteration ----------------------------------------------------------------------------------
    def rollout_prompt_indices(self) -> np.ndarray | None:
        """The prompt of each episode of the next rollout, or ``None`` to let the env draw them (PPO).

        Algorithms that compare completions of one prompt (groups, a greedy baseline) draw them here from
        ``self.prompt_rng``.
        """
        return None

    def collect_rollout(self) -> RolloutBatch:
        """Collects ``episodes_per_iteration`` episodes with the current policy."""
        seed = None if self._env_seeded else self.seed
        self._env_seeded = True
        indices = self.rollout_prompt_indices()
        batch = self.collector.collect(
            self.config.episodes_per_iteration,
            seed=seed,
            prompt_indices=indices,
            defer_kl=self.config.kl_after_rollout,
        )
        batch.prompt_indices = indices
        return batch

    def train(self, batch: RolloutBatch) -> dict[str, float]:
        """The algorithm's update on one rollout batch; returns its statistics (means over steps)."""
        raise NotImplementedError

    def train_iteration(self) -> dict[str, float]:
        """Rollout, update, KL-controller step; returns the iteration's metrics (means over processes when
        several train together; ``episodes`` counts the global batch, samples/s and tokens/s are global)."""
        start = time.perf_counter()
        kl_coef = self.kl_coefficient.value
        batch = self.collect_rollout()
        update_start = time.perf_counter()
        stats = self.train(batch)
        end = time.perf_counter()
        world = self.dist.world_size
        metrics: dict[str, float] = {
            "iteration": self.iteration + 1,
            "episodes": self.num_episodes + len(batch) * world,
            "score": float(batch.scores.mean()),
            "score_std": float(batch.scores.std()),
            **{f"reward/{k}": float(np.nanmean(v)) for k, v in batch.reward_terms.items()},
            **({"kl": float(batch.kl.mean())} if batch.kl is not None else {}),
            **({"kl_coef": kl_coef} if self.kl_terms else {}),  # only a task with a KL term has one
            "episode_length": float(batch.mask.sum(1).float().mean()),
            **stats,
            "samples_per_s": len(batch) / (end - start),
            "tokens_per_s": batch.num_tokens / (end - start),
            "iteration_time": end - start,
            "rollout_time": update_start - start,
            "update_time": end - update_start,
        }
        if self.dist.enabled:
            metrics.update(self.dist.mean({k: v for k, v in metrics.items() if k not in _GLOBAL_METRICS}))
            metrics["samples_per_s"] *= world
            metrics["tokens_per_s"] *= world
        if batch.kl is not None:  # the global mean KL: every process keeps the same coefficient
            self.kl_coefficient.update(metrics["kl"], len(batch) * world)
        self.iteration += 1
        self.num_episodes += len(batch) * world
        self.history.append(metrics)
        self._last_batch = batch
        return metrics

    # --- forward, backward and optimizer step (shared by every update) ---------------------------------
    def evaluate(self, mb: TrainBatch, entropy: Entropy = "none") -> PolicyOutput:
        """The training policy's forward over a (micro-)batch (through the DDP wrapper when distributed)."""
        return self.train_policy(mb.input_ids, mb.attention_mask, mb.position_ids, mb.tokens, entropy)

    @torch.no_grad()
    def evaluate_batch(
        self, b: TrainBatch, *, entropy: bool = False, policy: torch.nn.Module | None = None
    ) -> PolicyOutput:
        """A policy's forward over a whole batch without grad, one minibatch of rows at a time.

        Args:
            b: The batch.
            entropy: Also return the entropy.
            policy: Another policy to evaluate the tokens with (a frozen reference); default: this one.

        Returns:
            ``(N, T)`` tensors, 0 outside ``b.mask``.
        """
        policy = self.train_policy if policy is None else policy
        parts: dict[str, torch.Tensor] = {}
        for idx in torch.arange(b.tokens.shape[0], device=self.device).split(
            self.config.effective_minibatch_size
        ):
            mb = b.take(idx)
            out = policy(
                mb.input_ids, mb.attention_mask, mb.position_ids, mb.tokens, "value" if entropy else "none"
            )
            place_rows(parts, out, idx, mb.mask, b.mask.shape)
        return PolicyOutput(parts["logprobs"], parts.get("entropy"), parts.get("values"))

    def backward(self, loss: torch.Tensor) -> None:
        """Back-propagates one micro-batch's loss (gradients accumulate until :meth:`optimizer_step`); with
        several processes through ``accelerator.backward`` (gradients averaged across processes)."""
        self.dist.backward(loss)

    def optimizer_step(self) -> float | None:
        """Clips the accumulated gradients to ``max_grad_norm``, steps the optimizer and clears them.

        Returns:
            The gradient norm before clipping, or ``None`` without clipping.

        Raises:
            FloatingPointError: A gradient that is not finite (the weights and the optimizer then stay as
                they were): a weight never becomes NaN without an error saying why.
        """
        params = [p for p in self.policy.parameters() if p.requires_grad]
        grad_norm = None
        if self.config.max_grad_norm is not None:
            grad_norm = self.dist.clip_grad_norm(params, self.config.max_grad_norm)
            finite = math.isfinite(grad_norm)
        else:
            finite = all(bool(torch.isfinite(p.grad).all()) for p in params if p.grad is not None)
        if not finite:
            self.optimizer.zero_grad(set_to_none=True)
            raise FloatingPointError(
                f"iteration {self.iteration + 1}: the gradient is not finite (norm {grad_norm!r}), so the step was "
                "not taken and the weights are unchanged; the rewards or advantages are likely too large for the "
                "float32 update: scale the env's rewards down (a scorer weight, reward_scale) or lower the "
                "learning rate"
            )
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return grad_norm

    def accumulated_step(
        self, mb_inds: torch.Tensor, micro_loss: Callable[[torch.Tensor], MicroLoss | None]
    ) -> dict[str, float] | None:
        """One optimizer step over the minibatch ``mb_inds``, its gradient accumulated over micro-batches.

        Args:
            mb_inds: ``(M,)`` rows of the train batch.
            micro_loss: Called with each micro-batch's rows (``config.micro_batch_size`` of them); returns
                ``(loss, share, stats)``: the micro-batch's loss, its share of the minibatch (of the tokens or
                the sequences, as the loss averages, so that the accumulated gradient equals the whole
                minibatch's) and 0-d statistics; or ``None`` to abandon the step.

        Returns:
            The share-weighted statistics plus ``grad_norm`` (with clipping), or ``None`` when ``micro_loss``
            abandoned the step (the weights and the optimizer are then unchanged).
        """
        stats: dict[str, float] = {}
        self.optimizer.zero_grad(set_to_none=True)
        for micro in mb_inds.split(self.config.micro_batch_size):
            out = micro_loss(micro)
            if out is None:
                self.optimizer.zero_grad(set_to_none=True)
                return None
            loss, share, micro_stats = out
            self.backward(loss * share)
            w = float(share)
            for k, v in micro_stats.items():
                stats[k] = stats.get(k, 0.0) + float(v.detach()) * w
        grad_norm = self.optimizer_step()
        if grad_norm is not None:
            stats["grad_norm"] = grad_norm
        return stats

    def run_epochs(
        self, b: TrainBatch, epochs: int, step: Callable[[Any, torch.Tensor], dict[str, float] | None]
    ) -> tuple[dict[str, float], int, bool]:
        """``epochs`` passes over ``b`` in shuffled minibatches, one ``step(b, mb_inds)`` each.

        Returns:
            ``(means, steps, stopped)``: the mean of each statistic over the steps taken, their number,
            and whether a step returned ``None`` (which ends every pass).
        """
        self.policy.train()
        N = b.tokens.shape[0]
        size = self.config.effective_minibatch_size
        sums: dict[str, float] = {}
        steps = 0
        stopped = False
        for _ in range(epochs):
            perm = torch.randperm(N, generator=self.shuffle_generator).to(self.device)
            for start in range(0, N, size):
                stats = step(b, perm[start : start + size])
                if stats is None:
                    stopped = True
                    break
                for k, v in stats.items():
                    sums[k] = sums.get(k, 0.0) + v
                steps += 1
            if stopped:
                break
        self.policy.eval()
        return {k: v / max(steps, 1) for k, v in sums.items()}, steps, stopped

    # --- the loop ------------------------------------------------------------------------------------------
    def learn(
        self: A,
        total_episodes: int,
        callback: Callable[[dict[str, Any]], bool | None] | None = None,
        *,
        resume: bool = False,
    ) -> A:
        """Trains for ``total_episodes`` more episodes (whole iterations, so rounded up).

        With ``resume=True`` the newest checkpoint in ``config.log_dir`` (if any) is loaded first and
        training runs until ``total_episodes`` episodes in all (counting the checkpoint's).

        Periodic checkpoints are written every ``config.checkpoint_interval`` iterations, and a final one
        at the end, when ``config.log_dir`` is set.

        Args:
            total_episodes: Episodes to train for (or, resuming, in all); a Python or NumPy integer >= 0.
            callback: Called after each iteration with a dict of locals (``self``, ``metrics``, ``batch``,
                ``iteration``); returning ``False`` stops training.
            resume: Continue from the newest checkpoint in ``config.log_dir``.

        Returns:
            ``self``.

        Raises:
            ValueError: A bad ``total_episodes``, or ``resume`` without ``config.log_dir``.
        """
        total_episodes = check_episode_count("total_episodes", total_episodes)
        cfg = self.config
        if resume:
            if cfg.log_dir is None:
                raise ValueError("learn(resume=True) needs config.log_dir, where the checkpoints are")
            latest = ckpt.latest_checkpoint(cfg.log_dir)
            if latest is not None:
                self.load_state(latest)
            target = total_episodes
        else:
            target = self.num_episodes + total_episodes
        start_episodes = self.num_episodes  # after a resume: what the checkpoint had trained
        log_dir = cfg.log_dir if self.dist.is_main else None  # only the main process writes files
        logger = MetricsLogger(log_dir, verbose=self.verbose, rows=self.history, print_fn=tqdm.write)
        bar = tqdm(
            total=target,
            initial=self.num_episodes,
            unit="ep",
            disable=not self.progress_bar,
            dynamic_ncols=True,
        )
        try:
            while self.num_episodes < target:
                metrics = self.train_iteration()
                logger.log(metrics)
                bar.update(metrics["episodes"] - bar.n)
                bar.set_postfix(score=f"{metrics['score']:.3f}", kl=f"{metrics.get('kl', float('nan')):.2f}")
                if (
                    cfg.log_dir is not None
                    and cfg.checkpoint_interval
                    and self.iteration % cfg.checkpoint_interval == 0
                ):
                    self.save_checkpoint()
                locals_ = {
                    "self": self,
                    "metrics": metrics,
                    "batch": self._last_batch,
                    "iteration": self.iteration,
                }
                if callback is not None and callback(locals_) is False:
                    break
        finally:
            bar.close()
            logger.close()
            self.episodes_this_run = self.num_episodes - start_episodes
        if cfg.log_dir is not None and self.history:
            last = ckpt.latest_checkpoint(cfg.log_dir)
            if last is None or not last.endswith(f"{ckpt.CHECKPOINT_PREFIX}{self.iteration:06d}"):
                self.save_checkpoint()
            if self.dist.is_main:
                plot_learning_curve(self.history, os.path.join(cfg.log_dir, "learning_curve.png"))
        return self


__all__ = ["TIME_METRICS", "OnPolicyAlgorithm"]
