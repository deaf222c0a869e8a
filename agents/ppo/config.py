"""PPOConfig: every hyper-parameter of the PPO agent, validated once at construction.

Batch vocabulary (all counts are in episodes, one episode = one prompt plus its generated tokens):

- an *iteration* collects ``episodes_per_iteration`` episodes with ``num_envs`` env rows, then runs
  ``ppo_epochs`` passes over them;
- each pass shuffles the episodes into ``episodes_per_iteration / minibatch_size`` minibatches, and each
  minibatch is one optimizer step;
- a minibatch is processed as ``gradient_accumulation_steps`` micro-batches of
  ``minibatch_size / gradient_accumulation_steps`` episodes (forward + backward each), so gradient
  accumulation is purely a memory knob: it does not change the optimisation.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
import os
import re
from dataclasses import dataclass
from typing import Any

import torch

_DEVICE_RE = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")
KL_CONTROLLERS = ("fixed", "adaptive")
MIXED_PRECISION_MODES = ("no", "bf16")


def resolve_device(spec: str | torch.device) -> torch.device:
    """Turns a device spec into a ``torch.device``.

    Args:
        spec: ``"auto"`` (CUDA if available, else CPU), ``"cpu"``, ``"cuda"``, ``"cuda:N"``, ``"mps"`` or a
            ``torch.device``.

    Returns:
        The device.

    Raises:
        TypeError: If ``spec`` is neither a string nor a ``torch.device``.
        ValueError: If the string is malformed, or names CUDA/MPS when it is not available or an out of
            range CUDA index.
    """
    if isinstance(spec, torch.device):
        return spec
    if not isinstance(spec, str):
        raise TypeError(f"device must be a str or torch.device, got {type(spec).__name__} {spec!r}")
    if not _DEVICE_RE.match(spec):
        raise ValueError(f"device must be 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps', got {spec!r}")
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(spec)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(
                f"device={spec!r} requested but CUDA is not available (torch.cuda.is_available())"
            )
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ValueError(
                f"device={spec!r} requested but only {torch.cuda.device_count()} CUDA device(s) are visible"
            )
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"device={spec!r} requested but MPS is not available")
    return device


@dataclass
class PPOConfig:
    """Hyper-parameters of the PPO agent for causal LMs (see the module docstring for batch terms).

    Every field is validated in ``__post_init__``: a wrong type raises ``TypeError`` and an out-of-range
    value raises ``ValueError``, both naming the field and the bad value.
    """

    # --- optimisation -------------------------------------------------------------------------------
    learning_rate: float = 5e-5
    """Adam learning rate. The default suits the built-in ``tiny-lm`` (tuned on ``TextGen-Sentiment-v0``:
    1e-4 reaches the threshold too but lets the KL drift); for pretrained GPT-2-sized models use about
    ``1.41e-5`` (TRL's default)."""

    episodes_per_iteration: int = 16
    """Episodes collected per rollout (the PPO batch). Must be a multiple of ``minibatch_size``."""

    minibatch_size: int = 8
    """Episodes per optimizer step. Must divide ``episodes_per_iteration``."""

    ppo_epochs: int = 4
    """Passes over each rollout batch."""

    gradient_accumulation_steps: int = 1
    """Micro-batches per minibatch (memory knob only). Must divide ``minibatch_size``."""

    max_grad_norm: float | None = 1.0
    """Global gradient-norm clip per optimizer step; ``None`` disables clipping."""

    # --- advantages and returns ---------------------------------------------------------------------
    gamma: float = 1.0
    """Discount factor, in ``(0, 1]``. 1.0 is usual for episodic text generation."""

    gae_lambda: float = 0.95
    """GAE lambda, in ``[0, 1]`` (0: one-step TD advantages, 1: Monte-Carlo returns minus values)."""

    whiten_advantages: bool = True
    """Normalise advantages to zero mean and unit variance over the valid tokens of the rollout batch."""

    reward_scale: float = 1.0
    """Multiplier applied to every env reward before GAE. Must be > 0."""

    reward_clip: float | None = None
    """If set, rewards (after scaling) are clipped to ``[-reward_clip, reward_clip]``. Must be > 0."""

    # --- losses -------------------------------------------------------------------------------------
    clip_range: float = 0.2
    """PPO ratio clip epsilon: ratios are clipped to ``[1 - clip_range, 1 + clip_range]``. Must be > 0."""

    clip_range_value: float | None = 0.2
    """Value clip: new values are clipped to ``old ± clip_range_value`` in the value loss (in reward
    units, so rescale it with ``reward_scale``); ``None`` disables value clipping. Must be > 0."""

    vf_coef: float = 0.1
    """Weight of the value loss. 0.1 (as TRL) rather than SB3's 0.5 because the value head shares the LM
    trunk, and large value gradients disturb the policy. Must be >= 0."""

    ent_coef: float = 0.0
    """Weight of the entropy bonus (subtracted from the loss). Must be >= 0."""

    target_approx_kl: float | None = None
    """Early stopping (as stable-baselines3): when the approximate KL (k3 estimator) between the rollout
    policy and the current policy on a minibatch exceeds ``1.5 * target_approx_kl``, the remaining
    minibatches and epochs of the iteration are skipped. ``None`` disables it. Must be > 0."""

    # --- KL penalty to the reference model ----------------------------------------------------------
    kl_controller: str = "fixed"
    """How the KL-penalty coefficient evolves: ``"fixed"`` keeps ``init_kl_coef``; ``"adaptive"`` is the
    proportional controller of Ziegler et al. (2019) steering the per-episode KL towards ``kl_target``."""

    init_kl_coef: float = 0.05
    """Initial (for ``"fixed"``: constant) coefficient of the per-token KL penalty. Must be >= 0."""

    kl_target: float = 6.0
    """Target KL per episode (nats, summed over generated tokens) of the adaptive controller. Must be > 0."""

    kl_horizon: float = 10000.0
    """Horizon (in episodes) of the adaptive controller: how fast the coefficient adapts. Must be > 0."""

    # --- sampling -----------------------------------------------------------------------------------
    temperature: float = 1.0
    """Sampling temperature for rollouts. Must be > 0."""

    top_k: int = 0
    """Sample only among the ``top_k`` most likely tokens; 0 disables top-k. Must be >= 0."""

    top_p: float = 1.0
    """Nucleus sampling: sample among the smallest set of tokens whose probability reaches ``top_p``;
    1.0 disables it. In ``(0, 1]``."""

    # --- rollouts -----------------------------------------------------------------------------------
    num_envs: int | None = None
    """Vector-env rows used for rollouts; ``None`` means ``episodes_per_iteration`` (one round). Must
    divide ``episodes_per_iteration``; see :attr:`effective_num_envs`."""

    # --- runtime ------------------------------------------------------------------------------------
    seed: int = 0
    """Seed for torch, numpy, Python ``random`` and the envs. Must be >= 0."""

    device: str = "auto"
    """``"auto"`` (CUDA if available), ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or ``"mps"``; see
    :func:`resolve_device`."""

    mixed_precision: str = "no"
    """``"no"`` or ``"bf16"``. bf16 autocast applies on CUDA and on CPUs with native bf16 (elsewhere it is ignored); the value head, losses
    and optimizer state stay float32."""

    gradient_checkpointing: bool = False
    """Enable the LM's gradient checkpointing during PPO updates (less memory, ~30% more compute)."""

    checkpoint_interval: int = 0
    """Save a checkpoint every this many iterations; 0 never saves periodic checkpoints. Must be >= 0."""

    log_dir: str | None = None
    """Directory for logs and checkpoints; ``None`` writes no files."""

    def __post_init__(self) -> None:
        """Validates every field; converts numeric fields to float/int and ``log_dir`` to ``str``.

        Raises:
            TypeError: If a field has the wrong type.
            ValueError: If a field is out of range or inconsistent with another field.
        """
        # Types first, so the range checks below compare numbers.
        for name in (
            "learning_rate",
            "gamma",
            "gae_lambda",
            "reward_scale",
            "clip_range",
            "vf_coef",
            "ent_coef",
            "init_kl_coef",
            "kl_target",
            "kl_horizon",
            "temperature",
            "top_p",
        ):
            self._check_float(name, optional=False)
        for name in ("max_grad_norm", "reward_clip", "clip_range_value", "target_approx_kl"):
            self._check_float(name, optional=True)
        for name in (
            "episodes_per_iteration",
            "minibatch_size",
            "ppo_epochs",
            "gradient_accumulation_steps",
            "top_k",
            "seed",
            "checkpoint_interval",
        ):
            self._check_int(name, optional=False)
        self._check_int("num_envs", optional=True)
        for name in ("whiten_advantages", "gradient_checkpointing"):
            if not isinstance(getattr(self, name), bool):
                raise TypeError(f"{name} must be a bool, got {getattr(self, name)!r}")
        for name in ("kl_controller", "device", "mixed_precision"):
            if not isinstance(getattr(self, name), str):
                raise TypeError(f"{name} must be a str, got {getattr(self, name)!r}")
        if self.log_dir is not None:
            if not isinstance(self.log_dir, (str, os.PathLike)):
                raise TypeError(f"log_dir must be a str, a path or None, got {self.log_dir!r}")
            self.log_dir = os.fspath(self.log_dir)

        # Ranges.
        for name in ("learning_rate", "reward_scale", "clip_range", "kl_target", "kl_horizon", "temperature"):
            self._require(name, getattr(self, name) > 0, "> 0")
        for name in ("max_grad_norm", "reward_clip", "clip_range_value", "target_approx_kl"):
            value = getattr(self, name)
            self._require(name, value is None or value > 0, "> 0 or None")
        for name in ("vf_coef", "ent_coef", "init_kl_coef"):
            self._require(name, getattr(self, name) >= 0, ">= 0")
        self._require("gamma", 0 < self.gamma <= 1, "in (0, 1]")
        self._require("gae_lambda", 0 <= self.gae_lambda <= 1, "in [0, 1]")
        self._require("top_p", 0 < self.top_p <= 1, "in (0, 1]")
        for name in ("episodes_per_iteration", "minibatch_size", "ppo_epochs", "gradient_accumulation_steps"):
            self._require(name, getattr(self, name) >= 1, ">= 1")
        for name in ("top_k", "seed", "checkpoint_interval"):
            self._require(name, getattr(self, name) >= 0, ">= 0")
        self._require(
            "minibatch_size",
            self.episodes_per_iteration % self.minibatch_size == 0,
            f"a divisor of episodes_per_iteration={self.episodes_per_iteration}",
        )
        self._require(
            "gradient_accumulation_steps",
            self.minibatch_size % self.gradient_accumulation_steps == 0,
            f"a divisor of minibatch_size={self.minibatch_size}",
        )
        if self.num_envs is not None:
            self._require("num_envs", self.num_envs >= 1, ">= 1 or None")
            self._require(
                "num_envs",
                self.episodes_per_iteration % self.num_envs == 0,
                f"a divisor of episodes_per_iteration={self.episodes_per_iteration}",
            )
        self._require("kl_controller", self.kl_controller in KL_CONTROLLERS, f"one of {KL_CONTROLLERS}")
        self._require(
            "mixed_precision",
            self.mixed_precision in MIXED_PRECISION_MODES,
            f"one of {MIXED_PRECISION_MODES}",
        )
        self._require(
            "device", bool(_DEVICE_RE.match(self.device)), "'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'"
        )

    # --- derived sizes ------------------------------------------------------------------------------
    @property
    def effective_num_envs(self) -> int:
        """Env rows used for rollouts: ``num_envs``, or ``episodes_per_iteration`` when it is ``None``."""
        return self.episodes_per_iteration if self.num_envs is None else self.num_envs

    @property
    def num_minibatches(self) -> int:
        """Optimizer steps per epoch: ``episodes_per_iteration // minibatch_size``."""
        return self.episodes_per_iteration // self.minibatch_size

    @property
    def micro_batch_size(self) -> int:
        """Episodes per forward/backward pass: ``minibatch_size // gradient_accumulation_steps``."""
        return self.minibatch_size // self.gradient_accumulation_steps

    # --- serialisation ------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """Returns the fields as a JSON-serialisable dict (for checkpoints and logs)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PPOConfig:
        """Builds a config from :meth:`to_dict` output; missing fields take their defaults.

        Args:
            data: Field name to value.

        Returns:
            The validated config.

        Raises:
            TypeError: If ``data`` is not a dict or a value has the wrong type.
            ValueError: If ``data`` has keys that are not fields, or a value is out of range.
        """
        if not isinstance(data, dict):
            raise TypeError(f"PPOConfig.from_dict expects a dict, got {type(data).__name__}")
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(f"unknown PPOConfig field(s) {unknown}; valid fields are {sorted(names)}")
        return cls(**data)

    # --- helpers ------------------------------------------------------------------------------------
    def _check_float(self, name: str, optional: bool) -> None:
        value = getattr(self, name)
        if value is None and optional:
            return
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            expected = "a float or None" if optional else "a float"
            raise TypeError(f"{name} must be {expected}, got {type(value).__name__} {value!r}")
        if not math.isfinite(value):
            raise ValueError(f"{name} must be finite, got {value!r}")
        setattr(self, name, float(value))

    def _check_int(self, name: str, optional: bool) -> None:
        value = getattr(self, name)
        if value is None and optional:
            return
        if isinstance(value, bool) or not isinstance(value, numbers.Integral):
            expected = "an int or None" if optional else "an int"
            raise TypeError(f"{name} must be {expected}, got {type(value).__name__} {value!r}")
        setattr(self, name, int(value))

    def _require(self, name: str, ok: bool, expected: str) -> None:
        if not ok:
            raise ValueError(f"{name} must be {expected}, got {getattr(self, name)!r}")
