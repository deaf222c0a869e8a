"""A failed step or reset leaves no trace, in the single env, the vector env and through gym.make."""

from __future__ import annotations

import copy

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.vector import AutoresetMode

import textenv  # noqa: F401  (registers the envs)
from textenv import TextGenEnv
from textenv.scorers import Callable, KLPenalty, Length, Scorer, ScorerError
from textenv.vector import TextGenVectorEnv

PROMPTS = ["The movie was", "I liked the", "This film is"]
EOS = 0  # the tiny tokenizer's <|endoftext|>


class Flaky(Scorer):
    """A terminal scorer that raises while ``fail`` is set, else scores the number of tokens."""

    name = "flaky"

    def __init__(self):
        self.fail = False
        self.calls = 0

    def score(self, batch):
        self.calls += 1
        if self.fail:
            raise RuntimeError("scorer service down")
        return [float(len(ids)) for ids in batch.token_ids]


class DenseOut(Scorer):
    """A dense scorer that returns ``self.out`` (a callable of the batch size) on every step."""

    name = "dense_out"
    dense = True

    def __init__(self, out):
        self.out = out

    def step_rows(self, actions, active):
        return self.out(actions.shape[0])


@pytest.fixture(scope="module")
def models(tiny_lm):
    policy = copy.deepcopy(tiny_lm)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in policy.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=gen))
    return tiny_lm, policy


def play(env, tokens, fail_at=None, flaky=None, before=None):
    """Plays ``tokens``; at step ``fail_at`` the flaky scorer raises once and the step is retried."""
    env.reset(seed=0, options={"prompt_index": 0})
    total = 0.0
    for i, token in enumerate(tokens):
        if i == fail_at:
            flaky.fail = True
            obs_before = env.unwrapped.core.input_ids.clone()
            with pytest.raises(
                ScorerError, match=r"\(term 'flaky'\) raised RuntimeError: scorer service down"
            ):
                env.step(token)
            assert torch.equal(env.unwrapped.core.input_ids, obs_before)
            flaky.fail = False
        if before is not None:
            before(i)
        _, reward, terminated, _, info = env.step(token)
        total += reward
    assert terminated
    return total, info


def test_failed_step_changes_nothing_single_env(models):
    ref, policy = models

    def make():
        flaky = Flaky()
        kl = KLPenalty(ref, coef=1.0, policy=policy)
        return TextGenEnv(prompts=PROMPTS, reward=kl + flaky, max_new_tokens=4), flaky

    env, flaky = make()
    clean, clean_info = play(env, [50, 60, EOS], flaky=flaky)
    env, flaky = make()
    failed, info = play(env, [50, 60, EOS], fail_at=2, flaky=flaky)
    assert failed == pytest.approx(clean, abs=1e-9)
    assert info["reward_terms"] == pytest.approx(clean_info["reward_terms"])
    assert info["num_tokens"] == 3 and info["reward_terms"]["flaky"] == 3.0
    # The KL reference did not advance on the failed step: the retried episode's KL is the clean one.
    assert clean_info["reward_terms"]["kl"] != 0


def test_missing_logprobs_step_changes_nothing_and_retry_matches_clean(models):
    ref, policy = models
    tokens = [50, 60, EOS]

    def logprobs(env):
        core = env.unwrapped.core
        ids = core.input_ids[:, : core.max_prompt_tokens + int(core.num_generated[0])]
        mask = core.attention_mask[:, : ids.shape[1]]
        pos = (mask.cumsum(-1) - 1).clamp(min=0)
        with torch.no_grad():
            logits = policy(input_ids=ids, attention_mask=mask, position_ids=pos).logits[:, -1]
        return torch.log_softmax(logits.float(), -1)

    def run(fail: bool):
        kl = KLPenalty(ref, coef=1.0, estimator="full")
        env = TextGenEnv(prompts=PROMPTS, reward=kl, max_new_tokens=4)
        env.reset(options={"prompt_index": 1})
        total = 0.0
        for i, token in enumerate(tokens):
            if fail and i == 1:
                with pytest.raises(ScorerError, match="no policy log-probs"):
                    env.step(token)
                assert int(env.unwrapped.core.num_generated[0]) == 1
            kl.set_policy_logprobs(logprobs(env))
            total += env.step(token)[1]
        return total

    assert run(fail=True) == pytest.approx(run(fail=False), abs=1e-9)


def test_failed_step_keeps_handed_logprobs_for_the_retry(models):
    ref, _ = models
    kl = KLPenalty(ref, coef=1.0)
    env = TextGenEnv(prompts=PROMPTS, reward=kl + DenseOut(lambda b: torch.full((b,), float("nan"))))
    env.reset(seed=0)
    kl.set_policy_logprobs(-1.0)
    with pytest.raises(ScorerError, match=r"term 'dense_out'\) returned nan for prompt"):
        env.step(5)
    assert kl._handed is not None and int(env.unwrapped.core.num_generated[0]) == 0


