"""The algorithms that ``python -m agents.train``, ``textenv-compare`` and the benchmarks know: one table.

Each entry names the class that trains, the config fields its name fixes (``"scst"`` is
:class:`agents.REINFORCE` with ``baseline="greedy"``) and the hyper-parameters the comparison gives it.
For the :mod:`agents` algorithms those are only the fields that differ from the config's defaults; for
the stable-baselines3 ones they are SB3's own keyword arguments (its defaults are tuned for control).

=============  =========================  ==========================  =====================================
name           trains with                preset config fields        comparison (besides the batch shape)
=============  =========================  ==========================  =====================================
ppo            :class:`agents.PPO`                                    ``learning_rate=1e-4``
grpo           :class:`agents.GRPO`                                   ``num_iterations=4``
rloo           :class:`agents.RLOO`                                   ``num_iterations=4``
reinforce++    :class:`agents.REINFORCE`  ``baseline="batch"``        ``num_iterations=4``
scst           :class:`agents.REINFORCE`  ``baseline="greedy"``       ``num_iterations=4``
sb3-ppo        ``stable_baselines3.PPO``  (LMPolicy)                  SB3 keyword arguments
sb3-a2c        ``stable_baselines3.A2C``  (LMPolicy)                  SB3 keyword arguments
base-lm        nothing                                                samples the starting model
=============  =========================  ==========================  =====================================

``agents-ppo``, ``agents-grpo``, ... are earlier names of the first five (:data:`ALIASES`).

Example:
    >>> from agents.registry import get
    >>> scst = get("scst")
    >>> scst.make_config(learning_rate=1e-5).baseline  # doctest: +SKIP
    'greedy'
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

__all__ = ["AGENTS", "ALGORITHMS", "ALIASES", "Algorithm", "get", "resolve"]

LIBRARIES = ("agents", "sb3", "none")


@dataclass(frozen=True)
class Algorithm:
    """One algorithm name and what it means.

    Attributes:
        name: The name of ``--algo`` and ``--algos``.
        library: ``"agents"`` (this project's on-policy core), ``"sb3"`` (stable-baselines3 with
            :class:`agents.sb3.LMPolicy`) or ``"none"`` (no training).
        target: ``"module:attribute"`` of the class that trains (``None`` for ``"none"``).
        presets: Config fields fixed by the name; not command-line flags.
        comparison: The comparison's hyper-parameters: for ``"agents"``, config fields that differ from the
            config's defaults; for ``"sb3"``, keyword arguments of the SB3 class.
        summary: One line for help texts.
    """

    name: str
    library: str
    target: str | None
    presets: Mapping[str, Any] = field(default_factory=dict)
    comparison: Mapping[str, Any] = field(default_factory=dict)
    summary: str = ""

    def __post_init__(self) -> None:
        if self.library not in LIBRARIES:
            raise ValueError(f"library must be one of {LIBRARIES}, got {self.library!r}")
        # Read-only views: the table is shared by every caller.
        object.__setattr__(self, "presets", MappingProxyType(dict(self.presets)))
        object.__setattr__(self, "comparison", MappingProxyType(dict(self.comparison)))

    def load(self) -> type:
        """The class that trains (imported now: ``agents`` and ``stable_baselines3`` load torch).

        Raises:
            ValueError: For ``base-lm``, which trains nothing.
        """
        if self.target is None:
            raise ValueError(f"{self.name!r} trains nothing: it has no algorithm class")
        module, _, attribute = self.target.partition(":")
        return getattr(importlib.import_module(module), attribute)

    @property
    def config_class(self) -> type:
        """The config dataclass of an :mod:`agents` algorithm (``PPOConfig``, ...).

        Raises:
            ValueError: For the stable-baselines3 entries and ``base-lm``.
        """
        if self.library != "agents":
            raise ValueError(f"{self.name!r} is not an agents algorithm: it has no config class")
        return self.load().config_class  # type: ignore[attr-defined]

    def make_config(self, **fields: Any) -> Any:
        """The config of an :mod:`agents` algorithm: its defaults, then ``fields``, then the presets.

        Raises:
            ValueError: A field that the name presets, given another value (``scst`` with
                ``baseline="batch"``), or a value the config refuses.
            TypeError: A field of the wrong type or unknown to the config.
        """
        clashes = {k: v for k, v in fields.items() if k in self.presets and v != self.presets[k]}
        if clashes:
            raise ValueError(f"{self.name} presets {dict(self.presets)}; got {clashes}")
        return self.config_class(**{**fields, **self.presets})

    def config_fields(self) -> tuple[str, ...]:
        """Names of the config's fields (``()`` outside :mod:`agents`)."""
        if self.library != "agents":
            return ()
        return tuple(f.name for f in dataclasses.fields(self.config_class))


