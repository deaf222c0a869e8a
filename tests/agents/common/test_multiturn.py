"""Every algorithm on a multi-turn env: the env's replies sit between the policy's tokens, are read by the
policy (and the KL reference) but never trained on, and GAE steps from policy token to policy token."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch

from agents import PPO, PPOConfig, registry
from agents.common import checkpoint as ckpt
from agents.common.on_policy import TIME_METRICS
from agents.common.sampling import sampling_logprobs
from tests.agents.algos import make_algo
from tests.agents.tiny import PROMPTS, P, good_fraction, tiny_lm, tiny_tokenizer
from textenv import Episode, Reply, TextGenEnv
from textenv.lm import left_padded_positions
from textenv.scorers import Callable
from textenv.scorers.kl import KLPenalty
from textenv.vector import TextGenVectorEnv

T = 16
WORDS = ("the", "cat", "sat")
END_OF_TURN = ("on", "mat", "ran", "was")  # about one token in five ends the policy's turn; <eos> the episode


def respond(episode: Episode) -> Reply:
    """One to three words (different per prompt and turn), a reward for every "good" in the turn."""
    n = 1 + (len(episode.prompt.text.split()) + episode.policy_turns) % 3
    return Reply(" " + " ".join(WORDS[:n]), reward=0.25 * episode.last.text.split().count("good"))


def env_options(kl: bool = False, **overrides: Any) -> dict[str, Any]:
    tok = tiny_tokenizer()
    reward: Any = Callable(good_fraction)
    if kl:
        reward = reward + KLPenalty(tiny_lm(len(tok), seed=0), coef=0.1)
    return {
        "tokenizer": tok,
        "prompts": PROMPTS,
        "reward": reward,
        "responder": respond,
        "end_of_turn": tok.convert_tokens_to_ids(list(END_OF_TURN)),
        "max_turns": 3,
        "max_prompt_tokens": P,
        "max_new_tokens": T,
        **overrides,
    }


def make_env(num_envs: int = 8, kl: bool = False, **overrides: Any) -> TextGenVectorEnv:
    return TextGenVectorEnv(
        num_envs=num_envs,
        autoreset_mode="Disabled",
        observation_format="torch",
        **env_options(kl, **overrides),
    )


def make_ppo(env: Any, **config: Any) -> PPO:
    # float32: the comparisons below are at 1e-5, beyond bf16's precision.
    cfg = PPOConfig(
        **{
            "episodes_per_iteration": 8,
            "minibatch_size": 8,
            "device": "cpu",
            "seed": 0,
            "mixed_precision": "no",
            **config,
        }
    )
    return PPO(tiny_lm(len(tiny_tokenizer()), seed=1), env, cfg, verbose=0, progress_bar=False)


def inserted(batch: Any) -> torch.Tensor:
    """``(N, T)`` the env's tokens: real after the prompt, not the policy's."""
    return batch.attention_mask[:, batch.prompt_len :].bool() & ~batch.mask


def comparable(rows: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k not in TIME_METRICS} for r in rows]


@pytest.mark.parametrize("name", registry.AGENTS)
def test_every_algorithm_runs_an_iteration_on_a_multi_turn_env(name):
    algo = make_algo(name, env=make_env(kl=True), minibatch_size=4, mixed_precision="no")
    metrics = algo.train_iteration()
    assert all(np.isfinite(v) for v in metrics.values()), metrics
    batch = algo._last_batch
    assert batch is not None and inserted(batch).sum() > 8  # the env's replies are in the episodes
    assert set(batch.finish_reasons) <= {"eos", "length", "max_turns"}
    assert "responder" in batch.reward_terms


@pytest.mark.parametrize("sampling", [{}, {"temperature": 0.7, "top_k": 8}])
def test_rollout_logprobs_equal_one_forward_over_the_final_sequence(sampling):
    env = make_env()
    ppo = make_ppo(env, **sampling)
    batch = ppo.collect_rollout()
    env_tokens = inserted(batch)
    assert env_tokens.sum() > 8 and (env_tokens.sum(1) > 0).sum() >= 4
    # The batch is the env's final observations; its mask is the env's policy_mask.
    core = env.unwrapped.core
    assert torch.equal(batch.input_ids, core.input_ids) and torch.equal(
        batch.attention_mask, core.attention_mask
    )
    assert torch.equal(batch.mask, core.policy_mask[:, P:].bool())
    with torch.no_grad():
        out = ppo.policy.lm(
            input_ids=batch.input_ids,
            attention_mask=batch.attention_mask,
            position_ids=left_padded_positions(batch.attention_mask),
        )
    logp = sampling_logprobs(
        out.logits[:, P - 1 : P + T - 1].float(), ppo.config.temperature, ppo.config.top_k, ppo.config.top_p
    )
    expected = logp.gather(-1, batch.tokens.unsqueeze(-1)).squeeze(-1)  # (N, T)
    m = batch.mask
    torch.testing.assert_close(batch.logprobs[m], expected[m], atol=1e-5, rtol=0)
    assert (batch.logprobs[~m] == 0).all() and (batch.rewards[~m] == 0).all()
    np.testing.assert_allclose(batch.rewards.sum(1).numpy(), batch.scores, atol=1e-12)
    # Each reply's reward sits on the policy token that ended the turn.
    np.testing.assert_allclose(
        batch.reward_terms["responder"] + batch.reward_terms["good_fraction"], batch.scores, atol=1e-12
    )


def logits_grads(algo: Any, step: Any) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Runs ``step()`` and returns, for every training forward, the gradient of the loss w.r.t. the
    logits that score each token column (``(B, t, V)``) and that forward's tokens' mask ``(B, t)``."""
    grads: list[torch.Tensor] = []
    shapes: list[int] = []

    def keep(module: Any, args: Any, out: torch.Tensor) -> None:
        if out.requires_grad:
            shapes.append(out.shape[1])
            out.register_hook(lambda g: grads.append(g))

    handle = algo.policy.lm.lm_head.register_forward_hook(keep)
    try:
        masks = step()
    finally:
        handle.remove()
    assert len(grads) == len(masks) >= 1
    # The policy keeps the last t + 1 logits; the one at column k scores token k (the last scores nothing).
    out = []
    for g, m in zip(grads, masks):
        assert g.shape[1] == m.shape[1] + 1 and (g[:, -1] == 0).all()
        out.append((g[:, :-1], m))
    return out


