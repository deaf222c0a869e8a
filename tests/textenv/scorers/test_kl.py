"""KLPenalty: the KV-cached per-token values equal a full-sequence computation, in every mode."""

from __future__ import annotations

import copy
import warnings

import numpy as np
import pytest
import torch

from tests.builders import tiny_gpt2
from textenv.core import TextGenCore
from textenv.lm import left_padded_positions
from textenv.options import TextOptions
from textenv.scorers import KLPenalty, ScorerError, kl_per_token

PROMPTS = ["The movie was", "I watched this film and", "The acting in this sequel", "Even the", "It"]
ESTIMATORS = ["k1", "k3", "full"]
ROWS = 3


@pytest.fixture(scope="module")
def policy(tiny_lm):
    """A random GPT-2 over the built-in vocabulary: a policy that differs from the reference."""
    return tiny_gpt2(tiny_lm.config.vocab_size, width=64, positions=128, eos_token_id=0)


def make_core(tokenizer, kl, *, num_rows=ROWS, T=5):
    return TextGenCore(
        TextOptions(tokenizer=tokenizer, prompts=PROMPTS, reward=kl, max_new_tokens=T), num_rows=num_rows
    )


@torch.no_grad()
def full_logprobs(model, core, row):
    """(L, V) log-probs of the next token at every position: one forward of prompt + generated tokens."""
    ids, mask = core.input_ids[row : row + 1], core.attention_mask[row : row + 1]
    logits = model(input_ids=ids, attention_mask=mask, position_ids=left_padded_positions(mask)).logits
    return torch.log_softmax(logits[0].float(), -1)


def expected_rewards(estimator, policy, reference, core, row, coef):
    """-coef * KL of each generated token of ``row``, from full forwards of both models."""
    lp, lq = full_logprobs(policy, core, row), full_logprobs(reference, core, row)
    P, n = core.max_prompt_tokens, int(core.num_generated[row])
    out = []
    for t in range(n):
        pos, a = P + t - 1, core.input_ids[row, P + t]
        if estimator == "full":
            kl = kl_per_token("full", lp[pos : pos + 1], lq[pos : pos + 1])
        else:
            kl = kl_per_token(estimator, lp[pos, a].view(1), lq[pos, a].view(1))
        out.append(-coef * float(kl))
    return out


def drive(core, kl, steps, *, seed=0, hand_over=None, policy=None, check=None):
    """Steps all rows with random actions; rows idle on some steps and restart when they finish.

    Row 1 only acts on even steps, so rows reach their ends (and reset) at different times.
    ``hand_over(step) -> bool`` says on which steps the test hands the policy's log-probs over
    (computed by a full forward of ``policy``) instead of letting the scorer run its bound policy.
    ``check(row, rewards)`` is called with the per-token rewards of every finished episode.
    """
    g = torch.Generator().manual_seed(seed)
    B = core.num_rows
    core.reset_rows(list(range(B)), list(range(B)))
    rewards = {r: [] for r in range(B)}
    next_prompt = B
    for step in range(steps):
        active = torch.tensor([r != 1 or step % 2 == 0 for r in range(B)])
        actions = torch.randint(2, core.spec.vocab_size, (B,), generator=g)
        if hand_over is not None and hand_over(step):
            kl.set_policy_logprobs(handed_logprobs(policy, core, actions, full=kl.estimator == "full"))
        out = core.step(actions, active)
        for r in range(B):
            if active[r]:
                rewards[r].append(float(out.rewards[r]))
        for r, info in out.infos.items():
            assert info["reward_terms"]["kl"] == pytest.approx(sum(rewards[r]), abs=1e-12)
            if check is not None:
                check(r, rewards[r])
            rewards[r] = []
            core.reset_rows([r], [next_prompt % len(PROMPTS)])
            next_prompt += 1
    return next_prompt - B  # finished episodes