# The critic-free methods make the same passes over each rollout as PPO (4 x 2 minibatches).
_CRITIC_FREE = {"num_iterations": 4}

ALGORITHMS: Mapping[str, Algorithm] = MappingProxyType(
    {
        a.name: a
        for a in (
            Algorithm(
                "ppo",
                "agents",
                "agents:PPO",
                comparison={"learning_rate": 1e-4},
                summary="PPO with a value head (GAE)",
            ),
            Algorithm(
                "grpo", "agents", "agents:GRPO", comparison=_CRITIC_FREE, summary="GRPO (group baseline)"
            ),
            Algorithm(
                "rloo", "agents", "agents:RLOO", comparison=_CRITIC_FREE, summary="RLOO (leave-one-out)"
            ),
            Algorithm(
                "reinforce++",
                "agents",
                "agents:REINFORCE",
                presets={"baseline": "batch"},
                comparison=_CRITIC_FREE,
                summary="REINFORCE++ (batch-normalised returns)",
            ),
            Algorithm(
                "scst",
                "agents",
                "agents:REINFORCE",
                presets={"baseline": "greedy"},
                comparison=_CRITIC_FREE,
                summary="SCST / ReMax (greedy baseline)",
            ),
            Algorithm(
                "sb3-ppo",
                "sb3",
                "stable_baselines3:PPO",
                # n_steps = max_new_tokens // 2 (about num_envs episodes per rollout when texts end early),
                # batch_size = num_envs * n_steps // 2: like ppo, 8 optimizer steps per ~num_envs episodes
                # (both set per run, from the env).
                comparison={
                    "learning_rate": 1e-4,
                    "n_epochs": 4,
                    "gamma": 1.0,
                    "gae_lambda": 0.95,
                    "clip_range": 0.2,
                    "ent_coef": 0.0,
                    "vf_coef": 0.5,
                    "max_grad_norm": 1.0,
                },
                summary="stable-baselines3 PPO with LMPolicy",
            ),
            Algorithm(
                "sb3-a2c",
                "sb3",
                "stable_baselines3:A2C",
                # n_steps = max(max_new_tokens // 4, 1): about four updates per num_envs episodes (per run).
                comparison={
                    "learning_rate": 1e-4,
                    "gamma": 1.0,
                    "gae_lambda": 0.95,
                    "ent_coef": 0.0,
                    "vf_coef": 0.5,
                    "max_grad_norm": 1.0,
                    "use_rms_prop": False,  # Adam, as the other two
                    "normalize_advantage": True,
                },
                summary="stable-baselines3 A2C (Adam) with LMPolicy",
            ),
            Algorithm("base-lm", "none", None, summary="no training: the starting model as it is"),
        )
    }
)
"""Every algorithm, by name, in documentation order."""

AGENTS: tuple[str, ...] = tuple(name for name, a in ALGORITHMS.items() if a.library == "agents")
"""The names trained by :mod:`agents` (the choices of ``python -m agents.train --algo``)."""

ALIASES: Mapping[str, str] = MappingProxyType({f"agents-{name}": name for name in AGENTS})
"""Earlier names (``agents-ppo``), accepted by :func:`get` and ``textenv-compare``."""


def resolve(name: str) -> str:
    """The algorithm name of ``name`` or of its alias.

    Raises:
        ValueError: An unknown name (the message lists the known ones).
    """
    canonical = ALIASES.get(name, name)
    if canonical not in ALGORITHMS:
        raise ValueError(
            f"unknown algorithm {name!r}; choose from {', '.join(ALGORITHMS)} (or {', '.join(ALIASES)})"
        )
    return canonical


def get(name: str) -> Algorithm:
    """The :class:`Algorithm` of a name or alias.

    Raises:
        ValueError: An unknown name.
    """
    return ALGORITHMS[resolve(name)]