@pytest.mark.parametrize(
    ("out", "match"),
    [
        (lambda b: torch.full((b,), float("inf")), r"returned inf for prompt 'The movie was'"),
        (lambda b: torch.zeros(b, b), r"returned tensor.* of shape \(1, 1\); expected 1 finite float"),
        (lambda b: torch.zeros(b + 1), r"of shape \(2,\); expected 1 finite float"),
        (lambda b: ["0.5"] * b, r"returned str '0.5' at index 0 for prompt 'The movie was'"),
        (lambda b: None, r"returned None; expected 1 finite float"),
        (lambda b: [10**400] * b, r"too large for a float"),
        (
            lambda b: 1 / 0,
            r"raised ZeroDivisionError: division by zero while scoring prompts \['The movie was'\]",
        ),
    ],
)
def test_dense_outputs_are_validated_like_terminal_ones(out, match):
    env = TextGenEnv(prompts=PROMPTS, reward=Length() + DenseOut(out))
    env.reset(options={"prompt_index": 0})
    with pytest.raises(
        ScorerError, match=r"scorer DenseOut\(name='dense_out'\) \(term 'dense_out'\) (.* )?" + match
    ):
        env.step(5)
    assert int(env.unwrapped.core.num_generated[0]) == 0
    env.unwrapped.reward.find(DenseOut)[0].out = lambda b: torch.ones(b)
    assert env.step(5)[1] == 1.0  # the env continues


@pytest.mark.parametrize("mode", list(AutoresetMode))
def test_vector_rows_that_end_on_a_failed_step_finish_on_the_retry(mode):
    flaky = Flaky()
    envs = TextGenVectorEnv(
        num_envs=3, prompts=PROMPTS, reward=flaky, max_new_tokens=3, autoreset_mode=mode, eos_token_id=EOS
    )
    envs.reset(seed=1)
    envs.step(np.array([5, 5, 5]))
    rngs = [rng.bit_generator.state for rng in envs.np_random]
    before = envs._observations(), envs.ended, envs._steps.copy()
    flaky.fail = True
    with pytest.raises(ScorerError, match="scorer service down"):
        envs.step(np.array([EOS, 7, EOS]))  # rows 0 and 2 end on this step
    after = envs._observations(), envs.ended, envs._steps.copy()
    for a, b in zip(before[0].values(), after[0].values()):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(before[1], after[1])
    np.testing.assert_array_equal(before[2], after[2])
    assert [rng.bit_generator.state for rng in envs.np_random] == rngs
    flaky.fail = False
    _, rewards, terminated, _, info = envs.step(np.array([EOS, 7, EOS]))
    if mode is AutoresetMode.SAME_STEP:
        np.testing.assert_array_equal(info["_final_info"], [True, False, True])
        np.testing.assert_array_equal(info["final_info"]["reward_terms"]["flaky"][[0, 2]], [2.0, 2.0])
    else:
        np.testing.assert_array_equal(terminated, [True, False, True])
        np.testing.assert_array_equal(rewards, [2.0, 0.0, 2.0])
    # The env goes on: the ended rows restart (or wait for a reset in DISABLED mode).
    if mode is AutoresetMode.DISABLED:
        envs.reset(options={"reset_mask": envs.ended})
    envs.step(np.array([7, EOS, 7]))
    _, _, terminated, _, _ = envs.step(np.array([EOS, EOS, EOS]))
    assert terminated.any() or mode is AutoresetMode.SAME_STEP


def test_gym_make_works_after_a_failed_reset():
    env = gym.make("TextGen-v0", prompts=PROMPTS, reward="length", max_new_tokens=3)
    with pytest.raises(ValueError, match=r"options\['prompt_index'\] must be an int in \[0, 3\), got -1"):
        env.reset(options={"prompt_index": -1})
    env.reset(seed=0)
    for token in (5, 6, EOS):
        _, _, terminated, _, info = env.step(token)
    assert terminated and info["num_tokens"] == 3
    with pytest.raises(TypeError, match="options must be a dict or None, got list"):
        env.reset(options=["prompt_index", 0])
    env.reset()
    env.step(5)


def test_gym_make_vector_works_after_a_failed_reset():
    envs = gym.make_vec("TextGen-v0", num_envs=2, prompts=PROMPTS, reward="length")
    with pytest.raises(ValueError, match="prompt_index"):
        envs.reset(options={"prompt_index": 7})
    envs.reset(seed=0)
    envs.step(np.array([5, 6]))


