"""``TextGenVecEnvAdapter``: a :class:`~textenv.vector.TextGenVectorEnv` as a stable-baselines3 ``VecEnv``.

stable-baselines3 drives vectorised envs through its own ``VecEnv`` API (auto-reset in the same
step with the ended episode's observation in ``info["terminal_observation"]``, a list of info
dicts, ``reset()`` returning observations only, seeds through ``seed()``), not through Gymnasium's
``VectorEnv``. The adapter translates, so every row still steps in one batch::

    from stable_baselines3 import PPO
    from stable_baselines3.common.vec_env import VecMonitor
    from textenv.sb3 import TextGenVecEnvAdapter

    venv = VecMonitor(TextGenVecEnvAdapter.make("TextGen-v0", num_envs=16))
    model = PPO("MultiInputPolicy", venv, n_steps=64).learn(10_000)

Importing this module needs stable-baselines3 (``pip install textenv[sb3]``).
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode
from stable_baselines3.common.vec_env.base_vec_env import VecEnv, VecEnvIndices, VecEnvObs, VecEnvStepReturn

from textenv.vector import row_info

_FINAL_KEYS = ("final_obs", "_final_obs", "final_info", "_final_info")


class TextGenVecEnvAdapter(VecEnv):
    """Drives a same-step-autoreset Gymnasium vector env (e.g. ``TextGenVectorEnv``) as an SB3 ``VecEnv``.

    Semantics are those of SB3's ``DummyVecEnv`` over single envs: ``step_wait`` returns
    ``(obs, rewards float32, dones, infos)`` where ``dones = terminated | truncated``; a row that
    ended is already reset, its last observation is ``infos[i]["terminal_observation"]`` and
    ``infos[i]["TimeLimit.truncated"]`` tells a truncation from a termination; the new episode's
    reset info goes to ``reset_infos[i]``.

    All rows share one env, so ``get_attr``/``env_method`` evaluate once (a method returning a
    per-row tuple, like ``render``, is split by row), ``set_attr`` sets the value for all rows and
    ``env_is_wrapped`` is False (no per-row Gymnasium wrappers).

    Args:
        venv: A Gymnasium vector env with ``metadata["autoreset_mode"] == AutoresetMode.SAME_STEP`` and
            numpy observations, such as ``TextGenVectorEnv(..., autoreset_mode="SameStep")``; see
            :meth:`make`.

    Raises:
        TypeError: ``venv`` is not a Gymnasium vector env.
        ValueError: Another autoreset mode, or torch observations.

    Example:
        >>> adapter = TextGenVecEnvAdapter.make("TextGen-v0", num_envs=8)  # doctest: +SKIP
        >>> adapter.seed(0)
        >>> obs = adapter.reset()  # obs["input_ids"].shape == (8, P + T)
        >>> obs, rewards, dones, infos = adapter.step(np.zeros(8, dtype=np.int64))
    """

    def __init__(self, venv: gym.vector.VectorEnv):
        if not isinstance(venv, gym.vector.VectorEnv):
            raise TypeError(f"venv must be a gymnasium.vector.VectorEnv, got {type(venv).__name__}")
        mode = venv.metadata.get("autoreset_mode")
        if mode is not AutoresetMode.SAME_STEP:
            raise ValueError(
                f"venv's autoreset_mode is {mode!r}; the SB3 adapter needs AutoresetMode.SAME_STEP "
                "(build it with autoreset_mode='SameStep', or use TextGenVecEnvAdapter.make)"
            )
        if getattr(venv.unwrapped, "observation_format", "numpy") != "numpy":
            raise ValueError(
                "stable-baselines3 needs numpy observations; build the env with observation_format='numpy'"
            )
        self.venv = venv
        self._actions: np.ndarray | None = None
        super().__init__(venv.num_envs, venv.single_observation_space, venv.single_action_space)

    @classmethod
    def make(cls, env_id: str = "TextGen-v0", num_envs: int = 1, **kwargs: Any) -> TextGenVecEnvAdapter:
        """``gymnasium.make_vec(env_id, num_envs, autoreset_mode=SAME_STEP, **kwargs)`` wrapped for SB3.

        Args:
            env_id: A textenv id (its vector entry point builds one batched env).
            num_envs: Rows.
            **kwargs: Env keywords (``reward=``, ``max_new_tokens=``, ``device=``, ...).
        """
        kwargs["autoreset_mode"] = AutoresetMode.SAME_STEP
        return cls(gym.make_vec(env_id, num_envs=num_envs, **kwargs))

    # --- stepping -------------------------------------------------------------------------------------
    def reset(self) -> VecEnvObs:
        """Resets every row with the seeds of :meth:`seed` and the options of :meth:`set_options` (used once)."""
        seeds = None if all(s is None for s in self._seeds) else list(self._seeds)
        groups: dict[str, tuple[dict[str, Any], list[int]]] = {}
        for row, options in enumerate(self._options):
            groups.setdefault(repr(sorted(options.items())), (options, []))[1].append(row)
        if len(groups) == 1:
            options = next(iter(groups.values()))[0]
            obs, info = self.venv.reset(seed=seeds, options=dict(options) or None)  # type: ignore[arg-type]  # one seed per row
            infos = [info]
        else:  # rows with different options: one masked reset per distinct options dict
            infos = []
            for options, rows in groups.values():
                mask = np.zeros(self.num_envs, dtype=bool)
                mask[rows] = True
                obs, info = self.venv.reset(seed=seeds, options={**options, "reset_mask": mask})  # type: ignore[arg-type]
                infos.append(info)
        self.reset_infos = [{} for _ in range(self.num_envs)]
        for info in infos:
            for row in range(self.num_envs):
                self.reset_infos[row].update(row_info(info, row))
        self._reset_seeds()
        self._reset_options()
        return obs

    def step_async(self, actions: np.ndarray) -> None:
        self._actions = actions

    def step_wait(self) -> VecEnvStepReturn:
        if self._actions is None:
            raise RuntimeError("step_wait() called without step_async(actions)")
        actions, self._actions = self._actions, None
        obs, rewards, terminated, truncated, info = self.venv.step(actions)
        dones = np.asarray(terminated) | np.asarray(truncated)
        step_info = {k: v for k, v in info.items() if k not in _FINAL_KEYS}
        infos: list[dict[str, Any]] = []
        for row in range(self.num_envs):
            if dones[row]:
                row_dict = row_info(info.get("final_info", {}), row)
                row_dict["terminal_observation"] = info["final_obs"][row]
                self.reset_infos[row] = row_info(step_info, row)
            else:
                row_dict = row_info(step_info, row)
            row_dict["TimeLimit.truncated"] = bool(truncated[row] and not terminated[row])
            infos.append(row_dict)
        return obs, np.asarray(rewards, dtype=np.float32), dones, infos

    def close(self) -> None:
        self.venv.close()

    # --- attribute access -----------------------------------------------------------------------------
    def get_attr(self, attr_name: str, indices: VecEnvIndices = None) -> list[Any]:
        """The env's attribute, once per selected row (all rows share it)."""
        value = getattr(self.venv, attr_name)
        return [value for _ in self._indices(indices)]

    def set_attr(self, attr_name: str, value: Any, indices: VecEnvIndices = None) -> None:
        """Sets the attribute for every row.

        Raises:
            ValueError: ``indices`` selects only some rows (they share one env).
        """
        if sorted(self._indices(indices)) != list(range(self.num_envs)):
            raise ValueError(
                f"set_attr({attr_name!r}) for rows {list(self._indices(indices))}: the rows share one env, "
                "so attributes can only be set for all rows (indices=None)"
            )
        setattr(self.venv, attr_name, value)

    def env_method(
        self, method_name: str, *method_args: Any, indices: VecEnvIndices = None, **method_kwargs: Any
    ) -> list[Any]:
        """Calls the env's method once; a per-row tuple result is split by row, anything else repeated."""
        result = getattr(self.venv, method_name)(*method_args, **method_kwargs)
        rows = self._indices(indices)
        if isinstance(result, tuple) and len(result) == self.num_envs:
            return [result[i] for i in rows]
        return [result for _ in rows]

    def env_is_wrapped(self, wrapper_class: type[gym.Wrapper], indices: VecEnvIndices = None) -> list[bool]:
        """Always False: rows are not single Gymnasium envs, so no ``gymnasium.Wrapper`` wraps them."""
        return [False for _ in self._indices(indices)]

    def _indices(self, indices: VecEnvIndices) -> list[int]:
        rows = list(self._get_indices(indices))
        bad = [i for i in rows if not 0 <= int(i) < self.num_envs]
        if bad:
            raise ValueError(f"env indices {bad} are outside [0, {self.num_envs})")
        return [int(i) for i in rows]
