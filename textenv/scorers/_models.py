"""Helpers shared by the model-based scorers (reward model, KL penalty): devices and names in errors."""

from __future__ import annotations

import torch


def module_device(module: torch.nn.Module) -> torch.device:
    """Device of a module's first parameter (CPU for a module without parameters)."""
    param = next(module.parameters(), None)
    return torch.device("cpu") if param is None else param.device


def describe(model: object) -> str:
    """A short name of a model or path for error messages."""
    if isinstance(model, str):
        return repr(model)
    config = getattr(model, "config", None)
    source = getattr(config, "_name_or_path", "") or ""
    return f"{type(model).__name__}({source!r})" if source else type(model).__name__
