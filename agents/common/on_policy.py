"""The on-policy training loop every algorithm shares: ``Algo(policy, env, config).learn(total_episodes)``.

One iteration::

    rollout   episodes_per_iteration finished episodes through env.step (KV-cached policy, rollout.py);
              per-token rewards are what the env returns (dense KL penalty + terminal score)
    train     the algorithm's own math (:meth:`OnPolicyAlgorithm.train`): advantages, losses, updates
    control   the KL controller sets the coefficient of the env's KL penalty for the next rollout

:class:`OnPolicyAlgorithm` owns everything else: loading the policy and the env, the rollout collector,
the iteration loop with progress bar, logging, callbacks and checkpoints (exact resume), ``predict``,
``generate``, ``save`` and ``load``. An algorithm subclass sets ``config_class`` and ``algo_name`` and
implements :meth:`~OnPolicyAlgorithm.train`; PPO also sets ``uses_value_head``.

Every gradient goes through :meth:`OnPolicyAlgorithm.backward` and every optimizer step through
:meth:`OnPolicyAlgorithm.optimizer_step`; under a multi-process launch (``accelerate launch``, ``torchrun``)
they run on Accelerate and the training forwards through its DDP wrapper (:mod:`agents.common.distributed`).

Alignment: observations are ``(B, P + T)`` with the prompt left-padded into ``[0, P)`` and generated token
``t`` at ``P + t``, so the logits (and PPO's value) at position ``P + t - 1`` belong to generated token ``t``.
"""

from __future__ import annotations

import contextlib
import os
import time
import warnings
from collections.abc import Callable, Sequence
from typing import Any, ClassVar, TypeVar, cast

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from agents.common import checkpoint as ckpt
from agents.common.buffers import RolloutBatch, TrainBatch
from agents.common.config import OnPolicyConfig, resolve_device
from agents.common.distributed import Distributed
from agents.common.inference import check_generate_args, generate_tokens, next_tokens, observation_tensors
from agents.common.kl import make_kl_controller
from agents.common.logger import MetricsLogger, plot_learning_curve
from agents.common.lora import is_peft_model, load_adapter_weights, merged_lm
from agents.common.policies import (
    bf16_autocast,
    disable_dropout,
    fuse_tanh_gelu,
    load_policy,
    logits_width,
    policy_lm,
    prefer_eager_attention,
    resolve_mixed_precision,
    set_global_seed,
)
from agents.common.rollout import EnvDriver, RolloutCollector, kl_terms, make_env, text_core
from agents.common.sampling import SamplingParams, entropy_from_logprobs
from agents.common.value_head import VALUE_HEAD_FILENAME, CausalLMWithValueHead
from textenv.lm import accepts_kwarg
from textenv.scorers.kl import AdaptersOff, kl_per_token

# Metrics that depend on wall-clock time (excluded when comparing runs for determinism).
TIME_METRICS = ("samples_per_s", "tokens_per_s", "iteration_time", "rollout_time", "update_time")

A = TypeVar("A", bound="OnPolicyAlgorithm")

MicroLoss = tuple[torch.Tensor, "torch.Tensor | float", dict[str, torch.Tensor]]
"""``(loss, share, stats)`` of one micro-batch (see :meth:`OnPolicyAlgorithm.accumulated_step`)."""

# Metrics that are not averaged over processes: counters and the coefficient every process shares.
_GLOBAL_METRICS = ("iteration", "episodes", "kl_coef")