def test_failed_reset_keeps_the_running_episode():
    env = TextGenEnv(prompts=PROMPTS, reward="length")
    env.reset(seed=3)
    env.step(5)
    state = env.unwrapped.core.input_ids.clone(), env.np_random.bit_generator.state
    for options in ({"prompt_index": -1}, {"prompt": "   "}, {"prompt": "\ud800"}, {"bogus": 1}, "x"):
        with pytest.raises((TypeError, ValueError)):
            env.reset(seed=9, options=options)
    assert torch.equal(env.unwrapped.core.input_ids, state[0])
    assert env.np_random.bit_generator.state == state[1]
    assert env.step(6)[4] == {}


def test_callable_scorer_outputs_are_checked_per_value():
    env = TextGenEnv(prompts=PROMPTS, reward=Callable(lambda p, t, r, m: True), max_new_tokens=1)
    env.reset()
    assert env.step(5)[1] == 1.0  # a bool counts as 0/1


def test_readme_composed_spec_behaves_like_the_sentiment_task():
    import warnings

    for make in (
        lambda: gym.make(
            "TextGen-v0", reward="sentiment + kl:tiny-lm:0.05 + 0.1*missing_eos", max_new_tokens=4
        ),
        lambda: gym.make("TextGen-Sentiment-v0", max_new_tokens=4),
    ):
        env = make()
        env.action_space.seed(0)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            env.reset(seed=0)
            for _ in range(8):
                *_, terminated, _, info = env.step(env.action_space.sample())
                if terminated:
                    assert info["reward_terms"]["kl"] == 0.0
                    env.reset()
        assert len([w for w in caught if "no policy log-probs" in str(w.message)]) == 1


# --- weighted terms and their sum are checked like each term ----------------------------------------------


class Holder:
    """A reward function whose value the test sets."""

    def __init__(self, value):
        self.value = value

    def __call__(self, prompt, text, refs, meta):
        return self.value


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (
            lambda h: 10.0 * Callable(h, name="big"),
            r"\(term 'big'\) returned 1e\+308 \(weighted by 10\.0: inf\)",
        ),
        (lambda h: -10.0 * Callable(h, name="big"), r"returned 1e\+308 \(weighted by -10\.0: -inf\)"),
        (
            lambda h: Callable(h, name="big") + Callable(h, name="twin"),
            r"row 0 \(prompt 'The movie was'\) add up to inf, which is not a finite float: big = 1e\+308",
        ),
    ],
)
def test_terminal_terms_that_overflow_once_weighted_or_summed_fail_the_step(make, match):
    holder = Holder(1e308)
    env = TextGenEnv(prompts=PROMPTS, reward=make(holder), max_new_tokens=1)
    env.reset(options={"prompt_index": 0})
    before = env.unwrapped.core.input_ids.clone()
    with pytest.raises(ScorerError, match=match):
        env.step(EOS)
    assert torch.equal(env.unwrapped.core.input_ids, before) and not env.unwrapped.core.done[0]
    holder.value = 1e300
    _, reward, terminated, _, _ = env.step(EOS)  # the retry scores finite rewards
    assert terminated and np.isfinite(reward) and abs(reward) >= 2e300


def test_dense_terms_that_overflow_once_weighted_or_summed_fail_the_step():
    for reward, match in (
        (
            10.0 * DenseOut(lambda b: torch.full((b,), 1e308, dtype=torch.float64)),
            r"returned 1e\+308 \(weighted by 10\.0: inf\)",
        ),
        (
            DenseOut(lambda b: torch.full((b,), 1e308, dtype=torch.float64))
            + DenseOut(lambda b: torch.full((b,), 1e308, dtype=torch.float64)),
            r"add up to inf, which is not a finite float: dense_out = 1e\+308",
        ),
    ):
        envs = TextGenVectorEnv(num_envs=2, prompts=PROMPTS, reward=reward, max_new_tokens=3)
        envs.reset(seed=0)
        before = envs._observations()
        with pytest.raises(ScorerError, match=match):
            envs.step(np.array([5, 5]))
        for a, b in zip(before.values(), envs._observations().values()):
            np.testing.assert_array_equal(a, b)


def test_an_episode_total_that_overflows_fails_the_step_that_overflows_it():
    # 1e308 on each token is a finite reward every step, but the episode's total is not after two.
    envs = TextGenVectorEnv(
        num_envs=2,
        prompts=PROMPTS,
        reward=DenseOut(lambda b: torch.full((b,), 1e308, dtype=torch.float64)),
        max_new_tokens=3,
    )
    envs.reset(seed=0)
    rewards = envs.step(np.array([5, 5]))[1]
    assert np.all(rewards == 1e308)
    before = envs._observations()
    with pytest.raises(ScorerError, match=r"dense_out = 1e\+308 \(episode total inf\)"):
        envs.step(np.array([5, 5]))
    for a, b in zip(before.values(), envs._observations().values()):
        np.testing.assert_array_equal(a, b)
