"""The shared critic-free update (agents/common/policy_gradient.py): loss aggregations on ragged lengths,
clipping, sequence-level ratios and the k3 reference KL against hand-computed values; group sampling,
determinism and exact resume of every critic-free algorithm; the loop's input validation."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from agents import GRPO, REINFORCE, RLOO, GRPOConfig, REINFORCEConfig, RLOOConfig
from agents.common import checkpoint as ckpt
from agents.common.buffers import TrainBatch
from agents.common.losses import aggregate_loss, policy_gradient_loss
from agents.common.on_policy import TIME_METRICS
from tests.agents.algos import ALGOS, make_algo, make_env

RAGGED_MASK = torch.tensor([[True, True, True], [True, False, False]])


def comparable(rows: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k not in TIME_METRICS} for r in rows]


# --- losses ----------------------------------------------------------------------------------------
def test_three_aggregations_on_ragged_lengths():
    per_token = torch.tensor([[1.0, 2.0, 3.0], [4.0, 99.0, -99.0]])  # padding must not count
    assert float(aggregate_loss(per_token, RAGGED_MASK, "grpo", 5)) == pytest.approx((2.0 + 4.0) / 2)
    assert float(aggregate_loss(per_token, RAGGED_MASK, "dapo", 5)) == pytest.approx(10.0 / 4)
    assert float(aggregate_loss(per_token, RAGGED_MASK, "dr_grpo", 5)) == pytest.approx(10.0 / (2 * 5))
    with pytest.raises(ValueError, match="loss_type"):
        aggregate_loss(per_token, RAGGED_MASK, "mean", 5)


def test_token_ratios_are_clipped_asymmetrically_in_the_advantages_direction():
    new = torch.log(torch.tensor([[1.5, 1.5, 0.5, 1.1]])).requires_grad_()
    old = torch.zeros(1, 4)
    adv = torch.tensor([[1.0, -1.0, -1.0, 1.0]])
    mask = torch.ones(1, 4, dtype=torch.bool)
    loss, stats = policy_gradient_loss(
        new, old, adv, mask, clip_range=0.2, clip_range_high=0.28, loss_type="dapo"
    )
    # A > 0: min(1.5, 1.28) -> -1.28; A < 0: -min(-1.5, -1.28) = 1.5; ratio 0.5, A < 0: clipped to 0.8 -> 0.8;
    # 1.1 inside the range -> -1.1.
    assert float(loss.detach()) == pytest.approx((-1.28 + 1.5 + 0.8 - 1.1) / 4)
    assert float(stats["clipfrac"]) == pytest.approx(3 / 4)
    loss.backward()
    # Clipped tokens get no gradient; the others -A * ratio / 4.
    torch.testing.assert_close(new.grad, torch.tensor([[0.0, 1.5 / 4, 0.0, -1.1 / 4]]))


def test_sequence_level_ratio_is_the_length_normalised_product_gspo():
    new = torch.log(torch.tensor([[1.1, 1.3, 7.0], [0.9, 5.0, 5.0]])).requires_grad_()
    old = torch.zeros(2, 3)
    adv = torch.tensor([[1.0, 1.0, 1.0], [2.0, 2.0, 2.0]])
    mask = torch.tensor([[True, True, False], [True, False, False]])  # lengths 2 and 1
    loss, _ = policy_gradient_loss(
        new, old, adv, mask, clip_range=0.2, loss_type="grpo", importance_sampling_level="sequence"
    )
    r0 = math.sqrt(1.1 * 1.3)  # exp(mean(log 1.1, log 1.3)) = 1.1958, inside [0.8, 1.2]
    assert float(loss.detach()) == pytest.approx((-r0 * 1.0 + -0.9 * 2.0) / 2)
    loss.backward()
    # d/d new_t of -r0 (grpo: mean over the row's 2 tokens, then over 2 rows): every token of the sequence
    # gets the sequence's ratio, not its own.
    torch.testing.assert_close(
        new.grad, torch.tensor([[-r0 / 2 / 2, -r0 / 2 / 2, 0.0], [-0.9 * 2 / 2, 0.0, 0.0]])
    )
    token_loss, _ = policy_gradient_loss(new.detach(), old, adv, mask, clip_range=0.2)
    assert float(token_loss) != pytest.approx(float(loss.detach()))


def test_beta_adds_the_k3_kl_to_the_reference():
    new = torch.log(torch.tensor([[0.5, 0.5]]))
    ref = torch.log(torch.tensor([[0.25, 0.5]]))
    mask = torch.tensor([[True, True]])
    loss, stats = policy_gradient_loss(
        new, new, torch.zeros(1, 2), mask, clip_range=0.2, loss_type="dapo", ref_logprobs=ref, beta=0.1
    )
    k3 = 0.5 - math.log(0.5) - 1.0  # exp(d) - d - 1 with d = log(0.25 / 0.5)
    assert float(stats["kl_ref"]) == pytest.approx(k3 / 2)
    assert float(loss.detach()) == pytest.approx(0.1 * k3 / 2)
    with pytest.raises(ValueError, match="ref_logprobs"):
        policy_gradient_loss(new, new, torch.zeros(1, 2), mask, clip_range=0.2, beta=0.1)


# --- configs -----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("config_cls", "field", "value", "error"),
    [
        (GRPOConfig, "group_size", 1, ValueError),
        (GRPOConfig, "group_size", 3, ValueError),  # does not divide episodes_per_iteration=16
        (RLOOConfig, "group_size", 1, ValueError),
        (GRPOConfig, "loss_type", "bnpo", ValueError),
        (GRPOConfig, "importance_sampling_level", "word", ValueError),
        (GRPOConfig, "clip_range_high", 0.0, ValueError),
        (GRPOConfig, "beta", -0.1, ValueError),
        (GRPOConfig, "num_iterations", 0, ValueError),
        (GRPOConfig, "scale_rewards", 1, TypeError),
        (REINFORCEConfig, "baseline", "mean", ValueError),
        (RLOOConfig, "minibatch_size", 5, ValueError),
    ],
)
def test_bad_critic_free_config_values_name_the_field(config_cls, field, value, error):
    with pytest.raises(error, match=field):
        config_cls(**{field: value})


def test_critic_free_algorithms_build_no_value_head_and_refuse_other_configs():
    agent = make_algo("grpo")
    assert not agent.policy.has_value_head and agent.policy.model is agent.lm
    batch = agent.collect_rollout()
    assert agent.evaluate_batch(TrainBatch.from_rollout(batch)).values is None
    assert not any("value_head" in name for name, _ in agent.policy.named_parameters())
    with pytest.raises(TypeError, match="GRPOConfig"):
        GRPO(agent.lm, make_env(), RLOOConfig(episodes_per_iteration=8))


# --- group sampling, determinism, resume ----------------------------------------------------------------
def test_group_rows_share_their_prompt_and_seeded_runs_reproduce():
    a, b = make_algo("grpo", group_size=4), make_algo("grpo", group_size=4)
    first = a.collect_rollout()
    groups = np.asarray(first.prompts).reshape(-1, 4)
    assert all(len(set(g)) == 1 for g in groups), groups
    assert (
        first.prompt_indices is not None
        and (first.prompt_indices.reshape(-1, 4) == first.prompt_indices[::4, None]).all()
    )
    # Within a group the completions differ (sampled independently), and the two groups' prompts are drawn.
    assert len({tuple(t) for t in first.tokens[:4].tolist()}) > 1
    again = b.collect_rollout()
    assert torch.equal(first.tokens, again.tokens) and first.prompts == again.prompts
    assert comparable([a.train_iteration()]) == comparable([b.train_iteration()])


@pytest.mark.parametrize("name", sorted(ALGOS))
def test_resumed_run_equals_uninterrupted_run(tmp_path, name):
    config = {"checkpoint_interval": 0, "num_iterations": 2, "minibatch_size": 4}
    if name == "grpo":
        config["beta"] = 0.05  # the reference model travels with the checkpoint
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
    loaded = type(full).load(tmp_path, env=make_env(kl=True), verbose=0, progress_bar=False)
    assert loaded.config == resumed.config and loaded.iteration == 3


def test_a_checkpoint_loads_only_into_its_own_algorithm(tmp_path):
    make_algo("rloo").save(tmp_path / "c")
    with pytest.raises(ValueError, match="written by 'rloo', not 'grpo'"):
        GRPO.load(tmp_path / "c", env=make_env(), verbose=0, progress_bar=False)
    assert isinstance(RLOO.load(tmp_path / "c", env=make_env(), verbose=0, progress_bar=False), RLOO)
    assert not isinstance(REINFORCE, RLOO)


def test_group_sampling_on_a_single_env_resets_each_episode_to_its_prompt():
    from tests.agents.tiny import PROMPTS, P, T, good_fraction, tiny_tokenizer
    from textenv import TextGenEnv
    from textenv.scorers import Callable

    env = TextGenEnv(
        tokenizer=tiny_tokenizer(),
        prompts=PROMPTS,
        reward=Callable(good_fraction),
        max_prompt_tokens=P,
        max_new_tokens=T,
    )
    agent = make_algo("grpo", env=env, group_size=2, num_envs=1)
    batch = agent.collect_rollout()
    assert [PROMPTS[i] for i in batch.prompt_indices] == batch.prompts  # type: ignore[union-attr]
    assert all(a == b for a, b in zip(batch.prompts[::2], batch.prompts[1::2]))
    assert np.isfinite(agent.train_iteration()["policy_loss"])
