"""``OnPolicyConfig``: the hyper-parameters every on-policy algorithm shares, validated once.

Batch vocabulary (all counts are in episodes, one episode = one prompt plus its generated tokens):

- an *iteration* collects ``episodes_per_iteration`` episodes with ``num_envs`` env rows, then updates
  the policy on them (how many passes is the algorithm's: ``ppo_epochs``, ``num_iterations``);
- each pass shuffles the episodes into minibatches of ``minibatch_size`` episodes, one optimizer step
  each;
- a minibatch is processed as ``gradient_accumulation_steps`` micro-batches (forward + backward each),
  so gradient accumulation is purely a memory knob: it does not change the optimisation.

Each algorithm's config subclasses :class:`OnPolicyConfig`. Types are checked from the field
annotations (``float``, ``int``, ``bool``, ``str``, optionally ``| None``); ranges in
:meth:`OnPolicyConfig.check`, which subclasses extend. Every field carries a docstring, which is also
its command-line help (:func:`field_docs`).
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import itertools
import math
import numbers
import os
import re
import textwrap
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

_DEVICE_RE = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")
KL_CONTROLLERS = ("fixed", "adaptive")
KL_REFERENCES = ("auto", "env", "adapters_off")
MIXED_PRECISION_MODES = ("no", "bf16", "auto")
MAX_SEED = 2**63
"""Seeds are ints in ``[0, MAX_SEED)``: torch's generators take 64-bit seeds and rows use ``seed + i``."""

C = TypeVar("C", bound="OnPolicyConfig")


def field_docs(cls: type) -> dict[str, str]:
    """The docstring of every dataclass field of ``cls`` (the string literal after the field), subclass
    first: a field redefined in a subclass takes the subclass's docstring.

    Args:
        cls: A dataclass whose fields carry docstrings.

    Returns:
        Field name to its docstring, whitespace collapsed to single spaces.
    """
    docs: dict[str, str] = {}
    for klass in cls.__mro__:
        if not dataclasses.is_dataclass(klass):
            continue
        tree = ast.parse(textwrap.dedent(inspect.getsource(klass)))
        body = tree.body[0].body  # type: ignore[attr-defined]
        for node, nxt in itertools.pairwise(body):
            if (
                isinstance(node, ast.AnnAssign)
                and isinstance(node.target, ast.Name)
                and isinstance(nxt, ast.Expr)
                and isinstance(nxt.value, ast.Constant)
                and isinstance(nxt.value.value, str)
            ):
                docs.setdefault(node.target.id, " ".join(nxt.value.value.split()))
    return docs


