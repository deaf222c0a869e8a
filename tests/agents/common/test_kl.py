"""The KL coefficient over a run (agents/common/kl.py): the env's term owns it; an algorithm changes it only
when asked (an override, which says so, or the adaptive controller); the same holds for the SB3 driver."""

from __future__ import annotations

import warnings

import gymnasium as gym
import numpy as np
import pytest

import textenv  # noqa: F401  (registers the ids)
from agents import GRPO, PPO, REINFORCE, RLOO, GRPOConfig, PPOConfig, REINFORCEConfig, RLOOConfig
from agents.common.kl import AdaptiveKLController, FixedKLController, KLCoefficient

SPEC = "sentiment + kl:tiny-lm:0.2"
ALGORITHMS = {
    "ppo": (PPO, PPOConfig, {}),
    "grpo": (GRPO, GRPOConfig, {}),
    "rloo": (RLOO, RLOOConfig, {}),
    "reinforce++": (REINFORCE, REINFORCEConfig, {"baseline": "batch"}),
    "scst": (REINFORCE, REINFORCEConfig, {"baseline": "greedy"}),
}


def make_agent(name: str, **config):
    cls, config_cls, preset = ALGORITHMS[name]
    cfg = config_cls(
        **{"episodes_per_iteration": 4, "minibatch_size": 4, "device": "cpu", "seed": 0, **preset, **config}
    )
    env_kwargs = {"reward": SPEC, "max_new_tokens": 4}
    return cls("tiny-lm", "TextGen-v0", cfg, env_kwargs=env_kwargs, verbose=0, progress_bar=False)


@pytest.mark.parametrize("name", ALGORITHMS)
def test_the_coefficient_of_the_env_term_is_the_one_that_trains(name):
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # no override, nothing to say
        agent = make_agent(name)
    (term,) = agent.kl_terms
    metrics = agent.train_iteration()
    batch = agent._last_batch
    assert term.coef == 0.2 and metrics["kl_coef"] == 0.2
    assert np.abs(batch.kl).max() > 0  # the penalty is live, at the env's coefficient
    np.testing.assert_allclose(batch.reward_terms["kl"], -0.2 * batch.kl, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("name", ["ppo", "grpo"])
def test_a_coefficient_set_on_the_algorithm_wins_and_says_so_once(name):
    with pytest.warns(UserWarning, match=r"init_kl_coef=0.05 overrides .*\(0.2\)") as record:
        agent = make_agent(name, init_kl_coef=0.05)
    assert len([w for w in record if "overrides" in str(w.message)]) == 1
    (term,) = agent.kl_terms
    agent.train_iteration()
    batch = agent._last_batch
    assert term.coef == 0.05
    np.testing.assert_allclose(batch.reward_terms["kl"], -0.05 * batch.kl, rtol=1e-9, atol=1e-12)


def test_the_adaptive_controller_starts_from_the_env_coefficient():
    agent = make_agent("grpo", kl_controller="adaptive", kl_target=1e-3, kl_horizon=10.0)
    (term,) = agent.kl_terms
    assert agent.kl_coefficient.value == 0.2
    metrics = agent.train_iteration()
    assert metrics["kl_coef"] == 0.2  # the rollout's coefficient
    assert term.coef == pytest.approx(0.2 * (1 + 0.2 * 4 / 10.0))  # KL above target: up by the clip
    assert agent.kl_coefficient.value == term.coef


class _Term:
    def __init__(self, coef: float):
        self.coef = coef


def test_kl_coefficient_rules():
    # Fixed and no override: the terms keep their own coefficients, even different ones.
    a, b = _Term(0.1), _Term(0.3)
    fixed = KLCoefficient([a, b], PPOConfig())
    fixed.update(5.0, 8)
    assert (a.coef, b.coef) == (0.1, 0.3) and not fixed.controls
    assert isinstance(fixed.controller, FixedKLController)
    # The adaptive controller steers one coefficient: different ones need an override.
    with pytest.raises(ValueError, match="set init_kl_coef"):
        KLCoefficient([_Term(0.1), _Term(0.3)], PPOConfig(kl_controller="adaptive"))
    c, d = _Term(0.1), _Term(0.3)
    with pytest.warns(UserWarning, match="overrides"):
        adaptive = KLCoefficient([c, d], PPOConfig(kl_controller="adaptive", init_kl_coef=0.2))
    assert isinstance(adaptive.controller, AdaptiveKLController) and c.coef == d.coef == 0.2
    # No term: nothing to control, value 0.
    assert KLCoefficient([], PPOConfig()).value == 0.0


def test_sb3_trains_with_the_env_coefficient():
    pytest.importorskip("stable_baselines3")
    from stable_baselines3 import PPO as SB3PPO

    from agents.sb3 import LMPolicy, bind_kl

    env = gym.make("TextGen-v0", reward=SPEC, max_new_tokens=4)
    model = SB3PPO(
        LMPolicy,
        env,
        policy_kwargs={"model": "tiny-lm"},
        n_steps=8,
        batch_size=8,
        n_epochs=1,
        seed=0,
        device="cpu",
    )
    (term,) = bind_kl(env, model)
    model.learn(8)
    assert term.coef == 0.2
    env.reset(seed=0)
    total_kl = 0.0
    for _ in range(4):
        _, _, terminated, _, info = env.step(env.action_space.sample())
        total_kl += info["kl"]
    assert terminated and total_kl != 0.0  # the bound policy has moved away from the reference
    assert info["reward_terms"]["kl"] == pytest.approx(-0.2 * total_kl, rel=1e-9)
