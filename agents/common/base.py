"""``BaseAlgorithm``: what every algorithm is before its loop: a policy on an env, with inference and persistence.

As stable-baselines3's ``BaseAlgorithm``: construction (the env, its :class:`~textenv.TextSpec`, the policy,
the optimizer, the random generators, the KL coefficient), ``predict`` and ``generate`` (the policy's), and
``save`` / ``load`` (:mod:`agents.common.persistence`). The loop is :class:`~agents.common.on_policy.OnPolicyAlgorithm`'s.
"""

from __future__ import annotations

import contextlib
import numbers
import os
from collections.abc import Sequence
from typing import Any, ClassVar, TypeVar, cast

import numpy as np
import torch
from torch import nn

from agents.common import persistence
from agents.common.config import OnPolicyConfig
from agents.common.distributed import Distributed
from agents.common.inference import check_generate_args, observation_tensors
from agents.common.kl import KLCoefficient
from agents.common.lora import is_peft_model
from agents.common.policies import (
    CausalLMPolicy,
    disable_dropout,
    fuse_tanh_gelu,
    prefer_eager_attention,
    resolve_mixed_precision,
    set_global_seed,
)
from agents.common.rollout import EnvDriver, RolloutCollector, make_env
from agents.common.sampling import SamplingParams
from textenv.lm import logits_width, resolve_device
from textenv.scorers.kl import AdaptersOff, KLPenalty
from textenv.text_spec import TextSpec, text_spec

A = TypeVar("A", bound="BaseAlgorithm")


