"""Saving, exporting and resuming an algorithm: what a checkpoint holds, and how it comes back.

The files and their atomic writing are :mod:`agents.common.checkpoint`'s; this module decides what goes in
(the policy's weights, frozen extra models, the optimizer, the KL coefficient, counters, the config, every
random state, per process) and restores it. A resume is all or nothing: the whole checkpoint is read and
checked against the agent (algorithm, process count, env rows, optimizer shape, KL terms, weights) before
any of it is applied, so a checkpoint that does not fit leaves the agent exactly as it was.
"""

from __future__ import annotations

import dataclasses
import os
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar, cast

import torch

from agents.common import checkpoint as ckpt
from agents.common.lora import merged_lm
from agents.common.policies import ActorCriticPolicy, load_policy
from agents.common.value_head import CausalLMWithValueHead

if TYPE_CHECKING:
    from agents.common.base import BaseAlgorithm
    from agents.common.config import OnPolicyConfig

A = TypeVar("A", bound="BaseAlgorithm")


# --- saving --------------------------------------------------------------------------------------------
def process_state(agent: BaseAlgorithm) -> tuple[dict[str, Any], dict[str, Any]]:
    """This process's own random state (RNGs, env RNGs, prompt draws): JSON part and tensor part."""
    rng_json, rng_tensors = ckpt.capture_rng_state(agent.generator)
    rng_tensors["shuffle_generator"] = agent.shuffle_generator.get_state()
    json_part = {
        "rng": rng_json,
        "env_seeded": agent._env_seeded,
        "env_rng": agent.driver.env_rng_state(),
        "prompt_rng": agent.prompt_rng.bit_generator.state,
    }
    return json_part, rng_tensors


def trainer_state(agent: BaseAlgorithm) -> tuple[dict[str, Any], dict[str, Any]]:
    """The checkpoint's state (a collective with several processes: every process's RNG states)."""
    own_json, own_tensors = process_state(agent)
    kl = agent.kl_coefficient.state_dict()
    state = {
        "algo": agent.algo_name,
        "iteration": agent.iteration,
        "num_episodes": agent.num_episodes,
        "config": agent.config.to_dict(),
        "kl_controller": kl["controller"],
        "kl_coefs": kl["coefs"],
        "env_id": agent.env_id,
        "env_kwargs": _jsonable(agent.env_kwargs),
        **own_json,
        "min_new_tokens": agent.min_new_tokens,
        "history": agent.history,
    }
    tensors: dict[str, Any] = {"optimizer": agent.optimizer.state_dict(), "rng": own_tensors}
    if agent.dist.enabled:
        parts = agent.dist.gather_objects((own_json, own_tensors))
        state["world_size"] = agent.dist.world_size
        state["processes"] = [p[0] for p in parts]
        tensors["processes"] = [p[1] for p in parts]
    return state, tensors


def save(agent: BaseAlgorithm, path: str | os.PathLike[str]) -> str:
    """Writes a complete checkpoint atomically to ``path`` (one writer; the other processes wait)."""
    state, tensors = trainer_state(agent)
    final = os.path.abspath(os.fspath(path))
    if agent.dist.is_main:
        ckpt.write_checkpoint(
            final,
            model=agent.policy,
            tokenizer=agent.tokenizer,
            state=state,
            tensors=tensors,
            extra_models=agent._extra_models(),
        )
    agent.dist.wait()
    return final


def save_checkpoint(agent: BaseAlgorithm, keep: int = 2) -> str:
    """Saves ``<log_dir>/checkpoints/checkpoint-<iteration>`` and keeps the ``keep`` newest ones."""
    if agent.config.log_dir is None:
        raise ValueError("save_checkpoint() needs config.log_dir")
    path = save(agent, ckpt.checkpoint_path(agent.config.log_dir, agent.iteration))
    if agent.dist.is_main:
        ckpt.prune_checkpoints(agent.config.log_dir, keep)
    agent.dist.wait()
    return path


