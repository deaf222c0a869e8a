"""LMPolicy: stable-baselines3 algorithms with a causal LM as the policy, on textenv envs."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from gymnasium import spaces
from stable_baselines3 import A2C, PPO
from stable_baselines3.common.env_util import make_vec_env
from transformers import AutoModelForCausalLM

from agents.sb3 import LMPolicy, align_tokens, bind_kl, find_kl_penalties
from tests.builders import tiny_gpt2
from textenv import TextGenEnv, assets
from textenv.scorers import KLPenalty, Scorer

PROMPTS = ["The movie was", "I watched this film and", "Great"]


def length_reward(prompt, text, references, meta):
    return float(len(text)) / 10


class TargetTokens(Scorer):
    """1 if the last generated token is in ``target`` (a bool mask over the vocabulary), else 0."""

    name = "target"

    def __init__(self, target: torch.Tensor):
        self.target = target

    def score(self, batch):
        return [float(self.target[ids[-1]]) for ids in batch.token_ids]


def make_env(tokenizer, reward=length_reward, **kwargs) -> TextGenEnv:
    options = {"tokenizer": tokenizer, "prompts": PROMPTS, "reward": reward, "max_prompt_tokens": 8}
    options.update({"max_new_tokens": 4, **kwargs})
    return TextGenEnv(**options)


def make_policy(env, model) -> LMPolicy:
    return LMPolicy(env.observation_space, env.action_space, lambda _: 1e-4, model=model)


def collect_observations(env, n_steps=(0, 1, 3)) -> dict[str, np.ndarray]:
    """A batch of observations from different prompts and episode steps (so rows end at different columns)."""
    rows = []
    rng = np.random.default_rng(0)
    for i, prompt in enumerate(PROMPTS):
        obs, _ = env.reset(options={"prompt": prompt})
        for _ in range(n_steps[i % len(n_steps)]):
            obs, *_ = env.step(int(rng.integers(2, env.action_space.n)))  # ids 0/1 are EOS/pad
        rows.append(obs)
    return {key: np.stack([r[key] for r in rows]) for key in rows[0]}


@pytest.mark.parametrize("algo", [PPO, A2C])
def test_sb3_algorithms_learn_on_a_textenv_env(tokenizer, algo):
    env = make_env(tokenizer)
    kwargs = (
        {"n_steps": 32, "batch_size": 16, "n_epochs": 2}
        if algo is PPO
        else {"n_steps": 8, "use_rms_prop": False}
    )
    model = algo(
        LMPolicy,
        env,
        policy_kwargs={"model": tiny_gpt2(len(tokenizer), positions=32, eos_token_id=0)},
        learning_rate=1e-4,
        gamma=1.0,
        ent_coef=0.0,
        device="cpu",
        seed=0,
        **kwargs,
    )
    model.learn(200)
    assert model.num_timesteps >= 200
    assert isinstance(model.policy.optimizer, torch.optim.Adam)
    assert len(model.ep_info_buffer) > 0  # SB3's Monitor saw whole episodes


def test_action_distribution_is_the_lms_next_token_distribution(tokenizer):
    lm = AutoModelForCausalLM.from_pretrained(assets.path("tiny-lm")).eval()
    env = make_env(tokenizer, max_new_tokens=5)
    policy = make_policy(env, lm)
    obs = collect_observations(env)
    obs_tensor, _ = policy.obs_to_tensor(obs)
    with torch.no_grad():
        logp = policy.get_distribution(obs_tensor).distribution.logits  # normalised log-probs (B, V)
        _, values, _ = policy(obs_tensor)
        expected_logp, expected_values = [], []
        for ids, mask in zip(obs["input_ids"], obs["attention_mask"]):
            prefix = torch.as_tensor(ids[mask == 1])[None]  # the unpadded prefix, no position tricks
            expected_logp.append(torch.log_softmax(lm(prefix).logits[0, -1], -1))
            expected_values.append(policy.model(prefix).values[0, -1])
    torch.testing.assert_close(logp, torch.stack(expected_logp), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(values.squeeze(-1), torch.stack(expected_values), atol=1e-5, rtol=1e-5)
    # The same forward on the padded observation without position ids would be wrong: the test can fail.
    with torch.no_grad():
        naive = torch.log_softmax(
            lm(obs_tensor["input_ids"], attention_mask=obs_tensor["attention_mask"]).logits, -1
        )
    assert not torch.allclose(naive[:, -1], logp, atol=1e-3)


def test_observations_are_token_ids_not_floats_or_one_hot(tokenizer):
    env = make_env(tokenizer)
    policy = make_policy(env, tiny_gpt2(len(tokenizer), positions=32, eos_token_id=0))
    obs_tensor, _ = policy.obs_to_tensor(collect_observations(env))
    batch = policy.extract_features(obs_tensor)
    assert batch.input_ids.dtype == torch.int64 and batch.input_ids.dim() == 2
    # Floats (as a wrapper might hand them over) are read back as the same ids.
    floats = {key: value.float() for key, value in obs_tensor.items()}
    assert torch.equal(policy.extract_features(floats).input_ids, batch.input_ids)
    with pytest.raises(ValueError, match="integer token ids"):
        policy.extract_features({**floats, "input_ids": floats["input_ids"] + 0.5})


def test_align_tokens_right_aligns_rows_and_crops_padding():
    ids = torch.tensor([[0, 0, 5, 6, 7, 0], [0, 8, 9, 4, 3, 2]])
    mask = torch.tensor([[0, 0, 1, 1, 1, 0], [0, 1, 1, 1, 1, 1]])
    batch = align_tokens(ids, mask)
    assert batch.input_ids.tolist() == [[0, 0, 5, 6, 7], [8, 9, 4, 3, 2]]
    assert batch.attention_mask.tolist() == [[0, 0, 1, 1, 1], [1, 1, 1, 1, 1]]
    assert batch.position_ids.tolist() == [[0, 0, 0, 1, 2], [0, 1, 2, 3, 4]]
    with pytest.raises(ValueError, match="row 1 has no real token"):
        align_tokens(ids, torch.tensor([[0, 0, 1, 1, 1, 0], [0, 0, 0, 0, 0, 0]]))


def test_pretrained_weights_are_unchanged_by_construction(tokenizer):
    env = make_env(tokenizer)
    path = assets.path("tiny-lm")
    model = PPO(LMPolicy, env, policy_kwargs={"model": path}, device="cpu", seed=0)
    source = AutoModelForCausalLM.from_pretrained(path).state_dict()
    loaded = model.policy.lm.state_dict()
    assert loaded.keys() == source.keys()
    assert all(torch.equal(loaded[key], value) for key, value in source.items())
    # A module is used as is (not copied, not re-initialised).
    lm = tiny_gpt2(len(tokenizer), positions=32, eos_token_id=0)
    snapshot = copy.deepcopy(lm.state_dict())
    model = A2C(LMPolicy, env, policy_kwargs={"model": lm}, device="cpu", seed=0)
    assert model.policy.lm is lm
    assert all(torch.equal(lm.state_dict()[key], value) for key, value in snapshot.items())
    # The only new parameters are the value head's.
    lm_params = {id(p) for p in lm.parameters()}
    new = [name for name, p in model.policy.named_parameters() if id(p) not in lm_params]
    assert new == ["model.value_head.weight", "model.value_head.bias"]


def test_bad_construction_arguments_are_refused(tokenizer):
    env = make_env(tokenizer)
    lm = tiny_gpt2(len(tokenizer), positions=32, eos_token_id=0)
    with pytest.raises(ValueError, match="ortho_init=True"):
        PPO(LMPolicy, env, policy_kwargs={"model": lm, "ortho_init": True}, device="cpu")
    with pytest.raises(TypeError, match="needs a model"):
        PPO(LMPolicy, env, device="cpu")
    with pytest.raises(TypeError, match="policy must be"):
        make_policy(env, 123)
    with pytest.raises(TypeError, match="Dict"):
        LMPolicy(spaces.Box(0, 10, shape=(4,)), env.action_space, lambda _: 1e-4, model=lm)
    with pytest.raises(ValueError, match=f"{len(tokenizer) + 3} tokens"):
        LMPolicy(env.observation_space, spaces.Discrete(len(tokenizer) + 3), lambda _: 1e-4, model=lm)


def test_seeded_ppo_learns_a_trivially_solvable_task(tokenizer):
    vocab = len(tokenizer)
    target = torch.zeros(vocab, dtype=torch.bool)
    target[torch.randperm(vocab, generator=torch.Generator().manual_seed(0))[: vocab // 4]] = True
    env = make_env(tokenizer, reward=TargetTokens(target), max_new_tokens=1)
    model = PPO(
        LMPolicy,
        env,
        policy_kwargs={"model": tiny_gpt2(vocab, positions=32, eos_token_id=0)},
        n_steps=64,
        batch_size=32,
        n_epochs=4,
        learning_rate=1e-2,
        gamma=1.0,
        ent_coef=0.0,
        device="cpu",
        seed=0,
    )

    def target_mass() -> float:
        obs_tensor, _ = model.policy.obs_to_tensor(collect_observations(env, n_steps=(0,)))
        with torch.no_grad():
            probs = model.policy.get_distribution(obs_tensor).distribution.probs
        return float(probs[:, target].sum(-1).mean())

    before = target_mass()
    model.learn(512)
    after = target_mass()
    assert before == pytest.approx(0.25, abs=0.05)
    assert after > 0.6, (before, after)
    # The last rollouts' returns (sampled before the final updates) are well above chance (0.25).
    assert np.mean([info["r"] for info in model.ep_info_buffer]) > 0.4


def test_kl_penalty_bound_to_the_sb3_policy_uses_its_current_log_probs(tokenizer):
    lm = tiny_gpt2(len(tokenizer), positions=32, eos_token_id=0)
    reference = copy.deepcopy(lm)
    kl = KLPenalty(reference, coef=1.0, estimator="k1")
    env = make_env(tokenizer, reward=kl)
    model = PPO(
        LMPolicy,
        env,
        policy_kwargs={"model": lm},
        n_steps=16,
        batch_size=16,
        learning_rate=1e-2,
        device="cpu",
    )
    assert bind_kl(env, model) == [kl]
    assert kl.policy is model.policy.lm

    def step_and_check() -> float:
        obs, _ = env.reset(options={"prompt": PROMPTS[1]})
        obs, *_ = env.step(5)  # one generated token, so the policy's cache has something to follow
        obs_tensor, _ = model.policy.obs_to_tensor(obs)
        with torch.no_grad():
            policy_logp = model.policy.get_distribution(obs_tensor).distribution.logits[0]
            prefix = torch.as_tensor(obs["input_ids"][obs["attention_mask"] == 1])[None]
            reference_logp = torch.log_softmax(reference(prefix).logits[0, -1], -1)
        action = 7
        _, reward, *_ = env.step(action)
        expected = float(policy_logp[action] - reference_logp[action])
        assert float(kl.last_kl[0]) == pytest.approx(expected, abs=1e-4)
        assert reward == pytest.approx(-expected, abs=1e-4)
        return expected

    assert step_and_check() == pytest.approx(0.0, abs=1e-5)  # policy == reference
    model.learn(32)  # optimizer steps change the policy in place; the penalty must follow
    assert abs(step_and_check()) > 1e-3


def test_kl_binding_covers_vectorised_envs_and_reports_missing_terms(tokenizer):
    lm = tiny_gpt2(len(tokenizer), positions=32, eos_token_id=0)
    venv = make_vec_env(lambda: make_env(tokenizer, reward=KLPenalty(lm, coef=0.1)), n_envs=2)
    model = PPO(LMPolicy, venv, policy_kwargs={"model": lm}, n_steps=8, batch_size=16, device="cpu")
    terms = bind_kl(venv, model)
    assert len(terms) == 2 and terms[0] is not terms[1]
    assert all(term.policy is lm for term in find_kl_penalties(venv))
    model.learn(16)
    assert all(float(term.last_kl.abs().max()) == 0.0 for term in terms)  # policy is the reference
    with pytest.raises(ValueError, match="no KLPenalty"):
        bind_kl(make_env(tokenizer), model)
    assert bind_kl(make_env(tokenizer), model, required=False) == []
    with pytest.raises(TypeError, match="cannot find a causal LM"):
        bind_kl(venv, object())


def test_make_vec_env_and_save_load_round_trip(tokenizer, tmp_path):
    venv = make_vec_env(lambda: make_env(tokenizer), n_envs=2, seed=0)
    model = PPO(
        LMPolicy,
        venv,
        policy_kwargs={"model": assets.path("tiny-lm")},
        n_steps=16,
        batch_size=16,
        n_epochs=1,
        device="cpu",
        seed=0,
    )
    model.learn(32)
    model.save(tmp_path / "ppo")
    loaded = PPO.load(tmp_path / "ppo", device="cpu")
    state, loaded_state = model.policy.state_dict(), loaded.policy.state_dict()
    assert state.keys() == loaded_state.keys()
    assert all(torch.equal(value, loaded_state[key]) for key, value in state.items())
    obs = venv.reset()
    assert np.array_equal(
        model.predict(obs, deterministic=True)[0], loaded.predict(obs, deterministic=True)[0]
    )
