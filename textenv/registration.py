"""Registers every textenv id with Gymnasium (``import textenv`` runs this)."""

from __future__ import annotations

import gymnasium as gym

VECTOR_ENTRY_POINT = "textenv.vector:TextGenVectorEnv"

# Gymnasium's PassiveEnvChecker marks its first reset as checked before that reset runs: when the
# first reset raises (e.g. a bad options["prompt_index"]), its saved reset data stays None and every
# later step fails with a TypeError inside the checker, even after a valid reset. textenv's envs
# pass gymnasium.utils.env_checker.check_env in the test suite, so `gym.make` leaves the passive
# checker out (`gym.make(id, disable_env_checker=False)` still adds it, with that flaw).
DISABLE_ENV_CHECKER = True


def register_envs() -> None:
    """Registers ``TextGen-v0`` and the task suite (:mod:`textenv.tasks`); safe to call twice."""
    if "TextGen-v0" not in gym.registry:
        gym.register(
            id="TextGen-v0",
            entry_point="textenv.env:TextGenEnv",
            vector_entry_point=VECTOR_ENTRY_POINT,
            disable_env_checker=DISABLE_ENV_CHECKER,
        )
    from textenv.hub_tasks import HUB_TASKS
    from textenv.tasks import TASKS

    # A factory given the task's key, never a reward in the kwargs: each env builds its own (dense, stateful) scorers.
    for task in TASKS:
        _register_task(task.id, "textenv.tasks", task.key, task.reward_threshold, DISABLE_ENV_CHECKER)
    for hub in HUB_TASKS:
        _register_task(hub.id, "textenv.hub_tasks", hub.key, hub.reward_threshold, disable_env_checker=False)
    _register_reasoning_gym()
    _register_textarena()


def _register_task(
    env_id: str, module: str, key: str, reward_threshold: float | None, disable_env_checker: bool
) -> None:
    """One task of ``module``: its ``make`` / ``make_vector`` entry points, given ``task=key``."""
    if env_id not in gym.registry:
        gym.register(
            id=env_id,
            entry_point=f"{module}:make",
            vector_entry_point=f"{module}:make_vector",
            kwargs={"task": key},
            reward_threshold=reward_threshold,
            disable_env_checker=disable_env_checker,
        )


def _register_reasoning_gym() -> None:
    """``TextGen-ReasoningGym-v0`` (:mod:`textenv.reasoning_gym`): registered whether or not reasoning-gym
    is installed; without it ``gym.make`` says how to install it."""
    if "TextGen-ReasoningGym-v0" not in gym.registry:
        gym.register(
            id="TextGen-ReasoningGym-v0",
            entry_point="textenv.reasoning_gym:make",
            vector_entry_point="textenv.reasoning_gym:make_vector",
            disable_env_checker=DISABLE_ENV_CHECKER,
        )


def _register_textarena() -> None:
    """``TextGen-TextArena-v0`` (:mod:`textenv.textarena`): registered whether or not textarena is installed;
    without it ``gym.make`` says how to install it."""
    if "TextGen-TextArena-v0" not in gym.registry:
        gym.register(
            id="TextGen-TextArena-v0",
            entry_point="textenv.textarena:make",
            vector_entry_point="textenv.textarena:make_vector",
            disable_env_checker=DISABLE_ENV_CHECKER,
        )