@torch.no_grad()
def handed_logprobs(policy, core, actions, *, full):
    """What an agent hands over: the policy's log-probs at each row's current state (full forward)."""
    rows = []
    for r in range(core.num_rows):
        lp = full_logprobs(policy, core, r)
        pos = core.max_prompt_tokens + int(core.num_generated[r]) - 1
        rows.append(lp[pos] if full else lp[pos, actions[r]])
    return torch.stack(rows)


@pytest.mark.parametrize("estimator", ESTIMATORS)
def test_incremental_values_equal_full_sequence_computation(tokenizer, tiny_lm, policy, estimator):
    kl = KLPenalty(tiny_lm, coef=0.7, estimator=estimator, policy=policy)
    core = make_core(tokenizer, kl)

    def check(row, rewards):
        expected = expected_rewards(estimator, policy, tiny_lm, core, row, 0.7)
        np.testing.assert_allclose(rewards, expected, rtol=1e-4, atol=1e-5)
        assert all(r < 0 for r in rewards) if estimator != "k1" else any(r != 0 for r in rewards)

    assert drive(core, kl, steps=16, check=check) >= 6


@pytest.mark.parametrize("estimator", ESTIMATORS)
def test_zero_when_policy_is_reference(tokenizer, tiny_lm, estimator):
    kl = KLPenalty(tiny_lm, estimator=estimator, policy=tiny_lm)
    core = make_core(tokenizer, kl)
    drive(
        core,
        kl,
        steps=10,
        check=lambda row, rewards: rewards == [0.0] * len(rewards) or pytest.fail(str(rewards)),
    )
    # A separate copy of the same weights runs its own cache and agrees to float precision.
    kl = KLPenalty(tiny_lm, estimator=estimator, policy=copy.deepcopy(tiny_lm))
    core = make_core(tokenizer, kl)
    drive(core, kl, steps=10, check=lambda row, rewards: np.testing.assert_allclose(rewards, 0, atol=1e-5))


@pytest.mark.parametrize("estimator", ESTIMATORS)
def test_handed_logprobs_equal_the_bound_policy(tokenizer, tiny_lm, policy, estimator):
    episodes = {}
    for mode in ("bound", "handed", "mixed"):
        kl = KLPenalty(tiny_lm, coef=0.3, estimator=estimator, policy=None if mode == "handed" else policy)
        core = make_core(tokenizer, kl)
        # "mixed" hands over on the first steps only: the bound policy's cache is rebuilt when it takes over.
        hand_over = {"bound": None, "handed": lambda s: True, "mixed": lambda s: s < 5}[mode]
        episodes[mode] = found = []
        drive(
            core,
            kl,
            steps=14,
            seed=3,
            hand_over=hand_over,
            policy=policy,
            check=lambda r, x, f=found: f.append(x),
        )
    for mode in ("handed", "mixed"):
        assert len(episodes[mode]) == len(episodes["bound"])
        for a, b in zip(episodes[mode], episodes["bound"]):
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def test_full_vocabulary_logprobs_work_for_k1(tokenizer, tiny_lm, policy):
    # A (B, V) hand-over serves the action estimators too: the scorer picks each row's action.
    results = []
    for full in (False, True):
        kl = KLPenalty(tiny_lm, estimator="k1")
        core = make_core(tokenizer, kl)
        core.reset_rows(list(range(ROWS)), list(range(ROWS)))
        actions = torch.tensor([5, 6, 7])
        kl.set_policy_logprobs(handed_logprobs(policy, core, actions, full=full))
        results.append(core.step(actions, torch.ones(ROWS, dtype=torch.bool)).rewards)
    np.testing.assert_allclose(results[0], results[1], atol=1e-6)