@dataclass
class OnPolicyConfig:
    """Hyper-parameters shared by every on-policy algorithm (see the module docstring for batch terms).

    Every field is validated in ``__post_init__``: a wrong type raises ``TypeError`` and an out-of-range
    value raises ``ValueError``, both naming the field and the bad value. Once an algorithm uses a config
    it is frozen (:meth:`freeze`): a change would bypass the checks the algorithm was built on, so build
    a new one with ``dataclasses.replace(config, field=value)``.

    Every field is declared once, here or in the config of the family that has it; an algorithm whose
    default differs says so in a class keyword, e.g.
    ``class PPOConfig(OnPolicyConfig, defaults={"learning_rate": 5e-5}):``.
    """

    defaults: ClassVar[Mapping[str, Any]] = {}
    """The defaults this config changes from its bases' (set with the ``defaults=`` class keyword)."""

    # --- optimisation -------------------------------------------------------------------------------
    learning_rate: float = 1e-4
    """Adam learning rate. The defaults (PPO 5e-5, the others 1e-4) suit the built-in ``tiny-lm``; for
    pretrained GPT-2-sized models use about ``1e-6`` to ``1.41e-5`` (TRL's PPO default)."""

    episodes_per_iteration: int = 16
    """Episodes collected per rollout (the batch of one iteration)."""

    minibatch_size: int | None = None
    """Episodes per optimizer step; ``None``: the whole rollout (one step per pass). Must divide
    ``episodes_per_iteration``."""

    gradient_accumulation_steps: int = 1
    """Micro-batches per minibatch (memory knob only). Must divide ``minibatch_size``."""

    max_grad_norm: float | None = 1.0
    """Global gradient-norm clip per optimizer step; ``None`` disables clipping."""

    # --- KL penalty to the reference model (the env's KLPenalty term) -------------------------------
    kl_controller: str = "fixed"
    """How the coefficient of the env's KL penalty evolves: ``"fixed"`` keeps it; ``"adaptive"`` is the
    proportional controller of Ziegler et al. (2019) steering the per-episode KL towards ``kl_target``."""

    init_kl_coef: float | None = None
    """Initial (for ``"fixed"``: constant) coefficient of the env's per-token KL penalty. ``None``: the
    coefficient the env's ``KLPenalty`` term was built with (e.g. ``kl:tiny-lm:0.2`` in a reward spec);
    a value here overrides it, and the run says so once. Must be >= 0."""

    kl_target: float = 6.0
    """Target KL per episode (nats, summed over generated tokens) of the adaptive controller. Must be > 0."""

    kl_horizon: float = 10000.0
    """Horizon (in episodes) of the adaptive controller: how fast the coefficient adapts. Must be > 0."""

    kl_reference: str = "auto"
    """The reference model of the env's KL penalty: ``"env"`` keeps the env's own (e.g. the task's
    ``tiny-lm``); ``"adapters_off"`` uses the policy itself with its LoRA adapters disabled (a PEFT
    policy only; no second copy of the weights, as TRL/OpenRLHF/verl do with LoRA); ``"auto"`` is
    ``"adapters_off"`` for a PEFT policy, else ``"env"``."""

    kl_after_rollout: bool = True
    """Score the env's KL penalty (estimators ``k1``/``k3``) after each rollout with one batched forward
    of its reference over the finished episodes, as TRL does, instead of one single-token forward per
    generated token inside the env (``KLPenalty.external``); the rewards are the same to float
    precision (the reference runs in float32 either way). ``False``: the env steps the reference."""

    # --- the update ---------------------------------------------------------------------------------
    logits_chunk_size: int | None = None
    """Positions per chunk when the training forward computes the log-probs: the LM head runs on a chunk of
    positions at a time, recomputed in the backward, so the ``(B, T, V)`` logits never exist (large
    vocabularies: a fraction of the memory, the same values and gradients). ``None``: automatic (chunks
    of about 2**24 logits, and one plain forward when the full logits are smaller); ``0``: always the full
    logits. Must be >= 0."""

    clip_range: float = 0.2
    """Clip epsilon of the surrogate: ratios are clipped to ``[1 - clip_range, 1 + clip_range]`` (the
    critic-free algorithms: ``1 + clip_range_high`` above). Must be > 0."""

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
    divide ``episodes_per_iteration``."""

    # --- runtime ------------------------------------------------------------------------------------
    seed: int = 0
    """Seed for torch, numpy, Python ``random``, the prompt draws and the envs. In ``[0, 2**63)``."""

    device: str = "auto"
    """``"auto"`` (CUDA if available), ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or ``"mps"``."""

    mixed_precision: str = "auto"
    """``"auto"``, ``"bf16"`` or ``"no"``. ``"auto"`` is bf16 autocast where the device has native bf16
    (CUDA with bf16 support, a CPU with AVX512-BF16 or AMX) and float32 elsewhere; ``"bf16"`` asks for
    bf16 autocast, which applies on CUDA and on CPUs with native bf16 (elsewhere it is ignored); ``"no"``
    is float32. Value heads, losses and optimizer state stay float32. bf16 learns as well as float32 on
    ``TextGen-Sentiment-v0`` (benchmarks/RESULTS.md)."""

    gradient_checkpointing: bool = False
    """Enable the LM's gradient checkpointing during updates (less memory, ~30% more compute)."""

    checkpoint_interval: int = 0
    """Save a checkpoint every this many iterations; 0 never saves periodic checkpoints. Must be >= 0."""

    log_dir: str | None = None
    """Directory for logs and checkpoints; ``None`` writes no files."""

    def __init_subclass__(cls, defaults: Mapping[str, Any] | None = None, **kwargs: Any) -> None:
        """Applies ``defaults`` (new default values of inherited fields) before ``@dataclass`` reads them."""
        super().__init_subclass__(**kwargs)
        if not defaults:
            return
        inherited = {
            f.name: f for base in cls.__mro__[1:] for f in getattr(base, "__dataclass_fields__", {}).values()
        }
        unknown = sorted(set(defaults) - set(inherited))
        if unknown:
            raise TypeError(f"{cls.__name__}: defaults for {unknown}, which are not fields of its bases")
        # An annotated class attribute with a value is how a dataclass subclass changes a field's default.
        annotations = dict(inspect.get_annotations(cls))
        for name, value in defaults.items():
            annotations[name] = inherited[name].type
            setattr(cls, name, value)
        cls.__annotations__ = annotations
        cls.defaults = {**cls.defaults, **defaults}

    def __setattr__(self, name: str, value: Any) -> None:
        if self.__dict__.get("_in_use"):
            raise dataclasses.FrozenInstanceError(
                f"{type(self).__name__}.{name} cannot change: the config is in use by {self.__dict__['_in_use']}, "
                f"which was built and checked with it; build a new one with dataclasses.replace(config, {name}=...)"
            )
        super().__setattr__(name, value)

    def freeze(self, user: str) -> None:
        """Marks the config as used by ``user`` (an algorithm): from now on its fields cannot change."""
        if not self.__dict__.get("_in_use"):
            self.__dict__["_in_use"] = user

    def __post_init__(self) -> None:
        """Validates every field: types from the annotations, then :meth:`check`.

        Raises:
            TypeError: If a field has the wrong type.
            ValueError: If a field is out of range or inconsistent with another field.
        """
        for f in dataclasses.fields(self):
            self._check_type(
                f.name, f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
            )
        self.check()

    def check(self) -> None:
        """Range and consistency checks (subclasses call ``super().check()`` and add theirs)."""
        for name in ("learning_rate", "kl_target", "kl_horizon", "temperature"):
            self._require(name, getattr(self, name) > 0, "> 0")
        self._require("max_grad_norm", self.max_grad_norm is None or self.max_grad_norm > 0, "> 0 or None")
        self._require("init_kl_coef", self.init_kl_coef is None or self.init_kl_coef >= 0, ">= 0 or None")
        self._require("clip_range", self.clip_range > 0, "> 0")
        self._require(
            "logits_chunk_size", self.logits_chunk_size is None or self.logits_chunk_size >= 0, ">= 0 or None"
        )
        self._require(
            "log_dir", self.log_dir is None or self.log_dir.strip() != "", "a directory path or None"
        )
        self._require("top_p", 0 < self.top_p <= 1, "in (0, 1]")
        for name in ("episodes_per_iteration", "gradient_accumulation_steps"):
            self._require(name, getattr(self, name) >= 1, ">= 1")
        for name in ("top_k", "checkpoint_interval"):
            self._require(name, getattr(self, name) >= 0, ">= 0")
        self._require("seed", 0 <= self.seed < MAX_SEED, "an int in [0, 2**63)")
        if self.minibatch_size is not None:
            self._require("minibatch_size", self.minibatch_size >= 1, ">= 1 or None")
        self._require(
            "minibatch_size",
            self.episodes_per_iteration % self.effective_minibatch_size == 0,
            f"a divisor of episodes_per_iteration={self.episodes_per_iteration}",
        )
        self._require(
            "gradient_accumulation_steps",
            self.effective_minibatch_size % self.gradient_accumulation_steps == 0,
            f"a divisor of minibatch_size={self.effective_minibatch_size}",
        )
        if self.num_envs is not None:
            self._require("num_envs", self.num_envs >= 1, ">= 1 or None")
            self._require(
                "num_envs",
                self.episodes_per_iteration % self.num_envs == 0,
                f"a divisor of episodes_per_iteration={self.episodes_per_iteration}",
            )
        self._require("kl_controller", self.kl_controller in KL_CONTROLLERS, f"one of {KL_CONTROLLERS}")
        self._require("kl_reference", self.kl_reference in KL_REFERENCES, f"one of {KL_REFERENCES}")
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
    def effective_minibatch_size(self) -> int:
        """Episodes per optimizer step: ``minibatch_size``, or ``episodes_per_iteration`` when ``None``."""
        return self.episodes_per_iteration if self.minibatch_size is None else self.minibatch_size

    @property
    def num_minibatches(self) -> int:
        """Optimizer steps per pass: ``episodes_per_iteration // minibatch_size``."""
        return self.episodes_per_iteration // self.effective_minibatch_size

    @property
    def micro_batch_size(self) -> int:
        """Episodes per forward/backward pass: ``minibatch_size // gradient_accumulation_steps``."""
        return self.effective_minibatch_size // self.gradient_accumulation_steps

    # --- serialisation ------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """Returns the fields as a JSON-serialisable dict (for checkpoints and logs)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls: type[C], data: dict[str, Any]) -> C:
        """Builds a config from :meth:`to_dict` output; missing fields take their defaults.

        Raises:
            TypeError: If ``data`` is not a dict or a value has the wrong type.
            ValueError: If ``data`` has keys that are not fields, or a value is out of range.
        """
        if not isinstance(data, dict):
            raise TypeError(f"{cls.__name__}.from_dict expects a dict, got {type(data).__name__}")
        names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(f"unknown {cls.__name__} field(s) {unknown}; valid fields are {sorted(names)}")
        return cls(**data)

    # --- helpers ------------------------------------------------------------------------------------
    def _check_type(self, name: str, annotation: str) -> None:
        value = getattr(self, name)
        optional = annotation.endswith("| None")
        if value is None and optional:
            return
        kind = annotation.removesuffix("| None").strip()
        expected = {"float": "a float", "int": "an int", "bool": "a bool", "str": "a str"}[kind]
        expected += " or None" if optional else ""
        if name == "log_dir" and isinstance(value, os.PathLike):
            value = os.fspath(value)
        ok = {
            "float": not isinstance(value, bool) and isinstance(value, numbers.Real),
            "int": not isinstance(value, bool) and isinstance(value, numbers.Integral),
            "bool": isinstance(value, bool),
            "str": isinstance(value, str),
        }[kind]
        if not ok:
            raise TypeError(f"{name} must be {expected}, got {type(value).__name__} {value!r}")
        if kind == "float":
            if not math.isfinite(value):
                raise ValueError(f"{name} must be finite, got {value!r}")
            value = float(value)
        elif kind == "int":
            value = int(value)
        setattr(self, name, value)

    def _require(self, name: str, ok: bool, expected: str) -> None:
        if not ok:
            raise ValueError(f"{name} must be {expected}, got {getattr(self, name)!r}")
