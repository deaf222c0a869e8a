"""Tests of the PPO update and the agent's public API (agents/ppo/ppo.py) on tiny models and envs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from agents import PPO, CausalLMWithValueHead, PPOConfig
from agents.common.policies import has_native_bf16
from tests.agents.tiny import PROMPTS, P, T, good_fraction, tiny_lm, tiny_tokenizer
from textenv import TextGenEnv
from textenv.scorers import Callable
from textenv.vector import TextGenVectorEnv


def make_env(*, num_envs: int = 8, vector: bool = True, reward: object = None):
    kwargs = dict(
        tokenizer=tiny_tokenizer(),
        prompts=PROMPTS,
        reward=Callable(good_fraction) if reward is None else reward,
        max_prompt_tokens=P,
        max_new_tokens=T,
    )
    if vector:
        return TextGenVectorEnv(
            num_envs=num_envs, autoreset_mode="Disabled", observation_format="torch", **kwargs
        )
    return TextGenEnv(**kwargs)


def make_ppo(env=None, policy=None, min_new_tokens: int = 0, **config) -> PPO:
    env = make_env() if env is None else env
    cfg = PPOConfig(
        **{"episodes_per_iteration": 8, "minibatch_size": 4, "device": "cpu", "seed": 0, **config}
    )
    policy = tiny_lm(len(env.unwrapped.core.tokenizer)) if policy is None else policy
    return PPO(policy, env, cfg, min_new_tokens=min_new_tokens, verbose=0, progress_bar=False)


def test_one_update_changes_lm_and_value_head_weights():
    ppo = make_ppo()
    lm_before = {k: v.clone() for k, v in ppo.policy.lm.state_dict().items()}
    head_before = {k: v.clone() for k, v in ppo.policy.value_head.state_dict().items()}
    metrics = ppo.train_iteration()
    changed_lm = [k for k, v in ppo.policy.lm.state_dict().items() if not torch.equal(v, lm_before[k])]
    assert "transformer.h.0.attn.c_attn.weight" in changed_lm
    assert "transformer.wte.weight" in changed_lm  # tied with the LM head
    for k, v in ppo.policy.value_head.state_dict().items():
        assert not torch.equal(v, head_before[k]), k
    for key in (
        "score",
        "entropy",
        "clip_frac",
        "approx_kl",
        "value_loss",
        "policy_loss",
        "explained_variance",
    ):
        assert np.isfinite(metrics[key]), key
    assert metrics["epochs"] == ppo.config.ppo_epochs and metrics["early_stop"] == 0
    assert metrics["iteration"] == 1 and metrics["episodes"] == 8
    assert metrics["samples_per_s"] > 0 and metrics["tokens_per_s"] > 0


def test_value_learning_rate_steps_the_value_head_at_its_own_rate():
    # One Adam step moves each weight by about its group's learning rate (|m / sqrt(v)| = 1 at step 1).
    ppo = make_ppo(learning_rate=1e-6, value_learning_rate=1e-2, ppo_epochs=1, minibatch_size=8)
    assert [g["lr"] for g in ppo.optimizer.param_groups] == [1e-6, 1e-2]
    head = ppo.policy.value_head.weight
    trunk = ppo.policy.lm.transformer.h[0].attn.c_attn.weight
    head_before, trunk_before = head.detach().clone(), trunk.detach().clone()
    ppo.train_iteration()
    assert (head - head_before).abs().max().item() == pytest.approx(1e-2, rel=1e-3)
    assert (trunk - trunk_before).abs().max().item() == pytest.approx(1e-6, rel=1e-3)
    # Without it, one group at learning_rate.
    assert [g["lr"] for g in make_ppo(learning_rate=1e-6).optimizer.param_groups] == [1e-6]


@pytest.mark.parametrize("ent_coef", [0.0, 0.01])
def test_one_minibatch_trains_on_the_forward_that_prepared_the_batch(ent_coef):
    # minibatch = batch: the old log-probs and values come from the first step's own forward (one forward
    # fewer per iteration); with two micro-batches the same update takes a separate no-grad forward first.
    # Both give the same update to float precision.
    runs = []
    for accumulation in (1, 2):
        ppo = make_ppo(
            minibatch_size=8,
            ppo_epochs=3,
            ent_coef=ent_coef,
            gradient_accumulation_steps=accumulation,
            mixed_precision="no",
        )
        batch = ppo.collect_rollout()
        calls = []
        handle = ppo.policy.lm.register_forward_hook(lambda *args, calls=calls: calls.append(1))
        stats = ppo.train(batch)
        handle.remove()
        runs.append((ppo, stats, len(calls)))
    (fused, fused_stats, fused_calls), (split, split_stats, split_calls) = runs
    assert fused_calls == 3 and split_calls == 1 + 3 * 2  # the prepare forward, then 2 micro-batches a step
    for a, b in zip(fused.policy.parameters(), split.policy.parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6)
    for key in ("policy_loss", "value_loss", "entropy", "approx_kl", "explained_variance"):
        assert fused_stats[key] == pytest.approx(split_stats[key], rel=1e-4, abs=1e-6), key
    assert fused_stats["epochs"] == split_stats["epochs"] == 3


def test_learns_a_trivially_solvable_task():
    torch.manual_seed(0)
    ppo = make_ppo(learning_rate=3e-3, episodes_per_iteration=16, minibatch_size=8)
    ppo.learn(16 * 12)
    scores = [m["score"] for m in ppo.history]
    first, last = np.mean(scores[:2]), np.mean(scores[-2:])
    assert first < 0.15
    assert last > first + 0.3, scores
    texts = ppo.generate(["the movie was"] * 4, deterministic=True)
    assert all(t.split().count("good") >= 3 for t in texts), texts


def test_policy_env_vocab_mismatch_names_both():
    env = make_env()
    with pytest.raises(ValueError, match=r"40 logits.*n=21"):
        make_ppo(env, policy=tiny_lm(40))


def test_policy_types_and_device(tmp_path):
    env = make_env()
    lm = tiny_lm(len(env.unwrapped.core.tokenizer))
    wrapped = CausalLMWithValueHead(lm)
    assert make_ppo(env, policy=wrapped).policy.model is wrapped
    assert make_ppo(make_env(), policy=lm).policy.lm is lm
    wrapped.save_pretrained(tmp_path / "m")
    from_path = make_ppo(make_env(), policy=str(tmp_path / "m"))
    torch.testing.assert_close(from_path.policy.value_head.weight, wrapped.value_head.weight)
    assert from_path.device == torch.device("cpu")
    with pytest.raises(TypeError, match="policy must be"):
        make_ppo(make_env(), policy=123)
    with pytest.raises(TypeError, match="TextGenEnv"):
        PPO(lm, object(), PPOConfig(device="cpu"), verbose=0)


def test_env_rows_must_divide_episodes_per_iteration():
    with pytest.raises(ValueError, match="3 rows"):
        make_ppo(make_env(num_envs=3))


def test_gradient_accumulation_gives_the_same_update():
    # float32 explicitly: the two updates agree to 2e-6 only without bf16 autocast ("auto" default).
    a = make_ppo(ppo_epochs=1, minibatch_size=8, mixed_precision="no")
    b = make_ppo(ppo_epochs=1, minibatch_size=8, gradient_accumulation_steps=4, mixed_precision="no")
    ma, mb = a.train_iteration(), b.train_iteration()
    for (name, pa), pb in zip(a.policy.named_parameters(), b.policy.parameters()):
        torch.testing.assert_close(pa, pb, atol=2e-6, rtol=1e-5, msg=name)
    assert ma["policy_loss"] == pytest.approx(mb["policy_loss"], abs=1e-6)
    assert ma["value_loss"] == pytest.approx(mb["value_loss"], abs=1e-6)


def test_approx_kl_early_stop():
    ppo = make_ppo(learning_rate=1e-2, target_approx_kl=1e-6, ppo_epochs=4)
    metrics = ppo.train_iteration()
    assert metrics["early_stop"] == 1.0
    assert metrics["epochs"] < 4


def test_single_env_rollouts_train_too():
    ppo = make_ppo(make_env(vector=False), episodes_per_iteration=4, minibatch_size=2)
    metrics = ppo.train_iteration()
    assert metrics["episodes"] == 4 and np.isfinite(metrics["value_loss"])


def test_predict_and_generate():
    env = make_env(vector=False)
    ppo = make_ppo(env)
    obs, _ = env.reset(seed=0)
    action, state = ppo.predict(obs, deterministic=True)
    assert isinstance(action, int) and state is None and 0 <= action < 21
    batch_obs = {k: np.stack([v, v]) for k, v in obs.items()}
    actions, _ = ppo.predict(batch_obs, deterministic=True)
    assert actions.shape == (2,) and actions[0] == action == actions[1]
    # predict's greedy action equals generate's first greedy token.
    text = ppo.generate([env.unwrapped.core.row_prompts[0].text], max_new_tokens=1, deterministic=True)[0]
    assert text.strip() == env.unwrapped.core.tokenizer.decode([action], skip_special_tokens=True).strip()
    texts = ppo.generate(["the movie was", "a cat"], seed=3)
    assert len(texts) == 2 and all(isinstance(t, str) for t in texts)
    assert texts == ppo.generate(["the movie was", "a cat"], seed=3)


def test_min_new_tokens_masks_eos_in_rollout_and_training():
    ppo = make_ppo(make_env(reward=Callable(lambda *a: 0.0)), min_new_tokens=T)
    batch = ppo.collect_rollout()
    assert batch.mask.all() and set(batch.finish_reasons) == {"length"}
    b = ppo.prepare_batch(batch)
    torch.testing.assert_close(b.old_logprobs, batch.logprobs, atol=1e-5, rtol=0)


def test_learn_callback_can_stop_and_config_type_is_checked():
    ppo = make_ppo()
    seen = []
    ppo.learn(80, callback=lambda loc: seen.append(loc["metrics"]["iteration"]) or len(seen) < 2)
    assert seen == [1, 2] and ppo.num_episodes == 16
    with pytest.raises(TypeError, match="PPOConfig"):
        PPO(tiny_lm(21), make_env(), {"seed": 0})
    with pytest.raises(ValueError, match="total_episodes"):
        ppo.learn(-1)


@pytest.mark.skipif(
    not has_native_bf16(torch.device("cpu")), reason="CPU without native bf16 (AVX512-BF16 or AMX)"
)
def test_bf16_mixed_precision_on_cpu():
    ppo = make_ppo(mixed_precision="bf16")
    batch = ppo.collect_rollout()
    b = ppo.prepare_batch(batch)
    # bf16 forwards: the full forward agrees with the incremental one to bf16 precision only.
    assert (b.old_logprobs - batch.logprobs)[b.mask].abs().max() < 0.1
    before = ppo.policy.value_head.weight.clone()
    stats = ppo.update(b)
    assert np.isfinite(stats["policy_loss"]) and not torch.equal(before, ppo.policy.value_head.weight)
    assert ppo.policy.value_head.weight.dtype == torch.float32
    assert next(ppo.policy.lm.parameters()).dtype == torch.float32  # autocast, not a cast of the weights


def test_auto_mixed_precision_is_bf16_exactly_where_the_device_has_native_bf16():
    cpu_bf16 = bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    ppo = make_ppo(mixed_precision="auto")
    assert ppo.config.mixed_precision == "auto"  # the config keeps what the user asked for
    assert ppo.mixed_precision == ("bf16" if cpu_bf16 else "no")
    with ppo._autocast():
        assert torch.is_autocast_enabled("cpu") is cpu_bf16
    assert make_ppo(mixed_precision="no").mixed_precision == "no"
    assert make_ppo(mixed_precision="bf16").mixed_precision == "bf16"
