"""The policy: the model side of an algorithm, as stable-baselines3's ``ActorCriticPolicy``.

A :class:`CausalLMPolicy` is a causal LM whose sampling distribution (temperature, top-k, top-p, a
minimum length) is the action distribution; one forward over whole episodes evaluates a batch (the
log-prob of every token the policy chose, and its entropy), and it samples, saves and loads itself.
:class:`ActorCriticPolicy` adds a value head on the same trunk (PPO), and its forward also returns the
values. The loop never asks which one it has.

Loading (names and paths to modules) and the precision and kernel choices live here too.
"""

from __future__ import annotations

import contextlib
import os
import random
from typing import Any, ClassVar, Literal, NamedTuple, cast, overload

import numpy as np
import torch
from torch import nn

from agents.common.inference import generate_tokens, next_tokens
from agents.common.logprobs import token_logprobs
from agents.common.lora import (
    apply_lora,
    is_adapter_dir,
    is_peft_model,
    load_adapter_model,
    load_adapter_weights,
    read_adapter_weights,
)
from agents.common.sampling import SamplingParams
from agents.common.value_head import VALUE_HEAD_FILENAME, CausalLMWithValueHead
from textenv.lm import causal_lm_of


def set_global_seed(seed: int) -> None:
    """Seeds Python's ``random``, NumPy's global RNG and torch (CPU and CUDA)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


@overload
def load_policy(
    policy: str | os.PathLike[str] | nn.Module, *, value_head: Literal[True], peft_config: Any = None
) -> CausalLMWithValueHead: ...
@overload
def load_policy(
    policy: str | os.PathLike[str] | nn.Module, *, value_head: bool = False, peft_config: Any = None
) -> nn.Module: ...
def load_policy(
    policy: str | os.PathLike[str] | nn.Module, *, value_head: bool = False, peft_config: Any = None
) -> nn.Module:
    """The model an algorithm trains, from a built-in asset name (``"tiny-lm"``), a path or hub name, or a
    causal LM module (used as it is, not copied).

    Args:
        policy: The policy. A directory of PEFT adapters (``adapter_config.json``, as a LoRA checkpoint's
            ``model/``) loads its base model with the adapters on it.
        value_head: Return a :class:`CausalLMWithValueHead` (PPO: the LM wrapped with a value head, read
            from ``value_head.safetensors`` when the directory has one); else the plain causal LM (a
            ``CausalLMWithValueHead`` given here yields its ``.lm``).
        peft_config: A ``peft.LoraConfig`` (any ``peft.PeftConfig``): the LM gets these adapters
            (:func:`agents.common.lora.apply_lora`) before the value head is put on it.

    Raises:
        TypeError: For anything else.
    """
    if isinstance(policy, CausalLMWithValueHead) and peft_config is None:
        return policy if value_head else policy.lm
    lm, head = _load_lm(policy)
    if peft_config is not None:
        lm = apply_lora(lm, peft_config)
    if not value_head:
        return lm
    model = CausalLMWithValueHead(lm)
    if head is not None:
        model.value_head = cast(nn.Linear, head)
    elif isinstance(policy, (str, os.PathLike)) and os.path.isfile(
        os.path.join(os.fspath(policy), VALUE_HEAD_FILENAME)
    ):
        model.load_value_head(os.path.join(os.fspath(policy), VALUE_HEAD_FILENAME))
    return model


def _load_lm(policy: str | os.PathLike[str] | nn.Module) -> tuple[nn.Module, nn.Module | None]:
    """The causal LM of a policy spec and the value head it already carries (a wrapped module's), if any."""
    if isinstance(policy, (str, os.PathLike)):
        from transformers import AutoModelForCausalLM

        from textenv.loading import from_pretrained, resolve_pretrained

        # A built-in name becomes its path; a near miss ("tiny_lm") is answered before any hub access.
        name = resolve_pretrained(os.fspath(policy), argument="policy")
        if is_adapter_dir(name):
            return load_adapter_model(name), None
        return from_pretrained(AutoModelForCausalLM, name, argument="policy", use_safetensors=True), None
    if isinstance(policy, CausalLMWithValueHead):
        return policy.lm, policy.value_head
    if isinstance(policy, nn.Module):
        return policy, None
    raise TypeError(
        f"policy must be a model name or path, a causal LM module or a CausalLMWithValueHead, "
        f"got {type(policy).__name__}: {policy!r}"
    )


def disable_dropout(lm: nn.Module) -> None:
    """Sets the dropout probability of every ``nn.Dropout`` in ``lm`` to 0.

    Policy-gradient updates compare log-probs of the same tokens before and after an update; dropout
    makes the two forwards differ even with identical weights, so LM RL implementations disable it.
    """
    for module in lm.modules():
        if isinstance(module, nn.Dropout):
            module.p = 0.0


def has_native_bf16(device: torch.device) -> bool:
    """Whether ``device`` computes in bf16 natively: CUDA with bf16 support, or a CPU with AVX512-BF16/AMX."""
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    return device.type == "cpu" and bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


def resolve_mixed_precision(mode: str, device: torch.device) -> str:
    """The precision a run uses: ``"auto"`` becomes ``"bf16"`` where ``device`` has native bf16, else ``"no"``.

    Example:
        >>> resolve_mixed_precision("no", torch.device("cpu"))
        'no'
    """
    if mode == "auto":
        return "bf16" if has_native_bf16(device) else "no"
    return mode


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


Entropy = Literal["none", "value", "grad"]
"""What a policy forward returns of the entropy: nothing, its value (no grad), or a value with grad (a bonus)."""


class PolicyOutput(NamedTuple):
    """One policy forward over whole episodes (see :meth:`CausalLMPolicy.forward`).

    Attributes:
        logprobs: ``(B, T)`` float32 log-prob of each token after the prompt under the sampling distribution.
        entropy: ``(B, T)`` float32 entropy of the sampling distribution at each token, or ``None``.
        values: ``(B, T)`` float32 value of the state each token was chosen in (a policy with a value
            head), else ``None``.
    """

    logprobs: torch.Tensor
    entropy: torch.Tensor | None
    values: torch.Tensor | None


class CausalLMPolicy(nn.Module):
    """A causal LM as a policy: its sampling distribution is the action distribution.

    Args:
        model: The causal LM (for :class:`ActorCriticPolicy`: a :class:`CausalLMWithValueHead`).
        sampling: The sampling transform (the env's EOS ids and the run's temperature, top-k, top-p).
        mixed_precision: ``"bf16"`` runs the forwards under bf16 autocast (where the device has it),
            ``"no"`` in float32.
        logits_chunk_size: Positions per chunk of the LM head in :meth:`forward` (``None``: automatic,
            ``0``: the full logits); see ``OnPolicyConfig.logits_chunk_size``.

    Example:
        >>> policy = CausalLMPolicy.load("tiny-lm", SamplingParams(eos_token_ids=(0,)))  # doctest: +SKIP
        >>> out = policy(input_ids, attention_mask, position_ids, tokens, entropy="value")
        >>> out.logprobs.shape, out.entropy.shape  # (B, T), (B, T)
    """

    has_value_head: ClassVar[bool] = False
    """Whether :meth:`forward` returns values."""

    def __init__(
        self,
        model: nn.Module,
        sampling: SamplingParams,
        *,
        mixed_precision: str = "no",
        logits_chunk_size: int | None = None,
    ):
        super().__init__()
        self.model = model
        self.sampling = sampling
        self.mixed_precision = mixed_precision
        # None: "auto" (chunks once the full logits would be large); 0: never; n: n positions per chunk.
        self.chunk_size: int | Literal["auto"] | None = (
            "auto" if logits_chunk_size is None else (logits_chunk_size or None)
        )

    @classmethod
    def load(
        cls,
        source: str | os.PathLike[str] | nn.Module,
        sampling: SamplingParams,
        *,
        peft_config: Any = None,
        mixed_precision: str = "no",
        logits_chunk_size: int | None = None,
    ) -> CausalLMPolicy:
        """A policy from a built-in asset name, a path or hub name, or a module (used as it is, not copied).

        Raises:
            TypeError: ``source`` is none of these.
        """
        model = load_policy(source, value_head=cls.has_value_head, peft_config=peft_config)
        return cls(model, sampling, mixed_precision=mixed_precision, logits_chunk_size=logits_chunk_size)

    @property
    def lm(self) -> nn.Module:
        """The causal LM (what the rollout steps with its KV cache)."""
        return causal_lm_of(self.model)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def autocast(self) -> contextlib.AbstractContextManager:
        """The context of this policy's forwards: bf16 autocast with ``mixed_precision="bf16"``."""
        return bf16_autocast(self.device) if self.mixed_precision == "bf16" else contextlib.nullcontext()

    def forward(  # type: ignore[override]
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        position_ids: torch.Tensor,
        tokens: torch.Tensor,
        entropy: Entropy = "none",
    ) -> PolicyOutput:
        """Evaluates whole episodes in one forward: the log-prob (and entropy, values) of each token after
        the prompt.

        The LM head runs in chunks of positions when the full ``(B, T, V)`` logits would be large
        (:func:`agents.common.logprobs.token_logprobs`, ``logits_chunk_size``): the same values and
        gradients without that tensor.

        Args:
            input_ids: ``(B, P + T)`` left-padded prompts, then the episodes' tokens.
            attention_mask: ``(B, P + T)``.
            position_ids: ``(B, P + T)``.
            tokens: ``(B, T)`` the tokens after the prompt (``input_ids[:, P:]``).
            entropy: ``"none"``, ``"value"`` (a statistic, no grad) or ``"grad"`` (an entropy bonus).

        Returns:
            :class:`PolicyOutput`; the logits at column ``P + t - 1`` score token ``t``.
        """
        T = tokens.shape[1]
        P = input_ids.shape[1] - T
        with self.autocast():
            scores = token_logprobs(
                self.lm,
                input_ids,
                attention_mask,
                position_ids,
                tokens,
                sampling=self.sampling,
                with_entropy=entropy != "none",
                entropy_grad=entropy == "grad",
                return_hidden=self.has_value_head,
                chunk_size=self.chunk_size,
            )
        values = None if scores.hidden is None else self._values(scores.hidden[:, P - 1 : P + T - 1])
        return PolicyOutput(scores.logprobs, scores.entropy, values)

    def _values(self, hidden: torch.Tensor) -> torch.Tensor | None:
        """``(B, T)`` values of the states the tokens were chosen in (hidden ``(B, T, H)``); ``None``
        without a value head."""
        return None

    @torch.no_grad()
    def next_tokens(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        *,
        prompt_len: int,
        deterministic: bool = False,
    ) -> torch.Tensor:
        """``(N,)`` the next token of each left-padded observation row (one full forward)."""
        with self.autocast():
            return next_tokens(
                self.lm,
                input_ids,
                attention_mask,
                self.sampling,
                prompt_len=prompt_len,
                deterministic=deterministic,
            )

    @torch.no_grad()
    def generate(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        max_new_tokens: int,
        *,
        deterministic: bool = False,
        generator: torch.Generator | None = None,
    ) -> list[list[int]]:
        """KV-cached generation from left-padded prompts ``(N, P)``: each row's tokens up to (without) EOS."""
        with self.autocast():
            return generate_tokens(
                self.lm,
                input_ids,
                attention_mask,
                self.sampling,
                max_new_tokens,
                deterministic=deterministic,
                generator=generator,
            )

    def save_pretrained(self, directory: str | os.PathLike[str]) -> None:
        """Writes the model as transformers does (safetensors; LoRA: the adapters; a value head beside)."""
        cast(Any, self.model).save_pretrained(directory)

    def read_weights(self, directory: str | os.PathLike[str]) -> dict[str, Any]:
        """Reads the weights :meth:`save_pretrained` wrote (CPU tensors), changing nothing: a checkpoint is
        read whole, and checked, before any of it is applied (:meth:`apply_weights`).

        Raises:
            FileNotFoundError, ValueError: A missing or unreadable part (named).
        """
        if is_peft_model(self.lm):
            return {"adapters": read_adapter_weights(directory)}
        return {"lm": load_policy(directory, value_head=False).state_dict()}

    def apply_weights(self, weights: dict[str, Any]) -> None:
        """Puts what :meth:`read_weights` read into this policy (in place)."""
        if "adapters" in weights:
            load_adapter_weights(self.lm, weights["adapters"])
        else:
            self.lm.load_state_dict(weights["lm"])


class ActorCriticPolicy(CausalLMPolicy):
    """A :class:`CausalLMPolicy` with a float32 value head on the LM's last hidden state (PPO's critic).

    ``forward`` also returns ``values[:, t]``, the value of the state in which token ``t`` was chosen.
    Checkpoints hold ``value_head.safetensors`` next to the LM (:class:`CausalLMWithValueHead`'s layout).
    """

    has_value_head: ClassVar[bool] = True
    model: CausalLMWithValueHead

    @property
    def value_head(self) -> nn.Linear:
        """The critic: ``Linear(hidden_size, 1)`` in float32."""
        return self.model.value_head

    def _values(self, hidden: torch.Tensor) -> torch.Tensor | None:
        return self.model.values_of(hidden)  # (B, T) float32

    def read_weights(self, directory: str | os.PathLike[str]) -> dict[str, Any]:
        """The LM's weights (or its adapters) and ``value_head.safetensors``.

        Raises:
            FileNotFoundError: The directory has no value head.
            ValueError: The value head does not fit this LM.
        """
        head = os.path.join(os.fspath(directory), VALUE_HEAD_FILENAME)
        if not os.path.isfile(head):
            raise FileNotFoundError(
                f"{os.fspath(directory)!r} has no {VALUE_HEAD_FILENAME}; an actor-critic policy's checkpoint holds it"
            )
        return {**super().read_weights(directory), "value_head": self.model.read_value_head(head)}

    def apply_weights(self, weights: dict[str, Any]) -> None:
        super().apply_weights(weights)
        self.model.value_head.load_state_dict(weights["value_head"])