class BaseAlgorithm:
    """A causal-LM policy on a textenv environment: construction, inference and persistence.

    Args:
        policy: A built-in asset name (``"tiny-lm"``), a local path or hub name, or a causal LM module
            (an actor-critic algorithm also takes a :class:`~agents.CausalLMWithValueHead`). The model is
            moved to ``config.device``.
        env: A textenv id (e.g. ``"TextGen-Sentiment-v0"``, made into a vector env of ``config.num_envs``
            rows), a ``TextGenEnv`` or a ``TextGenVectorEnv`` (autoreset disabled).
        config: Hyper-parameters (default: ``config_class()``); frozen from now on (see
            :meth:`OnPolicyConfig.freeze <agents.common.config.OnPolicyConfig.freeze>`).
        env_kwargs: Extra arguments for ``gym.make_vec`` when ``env`` is an id.
        min_new_tokens: EOS gets probability 0 for the first ``min_new_tokens`` generated tokens (rollout
            and training use the same transform).
        verbose: 0 silent, 1 one line per iteration.
        progress_bar: Show a tqdm progress bar in ``learn``.
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
    policy_class: ClassVar[type[CausalLMPolicy]] = CausalLMPolicy
    """The policy's class (:class:`~agents.common.policies.ActorCriticPolicy` for PPO)."""

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
        self.config.freeze(type(self).__name__)
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

        self.env, self.env_id = make_env(env, self.config.effective_num_envs, self.device, env_kwargs)
        self.env_kwargs = dict(env_kwargs or {})
        self.spec: TextSpec = text_spec(self.env)
        self.sampling = SamplingParams(
            temperature=self.config.temperature,
            top_k=self.config.top_k,
            top_p=self.config.top_p,
            eos_token_ids=self.spec.eos_token_ids,
            min_new_tokens=min_new_tokens,
        )
        self.policy = self.policy_class.load(
            policy,
            self.sampling,
            peft_config=peft_config,
            mixed_precision=self.mixed_precision,
            logits_chunk_size=self.config.logits_chunk_size,
        ).to(self.device)
        self._prepare_lm()

        self.driver = EnvDriver(self.env, self.device)
        if self.config.episodes_per_iteration % self.driver.num_rows:
            raise ValueError(
                f"the env has {self.driver.num_rows} rows, which does not divide "
                f"episodes_per_iteration={self.config.episodes_per_iteration}"
            )
        self.generator = torch.Generator(device=self.device).manual_seed(self.seed)
        self.shuffle_generator = torch.Generator().manual_seed(self.seed + 1)
        self.prompt_rng = np.random.default_rng(self.seed)
        self.collector = RolloutCollector(
            self.policy, self.driver, self.generator, kl_batch_size=self.config.effective_minibatch_size
        )
        self.kl_terms: list[KLPenalty] = list(self.env.unwrapped.kl_penalties)
        self._use_adapters_off_reference()
        self.kl_coefficient = KLCoefficient(self.kl_terms, self.config)
        self.optimizer = self._make_optimizer()
        # The module the training forwards run through: DDP-wrapped under a multi-process launch.
        self.train_policy, self.optimizer = self.dist.prepare(self.policy, self.optimizer)

        self.iteration = 0
        self.num_episodes = 0
        self.history: list[dict[str, float]] = []
        self.episodes_this_run = 0  # episodes the last learn() trained (a resumed run: after the checkpoint)
        self._env_seeded = False

    # --- setup ----------------------------------------------------------------------------------------
    @property
    def lm(self) -> nn.Module:
        """The policy's causal LM."""
        return self.policy.lm

    @property
    def tokenizer(self) -> Any:
        """The env's tokenizer."""
        return self.spec.tokenizer

    @property
    def is_peft(self) -> bool:
        """Whether the policy trains PEFT adapters."""
        return is_peft_model(self.lm)

    def _prepare_lm(self) -> None:
        """Kernel and precision choices on the LM, and the check that it fits the env's action space."""
        lm = self.lm
        disable_dropout(lm)
        fuse_tanh_gelu(lm)
        if self.mixed_precision == "bf16" and self.device.type == "cpu":
            prefer_eager_attention(lm)
        width = logits_width(lm)
        if width != self.spec.vocab_size:
            raise ValueError(
                f"the policy produces {width} logits but the env's action space has n={self.spec.vocab_size} "
                "actions; use a policy of the env's tokenizer or build the env with "
                f"vocab_size={width} (env_kwargs={{'vocab_size': {width}}})"
            )
        config = getattr(lm, "config", None)
        positions = getattr(config, "n_positions", None) or getattr(config, "max_position_embeddings", None)
        if isinstance(positions, int) and positions < self.spec.length:
            raise ValueError(
                f"the policy reads at most {positions} positions (its config's n_positions / "
                f"max_position_embeddings), but the env's observations are max_prompt_tokens + max_new_tokens = "
                f"{self.spec.length} tokens long; lower them (env_kwargs) or use a model with more positions"
            )
        if self.config.gradient_checkpointing:
            cast(Any, lm).gradient_checkpointing_enable(
                gradient_checkpointing_kwargs={"use_reentrant": False}
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
        """The policy's precision context (bf16 autocast in a bf16 run)."""
        return self.policy.autocast()

    def _extra_models(self) -> dict[str, nn.Module]:
        """Frozen models a checkpoint must carry besides the policy (e.g. a loss's reference), by directory."""
        return {}

    def check_resume(self, saved_config: dict[str, Any], directory: str) -> None:
        """Refuses a checkpoint this agent's config cannot continue (called before anything is restored).

        Algorithms whose config decides what a checkpoint holds (GRPO's ``beta``: a reference model) check
        it here; the message names the field.

        Raises:
            ValueError: The checkpoint cannot continue under this config.
        """

    # --- inference -------------------------------------------------------------------------------------
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
        ids, mask, single = observation_tensors(observation, self.spec.vocab_size, self.device)  # (N, L)
        self.policy.eval()
        actions = (
            self.policy.next_tokens(
                ids, mask, prompt_len=self.spec.max_prompt_tokens, deterministic=deterministic
            )
            .cpu()
            .numpy()
        )
        return (int(actions[0]) if single else actions), None

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
            prompts: A prompt text or a list of them (encoded as the env encodes its prompts).
            max_new_tokens: Default: the env's ``max_new_tokens``.
            deterministic: Greedy decoding instead of sampling.
            seed: Seed of the sampling generator (default ``config.seed``); training RNGs are untouched.

        Returns:
            The generated texts (EOS and special tokens removed).

        Raises:
            TypeError: ``prompts`` is not a str or a list of str.
            ValueError: ``max_new_tokens`` is not an int >= 1.
        """
        texts, T = check_generate_args(prompts, max_new_tokens, self.spec.max_new_tokens)
        ids, mask = self.spec.encode_prompts(texts)  # (N, P)
        gen = torch.Generator(device=self.device).manual_seed(self.config.seed if seed is None else seed)
        self.policy.eval()
        tokens = self.policy.generate(
            ids.to(self.device), mask.to(self.device), T, deterministic=deterministic, generator=gen
        )
        return self.tokenizer.batch_decode(tokens, skip_special_tokens=True)

    # --- persistence -----------------------------------------------------------------------------------
    def save(self, path: str | os.PathLike[str], *, merged: bool = False) -> str:
        """Writes a complete checkpoint (weights, optimizer, KL coefficient, counters, config, RNG states)
        atomically to ``path``; see :mod:`agents.common.persistence`. With LoRA the weights are the
        adapters only (and PPO's value head). With several processes, a collective: call it on every one.

        Args:
            path: The checkpoint directory; an existing one is replaced only once the new one is complete.
            merged: Instead write a plain transformers model (adapters merged into the base weights,
                loadable by ``AutoModelForCausalLM.from_pretrained``; PPO adds ``value_head.safetensors``)
                and the tokenizer: an export, not a checkpoint to resume.

        Returns:
            The absolute path written.
        """
        if merged:
            return persistence.export_merged(self, path)
        return persistence.save(self, path)

    def save_checkpoint(self, keep: int = 2) -> str:
        """Saves ``<log_dir>/checkpoints/checkpoint-<iteration>`` and keeps the ``keep`` newest ones."""
        return persistence.save_checkpoint(self, keep)

    def load_state(self, path: str | os.PathLike[str]) -> None:
        """Restores weights, optimizer, KL coefficient, counters, history and RNG states from a checkpoint.

        The whole checkpoint is read and checked against this agent first: a checkpoint that does not fit
        (another algorithm, env rows, process count, a missing or corrupt part) changes nothing.

        Args:
            path: A checkpoint directory or a run's ``log_dir`` (its newest checkpoint).

        Raises:
            ValueError: The checkpoint does not fit this agent (the message names the field).
            FileNotFoundError: A part of the checkpoint is missing (named).
        """
        persistence.load_state(self, path)

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
            **config_overrides: Single fields replacing the saved (or given) config's. A field that the
                checkpoint cannot follow (e.g. GRPO's ``beta`` from 0, when no reference was kept) is an
                error naming it.

        Returns:
            The agent, ready to ``learn`` further, ``predict`` or ``generate``.

        Raises:
            ValueError: If no env is given and the checkpoint was made with an env object, not an id, the
                checkpoint is another algorithm's, or an override cannot apply.
        """
        return persistence.load(
            cls,
            path,
            env,
            config=config,
            verbose=verbose,
            progress_bar=progress_bar,
            overrides=config_overrides,
        )

    def close(self) -> None:
        """Closes the env."""
        with contextlib.suppress(Exception):
            self.env.close()


def check_episode_count(name: str, value: object) -> int:
    """``value`` as an int >= 0 (NumPy integers included).

    Raises:
        ValueError: Not an integer (``bool`` included), or negative.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
        raise ValueError(f"{name} must be an int >= 0, got {value!r}")
    return int(value)


__all__ = ["BaseAlgorithm", "check_episode_count"]
