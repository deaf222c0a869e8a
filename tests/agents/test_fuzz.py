"""Property-based fuzzing (hypothesis) of the training side: rewards of any size through one update.

Rewards over many orders of magnitude, with random term weights, through one short update of every
algorithm either train with finite weights or fail with the documented error: a ``ScorerError`` when the
env's weighted terms are not a finite float64, a ``FloatingPointError`` naming what the float32 update
cannot hold. A weight never becomes NaN without an error saying why.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agents import registry
from tests.agents.tiny import PROMPTS, P, T, tiny_lm, tiny_tokenizer
from textenv.scorers import Callable, ScorerError
from textenv.vector import TextGenVectorEnv

ALGOS = ("ppo", "grpo", "rloo", "reinforce++", "scst")
# CI: a few fixed examples per algorithm (seconds). Explore with TEXTENV_FUZZ_EXAMPLES=200.
_EXAMPLES = int(os.environ.get("TEXTENV_FUZZ_EXAMPLES", "6"))
FUZZ = settings(
    max_examples=_EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), derandomize=_EXAMPLES <= 6
)


def run_one_update(algo: str, exponent: int, weight: float, seed: int) -> torch.nn.Module:
    rng = np.random.default_rng(seed)

    def reward(prompt, text, refs, meta):  # of magnitude 10**exponent, with either sign
        return float(rng.choice([-1.0, 1.0]) * rng.uniform(0.5, 1.0) * 10.0**exponent)

    env = TextGenVectorEnv(
        num_envs=8,
        tokenizer=tiny_tokenizer(),
        prompts=PROMPTS,
        reward=weight * Callable(reward),
        max_prompt_tokens=P,
        max_new_tokens=T,
        autoreset_mode="Disabled",
        observation_format="torch",
    )
    entry = registry.get(algo)
    cfg = entry.make_config(
        episodes_per_iteration=8,
        minibatch_size=4,
        device="cpu",
        seed=seed,
        learning_rate=1e-3,
        mixed_precision="no",
    )
    agent = entry.load()(tiny_lm(len(tiny_tokenizer()), seed=1), env, cfg, verbose=0, progress_bar=False)
    try:
        agent.train_iteration()
    finally:
        params = torch.cat([p.detach().flatten() for p in agent.policy.parameters()])
        assert bool(torch.isfinite(params).all()), "a weight became NaN or inf"
    return agent.policy


@pytest.mark.parametrize("algo", ALGOS)
@FUZZ
@given(
    exponent=st.integers(min_value=-30, max_value=308),
    weight=st.sampled_from([1e-3, 0.5, 1.0, 10.0, 1e3]),
    seed=st.integers(min_value=0, max_value=2**16),
)
def test_rewards_of_any_size_train_finite_or_fail_with_the_documented_error(algo, exponent, weight, seed):
    try:
        run_one_update(algo, exponent, weight, seed)
    except ScorerError as err:  # the weighted term is not a finite float64
        assert weight * 10.0**exponent > 1e307 or "not a finite float" in str(err), err
    except FloatingPointError as err:  # the float32 update cannot hold them: named, weights unchanged
        assert "float32" in str(err) or "not finite" in str(err)


@pytest.mark.parametrize("algo", ["grpo", "reinforce++"])
def test_normalised_advantages_train_on_huge_rewards(algo):
    # GRPO's group normalisation and REINFORCE++'s batch whitening run in float64: 1e20 rewards train.
    before = tiny_lm(len(tiny_tokenizer()), seed=1).state_dict()
    after = run_one_update(algo, 20, 1.0, seed=0).lm.state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before)