def test_policy_weight_update_rebuilds_the_cache(tokenizer, tiny_lm):
    policy = tiny_gpt2(tiny_lm.config.vocab_size, seed=5, width=64, positions=128, eos_token_id=0)
    kl = KLPenalty(tiny_lm, estimator="k1", policy=policy)
    core = make_core(tokenizer, kl, num_rows=2, T=6)
    core.reset_rows([0, 1], [0, 1])
    got = []
    for step in range(6):
        if step == 3:  # an optimizer step in the middle of the episodes
            with torch.no_grad():
                for p in policy.parameters():
                    p.add_(0.05 * torch.randn_like(p))
        out = core.step(torch.tensor([10 + step, 20 + step]), torch.ones(2, dtype=torch.bool))
        got.append(out.rewards)
    got = np.array(got)  # (T, 2)
    for row in range(2):
        # Tokens after the update were judged by the new weights over the whole prefix.
        expected = expected_rewards("k1", policy, tiny_lm, core, row, kl.coef)
        np.testing.assert_allclose(got[3:, row], expected[3:], rtol=1e-4, atol=1e-5)


def test_unbound_is_a_clear_error_and_the_next_reset_works(tokenizer, tiny_lm, policy):
    kl = KLPenalty(tiny_lm)
    core = make_core(tokenizer, kl, num_rows=1)
    core.reset_rows([0], [0])
    with pytest.raises(ScorerError, match=r"set_policy_logprobs.*kl\.bind\(model\)"):
        core.step(torch.tensor([5]), torch.ones(1, dtype=torch.bool))
    kl.bind(policy)
    core.reset_rows([0], [1])
    out = core.step(torch.tensor([5]), torch.ones(1, dtype=torch.bool))
    assert np.isfinite(out.rewards).all() and out.rewards[0] != 0


def test_if_unbound_zero_warns_once(tokenizer, tiny_lm):
    kl = KLPenalty(tiny_lm, if_unbound="zero")
    core = make_core(tokenizer, kl, num_rows=1)
    core.reset_rows([0], [0])
    with pytest.warns(UserWarning, match="no policy log-probs"):
        assert core.step(torch.tensor([5]), torch.ones(1, dtype=torch.bool)).rewards[0] == 0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        core.step(torch.tensor([6]), torch.ones(1, dtype=torch.bool))


def test_coef_is_a_plain_mutable_attribute(tokenizer, tiny_lm, policy):
    values = []
    for coef in (0.1, 0.4):
        kl = KLPenalty(tiny_lm, coef=0.1, estimator="k3", policy=policy)
        core = make_core(tokenizer, kl, num_rows=1)
        kl.coef = coef  # what a KL controller does between rollouts
        core.reset_rows([0], [0])
        values.append(core.step(torch.tensor([7]), torch.ones(1, dtype=torch.bool)).rewards[0])
        assert kl.last_kl[0] == pytest.approx(-values[-1] / coef)
    assert values[1] == pytest.approx(4 * values[0])


def test_binds_the_lm_of_a_value_head_model(tiny_lm, policy):
    from agents import CausalLMWithValueHead

    assert KLPenalty(tiny_lm).bind(CausalLMWithValueHead(policy)).policy is policy


def test_vocabulary_mismatch_is_refused(tokenizer, tiny_lm):
    small = tiny_gpt2(100, width=64, positions=128, eos_token_id=0)
    with pytest.raises(ValueError, match=r"has 100 logits but the env's action space has vocab_size="):
        make_core(tokenizer, KLPenalty(small))
    kl = KLPenalty(tiny_lm)
    make_core(tokenizer, kl)
    with pytest.raises(ValueError, match=r"policy .* has 100 logits"):
        kl.bind(small)


def test_bad_hand_over_and_arguments(tokenizer, tiny_lm):
    kl = KLPenalty(tiny_lm, estimator="full")
    core = make_core(tokenizer, kl)
    with pytest.raises(ValueError, match=r"estimator='full' needs"):
        kl.set_policy_logprobs(torch.zeros(ROWS))
    with pytest.raises(ValueError, match=r"expects \(3,\)"):
        kl.set_policy_logprobs(torch.zeros(2))
    kl = KLPenalty(tiny_lm, estimator="k1")
    core = make_core(tokenizer, kl)
    core.reset_rows(list(range(ROWS)), list(range(ROWS)))
    kl.set_policy_logprobs([0.0, float("nan"), -1.0])
    with pytest.raises(ScorerError, match=r"KL nan for row 1 \(prompt 'I watched this film and'"):
        core.step(torch.tensor([5, 6, 7]), torch.ones(ROWS, dtype=torch.bool))
    with pytest.raises(ValueError, match="already attached"):
        make_core(tokenizer, kl)
    with pytest.raises(ValueError, match="estimator"):
        KLPenalty(tiny_lm, estimator="k2")
    with pytest.raises(TypeError, match="coef"):
        KLPenalty(tiny_lm, coef="0.1")