def export_merged(agent: BaseAlgorithm, path: str | os.PathLike[str]) -> str:
    """Writes the policy as a plain transformers model with the adapters merged in (atomically).

    A plain (non-PEFT) policy is written as it is; an actor-critic policy adds ``value_head.safetensors``.
    The merge works on a copy, so training continues unchanged. With several processes only the main one
    writes (not a collective).

    Returns:
        The absolute path.
    """
    final = os.path.abspath(os.fspath(path))
    if not agent.dist.is_main:
        return final
    model: torch.nn.Module = merged_lm(agent.lm)
    if isinstance(agent.policy, ActorCriticPolicy):
        with torch.random.fork_rng(devices=[]):  # the throwaway head's init leaves training's RNG as it was
            wrapped = CausalLMWithValueHead(model)
        wrapped.value_head = agent.policy.value_head
        model = wrapped
    with ckpt.atomic_directory(final) as tmp, ckpt.quiet_transformers():
        cast(Any, model).save_pretrained(tmp)
        agent.tokenizer.save_pretrained(tmp)
    return final


# --- resuming ------------------------------------------------------------------------------------------
@dataclass
class _Checkpoint:
    """Everything a resume applies, read and checked before any of it is."""

    directory: str
    state: dict[str, Any]
    tensors: dict[str, Any]
    weights: dict[str, Any]
    extra: dict[str, dict[str, torch.Tensor]]
    optimizer: dict[str, Any]


def load_state(agent: BaseAlgorithm, path: str | os.PathLike[str]) -> None:
    """Restores a checkpoint into ``agent``: read and check everything, then apply it.

    Raises:
        ValueError: The checkpoint does not fit the agent (named); nothing changed.
        FileNotFoundError: A part is missing (named); nothing changed.
    """
    apply(agent, read(agent, path))


def read(agent: BaseAlgorithm, path: str | os.PathLike[str]) -> _Checkpoint:
    """Reads a checkpoint whole and checks it against ``agent``, changing nothing."""
    directory, state, tensors = ckpt.read_checkpoint(path)
    check_algo(agent.algo_name, state, directory)
    saved_world = int(state.get("world_size", 1))
    if saved_world != agent.dist.world_size:
        raise ValueError(
            f"checkpoint {directory!r} was written by {saved_world} process(es); resume it with the same "
            f"number of processes, not {agent.dist.world_size}"
        )
    if agent.dist.enabled:  # this process's own random state
        state = {**state, **state["processes"][agent.dist.rank]}
        tensors = {**tensors, "rng": tensors["processes"][agent.dist.rank]}
    env_rng = state.get("env_rng")
    if env_rng is not None and len(env_rng) != agent.driver.num_rows:
        raise ValueError(
            f"checkpoint {directory!r} holds the prompt RNG states of {len(env_rng)} env rows but the env has "
            f"{agent.driver.num_rows} (num_envs={agent.config.num_envs!r}); resume with the same num_envs"
        )
    agent.kl_coefficient.check_state(state["kl_controller"], state.get("kl_coefs"))
    agent.check_resume(state["config"], directory)
    optimizer = _fit_optimizer_state(agent.optimizer, tensors["optimizer"], directory)
    model_dir = os.path.join(directory, ckpt.MODEL_DIR)
    weights = agent.policy.read_weights(model_dir)
    extra = {name: load_policy(os.path.join(directory, name)).state_dict() for name in agent._extra_models()}
    return _Checkpoint(directory, state, tensors, weights, extra, optimizer)


