"""Tests of the KV-cached PPO rollout (agents/ppo/rollout.py) on tiny random GPT-2s and tiny envs."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch

from agents import PPO, PPOConfig
from agents.common.rollout import EnvDriver
from agents.common.sampling import sampling_logprobs
from tests.agents.tiny import PROMPTS, P, T, tiny_lm, tiny_tokenizer
from textenv import TextGenEnv
from textenv.lm import left_padded_positions
from textenv.scorers import Callable
from textenv.scorers.kl import KLPenalty
from textenv.vector import TextGenVectorEnv


def count_good(prompt: str, text: str, refs: list, meta: dict) -> float:
    return text.split().count("good") / T


def make_env(reward: object = None, *, vector: bool = True, num_envs: int = 4, eos: object = None):
    kwargs = dict(
        tokenizer=tiny_tokenizer(),
        prompts=PROMPTS,
        reward=Callable(count_good) if reward is None else reward,
        max_prompt_tokens=P,
        max_new_tokens=T,
        eos_token_id=eos,
    )
    if vector:
        return TextGenVectorEnv(
            num_envs=num_envs, autoreset_mode="Disabled", observation_format="torch", **kwargs
        )
    return TextGenEnv(**kwargs)


def make_ppo(env, **config) -> PPO:
    # float32 explicitly: these tests compare log-probs to 1e-5, beyond bf16's precision ("auto" default).
    cfg = PPOConfig(
        **{
            "episodes_per_iteration": 8,
            "minibatch_size": 4,
            "device": "cpu",
            "seed": 0,
            "mixed_precision": "no",
            **config,
        }
    )
    return PPO(tiny_lm(len(env.unwrapped.core.tokenizer)), env, cfg, verbose=0, progress_bar=False)


# Several EOS ids, so a random policy ends episodes at different lengths.
MANY_EOS = [1, 3, 4, 5]


@pytest.mark.parametrize("vector", [True, False])
@pytest.mark.parametrize("sampling", [{}, {"temperature": 0.7, "top_k": 8}, {"top_p": 0.9}])
def test_rollout_logprob_equals_full_forward_of_final_sequence(vector, sampling):
    env = make_env(vector=vector, eos=MANY_EOS)
    ppo = make_ppo(env, **sampling)
    batch = ppo.collect_rollout()
    assert len(batch) == 8
    lengths = batch.mask.sum(1)
    assert lengths.min() < T, "expected some episodes to end on EOS"
    with torch.no_grad():
        out = ppo.policy.lm(
            input_ids=batch.input_ids,
            attention_mask=batch.attention_mask,
            position_ids=left_padded_positions(batch.attention_mask),
        )
    logp_all = sampling_logprobs(
        out.logits[:, P - 1 : P + T - 1].float(), ppo.config.temperature, ppo.config.top_k, ppo.config.top_p
    )  # (N, T, V)
    expected = logp_all.gather(-1, batch.tokens.unsqueeze(-1)).squeeze(-1)  # (N, T)
    m = batch.mask
    torch.testing.assert_close(batch.logprobs[m], expected[m], atol=1e-5, rtol=0)
    assert torch.all(batch.logprobs[~m] == 0)


def test_old_logprobs_and_values_from_full_forward_match_incremental():
    env = make_env(eos=MANY_EOS)
    ppo = make_ppo(env, temperature=0.8)
    batch = ppo.collect_rollout()
    b = ppo.prepare_batch(batch)
    torch.testing.assert_close(b.old_logprobs[b.mask], batch.logprobs[b.mask], atol=1e-5, rtol=0)
    # Values belong to the state before each generated token: position P + t - 1.
    with torch.no_grad():
        out = ppo.policy.model(
            batch.input_ids, batch.attention_mask, left_padded_positions(batch.attention_mask)
        )
    torch.testing.assert_close(
        b.old_values[b.mask], out.values[:, P - 1 : P + T - 1][b.mask], atol=1e-6, rtol=0
    )


def test_rollout_batch_layout_and_rewards():
    env = make_env(eos=MANY_EOS)
    ppo = make_ppo(env)
    batch = ppo.collect_rollout()
    N = len(batch)
    assert batch.input_ids.shape == (N, P + T) and batch.tokens.shape == (N, T)
    lengths = batch.mask.sum(1)
    # The mask is a prefix, and the observation holds exactly the generated tokens.
    assert torch.equal(batch.mask, torch.arange(T)[None, :] < lengths[:, None])
    assert torch.equal(batch.input_ids[:, P:][batch.mask], batch.tokens[batch.mask])
    assert torch.equal(batch.attention_mask[:, P:].bool(), batch.mask)
    for i in range(N):
        n = int(lengths[i])
        ended_on_eos = int(batch.tokens[i, n - 1]) in MANY_EOS
        assert batch.finish_reasons[i] == ("eos" if ended_on_eos else "length")
        assert n == T or ended_on_eos
        words = batch.texts[i].split()
        assert batch.scores[i] == pytest.approx(words.count("good") / T)
    np.testing.assert_allclose(batch.rewards.sum(1).numpy(), batch.scores, atol=1e-6)
    np.testing.assert_allclose(batch.reward_terms["count_good"], batch.scores, atol=1e-12)
    # Terminal reward sits on the last generated token only.
    last = lengths - 1
    rewards = batch.rewards.clone()
    rewards[torch.arange(N), last] = 0
    assert torch.all(rewards == 0)


def test_waves_collect_exactly_the_requested_episodes_and_prompts_are_seeded():
    env = make_env(num_envs=2)
    ppo = make_ppo(env)
    first = ppo.collect_rollout()
    assert len(first) == 8 and all(r in ("eos", "length") for r in first.finish_reasons)
    other = make_ppo(make_env(num_envs=2))
    again = other.collect_rollout()
    assert first.prompts == again.prompts
    assert torch.equal(first.tokens, again.tokens)
    assert set(first.prompts) <= set(PROMPTS)


class _Spy(KLPenalty):
    def __init__(self, reference):
        super().__init__(reference, coef=0.3, estimator="k1", if_unbound="error")
        self.handed: list[torch.Tensor] = []

    def set_policy_logprobs(self, logprobs):
        self.handed.append(torch.as_tensor(logprobs).clone())
        super().set_policy_logprobs(logprobs)


def test_kl_penalty_gets_handed_logprobs_and_its_coef_from_the_controller():
    tok = tiny_tokenizer()
    kl = _Spy(tiny_lm(len(tok), seed=1))
    env = make_env(Callable(count_good) + kl, eos=MANY_EOS)
    # The per-step path (kl_after_rollout=False): the env scores the KL at every step from handed log-probs.
    ppo = make_ppo(
        env,
        kl_controller="adaptive",
        init_kl_coef=0.2,
        kl_target=0.01,
        kl_horizon=10.0,
        kl_after_rollout=False,
    )
    calls = []
    handle = ppo.policy.lm.register_forward_hook(lambda *args: calls.append(1))
    metrics = ppo.train_iteration()
    batch = ppo._last_batch
    # The scorer never ran the policy: it has no bound policy and raises without handed log-probs.
    assert kl.policy is None
    # Handed log-probs (through the env's KL channel) are the rollout's sampling distribution over the
    # vocabulary, for every step.
    steps = len(kl.handed)
    handed = torch.stack(kl.handed, 1)  # (B, steps, V) per wave; 2 waves of 4 rows
    assert steps == int(batch.mask[:4].sum(1).max()) + int(batch.mask[4:].sum(1).max())
    n = int(batch.mask[:4].sum(1).max())
    first_wave = handed[:, :n].gather(-1, batch.tokens[:4, :n, None]).squeeze(-1)  # (B, n)
    m = batch.mask[:4, : first_wave.shape[1]]
    torch.testing.assert_close(first_wave[m], batch.logprobs[:4, : first_wave.shape[1]][m])
    # The rollout ran the policy once per step (prefill + one token per forward), plus the update's forwards.
    rollout_forwards = steps  # per wave: 1 prefill + (steps - 1) incremental
    update_forwards = 2 + ppo.config.ppo_epochs * 2  # old log-probs (2 chunks) + 2 minibatches per epoch
    handle.remove()
    assert len(calls) == rollout_forwards + update_forwards
    # The coefficient the rollout used came from the controller, which then moved it.
    assert metrics["kl_coef"] == pytest.approx(0.2)
    assert kl.coef == pytest.approx(ppo.kl_coefficient.value)
    assert kl.coef != pytest.approx(0.2)
    # The KL per episode is the scorer's, and its reward term is -coef * KL.
    np.testing.assert_allclose(batch.reward_terms["kl"], -0.2 * batch.kl, rtol=1e-6, atol=1e-9)
    assert metrics["kl"] == pytest.approx(float(batch.kl.mean()))
    ppo.collect_rollout()
    assert kl.handed  # and the next rollout uses the new coefficient
    assert ppo.kl_terms == [kl]


def test_next_step_autoreset_vector_env_is_rejected():
    env = TextGenVectorEnv(
        num_envs=2,
        tokenizer=tiny_tokenizer(),
        prompts=PROMPTS,
        reward=Callable(count_good),
        max_prompt_tokens=P,
    )
    with pytest.raises(ValueError, match="autoreset_mode"):
        EnvDriver(env, torch.device("cpu"))


def test_env_id_is_made_with_autoreset_disabled_and_torch_observations():
    ppo = PPO(
        tiny_lm(len(tiny_tokenizer())),
        "TextGen-v0",
        PPOConfig(episodes_per_iteration=4, minibatch_size=2, num_envs=2, device="cpu"),
        env_kwargs=dict(
            tokenizer=tiny_tokenizer(),
            prompts=PROMPTS,
            reward=Callable(count_good),
            max_prompt_tokens=P,
            max_new_tokens=T,
        ),
        verbose=0,
    )
    env = ppo.env.unwrapped
    assert env.metadata["autoreset_mode"] is gym.vector.AutoresetMode.DISABLED
    assert env.observation_format == "torch" and env.num_envs == 2
    assert len(ppo.collect_rollout()) == 4


def test_rollout_sends_actions_to_the_vector_env_as_tensors_on_the_policy_device():
    env = make_env()
    ppo = make_ppo(env)
    sent = []
    step = env.step
    env.step = lambda actions: (sent.append(actions), step(actions))[1]  # type: ignore[method-assign]
    ppo.collect_rollout()
    assert sent and all(isinstance(a, torch.Tensor) and a.device == ppo.device for a in sent)


def test_metrics_have_no_kl_coefficient_without_a_kl_term():
    ppo = make_ppo(make_env(Callable(count_good)))
    metrics = ppo.train_iteration()
    assert "kl_coef" not in metrics and "kl" not in metrics


@pytest.mark.parametrize(
    ("estimator", "sampling", "vector"),
    [("k1", {}, True), ("k3", {}, True), ("k1", {"temperature": 0.7, "top_k": 20}, True), ("k3", {}, False)],
)
def test_kl_after_rollout_gives_the_env_per_step_rewards(estimator, sampling, vector):
    # One batched float32 forward of the reference after the rollout (as TRL) against the env stepping
    # the reference once per token: the same tokens, rewards, returns, term totals and KL.
    tok = tiny_tokenizer()
    batches, refs = [], []
    for after in (True, False):
        ref = tiny_lm(len(tok), seed=1)
        refs.append(ref)
        reward = Callable(count_good) + KLPenalty(ref, coef=0.2, estimator=estimator)
        env = make_env(reward, eos=MANY_EOS, vector=vector)
        ppo = make_ppo(env, kl_after_rollout=after, **sampling)
        calls = []
        handle = ref.register_forward_hook(lambda *args, calls=calls: calls.append(1))
        batches.append(ppo.collect_rollout())
        handle.remove()
        # Batched: one forward per minibatch of episodes; per step: a prefill and a step per token.
        # After: one forward per minibatch of 4 episodes; per step: a prefill and steps per wave.
        assert len(calls) == 2 if after else len(calls) > 2 * 2
    a, b = batches
    assert torch.equal(a.tokens, b.tokens) and torch.equal(a.mask, b.mask)
    assert a.kl is not None and b.kl is not None and np.abs(b.kl).max() > 0.01
    torch.testing.assert_close(a.rewards, b.rewards, rtol=0, atol=1e-5)
    np.testing.assert_allclose(a.scores, b.scores, rtol=0, atol=1e-5)
    np.testing.assert_allclose(a.kl, b.kl, rtol=0, atol=1e-5)
    np.testing.assert_allclose(a.reward_terms["kl"], b.reward_terms["kl"], rtol=0, atol=1e-5)
    np.testing.assert_allclose(a.reward_terms["count_good"], b.reward_terms["count_good"])


def test_kl_after_rollout_hands_no_logprobs_unless_a_term_scores_every_step():
    # Terms scored after the rollout read no per-step log-probs; a "full" term beside them still does.
    tok = tiny_tokenizer()
    deferred = _Spy(tiny_lm(len(tok), seed=1))
    ppo = make_ppo(make_env(Callable(count_good) + deferred, eos=MANY_EOS), kl_after_rollout=True)
    batch = ppo.collect_rollout()
    assert deferred.handed == [] and batch.kl is not None and np.abs(batch.kl).max() > 0
    full = KLPenalty(tiny_lm(len(tok), seed=1), coef=0.1, estimator="full")
    deferred = _Spy(tiny_lm(len(tok), seed=1))
    ppo = make_ppo(make_env(Callable(count_good) + deferred + full, eos=MANY_EOS), kl_after_rollout=True)
    ppo.collect_rollout()
    assert len(deferred.handed) > 0


def test_kl_after_rollout_leaves_the_env_stepping_the_reference_itself_afterwards():
    tok = tiny_tokenizer()
    ref = tiny_lm(len(tok), seed=1)
    kl = KLPenalty(ref, coef=0.2)
    env = make_env(Callable(count_good) + kl, num_envs=2)
    ppo = make_ppo(env, kl_after_rollout=True, episodes_per_iteration=2, minibatch_size=2)
    ppo.collect_rollout()
    assert not kl.is_deferred
    # Outside the agent the env's own term is live again: its KL equals that of a fresh env's term.
    fresh_kl = KLPenalty(tiny_lm(len(tok), seed=1), coef=kl.coef)  # the agent's controller set it
    fresh = make_env(Callable(count_good) + fresh_kl, num_envs=2)
    for e in (env, fresh):
        e.reset(seed=3)
    g = torch.Generator().manual_seed(0)
    for _ in range(3):
        actions = torch.randint(6, len(tok), (2,), generator=g)
        logp = torch.log_softmax(torch.randn(2, len(tok), generator=g), -1)
        out = []
        for e, term in ((env, kl), (fresh, fresh_kl)):
            term.set_policy_logprobs(logp)
            out.append(e.step(actions)[1])
        np.testing.assert_allclose(out[0], out[1], rtol=0, atol=1e-6)
        assert np.abs(out[1]).max() > 0


def test_full_estimator_stays_in_the_env():
    tok = tiny_tokenizer()
    kl = KLPenalty(tiny_lm(len(tok), seed=1), coef=0.2, estimator="full")
    # The agent leaves a term it cannot score after the rollout to the env (KLPenalty.deferred refuses it).
    ppo = make_ppo(make_env(Callable(count_good) + kl, eos=MANY_EOS), kl_after_rollout=True)
    batch = ppo.collect_rollout()
    assert batch.kl is not None and (batch.kl > 0).all()
