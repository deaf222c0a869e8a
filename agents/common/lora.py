"""LoRA through PEFT: adapters on the policy, the reference as "the same model with its adapters off".

``Algo(policy, env, config, peft_config=LoraConfig(...))`` wraps the policy's causal LM with
``peft.get_peft_model``: the base weights are frozen and only the adapters (and PPO's value head) train.
The KL reference is the same module run under ``disable_adapter()``, never a second copy of the weights
(:class:`textenv.scorers.AdaptersOff` for the env's ``KLPenalty``; :func:`adapters_off` for a loss's
reference). A checkpoint's ``model/`` holds the adapters only (PEFT's ``adapter_config.json`` and
``adapter_model.safetensors``, plus ``value_head.safetensors`` for PPO); :func:`merged_lm` gives the plain
transformers model with the adapters merged in, for export.

``peft`` is an optional dependency: ``pip install textenv[peft]``.
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
from typing import Any, cast

from torch import nn

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"


def require_peft() -> Any:
    """The ``peft`` module, or an ``ImportError`` that says how to install it."""
    try:
        import peft
    except ImportError as err:  # pragma: no cover - peft is installed in the test environment
        raise ImportError("LoRA needs peft: pip install 'textenv[peft]' (or pip install peft)") from err
    return peft


def is_peft_model(module: Any) -> bool:
    """Whether ``module`` is a PEFT model (it has adapters that ``disable_adapter()`` switches off)."""
    return callable(getattr(module, "disable_adapter", None)) and hasattr(module, "peft_config")


def apply_lora(lm: nn.Module, peft_config: Any) -> nn.Module:
    """Wraps a causal LM with PEFT adapters (``peft.get_peft_model``): base weights frozen, adapters trainable.

    Args:
        lm: A transformers causal LM (wrapped in place: its layers get the adapter modules).
        peft_config: A ``peft.PeftConfig`` (e.g. ``peft.LoraConfig(r=8, target_modules=["c_attn"])``).

    Returns:
        The ``PeftModel``.

    Raises:
        TypeError: ``peft_config`` is not a ``peft.PeftConfig``.
        ValueError: ``lm`` already is a PEFT model.
    """
    peft = require_peft()
    if not isinstance(peft_config, peft.PeftConfig):
        raise TypeError(
            f"peft_config must be a peft.PeftConfig (e.g. peft.LoraConfig(r=8)), got {type(peft_config).__name__}"
        )
    if is_peft_model(lm):
        raise ValueError(
            f"the policy {type(lm).__name__} already has PEFT adapters; pass it without peft_config"
        )
    return peft.get_peft_model(lm, peft_config)


def adapters_off(lm: nn.Module) -> contextlib.AbstractContextManager:
    """Context in which a PEFT model runs as its base model (``disable_adapter()``); else a no-op."""
    return cast(Any, lm).disable_adapter() if is_peft_model(lm) else contextlib.nullcontext()


def is_adapter_dir(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is a directory of PEFT adapters (``adapter_config.json``)."""
    return os.path.isfile(os.path.join(os.fspath(path), ADAPTER_CONFIG))


def load_adapter_model(path: str | os.PathLike[str]) -> nn.Module:
    """Loads the base model named in ``<path>/adapter_config.json`` and puts the trainable adapters on it.

    Args:
        path: A directory written by a PEFT model's ``save_pretrained``.

    Returns:
        The ``PeftModel`` (adapters trainable).

    Raises:
        ValueError: The adapter config names no base model.
    """
    peft = require_peft()
    from transformers import AutoModelForCausalLM

    from agents.common.checkpoint import quiet_transformers

    with open(os.path.join(os.fspath(path), ADAPTER_CONFIG)) as f:
        base = json.load(f).get("base_model_name_or_path")
    if not base:
        raise ValueError(
            f"{os.path.join(os.fspath(path), ADAPTER_CONFIG)} names no base_model_name_or_path; load the base "
            "model yourself and pass peft.PeftModel.from_pretrained(base, path, is_trainable=True) as the policy"
        )
    with quiet_transformers():
        lm = AutoModelForCausalLM.from_pretrained(base, use_safetensors=True, trust_remote_code=False)
    return peft.PeftModel.from_pretrained(lm, os.fspath(path), is_trainable=True)


def read_adapter_weights(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The adapter weights saved in ``path`` (CPU tensors), for :func:`load_adapter_weights`.

    Raises:
        FileNotFoundError: ``path`` holds no adapter weights.
    """
    require_peft()
    from peft.utils import load_peft_weights

    if not os.path.isfile(os.path.join(os.fspath(path), ADAPTER_WEIGHTS)):
        raise FileNotFoundError(f"no {ADAPTER_WEIGHTS} in {os.fspath(path)!r}; expected PEFT adapters")
    return load_peft_weights(os.fspath(path), device="cpu")


def load_adapter_weights(lm: nn.Module, weights: str | os.PathLike[str] | dict[str, Any]) -> None:
    """Loads adapter weights (a directory, or what ``read_adapter_weights`` read) into the PEFT model
    ``lm`` (in place, exactly).

    Raises:
        FileNotFoundError: A directory that holds no adapter weights.
    """
    require_peft()
    from peft.utils import set_peft_model_state_dict

    if not isinstance(weights, dict):
        weights = read_adapter_weights(weights)
    set_peft_model_state_dict(lm, weights)


def merged_lm(lm: nn.Module) -> nn.Module:
    """A plain transformers model with the adapters merged into a copy of the base weights (``lm`` unchanged).

    The copy costs one model's memory while it lives; it is what ``AutoModelForCausalLM.from_pretrained``
    loads back after ``save_pretrained``.
    """
    if not is_peft_model(lm):
        return lm
    return cast(Any, copy.deepcopy(lm)).merge_and_unload()


def lora_config(r: int, alpha: float | None = None, target_modules: list[str] | None = None) -> Any:
    """The ``peft.LoraConfig`` of the command-line flags (``alpha`` defaults to ``2 * r``; modules to
    PEFT's defaults for the architecture)."""
    peft = require_peft()
    if isinstance(r, bool) or not isinstance(r, int) or r < 1:
        raise ValueError(f"lora r must be an int >= 1, got {r!r}")
    return peft.LoraConfig(
        r=r,
        lora_alpha=2 * r if alpha is None else alpha,
        target_modules=target_modules or None,
        lora_dropout=0.0,
        bias="none",
    )


__all__ = [
    "adapters_off",
    "apply_lora",
    "is_adapter_dir",
    "is_peft_model",
    "load_adapter_model",
    "load_adapter_weights",
    "lora_config",
    "merged_lm",
    "require_peft",
]