def test_single_env_hand_over_accepts_a_float(tokenizer, tiny_lm):
    from textenv import TextGenEnv

    kl = KLPenalty(tiny_lm, coef=1.0)
    env = TextGenEnv(tokenizer=tokenizer, prompts=PROMPTS, reward=kl)
    env.reset(seed=0)
    kl.set_policy_logprobs(-2.0)  # log p of the action the next step takes
    _, reward, *_ = env.step(11)
    logq = full_logprobs(tiny_lm, env.core, 0)[env.max_prompt_tokens - 1, 11]
    assert reward == pytest.approx(-(-2.0 - float(logq)), abs=1e-5)


@pytest.mark.parametrize("estimator", ESTIMATORS)
def test_env_kl_channel_hands_logprobs_to_the_terms_and_returns_the_kl_in_info(
    tokenizer, tiny_lm, policy, estimator
):
    """env.unwrapped.set_policy_logprobs(...) reaches every KLPenalty term; info["kl"] is their KL."""
    from textenv import TextGenEnv
    from textenv.vector import TextGenVectorEnv

    g = torch.Generator().manual_seed(0)
    vocab = tiny_lm.config.vocab_size
    kls = [
        KLPenalty(tiny_lm, coef=0.5, estimator=estimator),
        KLPenalty(tiny_lm, coef=0.5, estimator=estimator, name="kl2"),
    ]
    vec = TextGenVectorEnv(
        num_envs=2, tokenizer=tokenizer, prompts=PROMPTS, reward=kls[0] + kls[1], max_new_tokens=4
    )
    single = TextGenEnv(
        tokenizer=tokenizer,
        prompts=PROMPTS,
        reward=KLPenalty(tiny_lm, coef=0.5, estimator=estimator),
        max_new_tokens=4,
    )
    assert vec.kl_penalties == kls and len(single.unwrapped.kl_penalties) == 1
    vec.reset(options={"prompt_index": [0, 1]})
    single.reset(options={"prompt_index": 0})
    for _ in range(3):
        actions = torch.randint(2, vocab, (2,), generator=g)
        logp_all = torch.log_softmax(torch.randn(2, vocab, generator=g), -1)  # (B, V) any policy
        vec.set_policy_logprobs(logp_all)
        _, rewards, _, _, info = vec.step(actions)
        single.unwrapped.set_policy_logprobs(logp_all[:1])
        _, reward, _, _, single_info = single.step(int(actions[0]))
        expected = [float(k.last_kl[r]) for k in kls for r in range(2)]
        assert info["kl"].tolist() == pytest.approx([expected[0] + expected[2], expected[1] + expected[3]])
        assert info["_kl"].all() and rewards == pytest.approx(-0.5 * info["kl"])
        assert single_info["kl"] == pytest.approx(info["kl"][0] / 2) and reward == pytest.approx(
            -0.5 * single_info["kl"]
        )


def test_env_kl_channel_without_a_kl_term_is_a_clear_error(tokenizer):
    from textenv import TextGenEnv

    env = TextGenEnv(tokenizer=tokenizer, prompts=PROMPTS, reward=lambda p, t, r, m: 0.0)
    env.reset(seed=0)
    assert env.kl_penalties == []
    with pytest.raises(ValueError, match="no KLPenalty term"):
        env.set_policy_logprobs(torch.zeros(1))
    assert "kl" not in env.step(3)[4]