class OnPolicyAlgorithm:
    """The shared core of the on-policy algorithms for causal LMs on textenv environments.

    Args:
        policy: A built-in asset name (``"tiny-lm"``), a local path or hub name, or a causal LM module
            (PPO also takes a :class:`~agents.CausalLMWithValueHead`). The model is moved to
            ``config.device``.
        env: A textenv id (e.g. ``"TextGen-Sentiment-v0"``, made into a vector env of ``config.num_envs``
            rows), a ``TextGenEnv`` or a ``TextGenVectorEnv`` (autoreset disabled).
        config: Hyper-parameters (default: ``config_class()``).
        env_kwargs: Extra arguments for ``gym.make_vec`` when ``env`` is an id.
        min_new_tokens: EOS gets probability 0 for the first ``min_new_tokens`` generated tokens (rollout
            and training use the same transform).
        verbose: 0 silent, 1 one line per iteration.
        progress_bar: Show a tqdm progress bar in :meth:`learn`.
        peft_config: A ``peft.LoraConfig`` (any ``peft.PeftConfig``): train adapters on the frozen policy
            (:mod:`agents.common.lora`); with ``config.kl_reference="auto"`` the env's KL reference becomes
            the policy with its adapters off. A policy that already is a ``PeftModel`` trains as it is.

    Raises:
        TypeError: If ``config`` is not a ``config_class``.
        ValueError: If the policy's logits width differs from the env's action space, the env's rows do
            not divide ``episodes_per_iteration``, or the device is not available.
    """

    config_class: ClassVar[type[OnPolicyConfig]] = OnPolicyConfig
    """The algorithm's config dataclass."""
    algo_name: ClassVar[str] = ""
    """Name written into checkpoints (``PPO.load`` refuses a GRPO checkpoint)."""
    uses_value_head: ClassVar[bool] = False
    """Whether the policy is a :class:`~agents.CausalLMWithValueHead` (PPO) or a plain causal LM."""

    def __init__(
        self,
        policy: str | os.PathLike[str] | nn.Module,
        env: Any,
        config: OnPolicyConfig | None = None,
        *,
        env_kwargs: dict[str, Any] | None = None,
        min_new_tokens: int = 0,
        verbose: int = 1,
        progress_bar: bool = True,
        peft_config: Any = None,
    ) -> None:
        if config is not None and not isinstance(config, self.config_class):
            raise TypeError(
                f"config must be a {self.config_class.__name__} or None, got {type(config).__name__}"
            )
        if isinstance(min_new_tokens, bool) or not isinstance(min_new_tokens, int) or min_new_tokens < 0:
            raise ValueError(f"min_new_tokens must be an int >= 0, got {min_new_tokens!r}")
        self.config = config if config is not None else self.config_class()
        self.dist = Distributed(self.config.device)
        self.device = resolve_device(self.config.device) if self.dist.device is None else self.dist.device
        # "auto" resolved once, against the device: "bf16" or "no".
        self.mixed_precision = resolve_mixed_precision(self.config.mixed_precision, self.device)
        self.verbose = verbose if self.dist.is_main else 0
        self.progress_bar = progress_bar and self.dist.is_main
        self.min_new_tokens = min_new_tokens
        # Process r's seed stream: its env rows continue the row seeds of the processes before it
        # (rows use seed + i); the single process (r = 0) uses config.seed itself.
        self.seed = self.config.seed + self.dist.rank * self.config.effective_num_envs
        set_global_seed(self.seed)

        self.policy = load_policy(policy, value_head=self.uses_value_head, peft_config=peft_config)
        self.policy = self.policy.to(self.device)
        self.lm = policy_lm(self.policy)
        self.is_peft = is_peft_model(self.lm)
        disable_dropout(self.lm)
        fuse_tanh_gelu(self.lm)
        if self.mixed_precision == "bf16" and self.device.type == "cpu":
            prefer_eager_attention(self.lm)
        self.env, self.env_id = make_env(env, self.config.effective_num_envs, self.device, env_kwargs)
        self.env_kwargs = dict(env_kwargs or {})
        self.core = text_core(self.env)
        self.tokenizer = self.core.tokenizer
        self._check_vocab()
        if self.config.gradient_checkpointing:
            cast(Any, self.lm).gradient_checkpointing_enable(
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
        self.generator = torch.Generator(device=self.device).manual_seed(self.seed)
        self.shuffle_generator = torch.Generator().manual_seed(self.seed + 1)
        self.prompt_rng = np.random.default_rng(self.seed)
        self.collector = RolloutCollector(
            self.lm, self.driver, self.sampling, self.generator, autocast=self._autocast
        )
        self.kl_terms = kl_terms(self.env)
        self._use_adapters_off_reference()
        self.kl_controller = make_kl_controller(self.config)
        self._sync_kl_coef()
        self.optimizer = self._make_optimizer()
        # The module the training forwards run through: DDP-wrapped under a multi-process launch.
        self.train_model, self.optimizer = self.dist.prepare(self.policy, self.optimizer)
        self._logits_to_keep = accepts_kwarg(self.lm, "logits_to_keep")

        self.iteration = 0
        self.num_episodes = 0
        self.history: list[dict[str, float]] = []
        self.episodes_this_run = 0  # episodes the last learn() trained (a resumed run: after the checkpoint)
        self._env_seeded = False
        self._last_batch: RolloutBatch | None = None

    # --- setup ----------------------------------------------------------------------------------------
    def _check_vocab(self) -> None:
        width = logits_width(self.lm)
        space = getattr(self.env, "single_action_space", None) or self.env.action_space
        n = int(space.n)
        if width != n:
            raise ValueError(
                f"the policy produces {width} logits but the env's action space has n={n} actions; use a policy "
                f"of the env's tokenizer or build the env with vocab_size={width} (env_kwargs={{'vocab_size': {width}}})"
            )

    def param_groups(self) -> list[dict[str, Any]]:
        """The optimizer's parameter groups: every trainable parameter at ``config.learning_rate``.

        Algorithms with parts that learn at their own rate (PPO's value head) override this.
        """
        return [{"params": [p for p in self.policy.parameters() if p.requires_grad]}]

    def _make_optimizer(self) -> torch.optim.Optimizer:
        groups = self.param_groups()
        try:
            return torch.optim.Adam(groups, lr=self.config.learning_rate, fused=True)
        except (RuntimeError, TypeError):
            return torch.optim.Adam(groups, lr=self.config.learning_rate)

    def _use_adapters_off_reference(self) -> None:
        """Points the env's KL terms at the policy with its adapters off, as ``config.kl_reference`` says."""
        mode = self.config.kl_reference
        if mode == "adapters_off" and not self.is_peft:
            raise ValueError(
                "kl_reference='adapters_off' needs a PEFT policy (pass peft_config=peft.LoraConfig(...)); "
                f"the policy is a plain {type(self.lm).__name__}"
            )
        if mode == "env" or not self.is_peft:
            return
        for term in self.kl_terms:
            term.set_reference(AdaptersOff(self.lm))

    def _autocast(self) -> contextlib.AbstractContextManager:
        """bf16 autocast of the policy's forwards when the run's precision is bf16 and the device has bf16."""
        return bf16_autocast(self.device) if self.mixed_precision == "bf16" else contextlib.nullcontext()

    # --- one iteration ----------------------------------------------------------------------------------
    def _sync_kl_coef(self) -> None:
        """Hands the controller's coefficient to the env's KL-penalty terms."""
        for term in self.kl_terms:
            term.coef = float(self.kl_controller.value)

    def rollout_prompt_indices(self) -> np.ndarray | None:
        """The prompt of each episode of the next rollout, or ``None`` to let the env draw them (PPO).

        Algorithms that compare completions of one prompt (groups, a greedy baseline) draw them here from
        ``self.prompt_rng``.
        """
        return None

    def collect_rollout(self) -> RolloutBatch:
        """Collects ``episodes_per_iteration`` episodes with the current policy and KL coefficient."""
        self._sync_kl_coef()
        seed = None if self._env_seeded else self.seed
        self._env_seeded = True
        indices = self.rollout_prompt_indices()
        after = self._kl_terms_after_rollout()
        with contextlib.ExitStack() as stack:
            for term in after:
                stack.enter_context(term.external())
            batch = self.collector.collect(
                self.config.episodes_per_iteration, seed=seed, prompt_indices=indices
            )
        batch.prompt_indices = indices
        for term in after:
            self._add_kl_penalty(batch, term)
        return batch

    def _kl_terms_after_rollout(self) -> list[Any]:
        """The env's KL terms this agent scores after the rollout (``config.kl_after_rollout``): those with
        a per-token estimator (``k1``, ``k3``) whose reference lives on the agent's device."""
        if not self.config.kl_after_rollout:
            return []
        terms = []
        for term in self.kl_terms:
            param = next(iter(term.reference.parameters()), None)
            if term.estimator != "full" and param is not None and param.device == self.device:
                terms.append(term)
        return terms

    @torch.no_grad()
    def _add_kl_penalty(self, batch: RolloutBatch, term: Any) -> None:
        """Adds ``-coef * KL`` of every generated token to ``batch`` (rewards, scores, the term's total and
        ``kl``), from the rollout's log-probs and one float32 forward of ``term.reference``, as the env
        would have (it runs its scorers outside autocast)."""
        b = TrainBatch.from_rollout(batch)
        ref_logprobs, _, _ = self.evaluate_batch(
            b, model=term.reference, autocast=False, sampling=False
        )  # (N, T)
        kl = kl_per_token(term.estimator, batch.logprobs.to(self.device), ref_logprobs)  # (N, T) float64
        kl = torch.where(b.mask, kl, 0.0)
        penalty = -term.coef * kl  # (N, T)
        batch.rewards = batch.rewards + penalty.to(batch.rewards)
        episode_penalty = penalty.sum(1).cpu().numpy()  # (N,)
        batch.scores = batch.scores + episode_penalty
        batch.reward_terms[term.name] = batch.reward_terms.get(term.name, 0.0) + episode_penalty
        episode_kl = kl.sum(1).cpu().numpy()
        batch.kl = episode_kl if batch.kl is None else batch.kl + episode_kl

    def train(self, batch: RolloutBatch) -> dict[str, float]:
        """The algorithm's update on one rollout batch; returns its statistics (means over steps)."""
        raise NotImplementedError

    def train_iteration(self) -> dict[str, float]:
        """Rollout, update, KL-controller step; returns the iteration's metrics (means over processes when
        several train together; ``episodes`` counts the global batch, samples/s and tokens/s are global)."""
        start = time.perf_counter()
        kl_coef = float(self.kl_controller.value)
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
            self.kl_controller.update(metrics["kl"], len(batch) * world)
        self._sync_kl_coef()
        self.iteration += 1
        self.num_episodes += len(batch) * world
        self.history.append(metrics)
        self._last_batch = batch
        return metrics

    # --- forward and optimizer step (shared by every update) ----------------------------------------------
    def evaluate_tokens(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        position_ids: torch.Tensor,
        tokens: torch.Tensor,
        with_entropy: bool = False,
        entropy_grad: bool = False,
        model: nn.Module | None = None,
        autocast: bool = True,
        sampling: bool = True,
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """One full forward over whole sequences: log-prob (value, entropy) of each generated token.

        Args:
            input_ids: ``(B, P + T)``.
            attention_mask: ``(B, P + T)``.
            position_ids: ``(B, P + T)``.
            tokens: ``(B, T)`` generated tokens.
            with_entropy: Also return the entropy of the sampling distribution.
            entropy_grad: Keep the entropy in the autograd graph (an entropy bonus); else it is a statistic.
            model: Another causal LM to evaluate the tokens with (e.g. a frozen reference); default: the policy.
            autocast: Run under the run's mixed precision; ``False``: in the weights' own dtype.
            sampling: Log-probs under the sampling distribution (temperature, top-k, top-p); ``False``:
                the model's own ``log_softmax`` (what the env's KL reference uses).

        Returns:
            ``(logprobs (B, T), values (B, T) or None, entropy (B, T) or None)``, float32; values only with
            a value head.
        """
        T = tokens.shape[1]
        P = input_ids.shape[1] - T
        keep = self._logits_to_keep if model is None else accepts_kwarg(model, "logits_to_keep")
        kwargs = {"logits_to_keep": T + 1} if keep else {}
        with_values = model is None and self.uses_value_head
        forward = self.train_model if model is None else model
        with self._autocast() if autocast else contextlib.nullcontext():
            out = forward(input_ids, attention_mask=attention_mask, position_ids=position_ids, **kwargs)
        logits = out.logits[:, -(T + 1) : -1].float()  # (B, T, V)
        values = out.values[:, P - 1 : P + T - 1].float() if with_values else None  # (B, T)
        logp_all = self.sampling.logprobs(logits) if sampling else torch.log_softmax(logits, -1)  # (B, T, V)
        logprobs = logp_all.gather(-1, tokens.unsqueeze(-1)).squeeze(-1)  # (B, T)
        entropy = None
        if with_entropy:
            with torch.set_grad_enabled(torch.is_grad_enabled() and entropy_grad):
                entropy = entropy_from_logprobs(logp_all)  # (B, T)
        return logprobs, values, entropy

    @torch.no_grad()
    def evaluate_batch(
        self,
        b: TrainBatch,
        *,
        with_entropy: bool = False,
        model: nn.Module | None = None,
        autocast: bool = True,
        sampling: bool = True,
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """:meth:`evaluate_tokens` over a whole batch without grad, one minibatch of rows at a time.

        Returns:
            ``(logprobs (N, T), values (N, T) or None, entropy (N, T) or None)``, 0 outside ``b.mask``.
        """
        zeros = torch.zeros(b.mask.shape, device=self.device)  # (N, T)
        logprobs = zeros.clone()
        values = zeros.clone() if model is None and self.uses_value_head else None
        entropy = zeros.clone() if with_entropy else None
        for idx in torch.arange(b.tokens.shape[0], device=self.device).split(
            self.config.effective_minibatch_size
        ):
            mb = b.take(idx)
            t = mb.tokens.shape[1]
            logp, v, ent = self.evaluate_tokens(
                mb.input_ids,
                mb.attention_mask,
                mb.position_ids,
                mb.tokens,
                with_entropy=with_entropy,
                model=model,
                autocast=autocast,
                sampling=sampling,
            )
            logprobs[idx, :t] = torch.where(mb.mask, logp, 0.0)
            for out, part in ((values, v), (entropy, ent)):
                if out is not None and part is not None:
                    out[idx, :t] = torch.where(mb.mask, part, 0.0)
        return logprobs, values, entropy

    def backward(self, loss: torch.Tensor) -> None:
        """Back-propagates one micro-batch's loss (gradients accumulate until :meth:`optimizer_step`); with
        several processes through ``accelerator.backward`` (gradients averaged across processes)."""
        self.dist.backward(loss)

    def optimizer_step(self) -> float | None:
        """Clips the accumulated gradients to ``max_grad_norm``, steps the optimizer and clears them.

        Returns:
            The gradient norm before clipping, or ``None`` without clipping.
        """
        grad_norm = None
        if self.config.max_grad_norm is not None:
            params = [p for p in self.policy.parameters() if p.requires_grad]
            grad_norm = self.dist.clip_grad_norm(params, self.config.max_grad_norm)
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
        self, b: TrainBatch, epochs: int, step: Callable[[TrainBatch, torch.Tensor], dict[str, float] | None]
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
            self.episodes_this_run = self.num_episodes - start_episodes
        if cfg.log_dir is not None and self.history:
            last = ckpt.latest_checkpoint(cfg.log_dir)
            if last is None or not last.endswith(f"{ckpt.CHECKPOINT_PREFIX}{self.iteration:06d}"):
                self.save_checkpoint()
            if self.dist.is_main:
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

        Raises:
            TypeError: ``observation`` is not a dict, or its arrays are not integer.
            ValueError: A missing key, mismatched shapes, or token ids outside ``[0, vocab_size)``.
        """
        ids, mask, single = observation_tensors(observation, int(self.core.vocab_size), self.device)  # (N, L)
        self.policy.eval()
        actions = next_tokens(
            self.lm,
            ids,
            mask,
            self.sampling,
            prompt_len=self.core.max_prompt_tokens,
            deterministic=deterministic,
        )
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

        Raises:
            TypeError: ``prompts`` is not a str or a list of str.
            ValueError: ``max_new_tokens`` is not an int >= 1.
        """
        from textenv.prompts import load_prompts

        texts, T = check_generate_args(prompts, max_new_tokens, int(self.core.max_new_tokens))
        ids, mask = self.core.encode_prompts(load_prompts(texts))  # (N, P)
        gen = torch.Generator(device=self.device).manual_seed(self.config.seed if seed is None else seed)
        self.policy.eval()
        tokens = generate_tokens(
            self.lm,
            ids.to(self.device),
            mask.to(self.device),
            self.sampling,
            T,
            deterministic=deterministic,
            generator=gen,
        )
        return self.tokenizer.batch_decode(tokens, skip_special_tokens=True)

    # --- checkpoints -------------------------------------------------------------------------------------------
    def _extra_models(self) -> dict[str, nn.Module]:
        """Frozen models a checkpoint must carry besides the policy (e.g. a loss's reference), by directory."""
        return {}

    def _process_state(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """This process's own random state (RNGs, env RNGs, prompt draws): JSON part and tensor part."""
        rng_json, rng_tensors = ckpt.capture_rng_state(self.generator)
        rng_tensors["shuffle_generator"] = self.shuffle_generator.get_state()
        json_part = {
            "rng": rng_json,
            "env_seeded": self._env_seeded,
            "env_rng": self.driver.env_rng_state(),
            "prompt_rng": self.prompt_rng.bit_generator.state,
        }
        return json_part, rng_tensors

    def _trainer_state(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """The checkpoint's state (a collective with several processes: every process's RNG states)."""
        own_json, own_tensors = self._process_state()
        rng_json, rng_tensors = own_json["rng"], own_tensors
        state = {
            "algo": self.algo_name,
            "iteration": self.iteration,
            "num_episodes": self.num_episodes,
            "config": self.config.to_dict(),
            "kl_controller": self.kl_controller.state_dict(),
            "kl_coefs": [float(t.coef) for t in self.kl_terms],
            "env_id": self.env_id,
            "env_kwargs": _jsonable(self.env_kwargs),
            "env_seeded": self._env_seeded,
            "env_rng": self.driver.env_rng_state(),
            "prompt_rng": self.prompt_rng.bit_generator.state,
            "min_new_tokens": self.min_new_tokens,
            "rng": rng_json,
            "history": self.history,
        }
        tensors: dict[str, Any] = {"optimizer": self.optimizer.state_dict(), "rng": rng_tensors}
        if self.dist.enabled:
            parts = self.dist.gather_objects((own_json, own_tensors))
            state["world_size"] = self.dist.world_size
            state["processes"] = [p[0] for p in parts]
            tensors["processes"] = [p[1] for p in parts]
        return state, tensors

    def save(self, path: str | os.PathLike[str], *, merged: bool = False) -> str:
        """Writes a complete checkpoint (weights, optimizer, KL controller, counters, config, RNG states)
        atomically to ``path``; see :mod:`agents.common.checkpoint`. With LoRA the weights are the
        adapters only (and PPO's value head).

        Args:
            path: The checkpoint directory.
            merged: Instead write a plain transformers model (adapters merged into the base weights,
                loadable by ``AutoModelForCausalLM.from_pretrained``; PPO adds ``value_head.safetensors``)
                and the tokenizer: an export, not a checkpoint to resume.

        Returns:
            The absolute path written.
        """
        if merged:
            return self.export_merged(path)
        state, tensors = self._trainer_state()
        final = os.path.abspath(os.fspath(path))
        if self.dist.is_main:  # one writer; the others wait until the checkpoint is complete
            ckpt.write_checkpoint(
                final,
                model=self.policy,
                tokenizer=self.tokenizer,
                state=state,
                tensors=tensors,
                extra_models=self._extra_models(),
            )
        self.dist.wait()
        return final

    def export_merged(self, path: str | os.PathLike[str]) -> str:
        """Writes the policy as a plain transformers model with the adapters merged in (atomically).

        A plain (non-PEFT) policy is written as it is. The merge works on a copy (one model's memory while
        it runs), so training continues unchanged. With several processes only the main one writes.

        Returns:
            The absolute path.
        """
        final = os.path.abspath(os.fspath(path))
        if not self.dist.is_main:  # one writer; not a collective (no process waits for it)
            return final
        lm = merged_lm(self.lm)
        model: nn.Module = lm
        if self.uses_value_head:
            with torch.random.fork_rng(
                devices=[]
            ):  # the throwaway head's init leaves training's RNG as it was
                model = CausalLMWithValueHead(lm)
            model.value_head = cast(CausalLMWithValueHead, self.policy).value_head
        with ckpt.atomic_directory(final) as tmp, ckpt.quiet_transformers():
            cast(Any, model).save_pretrained(tmp)
            self.tokenizer.save_pretrained(tmp)
        return final

    def save_checkpoint(self, keep: int = 2) -> str:
        """Saves ``<log_dir>/checkpoints/checkpoint-<iteration>`` and keeps the ``keep`` newest ones."""
        if self.config.log_dir is None:
            raise ValueError("save_checkpoint() needs config.log_dir")
        path = self.save(ckpt.checkpoint_path(self.config.log_dir, self.iteration))
        if self.dist.is_main:
            ckpt.prune_checkpoints(self.config.log_dir, keep)
        self.dist.wait()
        return path

    def load_state(self, path: str | os.PathLike[str]) -> None:
        """Restores weights, optimizer, KL controller, counters, history and RNG states from a checkpoint.

        Args:
            path: A checkpoint directory or a run's ``log_dir`` (its newest checkpoint).

        Raises:
            ValueError: The checkpoint was written by another algorithm.
            FileNotFoundError: A part of the checkpoint is missing (named).
        """
        directory, state, tensors = ckpt.read_checkpoint(path)
        _check_algo(self.algo_name, state, directory)
        saved_world = int(state.get("world_size", 1))
        if saved_world != self.dist.world_size:
            raise ValueError(
                f"checkpoint {directory!r} was written by {saved_world} process(es); resume it with the same "
                f"number of processes, not {self.dist.world_size}"
            )
        if self.dist.enabled:  # this process's own random state
            own = state["processes"][self.dist.rank]
            state = {**state, **own}
            tensors = {**tensors, "rng": tensors["processes"][self.dist.rank]}
        model_dir = os.path.join(directory, ckpt.MODEL_DIR)
        if self.uses_value_head and not os.path.isfile(os.path.join(model_dir, VALUE_HEAD_FILENAME)):
            raise FileNotFoundError(
                f"checkpoint {directory!r} has no {os.path.join(ckpt.MODEL_DIR, VALUE_HEAD_FILENAME)}; "
                f"a {type(self).__name__} checkpoint holds the value head"
            )
        if self.is_peft:
            load_adapter_weights(self.lm, model_dir)
            if self.uses_value_head:
                cast(CausalLMWithValueHead, self.policy).load_value_head(
                    os.path.join(model_dir, VALUE_HEAD_FILENAME)
                )
        else:
            loaded = load_policy(model_dir, value_head=self.uses_value_head)
            self.policy.load_state_dict(loaded.state_dict())
            del loaded
        for name, module in self._extra_models().items():
            module.load_state_dict(load_policy(os.path.join(directory, name)).state_dict())
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
        if "prompt_rng" in state:  # checkpoints of before the restructure have none (PPO does not use it)
            self.prompt_rng.bit_generator.state = state["prompt_rng"]
        ckpt.restore_rng_state(state["rng"], tensors["rng"], self.generator)
        self.shuffle_generator.set_state(tensors["rng"]["shuffle_generator"])

    @classmethod
    def load(
        cls: type[A],
        path: str | os.PathLike[str],
        env: Any = None,
        *,
        config: OnPolicyConfig | None = None,
        verbose: int = 1,
        progress_bar: bool = True,
        **config_overrides: Any,
    ) -> A:
        """Restores an agent from a checkpoint written by :meth:`save` (or a run's ``log_dir``).

        Args:
            path: Checkpoint directory, or a ``log_dir`` (its newest checkpoint is used).
            env: The env to continue on; default: the checkpoint's env id, made again.
            config: Replaces the saved config (e.g. another device or log_dir).
            verbose: See the class.
            progress_bar: See the class.
            **config_overrides: Single fields replacing the saved (or given) config's.

        Returns:
            The agent, ready to ``learn`` further, ``predict`` or ``generate``.

        Raises:
            ValueError: If no env is given and the checkpoint was made with an env object, not an id, or
                the checkpoint is another algorithm's.
        """
        directory, state, _ = ckpt.read_checkpoint(path)
        _check_algo(cls.algo_name, state, directory)
        cfg_dict = config.to_dict() if config is not None else dict(state["config"])
        cfg_dict.update(config_overrides)
        cfg = cls.config_class.from_dict(cfg_dict)
        if env is None:
            if state.get("env_id") is None:
                raise ValueError(
                    f"checkpoint {directory!r} was trained on an env object; pass env= to {cls.__name__}.load"
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


def _check_algo(algo: str, state: dict[str, Any], directory: str) -> None:
    saved = state.get("algo", "ppo")  # checkpoints of before the restructure are PPO's
    if saved != algo:
        raise ValueError(
            f"checkpoint {directory!r} was written by {saved!r}, not {algo!r}; load it with its class"
        )


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


__all__ = ["TIME_METRICS", "OnPolicyAlgorithm"]
