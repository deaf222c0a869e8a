"""``KLPenalty``: a dense per-token penalty ``-coef * KL(policy || reference)``, KV-cached.

The term owns the penalty: its coefficient, its estimator and every way of computing it. The
reference model follows every row of the env one token per step with an
:class:`~textenv.lm.IncrementalLM`, so a step costs one single-token forward whatever the length of
the text so far. The policy's log-probs come from the agent, either handed over before each
``env.step`` or computed by the scorer itself from a bound policy module::

    # (a) an agent that already has the log-probs of the actions it samples
    kl.set_policy_logprobs(logp)           # (B,) log-prob of each row's action, or (B, V) log-probs
    env.step(actions)

    # (b) anything else, e.g. stable-baselines3: bind the policy's LM once
    kl.bind(model.policy.lm)               # any causal LM, or agents.CausalLMWithValueHead

    # (c) an agent that keeps each token's log-prob scores whole episodes after they end, as TRL does:
    #     one batched forward of the reference instead of one per token (k1 and k3 only)
    with kl.deferred():                    # the term gives 0 and skips the reference meanwhile
        ...                                # run episodes, keep each token's policy log-prob
    kl.score_episodes(input_ids, attention_mask, logprobs, policy_mask)   # the same rewards

An env scores all its deferred terms at once (weights included) with
``env.unwrapped.defer_kl()`` (see :meth:`textenv.core.TextGenCore.defer_kl`).
"""

from __future__ import annotations

import contextlib
import math
import numbers
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import torch

from textenv.lm import (
    IncrementalLM,
    causal_lm_of,
    load_causal_lm,
    logits_width,
    resolve_device,
    token_logprobs,
)
from textenv.scorers._models import describe
from textenv.scorers.base import Scorer, ScorerContext, ScorerError

ESTIMATORS = ("k1", "k3", "full")
DEFERRABLE_ESTIMATORS = ("k1", "k3")
"""The estimators that a term can score after the episodes (:meth:`KLPenalty.score_episodes`)."""
UNBOUND = ("error", "zero")

_BIND_HELP = (
    "hand the policy's log-probs over before each env.step with kl.set_policy_logprobs(logprobs) "
    "((B,) log-prob of each action, or (B, V) log-probs), or bind the policy once with kl.bind(model) "
    "(a causal LM, e.g. kl.bind(sb3_model.policy.lm)); find the term with env.unwrapped.reward.find(KLPenalty)"
)


class EpisodeKL(NamedTuple):
    """A KL term over whole episodes (:meth:`KLPenalty.score_episodes`).

    Attributes:
        kl: ``(N, T)`` float64 KL(policy || reference) of each policy token, 0 elsewhere.
        rewards: ``(N, T)`` float64 the term's reward of each token, ``-coef * kl``.
    """

    kl: torch.Tensor
    rewards: torch.Tensor


def kl_per_token(estimator: str, logp: torch.Tensor, logq: torch.Tensor) -> torch.Tensor:
    """Per-token KL estimate from policy log-probs ``logp`` and reference log-probs ``logq``.

    Args:
        estimator: ``"k1"``: ``logp - logq`` of the taken action (unbiased, may be negative).
            ``"k3"``: ``(exp(logq - logp) - 1) - (logq - logp)`` (unbiased, never negative).
            ``"full"``: ``sum_v p_v (log p_v - log q_v)``, the exact KL of the next-token distributions.
        logp: (B,) for k1/k3, (B, V) for full.
        logq: Same shape as ``logp``.

    Returns:
        (B,) float64.
    """
    logp, logq = logp.double(), logq.double()
    if estimator == "k1":
        return logp - logq
    if estimator == "k3":
        log_ratio = logq - logp
        return torch.expm1(log_ratio) - log_ratio
    # Tokens the policy never picks (p = 0, log p = -inf) add nothing, not NaN.
    p = logp.exp()
    return torch.where(p > 0, p * (logp - logq), torch.zeros_like(p)).sum(-1)


def _weights_version(module: torch.nn.Module) -> int:
    # In-place updates (optimizer steps, load_state_dict) bump each tensor's version counter;
    # a change means the cached keys/values of running episodes are stale.
    return sum(p._version for p in module.parameters())


