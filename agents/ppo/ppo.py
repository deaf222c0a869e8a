"""PPO for transformers causal LMs on textenv environments: ``PPO(policy, env).learn(total_episodes)``.

One iteration::

    rollout   episodes_per_iteration finished episodes through env.step (KV-cached policy, rollout.py);
              per-token rewards are what the env returns (dense KL penalty + terminal score)
    prepare   one no-grad full forward of the batch: old log-probs and values of every generated token;
              GAE over the generated tokens, returns = advantages + values, whitened advantages
    update    ppo_epochs x minibatches: one full forward per (micro-)batch over whole sequences with
              masks; clipped surrogate + clipped value loss - entropy bonus; gradient clipping; early
              stop when the approximate KL to the rollout policy exceeds 1.5 * target_approx_kl
    control   the KL controller sets the env's KLPenalty coefficient for the next rollout

Alignment: observations are ``(B, P + T)`` with the prompt left-padded into ``[0, P)`` and generated token
``t`` at ``P + t``, so the logits and the value at position ``P + t - 1`` belong to generated token ``t``.
"""

from __future__ import annotations

import contextlib
import os
import random
import time
import warnings
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import gymnasium as gym
import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from agents.ppo import checkpoint as ckpt
from agents.ppo.config import PPOConfig, resolve_device
from agents.ppo.core import compute_gae, entropy_from_logprobs, explained_variance, masked_mean, masked_whiten
from agents.ppo.core import policy_loss as clipped_policy_loss
from agents.ppo.core import value_loss as clipped_value_loss
from agents.ppo.kl import make_kl_controller
from agents.ppo.logger import MetricsLogger, plot_learning_curve
from agents.ppo.rollout import (
    EnvDriver,
    RolloutBatch,
    RolloutCollector,
    SamplingParams,
    kl_terms,
    sample_tokens,
    text_core,
)
from agents.value_head import CausalLMWithValueHead
from textenv.lm import IncrementalLM, accepts_kwarg, left_padded_positions

# Metrics that depend on wall-clock time (excluded when comparing runs for determinism).
TIME_METRICS = ("samples_per_s", "tokens_per_s", "iteration_time", "rollout_time", "update_time")


class TrainBatch(NamedTuple):
    """Everything the PPO epochs read, ``N`` episodes, ``L = P + T``.

    Attributes:
        input_ids: ``(N, L)`` final observations.
        attention_mask: ``(N, L)``.
        position_ids: ``(N, L)`` positions of the left-padded rows.
        tokens: ``(N, T)`` generated tokens.
        mask: ``(N, T)`` bool, valid generated tokens.
        old_logprobs: ``(N, T)`` log-probs under the rollout policy (full forward, no grad).
        old_values: ``(N, T)`` values under the rollout policy.
        advantages: ``(N, T)`` GAE advantages (whitened if configured).
        returns: ``(N, T)`` value targets ``GAE + old_values``.
        entropy: ``(N, T)`` entropy of the rollout policy's sampling distribution at each token.
    """

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    position_ids: torch.Tensor
    tokens: torch.Tensor
    mask: torch.Tensor
    old_logprobs: torch.Tensor
    old_values: torch.Tensor
    advantages: torch.Tensor
    returns: torch.Tensor
    entropy: torch.Tensor

    def take(self, rows: torch.Tensor) -> TrainBatch:
        """Rows ``rows``, without the columns that are padding in every one of them.

        Prompt columns that no selected row uses (left padding) and generated columns after the longest
        selected episode are dropped, so a forward never computes positions that all rows mask out. Position
        ids are kept, so the result is exactly that of the untrimmed rows.
        """
        T = self.tokens.shape[1]
        P = self.input_ids.shape[1] - T
        mask = self.mask[rows]  # (R, T)
        start = int(self.attention_mask[rows, :P].any(0).long().argmax())  # first prompt column in use
        t = max(int(mask.sum(1).max()), 1)  # longest episode
        cols = slice(start, P + t)
        return TrainBatch(
            input_ids=self.input_ids[rows, cols],
            attention_mask=self.attention_mask[rows, cols],
            position_ids=self.position_ids[rows, cols],
            tokens=self.tokens[rows, :t],
            mask=mask[:, :t],
            old_logprobs=self.old_logprobs[rows, :t],
            old_values=self.old_values[rows, :t],
            advantages=self.advantages[rows, :t],
            returns=self.returns[rows, :t],
            entropy=self.entropy[rows, :t],
        )


