"""Loading and preparing the policy model: names and paths to modules, precision and kernel choices.

Only PPO wraps its LM with a value head (``load_policy(..., value_head=True)``); every other algorithm
trains the plain causal LM.
"""

from __future__ import annotations

import contextlib
import os
import random
from typing import Any, Literal, cast, overload

import numpy as np
import torch
from torch import nn

from agents.common.lora import apply_lora, is_adapter_dir, load_adapter_model
from agents.common.value_head import VALUE_HEAD_FILENAME, CausalLMWithValueHead


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


def policy_lm(policy: nn.Module) -> nn.Module:
    """The causal LM of a policy: the ``.lm`` of a :class:`CausalLMWithValueHead`, else the module itself."""
    return policy.lm if isinstance(policy, CausalLMWithValueHead) else policy


def disable_dropout(lm: nn.Module) -> None:
    """Sets the dropout probability of every ``nn.Dropout`` in ``lm`` to 0.

    Policy-gradient updates compare log-probs of the same tokens before and after an update; dropout
    makes the two forwards differ even with identical weights, so LM RL implementations disable it.
    """
    for module in lm.modules():
        if isinstance(module, nn.Dropout):
            module.p = 0.0


def logits_width(lm: nn.Module) -> int:
    """Number of logits the LM produces: its output embeddings' ``out_features``, else ``config.vocab_size``."""
    get_out = getattr(lm, "get_output_embeddings", None)
    out = get_out() if callable(get_out) else None
    width = getattr(out, "out_features", None)
    if isinstance(width, int):
        return width
    config: Any = lm.config
    config = config.get_text_config() if hasattr(config, "get_text_config") else config
    return int(config.vocab_size)


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