@pytest.mark.parametrize("name", ["ppo", "reinforce++"])
def test_the_loss_has_no_gradient_at_the_env_tokens(name):
    algo = make_algo(name, env=make_env(), minibatch_size=8, mixed_precision="no")
    batch = algo.collect_rollout()
    b = algo.prepare_batch(batch)
    rows = torch.arange(len(batch))

    def step() -> list[torch.Tensor]:
        algo._minibatch_step(b, rows)
        return [b.take(rows).mask]

    (grad, mask), *_ = logits_grads(algo, step)
    env_tokens = inserted(batch)[:, : mask.shape[1]]
    assert env_tokens.sum() > 8
    per_token = grad.abs().sum(-1)  # (B, t)
    assert (per_token[env_tokens] == 0).all()  # d loss / d logits that score an inserted token
    assert (per_token[mask] > 0).float().mean() > 0.9  # while the policy's tokens are trained


def test_gae_steps_from_policy_token_to_policy_token():
    gamma, lam = 0.9, 0.8
    ppo = make_ppo(make_env(kl=True), gamma=gamma, gae_lambda=lam, whiten_advantages=False)
    batch = ppo.collect_rollout()
    assert inserted(batch).sum() > 8
    b = ppo.prepare_batch(batch)
    for i in range(len(batch)):
        cols = batch.mask[i].nonzero().flatten().tolist()
        rewards = batch.rewards[i, cols].tolist()
        values = [*b.old_values[i, cols].double().tolist(), 0.0]  # the episode ends: no value after it
        advantages, running = [0.0] * len(cols), 0.0
        for k in reversed(range(len(cols))):  # the env's tokens between two policy tokens are not steps
            delta = rewards[k] + gamma * values[k + 1] - values[k]
            running = delta + gamma * lam * running
            advantages[k] = running
        np.testing.assert_allclose(b.advantages[i, cols].numpy(), advantages, atol=1e-5, rtol=1e-5)
        np.testing.assert_allclose(
            b.returns[i, cols].numpy(), np.add(advantages, values[:-1]), atol=1e-5, rtol=1e-5
        )
        assert (b.advantages[i][~batch.mask[i]] == 0).all()