def set_global_seed(seed: int) -> None:
    """Seeds Python's ``random``, NumPy's global RNG and torch (CPU and CUDA)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def load_policy(policy: str | os.PathLike[str] | nn.Module) -> CausalLMWithValueHead:
    """A ``CausalLMWithValueHead`` from a built-in asset name (``"tiny-lm"``), a path or hub name, a causal
    LM module (wrapped, not copied) or a ``CausalLMWithValueHead`` (returned as is).

    Raises:
        TypeError: For anything else.
    """
    if isinstance(policy, CausalLMWithValueHead):
        return policy
    if isinstance(policy, (str, os.PathLike)):
        from textenv import assets

        name = os.fspath(policy)
        if name in assets.NAMES:
            name = assets.path(name)
        with ckpt.quiet_transformers():
            return CausalLMWithValueHead.from_pretrained(name, use_safetensors=True)
    if isinstance(policy, nn.Module):
        return CausalLMWithValueHead(policy)
    raise TypeError(
        f"policy must be a model name or path, a causal LM module or a CausalLMWithValueHead, "
        f"got {type(policy).__name__}: {policy!r}"
    )


def logits_width(lm: nn.Module) -> int:
    """Number of logits the LM produces: its output embeddings' ``out_features``, else ``config.vocab_size``."""
    get_out = getattr(lm, "get_output_embeddings", None)
    out = get_out() if callable(get_out) else None
    width = getattr(out, "out_features", None)
    if isinstance(width, int):
        return width
    config = lm.config.get_text_config() if hasattr(lm.config, "get_text_config") else lm.config
    return int(config.vocab_size)


def bf16_autocast(device: torch.device) -> contextlib.AbstractContextManager:
    """bf16 autocast on CUDA and on CPUs with native bf16 (AVX512-BF16/AMX); elsewhere a no-op."""
    if device.type == "cuda" or (device.type == "cpu" and torch.ops.mkldnn._is_mkldnn_bf16_supported()):
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def prefer_eager_attention(lm: nn.Module) -> None:
    """Switches an SDPA model to eager attention: on CPU in bf16, SDPA's flash-attention backward is slower
    than eager attention's two matmuls for the short sequences of LM fine-tuning (same math)."""
    setter = getattr(lm, "set_attn_implementation", None)
    if callable(setter) and getattr(lm.config, "_attn_implementation", None) == "sdpa":
        with contextlib.suppress(ValueError, ImportError):
            setter("eager")


def fuse_tanh_gelu(module: nn.Module) -> int:
    """Replaces transformers' ``NewGELUActivation`` (GPT-2's ``gelu_new``, eight elementwise ops forward and
    more backward) with ``nn.GELU(approximate="tanh")``, the same function as one fused kernel.

    The activation has no parameters, so checkpoints are unchanged; outputs agree to float rounding.

    Args:
        module: A model, changed in place.

    Returns:
        The number of activations replaced.
    """
    from transformers.activations import NewGELUActivation

    replaced = 0
    for parent in module.modules():
        for name, child in parent.named_children():
            if type(child) is NewGELUActivation:
                setattr(parent, name, nn.GELU(approximate="tanh"))
                replaced += 1
    return replaced


def make_env(
    env: Any, num_envs: int, device: torch.device, env_kwargs: dict[str, Any] | None = None
) -> tuple[Any, str | None]:
    """The env PPO steps: an id is made into a ``TextGenVectorEnv`` of ``num_envs`` rows (autoreset
    disabled, torch observations on ``device``); an env object is used as it is.

    Returns:
        ``(env, env_id)``; ``env_id`` is ``None`` for env objects.

    Raises:
        ValueError: ``env_kwargs`` given with an env object.
        TypeError: ``env`` is neither an id nor a textenv env.
    """
    if isinstance(env, str):
        import textenv  # noqa: F401  (registers the ids)

        kwargs = {
            "observation_format": "torch",
            "device": device,
            "autoreset_mode": gym.vector.AutoresetMode.DISABLED,
            **(env_kwargs or {}),
        }
        vec = gym.make_vec(env, num_envs=num_envs, vectorization_mode="vector_entry_point", **kwargs)
        return vec, env
    if env_kwargs:
        raise ValueError(
            f"env_kwargs={env_kwargs!r} only apply when env is an id string, got {type(env).__name__}"
        )
    text_core(env)  # raises TypeError for other envs
    return env, None


