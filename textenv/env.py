"""``TextGenEnv``: token-level text generation as a Gymnasium environment."""

from __future__ import annotations

import numbers
from collections.abc import Mapping
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces

from textenv.core import TextEnvAPI, TextGenCore
from textenv.options import TextOptions
from textenv.prompts import Prompt, load_prompts


def observation_space(vocab_size: int, length: int) -> spaces.Dict:
    """The fixed-length integer observation space shared by the single and the vector env.

    ``policy_mask`` is 1 where the policy chose the token: 0 on the prompt, padding and (in a multi-turn
    env) the tokens the env inserted. It is the loss mask a trainer needs.
    """
    return spaces.Dict(
        {
            "input_ids": spaces.Box(0, vocab_size - 1, shape=(length,), dtype=np.int64),
            "attention_mask": spaces.Box(0, 1, shape=(length,), dtype=np.int64),
            "policy_mask": spaces.Box(0, 1, shape=(length,), dtype=np.int64),
        }
    )


OBSERVATION_KEYS = ("input_ids", "attention_mask", "policy_mask")
"""The keys of an observation, in order."""


RESET_OPTIONS = ("prompt", "prompt_index", "reset_mask")


def fixed_prompt(options: object, num_prompts: int, *, column: str = "prompt") -> int | str | Prompt | None:
    """Validates reset ``options`` and returns the prompt they fix, or ``None`` for a random draw.

    Args:
        options: ``None`` or a dict with ``"prompt"`` (a non-blank string, or a prompt record dict
            such as ``{"prompt": text, "references": [...]}``), ``"prompt_index"`` (an int in
            ``[0, num_prompts)``: a Python or NumPy integer, or a 0-d integer NumPy array or torch
            tensor; bools, floats such as ``2.0`` and one-element 1-D arrays are refused, the last
            because the vector env reads a 1-D array as one index per row) and, for the vector env,
            ``"reset_mask"``.
        num_prompts: Size of the prompt source.
        column: The key of the prompt text in a record dict.

    Raises:
        TypeError: ``options`` is not a dict, or a value of the wrong type.
        ValueError: Unknown keys, both ``prompt`` and ``prompt_index``, or a bad value.
    """
    if options is None:
        return None
    if not isinstance(options, Mapping):
        raise TypeError(f"options must be a dict or None, got {type(options).__name__}: {options!r}")
    unknown = set(options) - set(RESET_OPTIONS)
    if unknown:
        raise ValueError(
            f"unknown reset options {sorted(unknown, key=repr)}; expected 'prompt' or 'prompt_index'"
        )
    if "prompt" in options and "prompt_index" in options:
        raise ValueError("options has both 'prompt' and 'prompt_index'; expected one of them")
    if "prompt" in options:
        record = options["prompt"]
        if not isinstance(record, (str, Mapping)):
            raise TypeError(
                f"options['prompt'] must be text or a prompt record dict, got {type(record).__name__}: {record!r}"
            )
        try:
            (prompt,) = load_prompts([record], column=column)
        except (TypeError, ValueError) as err:
            raise type(err)(f"options['prompt'] = {record!r} is not a usable prompt: {err}") from err
        # A text stays a text: the core starts it from the source prompt of that text when there is one.
        return record if isinstance(record, str) else prompt
    if "prompt_index" in options:
        index = options["prompt_index"]
        if isinstance(index, np.ndarray) and index.ndim == 0 and index.dtype.kind in "iu":
            index = index.item()
        elif isinstance(index, torch.Tensor) and index.ndim == 0:
            dtype = index.dtype
            index = (
                index if dtype.is_floating_point or dtype.is_complex or dtype == torch.bool else index.item()
            )
        if (
            isinstance(index, bool)
            or not isinstance(index, numbers.Integral)
            or not 0 <= int(index) < num_prompts
        ):
            one_per_row = isinstance(index, (np.ndarray, torch.Tensor)) and index.ndim == 1
            hint = " (a 1-D array holds one index per row of a vector env)" if one_per_row else ""
            raise ValueError(
                f"options['prompt_index'] must be an int in [0, {num_prompts}), got {index!r}; expected a Python "
                f"or NumPy integer, or a 0-d integer array or tensor{hint}"
            )
        return int(index)
    return None


def check_seed(seed: object, row: int = 0) -> int | None:
    """A seed as a Python int (NumPy integers included) or None.

    Raises:
        TypeError: Not an integer (``bool`` and floats included).
        ValueError: A negative seed.
    """
    if seed is None:
        return None
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise TypeError(f"seed of row {row} must be an int or None, got {type(seed).__name__}: {seed!r}")
    if int(seed) < 0:
        raise ValueError(f"seed of row {row} must be >= 0, got {seed}")
    return int(seed)