@pytest.mark.parametrize("estimator", ["k1", "k3"])
def test_kl_after_rollout_gives_the_per_step_rewards_on_a_multi_turn_env(estimator):
    batches = []
    for after in (True, False):
        options = env_options()
        options["reward"] = options["reward"] + KLPenalty(tiny_lm(21, seed=0), coef=0.2, estimator=estimator)
        env = TextGenVectorEnv(num_envs=4, autoreset_mode="Disabled", observation_format="torch", **options)
        batches.append(make_ppo(env, kl_after_rollout=after).collect_rollout())
    a, b = batches
    assert torch.equal(a.input_ids, b.input_ids) and torch.equal(a.mask, b.mask)
    assert inserted(a).sum() > 4 and b.kl is not None and np.abs(b.kl).max() > 0.01
    torch.testing.assert_close(a.rewards, b.rewards, rtol=0, atol=1e-5)
    np.testing.assert_allclose(a.scores, b.scores, rtol=0, atol=1e-5)
    np.testing.assert_allclose(a.kl, b.kl, rtol=0, atol=1e-5)
    np.testing.assert_allclose(a.reward_terms["kl"], b.reward_terms["kl"], rtol=0, atol=1e-5)
    np.testing.assert_allclose(a.reward_terms["responder"], b.reward_terms["responder"])


@pytest.mark.parametrize("name", ["ppo", "grpo"])
def test_resume_is_exact_on_a_multi_turn_env(tmp_path, name):
    config = {"checkpoint_interval": 0, "minibatch_size": 4, "mixed_precision": "no"}
    if name == "grpo":
        config.update(num_iterations=2, group_size=4)
    full = make_algo(name, env=make_env(kl=True), **config)
    full.learn(8 * 3)
    part = make_algo(name, env=make_env(kl=True), log_dir=tmp_path, **config)
    part.learn(8 * 1)
    assert ckpt.latest_checkpoint(tmp_path).endswith("checkpoint-000001")
    resumed = make_algo(name, env=make_env(kl=True), log_dir=tmp_path, **config)
    resumed.learn(8 * 3, resume=True)
    assert resumed.iteration == 3 and comparable(resumed.history) == comparable(full.history)
    for pa, pb in zip(full.policy.parameters(), resumed.policy.parameters()):
        assert torch.equal(pa, pb)
    assert full.history[-1]["reward/responder"] == resumed.history[-1]["reward/responder"]


def test_stable_baselines3_ppo_with_lm_policy_runs_on_a_multi_turn_env():
    sb3 = pytest.importorskip("stable_baselines3")
    from agents.sb3 import LMPolicy

    env = TextGenEnv(**env_options())
    model = sb3.PPO(
        LMPolicy,
        env,
        policy_kwargs={"model": tiny_lm(len(tiny_tokenizer()), seed=1)},
        n_steps=32,
        batch_size=16,
        n_epochs=1,
        gamma=1.0,
        device="cpu",
        seed=0,
    )
    model.learn(64)
    assert model.num_timesteps >= 64 and len(model.ep_info_buffer) > 0
    # The observations it trained on hold the env's replies (real tokens the policy did not choose).
    obs = model.rollout_buffer.observations
    replies = (obs["attention_mask"][..., P:] == 1) & (obs["policy_mask"][..., P:] == 0)
    assert replies.sum() > 4