def left_pack(ids: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Moves each row's real tokens (``mask == 1``) to the right end, in order: a left-padded batch.

    Rows without any real token keep one (masked-in) token at the end, so no attention row is empty.
    """
    live = mask.bool().clone()
    empty = ~live.any(1)
    live[empty, -1] = True
    # Stable sort of "is live" puts pads first and keeps the live tokens' order.
    order = torch.sort(live.to(torch.int8), dim=1, stable=True).indices
    return ids.gather(1, order), live.gather(1, order).long()


class AdaptersOff(torch.nn.Module):
    """A PEFT model (e.g. a LoRA policy) seen with its adapters disabled: the reference "same model,
    adapters off" without a second copy of the weights.

    Every forward runs under ``model.disable_adapter()``, so the KV-cached :class:`~textenv.lm.IncrementalLM`
    of a :class:`KLPenalty` steps the base model through the policy's own modules. Nothing is copied; the
    wrapper never changes the wrapped model's train/eval mode.

    Args:
        model: A ``peft.PeftModel`` (anything with a ``disable_adapter()`` context manager), or a module
            with such a model in ``.lm`` (an ``agents.CausalLMWithValueHead``).

    Example:
        >>> kl.set_reference(AdaptersOff(lora_policy))  # doctest: +SKIP
    """

    peft_model: Any

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        model = causal_lm_of(model)
        if not callable(getattr(model, "disable_adapter", None)):
            raise TypeError(
                f"AdaptersOff needs a PEFT model with disable_adapter() (e.g. peft.get_peft_model(lm, LoraConfig(...))), "
                f"got {type(model).__name__}"
            )
        # Kept out of the module tree so .eval()/.to() on the wrapper never reach the policy.
        self.__dict__["peft_model"] = model
        self.training = False  # a reference (KLPenalty warns about one in training mode)

    @property
    def config(self) -> object:
        return self.peft_model.config

    def get_base_model(self) -> torch.nn.Module:
        return self.peft_model

    def parameters(self, recurse: bool = True):  # type: ignore[override]
        return self.peft_model.parameters(recurse)

    def forward(self, *args: object, **kwargs: object) -> object:
        with self.peft_model.disable_adapter():
            return self.peft_model(*args, **kwargs)


LOGPROB_TOLERANCE = 1e-3
"""How far above 0 a log-prob, and how far from 0 the log-sum-exp of a row of ``(B, V)`` log-probs, may be
(float rounding, bf16 included) before :meth:`KLPenalty.set_policy_logprobs` refuses them."""


def _check_logprobs(x: torch.Tensor) -> None:
    """Refuses what is not log-probabilities: positive values, or ``(B, V)`` rows that do not normalise
    (raw logits handed over by mistake would give a KL of tens of nats without a word)."""
    if not x.is_floating_point():
        raise TypeError(f"set_policy_logprobs expects floating-point log-probs, got dtype {x.dtype}")
    finite = torch.isfinite(x)
    if bool((x[finite] > LOGPROB_TOLERANCE).any()):
        raise ValueError(
            f"set_policy_logprobs got a value of {float(x[finite].max())!r} > 0; expected log-probabilities "
            "(<= 0), e.g. torch.log_softmax(logits, -1), not logits"
        )
    if x.ndim == 2:
        norm = torch.logsumexp(x.double(), dim=-1)  # (B,) 0 for normalised rows
        bad = (norm.abs() > LOGPROB_TOLERANCE) & ~torch.isnan(
            norm
        )  # NaN: the step's finiteness check names it
        if bool(bad.any()):
            r = int(bad.nonzero()[0, 0])
            raise ValueError(
                f"set_policy_logprobs got (B, V) values whose row {r} has logsumexp {float(norm[r]):.4g}, not 0: "
                "expected normalised log-probabilities over the vocabulary, e.g. torch.log_softmax(logits, -1)"
            )


class _Follower:
    """An IncrementalLM plus the log-softmax of its next-token logits, stepped lazily.

    A row's last action is fed at the next step that needs it, so the forward of a token that ends
    the episode is never run (the row resets first).
    """

    def __init__(self, model: torch.nn.Module, num_rows: int, max_length: int, device: torch.device):
        self.model = model
        self.lm = IncrementalLM(model, num_rows=num_rows, max_length=max_length)
        self.device = device
        self.logp: torch.Tensor | None = None  # (B, V) float32 next-token log-probs
        self.pending = torch.zeros(num_rows, dtype=torch.long, device=device)
        self.pending_active = torch.zeros(num_rows, dtype=torch.bool, device=device)
        self.version = _weights_version(model)

    def reset_rows(self, rows: torch.Tensor, ids: torch.Tensor, mask: torch.Tensor) -> None:
        logp = torch.log_softmax(self.lm.reset_rows(rows, ids, mask), dim=-1).to(self.device)
        if self.logp is None:
            self.logp = torch.zeros(self.pending.shape[0], logp.shape[-1], device=self.device)
        self.logp[rows] = logp
        self.pending_active[rows] = False

    def push(self, actions: torch.Tensor, active: torch.Tensor) -> None:
        self.pending = torch.where(active, actions, self.pending)
        self.pending_active |= active

    def insert(self, rows: torch.Tensor, tokens: torch.Tensor, lengths: torch.Tensor) -> None:
        """Feeds ``rows`` a span of tokens the env inserted (after their pending action, fed first)."""
        pending = self.pending_active[rows]  # (R,) the turn's last token has not been fed yet
        R, S = tokens.shape
        span = torch.zeros(R, S + 1, dtype=torch.long, device=tokens.device)
        span[:, 0] = self.pending[rows]
        span[:, 1:] = tokens
        # Rows without a pending token start at the span: shift them left by one column.
        shifted = torch.where(pending[:, None], span, torch.cat([span[:, 1:], span[:, :1]], 1))
        logits = self.lm.extend(rows, shifted, lengths + pending.long())
        self.logp = torch.log_softmax(logits, dim=-1).to(self.device)
        self.pending_active[rows] = False

    def logprobs(self) -> torch.Tensor:
        if self.pending_active.any():
            logits = self.lm.step(self.pending, self.pending_active)
            self.logp = torch.log_softmax(logits, dim=-1).to(self.device)
            self.pending_active[:] = False
        if self.logp is None:
            raise RuntimeError("KLPenalty stepped before any reset_rows()")
        return self.logp


@dataclass
class _Rows:
    """The scorer's own copy of every row's prompt and generated tokens (to rebuild a policy cache)."""

    ids: torch.Tensor  # (B, P + T)
    mask: torch.Tensor  # (B, P + T)
    length: torch.Tensor  # (B,) generated tokens so far
    prompt_len: int


class KLPenalty(Scorer):
    """Dense reward ``-coef * KL`` per generated token, between the policy and a frozen reference LM.

    For the token ``a`` a row generates from state ``s``, with policy ``p`` and reference ``q``:
    ``k1 = log p(a|s) - log q(a|s)``, ``k3 = (q/p - 1) - log(q/p)``, ``full = KL(p(.|s) || q(.|s))``;
    the row's reward on that step is ``-coef * KL``. The reference runs incrementally (KV cache,
    one forward per step for all rows). The policy's log-probs come from:

    * :meth:`set_policy_logprobs` — ``(B,)`` log-prob of each row's action (``(B, V)`` full
      log-probs for ``"full"``) handed over before ``env.step``; consumed by that step. Agents that
      sample their actions already have them (the PPO rollout does this).
    * a bound policy — ``policy=`` or :meth:`bind` — run by the scorer with its own KV cache. If the
      policy's weights change in place (an optimizer step), the cache of running episodes is
      rebuilt on the next step. Binding the reference module itself gives exactly 0.

    ``coef`` is a plain attribute: a KL controller sets ``kl.coef = ...`` between rollouts.
    ``last_kl`` holds the (B,) per-token KL of the last step (0 for idle rows).

    stable-baselines3 (the policy is not an agent that hands log-probs over)::

        env = gym.make("TextGen-Sentiment-v0")
        model = PPO(LMPolicy, env, ...)
        (kl,) = env.unwrapped.reward.find(KLPenalty)
        kl.bind(model.policy.lm)  # the policy's causal LM module (shared, not copied)
        # or agents.sb3.bind_kl(env, model): finds and binds every KL term of a (vector) env

    The bound LM follows the current weights: after an optimizer step (detected through the
    parameters' version counters) the scorer re-reads the running episodes' prefixes once.

    Args:
        reference: Built-in asset name (``"tiny-lm"``), hub name, local path or causal LM module
            (a module is used where it is, as it is: put it in eval mode).
        coef: KL coefficient (``reward = -coef * KL``).
        estimator: ``"k1"``, ``"k3"`` or ``"full"``.
        policy: Policy module to bind now (or later with :meth:`bind`).
        if_unbound: What a step does with no policy bound and no log-probs handed over:
            ``"error"`` raises; ``"zero"`` gives 0 and warns once (lets random-action checkers and
            fixed-policy evaluation run on a task that carries a KL term).
        device: Where a reference loaded from a name runs (default: the env's device).
        name: Term name in ``info["reward_terms"]``.

    Example:
        >>> kl = KLPenalty("tiny-lm", coef=0.1, estimator="k3")  # doctest: +SKIP
        >>> env = gym.make("TextGen-v0", reward=RewardModel("tiny-sentiment", output="probability") + kl)
    """

    dense = True
    coef: float
    estimator: str
    if_unbound: str
    device: torch.device | None
    _loaded: bool
    _warned: bool
    _policy_stale: bool

    def __init__(
        self,
        reference: str | torch.nn.Module = "tiny-lm",
        coef: float = 0.1,
        *,
        estimator: str = "k1",
        policy: torch.nn.Module | None = None,
        if_unbound: str = "error",
        device: str | torch.device | None = None,
        name: str = "kl",
    ):
        if isinstance(coef, bool) or not isinstance(coef, numbers.Real) or not math.isfinite(float(coef)):
            raise TypeError(
                f"KLPenalty coef must be a finite real number, got {type(coef).__name__}: {coef!r}"
            )
        if estimator not in ESTIMATORS:
            raise ValueError(f"KLPenalty estimator must be one of {ESTIMATORS}, got {estimator!r}")
        if if_unbound not in UNBOUND:
            raise ValueError(f"KLPenalty if_unbound must be one of {UNBOUND}, got {if_unbound!r}")
        if not isinstance(reference, (str, torch.nn.Module)):
            raise TypeError(
                f"KLPenalty reference must be a name, a path or a causal LM module, got {type(reference).__name__}"
            )
        self.coef = float(coef)
        self.estimator = estimator
        self.if_unbound = if_unbound
        self.name = name
        self.device = None if device is None else resolve_device(device)
        # Loaded now (not at attach) so a bad name fails where it is written, e.g. in a reward spec.
        self._loaded = isinstance(reference, str)
        self.reference: torch.nn.Module = (
            load_causal_lm(reference, device=self.device or "cpu", argument="KLPenalty reference")
            .eval()
            .requires_grad_(False)
            if isinstance(reference, str)
            else reference
        )
        self.policy: torch.nn.Module | None = None
        self.ctx: ScorerContext | None = None
        self.last_kl: torch.Tensor | None = None
        self._step_kl: torch.Tensor | None = None  # KL of the step being scored, until it happens
        self._ref: _Follower | None = None
        self._policy: _Follower | None = None
        self._policy_stale = True
        self._handed: torch.Tensor | None = None
        self._warned = False
        self._rows: _Rows | None = None
        self._deferred: bool = False
        self._ref_stale: torch.Tensor | None = None  # (B,) rows the reference's cache has not followed
        if policy is not None:
            self.bind(policy)

    # -- setup ---------------------------------------------------------------------------------

    def attach(self, ctx: ScorerContext) -> None:
        if self.ctx is not None:
            raise ValueError(
                f"{self!r} is already attached to an env; a dense scorer keeps per-row state, so build one "
                "KLPenalty per env (string specs such as 'kl:tiny-lm:0.1' and registered tasks do)"
            )
        if self._loaded:
            if self.device is None:
                self.reference.to(ctx.device)
        elif self.reference.training:
            warnings.warn(
                f"KLPenalty reference {describe(self.reference)} is in training mode (dropout makes the "
                "penalty noisy); call .eval() on it",
                stacklevel=2,
            )
        self._check_width(self.reference, "reference", ctx.vocab_size)
        if self.policy is not None:
            self._check_width(self.policy, "policy", ctx.vocab_size)
        self.ctx = ctx
        length = ctx.max_prompt_tokens + ctx.max_new_tokens
        self._ref = _Follower(self.reference, ctx.num_rows, length, ctx.device)
        self._rows = _Rows(
            ids=torch.zeros(ctx.num_rows, length, dtype=torch.long, device=ctx.device),
            mask=torch.zeros(ctx.num_rows, length, dtype=torch.long, device=ctx.device),
            length=torch.zeros(ctx.num_rows, dtype=torch.long, device=ctx.device),
            prompt_len=ctx.max_prompt_tokens,
        )
        self.last_kl = torch.zeros(ctx.num_rows, dtype=torch.float64, device=ctx.device)

    @staticmethod
    def _check_width(model: torch.nn.Module, role: str, vocab_size: int) -> None:
        width = logits_width(model)
        if width != vocab_size:
            raise ValueError(
                f"KLPenalty {role} {describe(model)} has {width} logits but the env's action space has "
                f"vocab_size={vocab_size}; use a model of the env's tokenizer, or set the env's vocab_size={width}"
            )

    def bind(self, policy: torch.nn.Module | None) -> KLPenalty:
        """Binds the policy whose log-probs the scorer computes itself (``None`` unbinds).

        Args:
            policy: A causal LM (its forward returns ``.logits`` and takes a KV cache), or an
                ``agents.CausalLMWithValueHead`` (its ``.lm`` is used).

        Returns:
            ``self``, for chaining.
        """
        if policy is None:
            self.policy, self._policy = None, None
            return self
        if not isinstance(policy, torch.nn.Module):
            raise TypeError(
                f"KLPenalty.bind() needs a torch module (a causal LM), got {type(policy).__name__}"
            )
        policy = causal_lm_of(policy)
        if self.ctx is not None:
            self._check_width(policy, "policy", self.ctx.vocab_size)
        self.policy, self._policy, self._policy_stale = policy, None, True
        return self

    def set_reference(self, reference: torch.nn.Module) -> KLPenalty:
        """Replaces the reference model (before or after the env is built), e.g. with the policy's own
        weights with their LoRA adapters off: ``kl.set_reference(AdaptersOff(lora_policy))``.

        The previous reference is dropped (a model loaded from a name is freed). Rows already running
        are re-read into the new reference's KV cache.

        Args:
            reference: A causal LM module of the env's vocabulary (used as it is; its mode is not changed).

        Returns:
            ``self``, for chaining.

        Raises:
            TypeError: ``reference`` is not a torch module.
            ValueError: Its logits width differs from the env's vocabulary.
        """
        if not isinstance(reference, torch.nn.Module):
            raise TypeError(
                f"KLPenalty.set_reference() needs a causal LM module, got {type(reference).__name__}"
            )
        ctx, rows = self.ctx, self._rows
        if ctx is not None and rows is not None:
            self._check_width(reference, "reference", ctx.vocab_size)
            self._ref = _Follower(reference, ctx.num_rows, rows.ids.shape[1], ctx.device)
            if bool(rows.mask.any()):
                self._reread(self._ref, torch.arange(ctx.num_rows, device=ctx.device))
            self._ref_stale = None
            if self._policy is not None:
                self._policy_stale = True  # a policy that shared the old reference's cache
        self.reference = reference
        return self

    def set_policy_logprobs(self, logprobs: object) -> None:
        """Hands over the policy's log-probs of the actions the next ``env.step`` takes.

        Args:
            logprobs: ``(B,)`` log-prob of each row's action, or ``(B, V)`` log-probs over the
                vocabulary (required by ``estimator="full"``); B = the env's rows (1 for a single
                env, which also takes a float or a (V,) vector). Tensor, array or float; detached.

        Raises:
            ValueError: A shape that fits neither layout.
        """
        if self.ctx is None:
            raise RuntimeError(f"{self!r} is not attached to an env yet; create the env with it first")
        B, V = self.ctx.num_rows, self.ctx.vocab_size
        if isinstance(logprobs, torch.Tensor):
            x = logprobs.detach()
        else:
            x = torch.as_tensor(np.asarray(logprobs, dtype=np.float64))
        x = x.to(self.ctx.device)
        if x.ndim == 0 and B == 1:
            x = x.view(1)
        elif x.ndim == 1 and x.shape[0] == V and B == 1 and V != 1:
            x = x.view(1, V)
        if not ((x.ndim == 1 and x.shape[0] == B) or (x.ndim == 2 and tuple(x.shape) == (B, V))):
            raise ValueError(
                f"set_policy_logprobs expects ({B},) log-probs of the actions or ({B}, {V}) log-probs over the "
                f"vocabulary, got shape {tuple(x.shape)}"
            )
        if self.estimator == "full" and x.ndim == 1:
            raise ValueError(
                f"estimator='full' needs the policy's full log-probs, shape ({B}, {V}); got ({B},)"
            )
        _check_logprobs(x)
        self._handed = x

    def step_kl(self) -> torch.Tensor:
        """``(B,)`` float64 KL of each row's token on the last step (0 for idle rows): ``last_kl``, checked."""
        if self.last_kl is None:
            raise RuntimeError(f"{self!r} must be attached to an env before step_kl()")
        return self.last_kl

    @contextlib.contextmanager
    def deferred(self) -> Iterator[KLPenalty]:
        """The steps taken inside give 0 for this term and do not run the reference (nor a bound policy);
        the caller scores the finished episodes afterwards with :meth:`score_episodes` (one batched
        forward of the reference instead of one single-token forward per step, as TRL does).

        Rows still running when the block ends are re-read into the reference's cache before their next
        step, so the per-step path continues exactly.

        Raises:
            ValueError: With ``estimator="full"``, which needs the policy's whole next-token distribution
                at every step.
        """
        if self.estimator == "full":
            raise ValueError(
                f"{self!r}: deferred() needs estimator 'k1' or 'k3'; 'full' needs the policy's whole "
                "next-token distribution at every step, which the env keeps"
            )
        self._deferred = True
        try:
            yield self
        finally:
            self._deferred = False

    @property
    def is_deferred(self) -> bool:
        """Whether the term is inside :meth:`deferred` (its steps give 0)."""
        return self._deferred

    def score_episodes(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        logprobs: torch.Tensor,
        policy_mask: torch.Tensor | None = None,
        *,
        batch_size: int = 64,
    ) -> EpisodeKL:
        """This term over whole episodes: the KL of every policy token from one batched forward of the
        reference (float32, as the per-step path), for episodes run inside :meth:`deferred`.

        ``input_ids`` holds each episode as the env's observation does: the left-padded prompt in the
        first ``P`` columns, then the ``T`` columns after it. The reference reads every token there; the
        KL counts only where ``policy_mask`` is 1 (the tokens the policy chose: in a multi-turn env not
        the env's inserted replies), with the estimator of the per-step path, so the rewards equal those
        of :meth:`step_rows` to float precision.

        Args:
            input_ids: ``(N, P + T)`` final observations.
            attention_mask: ``(N, P + T)``.
            logprobs: ``(N, T)`` the policy's log-prob of each token after the prompt (what
                :meth:`set_policy_logprobs` would have been handed, per token).
            policy_mask: ``(N, T)`` the policy's tokens; default: every real token after the prompt.
            batch_size: Episodes per reference forward.

        Returns:
            ``EpisodeKL(kl, rewards)``, both ``(N, T)`` float64 on the ids' device, 0 outside the mask;
            ``rewards = -coef * kl``.

        Raises:
            ValueError: Shapes that do not fit, the ``"full"`` estimator, or a non-finite KL on a policy token.
        """
        if self.estimator == "full":
            raise ValueError(f"{self!r}: score_episodes() needs estimator 'k1' or 'k3', not 'full'")
        if input_ids.ndim != 2 or attention_mask.shape != input_ids.shape:
            raise ValueError(
                f"input_ids and attention_mask must both be (N, P + T), got {tuple(input_ids.shape)} and "
                f"{tuple(attention_mask.shape)}"
            )
        N, L = input_ids.shape
        if logprobs.ndim != 2 or logprobs.shape[0] != N or not 0 < logprobs.shape[1] < L:
            raise ValueError(
                f"logprobs must be (N, T) = ({N}, T) with 0 < T < {L}, got {tuple(logprobs.shape)}"
            )
        T = logprobs.shape[1]
        real = attention_mask[:, L - T :].bool()
        if policy_mask is not None and tuple(policy_mask.shape) != (N, T):
            raise ValueError(f"policy_mask must be ({N}, {T}), got {tuple(policy_mask.shape)}")
        mask = real if policy_mask is None else policy_mask.to(real.device).bool() & real
        ref = token_logprobs(self.reference, input_ids, attention_mask, T, batch_size=batch_size)  # (N, T)
        kl = kl_per_token(self.estimator, logprobs.to(ref.device), ref)
        kl = torch.where(mask.to(kl.device), kl, torch.zeros((), dtype=kl.dtype, device=kl.device))
        if not bool(torch.isfinite(kl).all()):
            n, t = (~torch.isfinite(kl)).nonzero()[0].tolist()
            raise ValueError(
                f"{self!r}: KL {float(kl[n, t])!r} at episode {n}, token {t} (log-prob {float(logprobs[n, t])!r}); "
                "expected finite log-probs"
            )
        kl = kl.to(input_ids.device)
        return EpisodeKL(kl=kl, rewards=-self.coef * kl)

    def _reread(self, follower: _Follower, index: torch.Tensor) -> None:
        """Prefills ``follower``'s rows ``index`` with each row's tokens so far (prompt and generated)."""
        rows = self._rows
        ids, mask = left_pack(rows.ids[index], rows.mask[index])  # type: ignore[union-attr]
        follower.reset_rows(index, ids, mask)

    def _follow_again(self) -> None:
        """Re-reads the rows that ran inside :meth:`external` into the reference's cache (once: the
        flags are dropped afterwards, so later steps check nothing)."""
        if self._ref_stale is None:
            return
        stale = self._ref_stale.nonzero().squeeze(1)
        if stale.numel():
            self._reread(self._ref, stale)  # type: ignore[arg-type]
        self._ref_stale = None

    # -- dense scorer protocol -------------------------------------------------------------------

    def reset_rows(self, rows: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> None:
        if self._ref is None or self._rows is None:
            raise RuntimeError(f"{self!r} must be attached to an env before reset_rows()")
        P = self._rows.prompt_len
        self._rows.ids[rows] = 0
        self._rows.mask[rows] = 0
        self._rows.ids[rows, :P] = input_ids.to(self._rows.ids.device)
        self._rows.mask[rows, :P] = attention_mask.to(self._rows.ids.device).long()
        self._rows.length[rows] = 0
        # Handed-over log-probs belong to one step of the episodes running when they were handed over.
        self._handed = None
        if self._deferred:
            self._mark_stale(rows)
            return
        self._ref.reset_rows(rows, input_ids, attention_mask)
        if self._ref_stale is not None:
            self._ref_stale[rows] = False
        if self._policy is not None and self._policy is not self._ref and not self._policy_stale:
            self._policy.reset_rows(rows, input_ids, attention_mask)

    def insert_rows(self, rows: torch.Tensor, token_ids: torch.Tensor, lengths: torch.Tensor) -> None:
        """The env inserted tokens after this step's (a reply): the reference reads them, batched, in one
        forward for the rows that got one; they are never scored."""
        if self._rows is None or self._ref is None:
            raise RuntimeError(f"{self!r} must be attached to an env before insert_rows()")
        device = self._rows.ids.device
        rows, token_ids, lengths = rows.to(device), token_ids.to(device), lengths.to(device)
        for i, r in enumerate(rows.tolist()):
            n, start = int(lengths[i]), self._rows.prompt_len + int(self._rows.length[r])
            self._rows.ids[r, start : start + n] = token_ids[i, :n]
            self._rows.mask[r, start : start + n] = 1
        self._rows.length[rows] += lengths
        if self._deferred:
            self._mark_stale(rows)
            return
        self._ref.insert(rows, token_ids, lengths)
        if self._policy is not None and self._policy is not self._ref:
            if self._policy_stale:
                return  # rebuilt from the rows' tokens (these included) when it is needed
            self._policy.insert(rows, token_ids, lengths)

    def _mark_stale(self, rows: torch.Tensor) -> None:
        """``rows`` changed without the reference (or a bound policy) following them."""
        if self._ref_stale is None:
            self._ref_stale = torch.zeros(self.ctx.num_rows, dtype=torch.bool, device=self.ctx.device)  # type: ignore[union-attr]
        self._ref_stale[rows] = True
        self._policy_stale = True

    def step_rows(self, actions: torch.Tensor, active: torch.Tensor) -> torch.Tensor:
        """``-coef * KL`` (B,) of this step's actions; records nothing (see :meth:`advance_rows`).

        Raises:
            ScorerError: No policy log-probs (with ``if_unbound="error"``) or a non-finite KL; the
                handed-over log-probs then stay for the retried step.
        """
        if self._ref is None or self._rows is None or self.ctx is None:
            raise RuntimeError(f"{self!r} must be attached to an env before step_rows()")
        actions = actions.to(self.ctx.device).long()
        active = active.to(self.ctx.device).bool()
        if self._deferred or not active.any():  # e.g. a vector-env step in which every row restarts
            self._step_kl = torch.zeros(actions.shape[0], dtype=torch.float64, device=self.ctx.device)
            return self._step_kl.clone()
        self._follow_again()
        logq_all = self._ref.logprobs()  # (B, V)
        self._step_kl = self._kl(actions, active, self._handed, logq_all)
        return -self.coef * self._step_kl

    def advance_rows(self, actions: torch.Tensor, active: torch.Tensor) -> None:
        """The step happened: append its tokens to every row and consume the handed-over log-probs."""
        if self.ctx is None:
            raise RuntimeError(f"{self!r} must be attached to an env before advance_rows()")
        actions = actions.to(self.ctx.device).long()
        active = active.to(self.ctx.device).bool()
        handed, self._handed = self._handed, None
        self._record(actions, active, policy_stepped=handed is None)
        self.last_kl = self._step_kl

    def _kl(
        self, actions: torch.Tensor, active: torch.Tensor, handed: torch.Tensor | None, logq_all: torch.Tensor
    ) -> torch.Tensor:
        B = actions.shape[0]
        if handed is None and self.policy is None:
            if self.if_unbound == "error":
                raise ScorerError(
                    f"scorer {self!r} (term {self.name!r}) has no policy log-probs for this step: {_BIND_HELP}"
                )
            if not self._warned:
                warnings.warn(
                    f"{self!r} has no policy log-probs, so its reward is 0: {_BIND_HELP}", stacklevel=4
                )
                self._warned = True
            return torch.zeros(B, dtype=torch.float64, device=self.ctx.device)  # type: ignore[union-attr]
        logp_all = handed if handed is not None else self._policy_logprobs()
        if self.estimator == "full":
            kl = kl_per_token("full", logp_all, logq_all)
        else:
            logp = logp_all if logp_all.ndim == 1 else logp_all.gather(1, actions.view(-1, 1)).squeeze(1)
            kl = kl_per_token(self.estimator, logp, logq_all.gather(1, actions.view(-1, 1)).squeeze(1))
        kl = torch.where(active, kl, torch.zeros_like(kl))
        self._check_finite(kl, active, actions, handed is not None)
        return kl

    def _check_finite(
        self, kl: torch.Tensor, active: torch.Tensor, actions: torch.Tensor, handed: bool
    ) -> None:
        bad = ~torch.isfinite(kl) & active
        if not bad.any():
            return
        r = int(bad.nonzero()[0, 0])
        rows = self._rows
        prompt_ids = rows.ids[r, : rows.prompt_len][rows.mask[r, : rows.prompt_len].bool()].tolist()  # type: ignore[union-attr]
        prompt = self.ctx.tokenizer.decode(prompt_ids)  # type: ignore[union-attr]
        source = (
            "handed over with set_policy_logprobs()"
            if handed
            else f"of the bound policy {describe(self.policy)}"
        )
        raise ScorerError(
            f"scorer {self!r} (term {self.name!r}) computed KL {float(kl[r])!r} for row {r} (prompt {prompt!r}, "
            f"action {int(actions[r])}) from the policy log-probs {source}; expected finite log-probs"
        )

    def _policy_logprobs(self) -> torch.Tensor:
        if self.policy is None:
            raise RuntimeError(f"{self!r} has no bound policy")
        if self.policy is self.reference:
            self._policy = self._ref  # same model, same inputs: share the cache, KL is exactly 0
        elif (
            self._policy is None
            or self._policy_stale
            or self._policy.version != _weights_version(self.policy)
        ):
            self._rebuild_policy()
        return self._policy.logprobs()  # type: ignore[union-attr]

    def _rebuild_policy(self) -> None:
        """Prefills the bound policy with every row's tokens so far (after bind() or a weight update)."""
        rows, ctx = self._rows, self.ctx
        self._policy = _Follower(self.policy, ctx.num_rows, rows.ids.shape[1], ctx.device)  # type: ignore[arg-type, union-attr]
        self._reread(self._policy, torch.arange(ctx.num_rows, device=ctx.device))  # type: ignore[union-attr]
        self._policy_stale = False

    def _record(self, actions: torch.Tensor, active: torch.Tensor, *, policy_stepped: bool) -> None:
        rows = self._rows
        index = active.nonzero().squeeze(1)
        pos = rows.prompt_len + rows.length[index]  # type: ignore[union-attr]
        rows.ids[index, pos] = actions[index]  # type: ignore[union-attr]
        rows.mask[index, pos] = 1  # type: ignore[union-attr]
        rows.length += active.long()  # type: ignore[union-attr]
        if self._deferred:
            self._mark_stale(index)
            return
        self._ref.push(actions, active)  # type: ignore[union-attr]
        if self._policy is None or self._policy is self._ref:
            return
        if policy_stepped:
            self._policy.push(actions, active)
        else:
            # Log-probs were handed over, so the bound policy's cache skipped this token: rebuild it
            # from the rows' tokens if it is needed again.
            self._policy_stale = True

    def __repr__(self) -> str:
        return f"KLPenalty({describe(self.reference)}, coef={self.coef:g}, estimator={self.estimator!r})"


class KLScores(NamedTuple):
    """The env's deferred KL terms over whole episodes (:meth:`DeferredKL.score`).

    Attributes:
        rewards: ``(N, T)`` float64 summed reward of the terms on each token (weights included): what
            the env's steps would have added to the rewards.
        kl: ``(N, T)`` float64 summed KL of the terms on each token (what ``info["kl"]`` would have held).
        terms: Term name -> ``(N,)`` float64 episode total of that term (what ``info["reward_terms"]`` misses).
    """

    rewards: torch.Tensor
    kl: torch.Tensor
    terms: dict[str, torch.Tensor]


class DeferredKL:
    """The KL terms of an env that are scored after the episodes (see ``TextGenCore.defer_kl``).

    Args:
        terms: ``(name, weight, term)`` of each deferred term, as the env's reward lists them.
    """

    def __init__(self, terms: list[tuple[str, float, KLPenalty]]):
        self.terms = terms

    def __bool__(self) -> bool:
        return bool(self.terms)

    def score(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        logprobs: torch.Tensor,
        policy_mask: torch.Tensor | None = None,
        *,
        batch_size: int = 64,
    ) -> KLScores:
        """Every deferred term over the episodes: :meth:`KLPenalty.score_episodes`, weighted and summed.

        Args: see :meth:`KLPenalty.score_episodes`.
        """
        N, T = logprobs.shape
        zeros = torch.zeros(N, T, dtype=torch.float64, device=input_ids.device)
        rewards, kl, totals = zeros, zeros.clone(), {}
        for name, weight, term in self.terms:
            scored = term.score_episodes(
                input_ids, attention_mask, logprobs, policy_mask, batch_size=batch_size
            )
            rewards = rewards + weight * scored.rewards
            kl = kl + scored.kl
            totals[name] = weight * scored.rewards.sum(1)
        return KLScores(rewards=rewards, kl=kl, terms=totals)
