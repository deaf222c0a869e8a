"""Registers every textenv id with Gymnasium (``import textenv`` runs this)."""

from __future__ import annotations

import gymnasium as gym

VECTOR_ENTRY_POINT = "textenv.vector:TextGenVectorEnv"


def register_envs() -> None:
    """Registers ``TextGen-v0`` and the task suite (:mod:`textenv.tasks`); safe to call twice."""
    if "TextGen-v0" not in gym.registry:
        gym.register(
            id="TextGen-v0",
            entry_point="textenv.env:TextGenEnv",
            vector_entry_point=VECTOR_ENTRY_POINT,
            disable_env_checker=False,
        )
    from textenv.tasks import TASKS

    for task in TASKS:
        if task.id in gym.registry:
            continue
        # Factories, not kwargs: each env must get its own (dense, stateful) scorers.
        gym.register(
            id=task.id,
            entry_point=f"textenv.tasks:make_{task.key}",
            vector_entry_point=f"textenv.tasks:make_{task.key}_vector",
            reward_threshold=task.reward_threshold,
            disable_env_checker=False,
        )
    _register_hub_tasks()


def _register_hub_tasks() -> None:
    """The tasks that load datasets and models by name (:mod:`textenv.hub_tasks`)."""
    from textenv.hub_tasks import HUB_TASKS

    for task in HUB_TASKS:
        if task.id not in gym.registry:
            gym.register(
                id=task.id,
                entry_point=f"textenv.hub_tasks:make_{task.key}",
                vector_entry_point=f"textenv.hub_tasks:make_{task.key}_vector",
                reward_threshold=task.reward_threshold,
                disable_env_checker=False,
            )
