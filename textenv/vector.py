"""``TextGenVectorEnv``: many text-generation episodes stepped as one batch (Gymnasium vector API).

Every row lives in one :class:`~textenv.core.TextGenCore` (tensors on one device), so a step is a
handful of tensor operations for all rows plus one batched scorer call per finished batch, not a
Python loop over sub-environments. Results equal a ``SyncVectorEnv`` of single
:class:`~textenv.env.TextGenEnv` with the same seeds, in every autoreset mode.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from typing import Any, cast

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces
from gymnasium.utils import seeding
from gymnasium.vector import AutoresetMode
from gymnasium.vector.utils import batch_space

from textenv.core import TextEnvAPI, TextGenCore
from textenv.env import OBSERVATION_KEYS, check_seed, fixed_prompt, observation_space
from textenv.options import TextOptions
from textenv.prompts import Prompt

ObsType = dict[str, Any]
"""``{"input_ids", "attention_mask", "policy_mask"}``: ``(B, L)`` int64 numpy arrays or torch tensors."""

OBSERVATION_FORMATS = ("numpy", "torch")

_INT_DTYPES = (torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64)


class TextGenVectorEnv(TextEnvAPI, gym.vector.VectorEnv[ObsType, Any, np.ndarray]):
    """``num_envs`` text-generation episodes in one batch; row ``i`` behaves like a :class:`~textenv.TextGenEnv`.

    Observations, actions, rewards and episode ends are those of the single env (see its docstring
    for the layout), batched along a first axis of size ``num_envs``. With the same seeds a row
    draws the same prompts as the ``i``-th env of ``gymnasium.vector.SyncVectorEnv``: each row
    keeps its own ``np.random.Generator``, and ``reset(seed=s)`` seeds row ``i`` with ``s + i``.

    Autoreset modes (``metadata["autoreset_mode"]``), as in ``SyncVectorEnv``:

    * ``NEXT_STEP`` (default): the step after a row's episode ends resets it; that step ignores the
      row's action and returns the new observation, reward 0, ``terminated = truncated = False``
      and the reset info.
    * ``SAME_STEP``: a row that ends is reset in the same step; the returned observation is the new
      episode's, ``info["final_obs"]`` and ``info["final_info"]`` hold the ended one's (with the
      ``info["_final_obs"]`` mask).
    * ``DISABLED``: a row that ended stays idle (its actions are ignored; reward 0,
      ``terminated = truncated = False``, no info) until ``reset(options={"reset_mask": mask})``
      restarts it. ``SyncVectorEnv`` raises on stepping an ended sub-env; here a batch can keep
      stepping while its slowest row finishes, which is what synchronous rollouts need.

    Infos follow the vector convention: ``info[key]`` is an array over rows and ``info["_" + key]``
    marks the rows that have it (nested dicts such as ``reward_terms`` likewise). With a ``KLPenalty`` in
    the reward, every step's info holds ``info["kl"]``, each row's KL on that step: the policy hands its
    log-probs over with :meth:`set_policy_logprobs` before the step (the KL channel). In a multi-turn env
    (``responder=``) every row that stepped has ``info["turn_ended"]`` and ``info["inserted"]``, as a single
    env's step info (an ended row's in its end info: ``final_info`` in ``SAME_STEP``).

    For GPU agents, ``observation_format="torch"`` returns the observations as tensors on the env's
    device (no host copy) and :meth:`step` takes a torch tensor of actions as it is.

    Args:
        num_envs: Rows stepped together.
        render_mode: ``"ansi"`` or ``"human"``.
        autoreset_mode: An ``AutoresetMode`` or its value (``"NextStep"``, ``"SameStep"``, ``"Disabled"``).
        observation_format: ``"numpy"`` (default) or ``"torch"``.
        max_episode_steps: Truncate episodes after this many steps (``gymnasium.make_vec`` passes it),
            as ``gymnasium.wrappers.TimeLimit`` does for a single env.
        **options: The text setup, as :class:`~textenv.TextGenEnv` (any field of
            :class:`~textenv.options.TextOptions`); one reward scorer serves all rows, called once per
            step with every episode that finished on it. ``device="auto"`` is CUDA when present.

    Example:
        >>> import gymnasium as gym, textenv
        >>> envs = gym.make_vec("TextGen-v0", num_envs=64)  # doctest: +SKIP
        >>> obs, info = envs.reset(seed=0)  # obs["input_ids"].shape == (64, P + T)
        >>> obs, rewards, terminated, truncated, info = envs.step(envs.action_space.sample())
    """

    metadata = {"render_modes": ["ansi", "human"], "render_fps": 4, "autoreset_mode": AutoresetMode.NEXT_STEP}  # noqa: RUF012

    def __init__(
        self,
        *,
        num_envs: int = 1,
        render_mode: str | None = None,
        autoreset_mode: AutoresetMode | str = AutoresetMode.NEXT_STEP,
        observation_format: str = "numpy",
        max_episode_steps: int | None = None,
        **options: Any,
    ):
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(
                f"render_mode must be one of {self.metadata['render_modes']} or None, got {render_mode!r}"
            )
        if observation_format not in OBSERVATION_FORMATS:
            raise ValueError(
                f"observation_format must be one of {OBSERVATION_FORMATS}, got {observation_format!r}"
            )
        self.autoreset_mode = _autoreset_mode(autoreset_mode)
        self.max_episode_steps = _optional_positive_int("max_episode_steps", max_episode_steps)
        self.core = TextGenCore(TextOptions.from_kwargs(options, owner="TextGenVectorEnv"), num_rows=num_envs)
        self.num_envs = self.core.num_rows
        self.render_mode = render_mode
        self.observation_format = observation_format
        self.metadata = {**type(self).metadata, "autoreset_mode": self.autoreset_mode}
        self.single_action_space = spaces.Discrete(self.core.spec.vocab_size)
        self.action_space = batch_space(self.single_action_space, self.num_envs)
        self.single_observation_space = observation_space(self.core.spec.vocab_size, self.core.length)
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)

        n = self.num_envs
        self._row_rngs: list[np.random.Generator | None] = [None] * n
        self._row_seeds: list[int | None] = [None] * n
        self._started = np.zeros(n, dtype=bool)  # rows that have had an episode
        self._ended = np.zeros(n, dtype=bool)  # rows whose episode ended and awaits a reset
        self._steps = np.zeros(n, dtype=np.int64)  # steps of each row's episode (for max_episode_steps)
        self._all_rows = torch.ones(n, dtype=torch.bool, device=self.core.device)

    # --- the attributes agents and wrappers read ------------------------------------------------------
    @property
    def device(self) -> torch.device:
        """Where the rows' tensors (and torch observations) live."""
        return self.core.device

    @property
    def ended(self) -> np.ndarray:
        """(num_envs,) bool copy: rows whose episode ended on an earlier step and has not restarted."""
        return self._ended.copy()

    # One generator and seed per row, as SyncVectorEnv's (Gymnasium types VectorEnv's as single ones).
    @property  # type: ignore[misc]
    def np_random(self) -> tuple[np.random.Generator, ...]:  # type: ignore[override]
        """Each row's prompt-drawing generator (as ``SyncVectorEnv.np_random``: one per row)."""
        return tuple(self._rng(r) for r in range(self.num_envs))

    @property
    def np_random_seed(self) -> tuple[int | None, ...]:  # type: ignore[override]
        """Each row's seed (-1 where unknown), as ``SyncVectorEnv.np_random_seed``."""
        for r in range(self.num_envs):
            self._rng(r)
        return tuple(self._row_seeds)

    def _rng(self, row: int) -> np.random.Generator:
        # Unseeded rows draw a random seed on first use, as gymnasium.Env.np_random does.
        rng = self._row_rngs[row]
        if rng is None:
            rng, self._row_seeds[row] = seeding.np_random()
            self._row_rngs[row] = rng
        return rng

    # --- reset ----------------------------------------------------------------------------------------
    def reset(
        self, *, seed: int | Sequence[int | None] | None = None, options: dict[str, Any] | None = None
    ) -> tuple[ObsType, dict[str, Any]]:
        """Starts new episodes in every row, or in the rows of ``options["reset_mask"]``.

        Args:
            seed: ``None`` (rows keep their generators), an int ``s`` (row ``i`` gets ``s + i``) or one
                seed (or ``None``) per row.
            options: ``{"prompt": "text"}`` or ``{"prompt_index": i}`` (every reset row starts from
                it), or ``{"prompt_index": [i_0, ..., i_{num_envs - 1}]}`` (row ``r`` starts from prompt
                ``i_r``; with a ``reset_mask`` the entries of rows not reset are ignored), and/or
                ``{"reset_mask": (num_envs,) bool array}`` to reset only those rows.

        Returns:
            The observations of all rows and the reset info of the reset rows (``info["prompt"]``).

        Example:
            >>> obs, info = envs.reset(seed=0)  # doctest: +SKIP
            >>> obs, info = envs.reset(options={"reset_mask": envs.ended})  # restart the ended rows
            >>> obs, info = envs.reset(options={"prompt_index": [0, 0, 1, 1]})  # two rows per prompt
        """
        # Everything is validated before any row changes, so a bad call leaves the env as it was.
        seeds = self._seeds_per_row(seed)
        mask = options.get("reset_mask") if isinstance(options, dict) else None
        rows = np.arange(self.num_envs) if mask is None else np.flatnonzero(self._check_reset_mask(mask))
        fixed = self._fixed_prompts(options, rows)
        for r in rows:
            if seeds[r] is not None:
                self._row_rngs[r], self._row_seeds[r] = seeding.np_random(seeds[r])
        infos = self._add_reset_infos({}, self._reset_rows(rows, fixed), rows)
        if self.render_mode == "human":
            self.render()
        return self._observations(), infos

    def _seeds_per_row(self, seed: object) -> list[int | None]:
        if seed is None:
            return [None] * self.num_envs
        if isinstance(seed, numbers.Integral) and not isinstance(seed, bool):
            return [check_seed(int(seed) + i, i) for i in range(self.num_envs)]
        if isinstance(seed, (str, bytes)) or not isinstance(seed, (Sequence, np.ndarray)):
            raise TypeError(
                f"seed must be None, an int or a list of num_envs ints, got {type(seed).__name__}: {seed!r}"
            )
        if np.ndim(seed) != 1 or len(seed) != self.num_envs:
            raise ValueError(
                f"seed must be one seed per row, {self.num_envs} of them, got shape {np.shape(seed)}: {seed!r}"
            )
        return [check_seed(s, r) for r, s in enumerate(seed)]

    def _check_reset_mask(self, mask: object) -> np.ndarray:
        if isinstance(mask, torch.Tensor):
            mask = mask.cpu().numpy()
        if not isinstance(mask, np.ndarray) or mask.dtype != np.bool_:
            raise TypeError(
                f"options['reset_mask'] must be a numpy bool array, got {type(mask).__name__}: {mask!r}"
            )
        if mask.shape != (self.num_envs,):
            raise ValueError(f"options['reset_mask'] must have shape ({self.num_envs},), got {mask.shape}")
        if not mask.any():
            raise ValueError("options['reset_mask'] selects no row; expected at least one True")
        return mask

    def _reset_rows(self, rows: np.ndarray, fixed: dict[int, int | str | Prompt] | None = None) -> list[str]:
        """Starts episodes in ``rows``, from the ``fixed`` prompt of a row or a draw from the row's generator.

        Returns the rows' prompts.
        """
        n = len(self.core.spec.prompts)
        states = [self._rng(int(r)).bit_generator.state for r in rows]
        choices = [int(self._rng(int(r)).integers(n)) if fixed is None else fixed[r] for r in rows]
        row_list = rows.tolist()
        try:
            self.core.reset_rows(row_list, choices)  # a multi-turn env's responder may refuse the episodes
        except BaseException:
            for r, state in zip(row_list, states):  # a reset that fails draws nothing
                self._rng(r).bit_generator.state = state
            raise
        self._started[rows] = True
        self._ended[rows] = False
        self._steps[rows] = 0
        return [self.core.row_prompts[r].text for r in row_list]  # type: ignore[union-attr]

    def _fixed_prompts(self, options: object, rows: np.ndarray) -> dict[int, int | str | Prompt] | None:
        """Validates reset ``options``; the prompt each of ``rows`` must start from, or ``None`` for draws.

        A per-row ``prompt_index`` list is only checked at the rows being reset.
        """
        per_row = self._per_row_prompt_indices(options) if isinstance(options, dict) else None
        n, column = len(self.core.spec.prompts), self.core.options.prompt_column
        if per_row is None:
            fixed = fixed_prompt(options, n, column=column)
            return None if fixed is None else {int(r): fixed for r in rows}
        rest = {k: v for k, v in cast(dict, options).items() if k != "prompt_index"}  # a dict: per_row is set
        fixed_prompt(rest, n, column=column)  # the other keys are checked as usual
        return {
            int(r): fixed_prompt({"prompt_index": per_row[r]}, n, column=column)  # type: ignore[misc]
            for r in rows
        }

    def _per_row_prompt_indices(self, options: dict[str, Any] | None) -> list[Any] | None:
        """``options["prompt_index"]`` as one entry per row when it is a sequence, else ``None`` (an int,
        or a 0-d array: one index for every row)."""
        index = (options or {}).get("prompt_index")
        if not isinstance(index, (Sequence, np.ndarray, torch.Tensor)) or isinstance(index, (str, bytes)):
            return None
        if isinstance(index, (np.ndarray, torch.Tensor)) and index.ndim == 0:
            return None  # one index for every row, as an int
        indices = index.tolist() if isinstance(index, (np.ndarray, torch.Tensor)) else list(index)
        if len(indices) != self.num_envs or (
            isinstance(index, (np.ndarray, torch.Tensor)) and index.ndim != 1
        ):
            raise ValueError(
                f"options['prompt_index'] as a list must hold one index per row ({self.num_envs}), got {index!r}"
            )
        return indices

    def _add_reset_infos(self, infos: dict[str, Any], prompts: list[str], rows: np.ndarray) -> dict[str, Any]:
        for r, prompt in zip(rows.tolist(), prompts):
            infos = self._add_info(infos, {"prompt": prompt}, r)
        return infos

    # --- step -----------------------------------------------------------------------------------------
    def step(self, actions: object) -> tuple[ObsType, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        """Appends one token per row; see the class docstring for autoreset.

        Args:
            actions: (num_envs,) integer token ids in ``[0, vocab_size)``: a numpy array, a list or a
                torch tensor (used on its device; a tensor on the env's device is never copied to the host).

        Returns:
            ``(observations, rewards (num_envs,) float64, terminated (num_envs,) bool,
            truncated (num_envs,) bool, infos)``.

        Raises:
            TypeError: ``actions`` is not integer.
            ValueError: wrong shape, an id outside the action space, or rows never reset.
            ScorerError: a reward term raised or returned an unusable value. A step that raises
                changes nothing (no token appended, no row ended or restarted, no prompt drawn):
                retry it or reset.
        """
        tokens = self._check_actions(actions)
        if not self._started.all():
            rows = np.flatnonzero(~self._started).tolist()
            raise ValueError(f"step() called before reset() for rows {rows}; call reset() first")
        mode = self.autoreset_mode
        # NEXT_STEP: ended rows restart and sit this step out; DISABLED: they wait for reset().
        stepping = ~self._ended
        active = self._all_rows if stepping.all() else torch.as_tensor(stepping, device=self.device)
        # The core step changes nothing when a scorer raises, so everything else happens after it:
        # a failed step leaves every row (and every row's prompt generator) as it was.
        out = self.core.step(tokens, active)
        restarted: dict[int, str] = {}
        if mode is AutoresetMode.NEXT_STEP and self._ended.any():
            rows = np.flatnonzero(self._ended)
            restarted = dict(zip(rows.tolist(), self._reset_rows(rows, None)))
        self._steps += stepping
        terminated = out.terminated
        truncated = np.zeros(self.num_envs, dtype=bool)
        if self.max_episode_steps is not None:
            truncated = stepping & (self._steps >= self.max_episode_steps)
        ended = terminated | truncated
        self._ended |= ended  # DISABLED: idle rows stay ended

        # Multi-turn: each row that stepped has "turn_ended" and "inserted" in its own info, as a single env's
        # step (a row that ended: in its end info, which SAME_STEP moves to final_info).
        turn_infos: dict[int, dict[str, Any]] = {}
        if out.turn_ended is not None and out.inserted is not None:
            for r in np.flatnonzero(stepping).tolist():
                step_info = {"turn_ended": bool(out.turn_ended[r]), "inserted": int(out.inserted[r])}
                if r in out.infos:
                    out.infos[r] = {**out.infos[r], **step_info}
                else:
                    turn_infos[r] = step_info
        infos: dict[str, Any] = {}
        if mode is AutoresetMode.SAME_STEP and ended.any():
            obs, infos = self._same_step_reset(ended, out.infos)
            for r, step_info in turn_infos.items():
                infos = self._add_info(infos, step_info, r)
        else:
            for r in sorted([*restarted, *out.infos, *turn_infos]):
                info = out.infos.get(r) or turn_infos.get(r) or {"prompt": restarted[r]}
                infos = self._add_info(infos, info, r)
            obs = self._observations()
        if out.kl is not None:  # the KL channel: every row's KL on this step (see set_policy_logprobs)
            infos["kl"], infos["_kl"] = out.kl, np.ones(self.num_envs, dtype=bool)
        if self.render_mode == "human":
            self.render()
        return obs, out.rewards, terminated, truncated, infos

    def _same_step_reset(
        self, ended: np.ndarray, step_infos: dict[int, dict[str, Any]]
    ) -> tuple[ObsType, dict[str, Any]]:
        """Resets the ``ended`` rows now; their last observation and info go to ``final_obs``/``final_info``."""
        final = self._observations()
        rows = np.flatnonzero(ended)
        prompts = self._reset_rows(rows, None)
        infos: dict[str, Any] = {}
        for r, prompt in zip(rows.tolist(), prompts):
            row_obs = {key: value[r] for key, value in final.items()}
            infos = self._add_info(infos, {"final_obs": row_obs, "final_info": step_infos.get(r, {})}, r)
            infos = self._add_info(infos, {"prompt": prompt}, r)
        return self._observations(), infos

    def _check_actions(self, actions: object) -> torch.Tensor:
        """Validates ``actions`` and returns them as an int64 tensor on the env's device."""
        n, vocab = self.num_envs, self.core.spec.vocab_size
        if isinstance(actions, torch.Tensor):
            if actions.dtype not in _INT_DTYPES:
                raise TypeError(
                    f"actions must be integer token ids, got a torch tensor of dtype {actions.dtype}"
                )
            if tuple(actions.shape) != (n,):
                raise ValueError(
                    f"actions must have shape ({n},) (one token per row), got {tuple(actions.shape)}"
                )
            low, high = torch.stack(torch.aminmax(actions)).tolist()  # one host sync for both
            if low < 0 or high >= vocab:
                self._raise_out_of_range(actions.cpu().numpy())
            return actions.to(self.device, torch.long)
        array = np.asarray(actions)
        if array.dtype.kind not in "iu":
            raise TypeError(f"actions must be integer token ids, got dtype {array.dtype}: {actions!r}")
        if array.shape != (n,):
            raise ValueError(f"actions must have shape ({n},) (one token per row), got {array.shape}")
        if array.min() < 0 or array.max() >= vocab:
            self._raise_out_of_range(array)
        # A contiguous int64 copy where needed: reversed (negative-stride) views are valid actions too.
        return torch.from_numpy(np.ascontiguousarray(array, dtype=np.int64)).to(self.device)

    def _raise_out_of_range(self, array: np.ndarray) -> None:
        vocab = self.core.spec.vocab_size
        row = int(np.flatnonzero((array < 0) | (array >= vocab))[0])
        raise ValueError(f"actions[{row}] = {array[row]} is outside the action space [0, {vocab})")

    def _observations(self) -> ObsType:
        core = self.core
        tensors = (core.input_ids, core.attention_mask, core.policy_mask)
        if self.observation_format == "torch":
            return {key: t.clone() for key, t in zip(OBSERVATION_KEYS, tensors)}
        return {key: _to_numpy(t) for key, t in zip(OBSERVATION_KEYS, tensors)}

    # --- the rest of the VectorEnv API ------------------------------------------------------------------
    def render(self) -> tuple[str | None, ...]:  # type: ignore[override]
        """``"ansi"``: each row's prompt and generation so far; ``"human"``: prints them."""
        texts = tuple(self.core.render_row(r) for r in range(self.num_envs))
        if self.render_mode == "human":
            for r, text in enumerate(texts):
                print(f"[{r}] {text}")
            return tuple(None for _ in texts)
        return texts

    def call(self, name: str, *args: Any, **kwargs: Any) -> tuple[Any, ...]:
        """Calls method ``name`` (or reads attribute ``name``) once and returns it per row, as ``SyncVectorEnv.call``."""
        value = getattr(self, name)
        if callable(value):
            value = value(*args, **kwargs)
        return tuple(value for _ in range(self.num_envs))

    def get_attr(self, name: str) -> tuple[Any, ...]:
        """Attribute ``name`` (shared by all rows) once per row, as ``SyncVectorEnv.get_attr``."""
        return self.call(name)

    def set_attr(self, name: str, values: Any) -> None:
        """Sets attribute ``name``; the rows share one env, so per-row lists must hold one value."""
        if isinstance(values, (list, tuple)):
            if len(values) != self.num_envs:
                raise ValueError(f"set_attr got {len(values)} values for {self.num_envs} rows")
            if any(v is not values[0] and v != values[0] for v in values):
                raise ValueError(
                    f"the rows share one env, so {name!r} takes one value for all rows, got {values!r}"
                )
            values = values[0]
        setattr(self, name, values)


def row_info(info: dict[str, Any], row: int) -> dict[str, Any]:
    """One row's info out of a Gymnasium vector info dict (``key`` arrays with ``_key`` masks).

    Numpy scalars become Python scalars, nested dicts are unpacked the same way, so the result
    equals the single env's info.

    Example:
        >>> row_info({"text": np.array(["a", None], dtype=object), "_text": np.array([True, False])}, 0)
        {'text': 'a'}
    """
    out: dict[str, Any] = {}
    for key, value in info.items():
        if key.startswith("_"):
            continue
        present = info.get(f"_{key}")
        if present is not None and not bool(present[row]):
            continue
        if isinstance(value, dict):
            out[key] = row_info(value, row)
        else:
            item = value[row]
            out[key] = item.item() if isinstance(item, np.generic) else item
    return out


def _to_numpy(tensor: torch.Tensor) -> np.ndarray:
    # A CPU tensor's .numpy() shares memory with the live state, so copy it; .cpu() already copies.
    return tensor.numpy().copy() if tensor.device.type == "cpu" else tensor.cpu().numpy()


def _autoreset_mode(mode: object) -> AutoresetMode:
    if isinstance(mode, AutoresetMode):
        return mode
    try:
        return AutoresetMode(mode)
    except ValueError:
        valid = [m.value for m in AutoresetMode]
        raise ValueError(f"autoreset_mode must be an AutoresetMode or one of {valid}, got {mode!r}") from None


def _optional_positive_int(name: str, value: object) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be None or an int, got {type(value).__name__}: {value!r}")
    if value < 1:
        raise ValueError(f"{name} must be >= 1, got {value}")
    return int(value)
