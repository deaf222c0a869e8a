"""Builders shared by the tests of the critic-free algorithms: the tiny solvable task and each algorithm."""

from __future__ import annotations

from typing import Any

from agents import registry
from tests.agents.tiny import PROMPTS, P, T, good_fraction, tiny_lm, tiny_tokenizer
from textenv.scorers import Callable
from textenv.scorers.kl import KLPenalty
from textenv.vector import TextGenVectorEnv

ALGOS = ("grpo", "rloo", "reinforce++", "scst")
"""The critic-free algorithms of :mod:`agents.registry`."""


def make_env(num_envs: int = 8, kl: bool = False) -> TextGenVectorEnv:
    """The tiny task ("good" in as many of the T slots as possible), optionally with a live KL penalty."""
    tok = tiny_tokenizer()
    reward: Any = Callable(good_fraction)
    if kl:
        reward = reward + KLPenalty(tiny_lm(len(tok), seed=0), coef=0.1)
    return TextGenVectorEnv(
        num_envs=num_envs,
        tokenizer=tok,
        prompts=PROMPTS,
        reward=reward,
        max_prompt_tokens=P,
        max_new_tokens=T,
        autoreset_mode="Disabled",
        observation_format="torch",
    )


def make_algo(name: str, *, env: Any = None, log_dir: Any = None, **config: Any) -> Any:
    entry = registry.get(name)
    cfg = entry.make_config(
        **{
            "episodes_per_iteration": 8,
            "device": "cpu",
            "seed": 0,
            "learning_rate": 3e-3,
            "log_dir": None if log_dir is None else str(log_dir),
            **config,
        }
    )
    env = make_env() if env is None else env
    return entry.load()(tiny_lm(len(tiny_tokenizer()), seed=1), env, cfg, verbose=0, progress_bar=False)
