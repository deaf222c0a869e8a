"""Registers every textenv id with Gymnasium (``import textenv`` runs this)."""

from __future__ import annotations

import gymnasium as gym

VECTOR_ENTRY_POINT = "textenv.vector:TextGenVectorEnv"


def register_envs() -> None:
    """Registers ``TextGen-v0`` and the task suite; safe to call twice."""
    if "TextGen-v0" not in gym.registry:
        gym.register(
            id="TextGen-v0",
            entry_point="textenv.env:TextGenEnv",
            vector_entry_point=VECTOR_ENTRY_POINT,
            disable_env_checker=False,
        )