@pytest.mark.parametrize("estimator", ["k1", "k3"])
def test_deferred_steps_give_zero_and_the_reference_follows_again_after(
    tokenizer, tiny_lm, policy, estimator
):
    # An agent that scores whole episodes itself (one batched reference forward) takes steps inside
    # deferred(); rows still running afterwards are re-read, so the next steps' values are exact again.
    kl = KLPenalty(tiny_lm, coef=0.7, estimator=estimator, policy=policy)
    core = make_core(tokenizer, kl, T=8)
    g = torch.Generator().manual_seed(0)
    active = torch.ones(ROWS, dtype=torch.bool)

    def step():
        out = core.step(torch.randint(2, core.spec.vocab_size, (ROWS,), generator=g), active)
        assert not out.infos  # no row ends within these 6 steps (no EOS drawn, T=8)
        return out.rewards

    calls = []
    handle = tiny_lm.register_forward_hook(lambda *args: calls.append(1))
    with kl.deferred():
        assert kl.is_deferred
        core.reset_rows(list(range(ROWS)), list(range(ROWS)))
        inside = [step() for _ in range(3)]
    assert not kl.is_deferred and calls == []  # the reference never ran inside
    after = [step() for _ in range(3)]
    handle.remove()
    assert all(float(np.abs(r).max()) == 0.0 for r in inside)
    for r in range(ROWS):
        expected = expected_rewards(estimator, policy, tiny_lm, core, r, 0.7)
        np.testing.assert_allclose([float(x[r]) for x in after], expected[3:6], rtol=1e-4, atol=1e-5)


def test_deferred_refuses_the_full_estimator(tokenizer, tiny_lm, policy):
    kl = KLPenalty(tiny_lm, estimator="full", policy=policy)
    with pytest.raises(ValueError, match="'full' needs the policy's whole"), kl.deferred():
        pass
    assert not kl.is_deferred


def run_episodes(core, steps, *, policy, seed=0):
    """Steps every row with random actions (handing the policy's log-probs over) until all have ended;
    returns the final observations, the handed (N, T) log-prob of each token and the per-step rewards."""
    g = torch.Generator().manual_seed(seed)
    B, T = core.num_rows, core.max_new_tokens
    core.reset_rows(list(range(B)), list(range(B)))
    logprobs = torch.zeros(B, T)
    rewards = torch.zeros(B, T, dtype=torch.float64)
    final = [None] * B
    for t in range(steps):
        active = ~core.done
        actions = torch.randint(2, core.spec.vocab_size, (B,), generator=g)
        handed = handed_logprobs(policy, core, actions, full=False)
        for kl in core.kl_terms:
            kl.set_policy_logprobs(handed)
        out = core.step(actions, active)
        logprobs[active, t] = handed[active].float()
        rewards[active, t] = torch.as_tensor(out.rewards)[active]
        for r in out.infos:
            final[r] = (core.input_ids[r].clone(), core.attention_mask[r].clone())
        if bool(core.done.all()):
            break
    ids = torch.stack([f[0] for f in final])
    mask = torch.stack([f[1] for f in final])
    return ids, mask, logprobs, rewards