class PPO:
    """Proximal Policy Optimization for a causal LM with a value head, on a textenv environment.

    Args:
        policy: A built-in asset name (``"tiny-lm"``), a local path or hub name, a causal LM module or a
            :class:`~agents.CausalLMWithValueHead`. The model is moved to ``config.device``.
        env: A textenv id (e.g. ``"TextGen-Sentiment-v0"``, made into a vector env of ``config.num_envs``
            rows), a ``TextGenEnv`` or a ``TextGenVectorEnv`` (autoreset disabled).
        config: Hyper-parameters (default ``PPOConfig()``).
        env_kwargs: Extra arguments for ``gym.make_vec`` when ``env`` is an id.
        min_new_tokens: EOS gets probability 0 for the first ``min_new_tokens`` generated tokens (rollout
            and training use the same transform).
        verbose: 0 silent, 1 one line per iteration.
        progress_bar: Show a tqdm progress bar in :meth:`learn`.

    Raises:
        ValueError: If the policy's logits width differs from the env's action space, or the env's rows do
            not divide ``episodes_per_iteration``.

    Example:
        >>> from agents import PPO
        >>> agent = PPO("tiny-lm", "TextGen-Sentiment-v0")  # doctest: +SKIP
        >>> agent.learn(total_episodes=512)  # doctest: +SKIP
        >>> agent.generate(["The movie was"])  # doctest: +SKIP
    """

    def __init__(
        self,
        policy: str | os.PathLike[str] | nn.Module,
        env: Any,
        config: PPOConfig | None = None,
        *,
        env_kwargs: dict[str, Any] | None = None,
        min_new_tokens: int = 0,
        verbose: int = 1,
        progress_bar: bool = True,
    ) -> None:
        if config is not None and not isinstance(config, PPOConfig):
            raise TypeError(f"config must be a PPOConfig or None, got {type(config).__name__}")
        if isinstance(min_new_tokens, bool) or not isinstance(min_new_tokens, int) or min_new_tokens < 0:
            raise ValueError(f"min_new_tokens must be an int >= 0, got {min_new_tokens!r}")
        self.config = config if config is not None else PPOConfig()
        self.device = resolve_device(self.config.device)
        self.verbose = verbose
        self.progress_bar = progress_bar
        self.min_new_tokens = min_new_tokens
        set_global_seed(self.config.seed)

        self.policy = load_policy(policy).to(self.device)
        self.policy.disable_dropout()
        fuse_tanh_gelu(self.policy.lm)
        if self.config.mixed_precision == "bf16" and self.device.type == "cpu":
            prefer_eager_attention(self.policy.lm)
        self.env, self.env_id = make_env(env, self.config.effective_num_envs, self.device, env_kwargs)
        self.env_kwargs = dict(env_kwargs or {})
        self.core = text_core(self.env)
        self.tokenizer = self.core.tokenizer
        self._check_vocab()
        if self.config.gradient_checkpointing:
            self.policy.lm.gradient_checkpointing_enable(
                gradient_checkpointing_kwargs={"use_reentrant": False}
            )

        self.driver = EnvDriver(self.env, self.device)
        if self.config.episodes_per_iteration % self.driver.num_rows:
            raise ValueError(
                f"the env has {self.driver.num_rows} rows, which does not divide "
                f"episodes_per_iteration={self.config.episodes_per_iteration}"
            )
        self.sampling = SamplingParams(
            temperature=self.config.temperature,
            top_k=self.config.top_k,
            top_p=self.config.top_p,
            eos_token_ids=tuple(self.core.eos_token_ids),
            min_new_tokens=min_new_tokens,
        )
        self.generator = torch.Generator(device=self.device).manual_seed(self.config.seed)
        self.shuffle_generator = torch.Generator().manual_seed(self.config.seed + 1)
        self.collector = RolloutCollector(
            self.policy.lm, self.driver, self.sampling, self.generator, autocast=self._autocast
        )
        self.kl_terms = kl_terms(self.env)
        self.kl_controller = make_kl_controller(self.config)
        self._sync_kl_coef()
        self.optimizer = self._make_optimizer()
        self._logits_to_keep = accepts_kwarg(self.policy.lm, "logits_to_keep")

        self.iteration = 0
        self.num_episodes = 0
        self.history: list[dict[str, float]] = []
        self._env_seeded = False

    # --- setup ----------------------------------------------------------------------------------------
    def _check_vocab(self) -> None:
        width = logits_width(self.policy.lm)
        space = getattr(self.env, "single_action_space", None) or self.env.action_space
        n = int(space.n)
        if width != n:
            raise ValueError(
                f"the policy produces {width} logits but the env's action space has n={n} actions; use a policy "
                f"of the env's tokenizer or build the env with vocab_size={width} (env_kwargs={{'vocab_size': {width}}})"
            )

    def _make_optimizer(self) -> torch.optim.Optimizer:
        params = [p for p in self.policy.parameters() if p.requires_grad]
        try:
            return torch.optim.Adam(params, lr=self.config.learning_rate, fused=True)
        except (RuntimeError, TypeError):
            return torch.optim.Adam(params, lr=self.config.learning_rate)

    def _autocast(self) -> contextlib.AbstractContextManager:
        """bf16 autocast of the policy's forwards when ``mixed_precision="bf16"`` and the device has bf16."""
        return (
            bf16_autocast(self.device) if self.config.mixed_precision == "bf16" else contextlib.nullcontext()
        )

    # --- one iteration ----------------------------------------------------------------------------------
    def _sync_kl_coef(self) -> None:
        """Hands the controller's coefficient to the env's KL-penalty terms."""
        for term in self.kl_terms:
            term.coef = float(self.kl_controller.value)

    def collect_rollout(self) -> RolloutBatch:
        """Collects ``episodes_per_iteration`` episodes with the current policy and KL coefficient."""
        self._sync_kl_coef()
        seed = None if self._env_seeded else self.config.seed
        self._env_seeded = True
        return self.collector.collect(self.config.episodes_per_iteration, seed=seed)

    def train_iteration(self) -> dict[str, float]:
        """Rollout, update, KL-controller step; returns the iteration's metrics."""
        start = time.perf_counter()
        kl_coef = float(self.kl_controller.value)
        batch = self.collect_rollout()
        update_start = time.perf_counter()
        b = self.prepare_batch(batch)
        stats = self.update(b)
        mean_kl = float(batch.kl.mean()) if batch.kl is not None else None
        if mean_kl is not None:
            self.kl_controller.update(mean_kl, len(batch))
        self._sync_kl_coef()
        self.iteration += 1
        self.num_episodes += len(batch)
        end = time.perf_counter()
        metrics: dict[str, float] = {
            "iteration": self.iteration,
            "episodes": self.num_episodes,
            "score": float(batch.scores.mean()),
            "score_std": float(batch.scores.std()),
            **{f"reward/{k}": float(np.nanmean(v)) for k, v in batch.reward_terms.items()},
            **({"kl": mean_kl} if mean_kl is not None else {}),
            "kl_coef": kl_coef,
            "episode_length": float(batch.mask.sum(1).float().mean()),
            **stats,
            "explained_variance": explained_variance(b.old_values, b.returns, b.mask),
            "samples_per_s": len(batch) / (end - start),
            "tokens_per_s": batch.num_tokens / (end - start),
            "iteration_time": end - start,
            "rollout_time": update_start - start,
            "update_time": end - update_start,
        }
        self.history.append(metrics)
        self._last_batch = batch
        return metrics

    # --- prepare: old log-probs, values, advantages -------------------------------------------------------
    def evaluate_tokens(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        position_ids: torch.Tensor,
        tokens: torch.Tensor,
        with_entropy: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """One full forward over whole sequences: log-prob, value (and entropy) of each generated token.

        Args:
            input_ids: ``(B, P + T)``.
            attention_mask: ``(B, P + T)``.
            position_ids: ``(B, P + T)``.
            tokens: ``(B, T)`` generated tokens.
            with_entropy: Also return the entropy of the sampling distribution.

        Returns:
            ``(logprobs (B, T), values (B, T), entropy (B, T) or None)``, float32; position ``P + t - 1``
            belongs to token ``t``.
        """
        T = tokens.shape[1]
        P = input_ids.shape[1] - T
        kwargs = {"logits_to_keep": T + 1} if self._logits_to_keep else {}
        with self._autocast():
            out = self.policy(input_ids, attention_mask=attention_mask, position_ids=position_ids, **kwargs)
        logits = out.logits[:, -(T + 1) : -1].float()  # (B, T, V)
        values = out.values[:, P - 1 : P + T - 1].float()  # (B, T)
        logp_all = self.sampling.logprobs(logits)  # (B, T, V)
        logprobs = logp_all.gather(-1, tokens.unsqueeze(-1)).squeeze(-1)  # (B, T)
        entropy = None
        if with_entropy:
            # Without an entropy bonus the entropy is only a statistic: keep it out of the graph.
            with torch.set_grad_enabled(torch.is_grad_enabled() and self.config.ent_coef > 0):
                entropy = entropy_from_logprobs(logp_all)  # (B, T)
        return logprobs, values, entropy

    @torch.no_grad()
    def prepare_batch(self, batch: RolloutBatch) -> TrainBatch:
        """Old log-probs, values and entropies (one no-grad forward), GAE and returns of a rollout batch."""
        cfg = self.config
        self.policy.eval()
        mask = batch.mask  # (N, T)
        zeros = torch.zeros(mask.shape, device=self.device)  # (N, T)
        b = TrainBatch(
            input_ids=batch.input_ids,
            attention_mask=batch.attention_mask,
            position_ids=left_padded_positions(batch.attention_mask),  # (N, L)
            tokens=batch.tokens,
            mask=mask,
            old_logprobs=zeros,
            old_values=zeros,
            advantages=zeros,
            returns=zeros,
            entropy=zeros,
        )
        b_logprobs, b_values, b_entropy = zeros.clone(), zeros.clone(), zeros.clone()  # (N, T)
        for idx in torch.arange(len(batch), device=self.device).split(cfg.minibatch_size):
            mb = b.take(idx)
            logp, values, entropy = self.evaluate_tokens(
                mb.input_ids, mb.attention_mask, mb.position_ids, mb.tokens, with_entropy=True
            )
            t = mb.tokens.shape[1]
            b_logprobs[idx, :t] = torch.where(mb.mask, logp, 0.0)
            b_values[idx, :t] = torch.where(mb.mask, values, 0.0)
            b_entropy[idx, :t] = torch.where(mb.mask, entropy, 0.0)  # type: ignore[arg-type]
        rewards = batch.rewards.to(self.device) * cfg.reward_scale  # (N, T)
        if cfg.reward_clip is not None:
            rewards = rewards.clamp(-cfg.reward_clip, cfg.reward_clip)
        advantages, returns = compute_gae(rewards, b_values, mask, cfg.gamma, cfg.gae_lambda)
        if cfg.whiten_advantages:
            advantages = masked_whiten(advantages, mask)
        return b._replace(
            old_logprobs=b_logprobs,
            old_values=b_values,
            advantages=advantages,
            returns=returns,
            entropy=b_entropy,
        )

    # --- update -------------------------------------------------------------------------------------------
    def update(self, b: TrainBatch) -> dict[str, float]:
        """``ppo_epochs`` passes of minibatch optimizer steps over ``b``; returns the mean loss statistics."""
        cfg = self.config
        self.policy.train()
        N = b.tokens.shape[0]
        sums: dict[str, float] = {}
        steps = 0
        early_stop = False
        for _epoch in range(cfg.ppo_epochs):
            perm = torch.randperm(N, generator=self.shuffle_generator).to(self.device)
            for start in range(0, N, cfg.minibatch_size):
                mb_inds = perm[start : start + cfg.minibatch_size]
                stats = self._minibatch_step(b, mb_inds)
                if stats is None:
                    early_stop = True
                    break
                for k, v in stats.items():
                    sums[k] = sums.get(k, 0.0) + v
                steps += 1
            if early_stop:
                break
        self.policy.eval()
        means = {k: v / max(steps, 1) for k, v in sums.items()}
        means["epochs"] = steps / cfg.num_minibatches
        means["early_stop"] = float(early_stop)
        means["learning_rate"] = cfg.learning_rate
        return means

    def _minibatch_step(self, b: TrainBatch, mb_inds: torch.Tensor) -> dict[str, float] | None:
        """One optimizer step over a minibatch, as ``gradient_accumulation_steps`` forward/backward passes.

        Each micro-batch's token means are weighted by its share of the minibatch's tokens, so the
        accumulated gradient equals that of the whole minibatch. Returns ``None`` (and leaves the weights
        unchanged) when the approximate KL exceeds ``1.5 * target_approx_kl``.
        """
        cfg = self.config
        mb_tokens = b.mask[mb_inds].sum().clamp(min=1)
        stats: dict[str, float] = {}
        self.optimizer.zero_grad(set_to_none=True)
        for micro in mb_inds.split(cfg.micro_batch_size):
            mb = b.take(micro)
            # The entropy bonus needs the current policy's entropy; without one, the rollout policy's
            # (computed once in prepare_batch) is the statistic, which saves a (B, T, V) pass per step.
            new_logprobs, new_values, entropy = self.evaluate_tokens(
                mb.input_ids, mb.attention_mask, mb.position_ids, mb.tokens, with_entropy=cfg.ent_coef > 0
            )
            pg_loss, pg_stats = clipped_policy_loss(
                new_logprobs, mb.old_logprobs, mb.advantages, mb.mask, cfg.clip_range
            )
            if cfg.target_approx_kl is not None and float(pg_stats["approx_kl"]) > 1.5 * cfg.target_approx_kl:
                self.optimizer.zero_grad(set_to_none=True)
                return None
            v_loss, v_stats = clipped_value_loss(
                new_values, mb.old_values, mb.returns, mb.mask, cfg.clip_range_value
            )
            entropy_mean = masked_mean(mb.entropy if entropy is None else entropy, mb.mask)
            loss = pg_loss + cfg.vf_coef * v_loss - cfg.ent_coef * entropy_mean
            share = mb.mask.sum() / mb_tokens
            (loss * share).backward()
            micro_stats = {
                "policy_loss": pg_loss,
                "value_loss": v_loss,
                "entropy": entropy_mean,
                "clip_frac": pg_stats["clipfrac"],
                "approx_kl": pg_stats["approx_kl"],
                "value_clip_frac": v_stats["clipfrac"],
                "loss": loss,
            }
            w = float(share)
            for k, v in micro_stats.items():
                stats[k] = stats.get(k, 0.0) + float(v.detach()) * w
        if cfg.max_grad_norm is not None:
            grad_norm = torch.nn.utils.clip_grad_norm_(self.policy.parameters(), cfg.max_grad_norm)
            stats["grad_norm"] = float(grad_norm)
        self.optimizer.step()
        return stats

    # --- training loop --------------------------------------------------------------------------------------
    def learn(
        self,
        total_episodes: int,
        callback: Callable[[dict[str, Any]], bool | None] | None = None,
        *,
        resume: bool = False,
    ) -> PPO:
        """Trains for ``total_episodes`` more episodes (whole iterations, so rounded up).

        With ``resume=True`` the newest checkpoint in ``config.log_dir`` (if any) is loaded first and
        training runs until ``total_episodes`` episodes in all (counting the checkpoint's).

        Periodic checkpoints are written every ``config.checkpoint_interval`` iterations, and a final one
        at the end, when ``config.log_dir`` is set.

        Args:
            total_episodes: Episodes to train for (or, resuming, in all).
            callback: Called after each iteration with a dict of locals (``self``, ``metrics``, ``batch``,
                ``iteration``); returning ``False`` stops training.
            resume: Continue from the newest checkpoint in ``config.log_dir``.

        Returns:
            ``self``.
        """
        if isinstance(total_episodes, bool) or not isinstance(total_episodes, int) or total_episodes < 0:
            raise ValueError(f"total_episodes must be an int >= 0, got {total_episodes!r}")
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
        logger = MetricsLogger(cfg.log_dir, verbose=self.verbose, rows=self.history, print_fn=tqdm.write)
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
                bar.update(len(self._last_batch))
                bar.set_postfix(score=f"{metrics['score']:.3f}", kl=f"{metrics.get('kl', float('nan')):.2f}")
                if (
                    cfg.log_dir is not None
                    and cfg.checkpoint_interval
                    and self.iteration % cfg.checkpoint_interval == 0
                ):
                    self.save_checkpoint()
                if (
                    callback is not None
                    and callback(
                        {
                            "self": self,
                            "metrics": metrics,
                            "batch": self._last_batch,
                            "iteration": self.iteration,
                        }
                    )
                    is False
                ):
                    break
        finally:
            bar.close()
            logger.close()
        if cfg.log_dir is not None and self.history:
            last = ckpt.latest_checkpoint(cfg.log_dir)
            if last is None or not last.endswith(f"{ckpt.CHECKPOINT_PREFIX}{self.iteration:06d}"):
                self.save_checkpoint()
            plot_learning_curve(self.history, os.path.join(cfg.log_dir, "learning_curve.png"))
        return self

    # --- inference -----------------------------------------------------------------------------------------
    @torch.no_grad()
    def predict(
        self,
        observation: dict[str, Any],
        state: Any = None,
        episode_start: Any = None,
        deterministic: bool = False,
    ) -> tuple[np.ndarray | int, None]:
        """The next token for one observation or a batch (stable-baselines3 style).

        Args:
            observation: ``{"input_ids", "attention_mask"}`` arrays of shape ``(L,)`` or ``(N, L)``.
            state: Ignored (no recurrent state).
            episode_start: Ignored.
            deterministic: Argmax instead of sampling.

        Returns:
            ``(action, None)``: an int for a single observation, else an ``(N,)`` int64 array.
        """
        ids, mask = (_as_long_tensor(observation[k], self.device) for k in ("input_ids", "attention_mask"))
        single = ids.ndim == 1
        ids, mask = ids.view(-1, ids.shape[-1]), mask.view(-1, mask.shape[-1])
        self.policy.eval()
        out = self.policy.lm(input_ids=ids, attention_mask=mask, position_ids=left_padded_positions(mask))
        L = mask.shape[1]
        last = L - 1 - mask.flip(1).argmax(1)  # (N,) index of the last real token
        logits = out.logits[torch.arange(ids.shape[0], device=self.device), last].float()  # (N, V)
        generated = mask[:, self.core.max_prompt_tokens :].sum(1)  # (N,)
        early = generated < self.min_new_tokens
        if early.any() and self.core.eos_token_ids:
            logits[
                early.nonzero().squeeze(1)[:, None], torch.tensor(self.core.eos_token_ids, device=self.device)
            ] = float("-inf")
        logp = self.sampling.logprobs(logits, step=self.min_new_tokens)  # EOS handled above
        actions = logp.argmax(-1) if deterministic else sample_tokens(logp)
        actions_np = actions.cpu().numpy()
        return (int(actions_np[0]) if single else actions_np), None

    @torch.no_grad()
    def generate(
        self,
        prompts: str | Sequence[str],
        max_new_tokens: int | None = None,
        *,
        deterministic: bool = False,
        seed: int | None = None,
    ) -> list[str]:
        """Generates continuations with the current policy (KV-cached), outside the env.

        Args:
            prompts: A prompt text or a list of them (tokenised like the env's prompts).
            max_new_tokens: Default: the env's ``max_new_tokens``.
            deterministic: Greedy decoding instead of sampling.
            seed: Seed of the sampling generator (default ``config.seed``); training RNGs are untouched.

        Returns:
            The generated texts (EOS and special tokens removed).
        """
        from textenv.prompts import load_prompts

        texts = [prompts] if isinstance(prompts, str) else list(prompts)
        T = self.core.max_new_tokens if max_new_tokens is None else int(max_new_tokens)
        ids, mask = self.core.encode_prompts(load_prompts(texts))  # (N, P)
        ids, mask = ids.to(self.device), mask.to(self.device)
        N = ids.shape[0]
        gen = torch.Generator(device=self.device).manual_seed(self.config.seed if seed is None else seed)
        self.policy.eval()
        lm = IncrementalLM(self.policy.lm, num_rows=N, max_length=ids.shape[1] + T)
        logits = lm.reset_rows(torch.arange(N, device=self.device), ids, mask)  # (N, V)
        eos = torch.tensor(self.core.eos_token_ids, device=self.device)
        out = torch.zeros(N, T, dtype=torch.long, device=self.device)
        running = torch.ones(N, dtype=torch.bool, device=self.device)
        lengths = torch.zeros(N, dtype=torch.long, device=self.device)
        for t in range(T):
            logp = self.sampling.logprobs(logits, step=t)  # (N, V)
            action = logp.argmax(-1) if deterministic else sample_tokens(logp, gen)
            out[:, t] = action
            lengths += (running & ~torch.isin(action, eos)).long()
            running &= ~torch.isin(action, eos)
            if not bool(running.any()):
                break
            logits = lm.step(action, running)
        return self.tokenizer.batch_decode(
            [row[:n].tolist() for row, n in zip(out, lengths.tolist())], skip_special_tokens=True
        )

    # --- checkpoints -------------------------------------------------------------------------------------------
    def _trainer_state(self) -> tuple[dict[str, Any], dict[str, Any]]:
        rng_json, rng_tensors = ckpt.capture_rng_state(self.generator)
        rng_tensors["shuffle_generator"] = self.shuffle_generator.get_state()
        state = {
            "iteration": self.iteration,
            "num_episodes": self.num_episodes,
            "config": self.config.to_dict(),
            "kl_controller": self.kl_controller.state_dict(),
            "kl_coefs": [float(t.coef) for t in self.kl_terms],
            "env_id": self.env_id,
            "env_kwargs": _jsonable(self.env_kwargs),
            "env_seeded": self._env_seeded,
            "env_rng": self.driver.env_rng_state(),
            "min_new_tokens": self.min_new_tokens,
            "rng": rng_json,
            "history": self.history,
        }
        tensors = {"optimizer": self.optimizer.state_dict(), "rng": rng_tensors}
        return state, tensors

    def save(self, path: str | os.PathLike[str]) -> str:
        """Writes a complete checkpoint (weights, optimizer, KL controller, counters, config, RNG states)
        atomically to ``path``; see :mod:`agents.ppo.checkpoint`.

        Returns:
            The absolute checkpoint path.
        """
        state, tensors = self._trainer_state()
        return ckpt.write_checkpoint(
            path, model=self.policy, tokenizer=self.tokenizer, state=state, tensors=tensors
        )

    def save_checkpoint(self, keep: int = 2) -> str:
        """Saves ``<log_dir>/checkpoints/checkpoint-<iteration>`` and keeps the ``keep`` newest ones."""
        if self.config.log_dir is None:
            raise ValueError("save_checkpoint() needs config.log_dir")
        path = self.save(ckpt.checkpoint_path(self.config.log_dir, self.iteration))
        ckpt.prune_checkpoints(self.config.log_dir, keep)
        return path

    def load_state(self, path: str | os.PathLike[str]) -> None:
        """Restores weights, optimizer, KL controller, counters, history and RNG states from a checkpoint.

        Args:
            path: A checkpoint directory or a run's ``log_dir`` (its newest checkpoint).
        """
        directory, state, tensors = ckpt.read_checkpoint(path)
        with ckpt.quiet_transformers():
            loaded = CausalLMWithValueHead.from_pretrained(
                os.path.join(directory, ckpt.MODEL_DIR), use_safetensors=True
            )
        self.policy.load_state_dict(loaded.state_dict())
        del loaded
        self.optimizer.load_state_dict(tensors["optimizer"])
        self.kl_controller.load_state_dict(state["kl_controller"])
        for term, coef in zip(self.kl_terms, state.get("kl_coefs", [])):
            term.coef = coef
        self.iteration = int(state["iteration"])
        self.num_episodes = int(state["num_episodes"])
        self.history = [dict(r) for r in state.get("history", [])]
        self.min_new_tokens = int(state.get("min_new_tokens", self.min_new_tokens))
        self._env_seeded = bool(state.get("env_seeded", False))
        self.driver.set_env_rng_state(state.get("env_rng"))
        ckpt.restore_rng_state(state["rng"], tensors["rng"], self.generator)
        self.shuffle_generator.set_state(tensors["rng"]["shuffle_generator"])

    @classmethod
    def load(
        cls,
        path: str | os.PathLike[str],
        env: Any = None,
        *,
        config: PPOConfig | None = None,
        verbose: int = 1,
        progress_bar: bool = True,
        **config_overrides: Any,
    ) -> PPO:
        """Restores an agent from a checkpoint written by :meth:`save` (or a run's ``log_dir``).

        Args:
            path: Checkpoint directory, or a ``log_dir`` (its newest checkpoint is used).
            env: The env to continue on; default: the checkpoint's env id, made again.
            config: Replaces the saved config (e.g. another device or log_dir).
            verbose: See :class:`PPO`.
            progress_bar: See :class:`PPO`.
            **config_overrides: Single fields replacing the saved (or given) config's.

        Returns:
            The agent, ready to ``learn`` further, ``predict`` or ``generate``.

        Raises:
            ValueError: If no env is given and the checkpoint was made with an env object, not an id.
        """
        directory, state, _ = ckpt.read_checkpoint(path)
        cfg_dict = config.to_dict() if config is not None else dict(state["config"])
        cfg_dict.update(config_overrides)
        cfg = PPOConfig.from_dict(cfg_dict)
        if env is None:
            if state.get("env_id") is None:
                raise ValueError(
                    f"checkpoint {directory!r} was trained on an env object; pass env= to PPO.load"
                )
            env = state["env_id"]
        env_kwargs = state.get("env_kwargs") if isinstance(env, str) else None
        agent = cls(
            os.path.join(directory, ckpt.MODEL_DIR),
            env,
            cfg,
            env_kwargs=env_kwargs,
            min_new_tokens=int(state.get("min_new_tokens", 0)),
            verbose=verbose,
            progress_bar=progress_bar,
        )
        agent.load_state(directory)
        return agent

    def close(self) -> None:
        """Closes the env."""
        with contextlib.suppress(Exception):
            self.env.close()


def _as_long_tensor(value: Any, device: torch.device) -> torch.Tensor:
    if not isinstance(value, torch.Tensor):
        value = torch.as_tensor(np.asarray(value))
    return value.to(device).long()


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, torch.device):
        return str(value)
    warnings.warn(
        f"env_kwargs value {value!r} is not JSON-able and is not saved in the checkpoint", stacklevel=3
    )
    return None


__all__ = ["PPO", "TIME_METRICS", "TrainBatch", "load_policy", "make_env", "set_global_seed"]