def apply(agent: BaseAlgorithm, saved: _Checkpoint) -> None:
    """Applies a checkpoint :func:`read` has checked."""
    state, tensors = saved.state, saved.tensors
    agent.policy.apply_weights(saved.weights)
    for name, module in agent._extra_models().items():
        module.load_state_dict(saved.extra[name])
    agent.optimizer.load_state_dict(saved.optimizer)
    agent.kl_coefficient.load_state_dict(state["kl_controller"], state.get("kl_coefs"))
    agent.iteration = int(state["iteration"])
    agent.num_episodes = int(state["num_episodes"])
    agent.history = [dict(r) for r in state.get("history", [])]
    agent.min_new_tokens = int(state.get("min_new_tokens", agent.min_new_tokens))
    agent._env_seeded = bool(state.get("env_seeded", False))
    agent.driver.set_env_rng_state(state.get("env_rng"))
    if "prompt_rng" in state:  # PPO's first checkpoints have none (PPO does not draw prompts)
        agent.prompt_rng.bit_generator.state = state["prompt_rng"]
    ckpt.restore_rng_state(state["rng"], tensors["rng"], agent.generator)
    agent.shuffle_generator.set_state(tensors["rng"]["shuffle_generator"])


def _fit_optimizer_state(
    optimizer: torch.optim.Optimizer, saved: dict[str, Any], directory: str
) -> dict[str, Any]:
    """The saved optimizer state laid out as ``optimizer``'s groups (their learning rates are the run's).

    The per-parameter state is indexed by the parameters' order over all groups, which is the same
    whatever the grouping; so a run that now learns a part at its own rate (PPO's ``value_learning_rate``)
    resumes the moments of every parameter.

    Raises:
        ValueError: Another number of parameters, or moments of another shape.
    """
    current = optimizer.state_dict()
    params = [p for group in optimizer.param_groups for p in group["params"]]
    saved_count = sum(len(g["params"]) for g in saved["param_groups"])
    if saved_count != len(params):
        raise ValueError(
            f"checkpoint {directory!r} holds optimizer state for {saved_count} parameters, but the policy trains "
            f"{len(params)}; resume with the same model (and LoRA settings)"
        )
    for index, values in saved["state"].items():
        shape = tuple(params[int(index)].shape)
        for key, value in values.items():
            if isinstance(value, torch.Tensor) and value.ndim and tuple(value.shape) != shape:
                raise ValueError(
                    f"checkpoint {directory!r}: optimizer state {key!r} of parameter {index} has shape "
                    f"{tuple(value.shape)}, the parameter {shape}"
                )
    return {"state": saved["state"], "param_groups": current["param_groups"]}


def load(
    cls: type[A],
    path: str | os.PathLike[str],
    env: Any = None,
    *,
    config: OnPolicyConfig | None,
    verbose: int,
    progress_bar: bool,
    overrides: dict[str, Any],
) -> A:
    """Builds an agent of ``cls`` from a checkpoint (see ``BaseAlgorithm.load``)."""
    directory, state, _ = ckpt.read_checkpoint(path)
    check_algo(cls.algo_name, state, directory)
    cfg_dict = config.to_dict() if config is not None else dict(state["config"])
    cfg_dict.update(overrides)
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


def check_algo(algo: str, state: dict[str, Any], directory: str) -> None:
    """Refuses a checkpoint another algorithm wrote.

    Raises:
        ValueError: Naming both algorithms.
    """
    saved = state.get("algo", "ppo")  # PPO's first checkpoints carry no name
    if saved != algo:
        raise ValueError(
            f"checkpoint {directory!r} was written by {saved!r}, not {algo!r}; load it with its class"
        )


def config_changes(saved: dict[str, Any], config: OnPolicyConfig) -> dict[str, tuple[Any, Any]]:
    """``field -> (saved, now)`` of the config fields that differ from a checkpoint's."""
    now = config.to_dict()
    return {
        f.name: (saved.get(f.name), now[f.name])
        for f in dataclasses.fields(config)
        if saved.get(f.name, now[f.name]) != now[f.name]
    }


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


__all__ = [
    "apply",
    "check_algo",
    "config_changes",
    "export_merged",
    "load",
    "load_state",
    "read",
    "save",
    "save_checkpoint",
    "trainer_state",
]