@pytest.mark.parametrize("estimator", ["k1", "k3"])
def test_score_episodes_equals_the_per_step_path(tokenizer, tiny_lm, policy, estimator):
    # The term's own after-the-episodes operation gives the rewards its steps give, token by token.
    kl = KLPenalty(tiny_lm, coef=0.7, estimator=estimator)
    core = make_core(tokenizer, kl, T=6)
    ids, mask, logprobs, step_rewards = run_episodes(core, 6, policy=policy)
    scored = kl.score_episodes(ids, mask, logprobs, batch_size=2)
    torch.testing.assert_close(scored.rewards, step_rewards, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(scored.rewards, -0.7 * scored.kl)
    assert float(scored.kl.abs().max()) > 0.01
    # A policy mask leaves the other tokens out of the KL (a multi-turn env's inserted replies),
    # while the reference still reads them: the kept tokens' values do not change.
    policy_mask = torch.zeros_like(logprobs, dtype=torch.bool)
    policy_mask[:, 1::2] = True
    masked = kl.score_episodes(ids, mask, logprobs, policy_mask)
    assert torch.all(masked.kl[~policy_mask] == 0)
    torch.testing.assert_close(masked.kl[policy_mask], scored.kl[policy_mask])


def test_env_defer_kl_scores_every_weighted_term_after_the_episodes(tokenizer, tiny_lm, policy):
    from textenv.scorers import Callable

    first, second = KLPenalty(tiny_lm, coef=0.5), KLPenalty(tiny_lm, coef=0.2, estimator="k3")
    reward = Callable(lambda p, t, r, m: 1.0) + 2.0 * first + second
    core = make_core(tokenizer, reward, T=5)
    per_step = run_episodes(core, 5, policy=policy)
    calls = []
    handle = tiny_lm.register_forward_hook(lambda *args: calls.append(1))
    with core.defer_kl() as deferred:
        ids, mask, logprobs, inside = run_episodes(core, 5, policy=policy)
    handle.remove()
    assert calls == []  # no reference step ran inside
    # Inside, the steps gave the terminal term only; scored afterwards, the sum is the per-step path's.
    scored = deferred.score(ids, mask, logprobs)
    torch.testing.assert_close(inside + scored.rewards, per_step[3], rtol=1e-5, atol=1e-6)
    assert set(scored.terms) == {"kl", "kl_2"}
    torch.testing.assert_close(
        scored.terms["kl"], -2.0 * 0.5 * first.score_episodes(ids, mask, logprobs).kl.sum(1)
    )


def test_score_episodes_refuses_bad_input(tokenizer, tiny_lm):
    kl = KLPenalty(tiny_lm, coef=0.1)
    make_core(tokenizer, kl)
    ids = torch.ones(2, 8, dtype=torch.long)
    with pytest.raises(ValueError, match=r"logprobs must be \(N, T\)"):
        kl.score_episodes(ids, torch.ones_like(ids), torch.zeros(3, 4))
    with pytest.raises(ValueError, match="policy_mask must be"):
        kl.score_episodes(ids, torch.ones_like(ids), torch.zeros(2, 4), torch.ones(2, 3, dtype=torch.bool))
    with pytest.raises(ValueError, match="not 'full'"):
        KLPenalty(tiny_lm, estimator="full").score_episodes(ids, torch.ones_like(ids), torch.zeros(2, 4))


def test_handed_logprobs_belong_to_one_step_of_one_episode(tokenizer, tiny_lm):
    # Handed over, then a reset: the next episode's first step must not use them (if_unbound="error").
    kl = KLPenalty(tiny_lm, coef=0.1)
    core = make_core(tokenizer, kl, num_rows=1)
    core.reset_rows([0], [0])
    kl.set_policy_logprobs(torch.full((1,), -1.0))
    core.reset_rows([0], [1])
    with pytest.raises(ScorerError, match="no policy log-probs"):
        core.step(torch.tensor([5]), torch.ones(1, dtype=torch.bool))


def test_logits_are_not_logprobs(tokenizer, tiny_lm):
    kl = KLPenalty(tiny_lm, coef=0.1)
    core = make_core(tokenizer, kl, num_rows=2)
    core.reset_rows([0, 1], [0, 1])
    V = core.spec.vocab_size
    logits = torch.randn(2, V)
    with pytest.raises(ValueError, match=r"row 0 has logsumexp .*not 0.*log_softmax"):
        kl.set_policy_logprobs(logits - logits.max())  # all <= 0 but not normalised
    with pytest.raises(ValueError, match=r"> 0; expected log-probabilities"):
        kl.set_policy_logprobs(torch.tensor([0.5, -1.0]))
    with pytest.raises(TypeError, match="floating-point"):
        kl.set_policy_logprobs(torch.zeros(2, dtype=torch.long))
    kl.set_policy_logprobs(torch.log_softmax(logits, -1))  # normalised rows pass, -inf entries too
    filtered = torch.log_softmax(logits.masked_fill(logits < 0, float("-inf")), -1)
    kl.set_policy_logprobs(filtered)