class TextGenEnv(TextEnvAPI, gym.Env[dict[str, np.ndarray], int]):
    """Generate text one token per step; the reward comes from pluggable scorers.

    Observation layout (``P = max_prompt_tokens``, ``T = max_new_tokens``), e.g. prompt
    "The movie" (2 tokens), P = 4, T = 3, after one generated token ``was``::

        position        0     1     2      3      4     5     6
        input_ids     [pad,  pad,  The,  movie,  was,  pad,  pad]
        attention_mask[  0,    0,    1,      1,    1,    0,    0]
                      |<--- prompt, left-padded --->|<-- generated -->|

    Generated token ``t`` goes at position ``P + t``. A prompt longer than P keeps its last P
    tokens. The episode ends with ``terminated=True`` on an EOS action (``finish_reason="eos"``)
    or after T tokens (``finish_reason="length"``): the length cap is part of the task and the
    final text is scored, so nothing is left to bootstrap. ``truncated`` is for external limits.

    Args:
        render_mode: ``"ansi"`` (returns the text) or ``"human"`` (prints it).
        **options: The text setup, any field of :class:`~textenv.options.TextOptions`: ``tokenizer``,
            ``prompts``, ``reward``, ``max_prompt_tokens`` (P), ``max_new_tokens`` (T), ``vocab_size``,
            ``eos_token_id``, ``device``, ``prompt_column``, ``chat_template``.

    Raises:
        TypeError: An unknown keyword (the message lists the options), or an option of the wrong type.
        ValueError: An option out of range.

    Example:
        >>> import gymnasium as gym, textenv
        >>> env = gym.make("TextGen-v0")
        >>> obs, info = env.reset(seed=0)
        >>> obs, reward, terminated, truncated, info = env.step(env.action_space.sample())
    """

    metadata = {"render_modes": ["ansi", "human"], "render_fps": 4}  # noqa: RUF012

    def __init__(self, *, render_mode: str | None = None, **options: Any):
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(
                f"render_mode must be one of {self.metadata['render_modes']} or None, got {render_mode!r}"
            )
        self.core = TextGenCore(TextOptions.from_kwargs(options, owner="TextGenEnv"), num_rows=1)
        self.render_mode = render_mode
        # Gymnasium types Env.action_space as Space[ActType]; Discrete samples np.int64, which is fine here.
        self.action_space = spaces.Discrete(self.core.spec.vocab_size)  # type: ignore[assignment]
        self.observation_space = observation_space(self.core.spec.vocab_size, self.core.length)  # type: ignore[assignment]
        self._active = torch.ones(1, dtype=torch.bool, device=self.core.device)

    def _obs(self) -> dict[str, np.ndarray]:
        core = self.core
        return {
            key: tensor[0].cpu().numpy().copy()
            for key, tensor in zip(OBSERVATION_KEYS, (core.input_ids, core.attention_mask, core.policy_mask))
        }

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """Starts an episode from a prompt drawn with ``self.np_random``.

        Args:
            seed: Seeds ``self.np_random`` (prompt draws).
            options: ``{"prompt": "text"}`` (a text of the prompt source keeps its references and
                metadata), ``{"prompt": {"prompt": "text", "references": [...], ...}}`` (a record) or
                ``{"prompt_index": i}`` chooses the prompt.

        Raises:
            TypeError, ValueError: Bad ``seed`` or ``options``; the env is then as before the call
                (the running episode, if any, continues).
        """
        seed = check_seed(seed)
        choice = fixed_prompt(options, len(self.core.spec.prompts), column=self.core.options.prompt_column)
        # A reset that fails (a multi-turn env's responder may refuse the episode) draws nothing.
        rng, rng_seed = self._np_random, self._np_random_seed
        rng_state = None if rng is None else rng.bit_generator.state
        super().reset(seed=seed)
        try:
            if choice is None:
                choice = int(self.np_random.integers(len(self.core.spec.prompts)))
            self.core.reset_rows([0], [choice])
        except BaseException:
            self._np_random, self._np_random_seed = rng, rng_seed
            if rng is not None and rng_state is not None:
                rng.bit_generator.state = rng_state
            raise
        if self.render_mode == "human":
            self.render()
        return self._obs(), {"prompt": self.core.row_prompts[0].text}  # type: ignore[union-attr]

    def step(self, action: object) -> tuple[dict[str, np.ndarray], float, bool, bool, dict[str, Any]]:
        """Appends the token ``action``; see the class docstring for when the episode ends.

        Raises:
            TypeError, ValueError: A bad action, or a step after the episode ended.
            ScorerError: A reward term raised or returned an unusable value; the step then changed
                nothing (retry it or reset).
        """
        token = self._check_action(action)
        if bool(self.core.done[0]):
            raise ValueError("step() called after the episode ended; call reset() first")
        out = self.core.step(torch.tensor([token]), self._active)
        if self.render_mode == "human":
            self.render()
        info = out.infos.get(0, {})
        if out.kl is not None:  # the KL channel: KL of this step's token (see set_policy_logprobs)
            info = {**info, "kl": float(out.kl[0])}
        if out.turn_ended is not None and out.inserted is not None:  # multi-turn: what the env did
            info = {**info, "turn_ended": bool(out.turn_ended[0]), "inserted": int(out.inserted[0])}
        return self._obs(), float(out.rewards[0]), bool(out.terminated[0]), False, info

    def _check_action(self, action: object) -> int:
        if isinstance(action, np.ndarray) and action.shape == ():
            action = action.item()
        if isinstance(action, torch.Tensor) and action.numel() == 1:
            action = action.item()
        if isinstance(action, bool) or not isinstance(action, numbers.Integral):
            raise TypeError(f"action must be an integer token id, got {type(action).__name__}: {action!r}")
        if not 0 <= int(action) < self.core.spec.vocab_size:
            raise ValueError(f"action {action} is outside the action space [0, {self.core.spec.vocab_size})")
        return int(action)

    def render(self) -> str | None:
        """``"ansi"``: returns prompt and generation so far; ``"human"``: prints them."""
        text = self.core.render_row(0)
        if self.render_mode == "human":
            print(text)
            return None
        return text
