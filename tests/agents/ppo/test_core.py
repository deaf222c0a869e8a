"""Tests of PPO's math (agents.ppo.core: GAE, losses), the shared masked ops and sampling log-probs
(agents.common.stats, agents.common.sampling) and the KL controllers (agents.common.kl)."""

from __future__ import annotations

import math

import pytest
import torch

from agents.common.kl import AdaptiveKLController, FixedKLController, make_kl_controller
from agents.common.sampling import entropy_from_logprobs, logprobs_of, sample, sampling_logprobs
from agents.common.stats import explained_variance, masked_mean, masked_var, masked_whiten
from agents.ppo import PPOConfig
from agents.ppo.core import compute_gae, policy_loss, value_loss


def _prefix_mask(lengths: list[int], T: int) -> torch.Tensor:
    return torch.arange(T)[None, :] < torch.tensor(lengths)[:, None]  # (B, T) bool


# --- masked statistics ------------------------------------------------------------------------------
@pytest.fixture
def data() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(4, 7, generator=g, dtype=torch.float64) * 3 + 1
    mask = _prefix_mask([7, 3, 1, 5], 7)
    x[~mask] = float("nan")  # garbage outside the mask must not leak
    return x, mask


def test_masked_mean_matches_torch_on_selected_entries(data):
    x, mask = data
    torch.testing.assert_close(masked_mean(x, mask), torch.mean(x[mask]))
    torch.testing.assert_close(masked_mean(x, mask.long()), torch.mean(x[mask]))
    per_row = torch.stack([torch.mean(x[i][mask[i]]) for i in range(x.shape[0])])
    torch.testing.assert_close(masked_mean(x, mask, dim=1), per_row)


def test_masked_mean_of_empty_selection_is_zero():
    x = torch.ones(2, 3)
    assert masked_mean(x, torch.zeros(2, 3, dtype=torch.bool)).item() == 0.0


def test_masked_var_matches_torch_on_selected_entries(data):
    x, mask = data
    torch.testing.assert_close(masked_var(x, mask), torch.var(x[mask]))
    torch.testing.assert_close(masked_var(x, mask, unbiased=False), torch.var(x[mask], unbiased=False))


def test_masked_var_rejects_too_few_entries():
    x = torch.ones(1, 3)
    with pytest.raises(ValueError, match="at least 2"):
        masked_var(x, torch.tensor([[True, False, False]]))


def test_masked_whiten_matches_torch_on_selected_entries(data):
    x, mask = data
    w = masked_whiten(x, mask)
    valid = x[mask]
    expected = (valid - valid.mean()) / torch.sqrt(valid.var() + 1e-8)
    torch.testing.assert_close(w[mask], expected)
    assert torch.all(w[~mask] == 0)
    torch.testing.assert_close(w[mask].mean(), torch.tensor(0.0, dtype=x.dtype), atol=1e-12, rtol=0)
    torch.testing.assert_close(w[mask].std(), torch.tensor(1.0, dtype=x.dtype))

    w_keep = masked_whiten(x, mask, shift_mean=False)
    torch.testing.assert_close(w_keep[mask], expected + valid.mean())
    assert torch.all(w_keep[~mask] == 0)


# --- GAE ----------------------------------------------------------------------------------------------
def test_gae_hand_computed():
    # gamma = 0.9, lam = 0.8, so gamma * lam = 0.72.
    # Row 0, 3 valid steps: r = [1, 0, 2], V = [0.5, 1.0, 1.5], V after the last token = 0.
    #   t=2: delta = 2 + 0.9*0   - 1.5 = 0.5    A2 = 0.5
    #   t=1: delta = 0 + 0.9*1.5 - 1.0 = 0.35   A1 = 0.35 + 0.72*0.5  = 0.71
    #   t=0: delta = 1 + 0.9*1.0 - 0.5 = 1.4    A0 = 1.4  + 0.72*0.71 = 1.9112
    #   R = A + V = [2.4112, 1.71, 2.0]
    # Row 1, 2 valid steps (step 2 is padding with garbage r = 99, V = 7):
    #   t=1: delta = 0 + 0.9*0   - 1.0 = -1.0   A1 = -1.0
    #   t=0: delta = 1 + 0.9*1.0 - 0.5 = 1.4    A0 = 1.4 + 0.72*(-1.0) = 0.68
    #   R = [1.18, 0.0, 0]
    rewards = torch.tensor([[1.0, 0.0, 2.0], [1.0, 0.0, 99.0]])
    values = torch.tensor([[0.5, 1.0, 1.5], [0.5, 1.0, 7.0]])
    mask = torch.tensor([[1, 1, 1], [1, 1, 0]])
    adv, ret = compute_gae(rewards, values, mask, gamma=0.9, lam=0.8)
    torch.testing.assert_close(adv, torch.tensor([[1.9112, 0.71, 0.5], [0.68, -1.0, 0.0]]))
    torch.testing.assert_close(ret, torch.tensor([[2.4112, 1.71, 2.0], [1.18, 0.0, 0.0]]))
    assert adv.dtype == torch.float32


def _gae_loop(rewards: list[float], values: list[float], gamma: float, lam: float) -> tuple[list, list]:
    n = len(rewards)
    adv = [0.0] * n
    last = 0.0
    for t in reversed(range(n)):
        next_v = values[t + 1] if t + 1 < n else 0.0
        delta = rewards[t] + gamma * next_v - values[t]
        last = delta + gamma * lam * last
        adv[t] = last
    return adv, [a + v for a, v in zip(adv, values)]


@pytest.mark.parametrize(("gamma", "lam"), [(1.0, 0.95), (0.9, 0.8), (0.99, 0.0), (1.0, 1.0)])
def test_gae_matches_python_loop_on_ragged_rows(gamma, lam):
    g = torch.Generator().manual_seed(1)
    lengths = [6, 1, 4, 0, 3]
    B, T = len(lengths), 6
    rewards = torch.randn(B, T, generator=g, dtype=torch.float64)
    values = torch.randn(B, T, generator=g, dtype=torch.float64)
    mask = _prefix_mask(lengths, T)
    rewards[~mask] = float("nan")
    adv, ret = compute_gae(rewards, values, mask, gamma, lam)
    for i, n in enumerate(lengths):
        exp_adv, exp_ret = _gae_loop(rewards[i, :n].tolist(), values[i, :n].tolist(), gamma, lam)
        torch.testing.assert_close(adv[i, :n], torch.tensor(exp_adv, dtype=torch.float64))
        torch.testing.assert_close(ret[i, :n], torch.tensor(exp_ret, dtype=torch.float64))
        assert torch.all(adv[i, n:] == 0) and torch.all(ret[i, n:] == 0)


def test_gae_lambda_one_gives_discounted_reward_to_go():
    rewards = torch.tensor([[1.0, 2.0, 3.0, 0.0]])
    values = torch.tensor([[0.3, -0.2, 5.0, 0.0]])
    mask = _prefix_mask([3], 4)
    _, ret = compute_gae(rewards, values, mask, gamma=0.5, lam=1.0)
    # reward-to-go: [1 + 0.5*2 + 0.25*3, 2 + 0.5*3, 3] = [2.75, 3.5, 3]
    torch.testing.assert_close(ret, torch.tensor([[2.75, 3.5, 3.0, 0.0]]))


def test_gae_steps_over_the_tokens_outside_the_mask():
    # A multi-turn episode: policy tokens at 0, 1 and 4 (the env's reply at 2, 3). GAE runs from policy
    # token to policy token, hand-computed: deltas with V_next of the next policy token.
    rewards = torch.tensor([[0.0, 0.5, 9.0, 9.0, 1.0, 0.0]])
    values = torch.tensor([[0.2, 0.4, 7.0, 7.0, 0.1, 0.0]])
    mask = torch.tensor([[1, 1, 0, 0, 1, 0]], dtype=torch.bool)
    g, lam = 0.9, 0.5
    d4 = 1.0 - 0.1
    d1 = 0.5 + g * 0.1 - 0.4
    d0 = 0.0 + g * 0.4 - 0.2
    a4 = d4
    a1 = d1 + g * lam * a4
    a0 = d0 + g * lam * a1
    adv, ret = compute_gae(rewards, values, mask, gamma=g, lam=lam)
    torch.testing.assert_close(adv, torch.tensor([[a0, a1, 0.0, 0.0, a4, 0.0]]))
    torch.testing.assert_close(ret, torch.tensor([[a0 + 0.2, a1 + 0.4, 0.0, 0.0, a4 + 0.1, 0.0]]))


def test_gae_rejects_bad_input():
    r = torch.zeros(2, 3)
    with pytest.raises(ValueError, match="gamma"):
        compute_gae(r, r, torch.ones(2, 3), 0.0, 0.95)
    with pytest.raises(ValueError, match="lam"):
        compute_gae(r, r, torch.ones(2, 3), 1.0, 1.5)
    with pytest.raises(ValueError, match=r"\(B, T\)"):
        compute_gae(r, torch.zeros(2, 4), torch.ones(2, 3), 1.0, 0.95)


# --- losses -------------------------------------------------------------------------------------------
def test_policy_loss_hand_computed():
    # clip_range = 0.2, ratio = exp(new - old)
    #   tok0: ratio 1.5, A = +1: max(-1.5, -1.2) = -1.2   (clip active: no gradient)
    #   tok1: ratio 0.5, A = +1: max(-0.5, -0.8) = -0.5   (clip inactive: the ratio is outside but the
    #                                                       unclipped term is the pessimistic one)
    #   tok2: ratio 1.1, A = -2: max( 2.2,  2.2) =  2.2   (inside the range)
    #   tok3: ratio 0.5, A = -1: max( 0.5,  0.8) =  0.8   (clip active: no gradient)
    #   tok4: masked out (garbage -inf log-prob)
    #   loss = (-1.2 - 0.5 + 2.2 + 0.8) / 4 = 0.325
    ratios = [1.5, 0.5, 1.1, 0.5]
    old = torch.tensor([[-1.0, -2.0, -0.5, -3.0, -1.0]])
    new = torch.cat([old[:, :4] + torch.log(torch.tensor([ratios])), torch.tensor([[float("-inf")]])], dim=1)
    new.requires_grad_(True)
    adv = torch.tensor([[1.0, 1.0, -2.0, -1.0, 5.0]])
    mask = torch.tensor([[1, 1, 1, 1, 0]])
    loss, stats = policy_loss(new, old, adv, mask, clip_range=0.2)
    torch.testing.assert_close(loss, torch.tensor(0.325))
    assert stats["clipfrac"].item() == pytest.approx(0.75)  # 1.5, 0.5, 0.5 are outside [0.8, 1.2]
    k3 = sum((r - 1) - math.log(r) for r in ratios) / 4
    k1 = sum(-math.log(r) for r in ratios) / 4
    assert stats["approx_kl"].item() == pytest.approx(k3, rel=1e-5)
    assert stats["approx_kl_k1"].item() == pytest.approx(k1, rel=1e-5)
    assert not stats["approx_kl"].requires_grad

    loss.backward()
    # d loss / d new_t = -A_t * ratio_t / 4 where the unclipped term is used, else 0.
    torch.testing.assert_close(new.grad, torch.tensor([[0.0, -0.5 / 4, 2.0 * 1.1 / 4, 0.0, 0.0]]))


def test_policy_loss_without_change_is_minus_mean_advantage():
    logp = torch.tensor([[-1.0, -2.0, -3.0]])
    adv = torch.tensor([[1.0, -3.0, 0.5]])
    loss, stats = policy_loss(logp, logp, adv, torch.ones(1, 3), clip_range=0.2)
    torch.testing.assert_close(loss, torch.tensor(0.5))  # -(1 - 3 + 0.5) / 3
    assert stats["clipfrac"].item() == 0.0 and stats["approx_kl"].item() == 0.0


def test_value_loss_hand_computed():
    # clip_range_value = 0.2, old = 1.0 everywhere, v_clip = clip(v, 0.8, 1.2)
    #   tok0: v=1.5, R=2: max((1.5-2)^2, (1.2-2)^2) = max(0.25, 0.64) = 0.64 (clip active)
    #   tok1: v=1.1, R=0: max(1.21, 1.21)                              = 1.21 (inside)
    #   tok2: v=0.5, R=1: max((0.5-1)^2, (0.8-1)^2) = max(0.25, 0.04) = 0.25 (clip inactive)
    #   loss = 0.5 * (0.64 + 1.21 + 0.25) / 3 = 0.35; unclipped: 0.5 * (0.25 + 1.21 + 0.25) / 3 = 0.285
    new = torch.tensor([[1.5, 1.1, 0.5, 123.0]], requires_grad=True)
    old = torch.tensor([[1.0, 1.0, 1.0, -50.0]])
    ret = torch.tensor([[2.0, 0.0, 1.0, 9.0]])
    mask = torch.tensor([[True, True, True, False]])
    loss, stats = value_loss(new, old, ret, mask, clip_range_value=0.2)
    torch.testing.assert_close(loss, torch.tensor(0.35))
    assert stats["clipfrac"].item() == pytest.approx(2 / 3)
    loss.backward()
    # tok0 clipped: no gradient; tok1: 0.5 * 2 * (1.1 - 0) / 3; tok2: 0.5 * 2 * (0.5 - 1) / 3
    torch.testing.assert_close(new.grad, torch.tensor([[0.0, 1.1 / 3, -0.5 / 3, 0.0]]))

    loss_plain, stats_plain = value_loss(new, old, ret, mask, clip_range_value=None)
    torch.testing.assert_close(loss_plain, torch.tensor(0.285))
    assert stats_plain["clipfrac"].item() == 0.0


def test_explained_variance():
    ret = torch.tensor([[1.0, 2.0, 3.0, 100.0]])
    mask = torch.tensor([[1, 1, 1, 0]])
    assert explained_variance(ret, ret, mask) == pytest.approx(1.0)
    assert explained_variance(torch.full_like(ret, 2.0), ret, mask) == pytest.approx(0.0)
    # residual [1, 1, 1] has zero variance: a constant offset is fully explained
    assert explained_variance(ret - 1, ret, mask) == pytest.approx(1.0)
    assert math.isnan(explained_variance(ret, torch.ones_like(ret), mask))


# --- sampling distribution ------------------------------------------------------------------------------
def test_temperature_matches_log_softmax():
    logits = torch.randn(3, 5, 11, generator=torch.Generator().manual_seed(2))
    for temp in (0.3, 1.0, 2.5):
        torch.testing.assert_close(
            sampling_logprobs(logits, temperature=temp), torch.log_softmax(logits / temp, -1)
        )


def test_top_k_keeps_exactly_k_largest():
    logits = torch.randn(4, 10, generator=torch.Generator().manual_seed(3))
    logp = sampling_logprobs(logits, top_k=4)
    finite = torch.isfinite(logp)
    assert torch.all(finite.sum(-1) == 4)
    top = torch.topk(logits, 4, dim=-1).indices
    assert torch.all(finite.gather(-1, top))
    torch.testing.assert_close(torch.logsumexp(logp, -1), torch.zeros(4))
    # ties: still exactly k
    assert torch.isfinite(sampling_logprobs(torch.zeros(2, 10), top_k=3)).sum(-1).tolist() == [3, 3]
    # 0 and k >= V are off
    torch.testing.assert_close(sampling_logprobs(logits, top_k=0), torch.log_softmax(logits, -1))
    torch.testing.assert_close(sampling_logprobs(logits, top_k=10), torch.log_softmax(logits, -1))


def test_top_p_keeps_minimal_nucleus_hand_case():
    probs = torch.tensor([0.15, 0.5, 0.05, 0.3])
    logits = probs.log()

    def kept(**kw) -> list[int]:
        return torch.isfinite(sampling_logprobs(logits, **kw)).nonzero().flatten().tolist()

    assert kept(top_p=0.45) == [1]  # 0.5 >= 0.45
    assert kept(top_p=0.7) == [1, 3]  # 0.5 < 0.7 <= 0.8
    assert kept(top_p=0.81) == [0, 1, 3]  # 0.8 < 0.81 <= 0.95
    assert kept(top_p=0.96) == [0, 1, 2, 3]
    # top-k first, then top-p on the renormalised [0.625, 0.375]: 0.625 < 0.7, so both stay
    assert kept(top_k=2, top_p=0.7) == [1, 3]
    logp = sampling_logprobs(logits, top_p=0.7)
    torch.testing.assert_close(logp[[1, 3]], torch.log(torch.tensor([0.5, 0.3]) / 0.8))


def test_top_p_matches_brute_force_nucleus():
    g = torch.Generator().manual_seed(4)
    logits = torch.randn(20, 12, generator=g) * 2
    for top_p in (0.3, 0.6, 0.9):
        keep = torch.isfinite(sampling_logprobs(logits, top_p=top_p))
        probs = logits.softmax(-1)
        for row in range(logits.shape[0]):
            order = torch.argsort(probs[row], descending=True)
            cum = probs[row][order].cumsum(0)
            n = int((cum < top_p).sum()) + 1  # smallest n with cum[n - 1] >= top_p
            assert set(keep[row].nonzero().flatten().tolist()) == set(order[:n].tolist())


def test_samples_stay_in_filtered_support_and_match_distribution():
    g = torch.Generator().manual_seed(5)
    logits = torch.randn(1, 16, generator=g).expand(4000, 16)
    tokens, logp = sample(logits, temperature=0.8, top_k=6, top_p=0.9, generator=g)
    assert tokens.shape == (4000,) and tokens.dtype == torch.int64
    full = sampling_logprobs(logits[:1], temperature=0.8, top_k=6, top_p=0.9)[0]  # (V,)
    assert torch.all(torch.isfinite(full[tokens]))
    torch.testing.assert_close(logp, logprobs_of(logits, tokens, temperature=0.8, top_k=6, top_p=0.9))
    freq = torch.bincount(tokens, minlength=16).float() / 4000
    torch.testing.assert_close(freq, full.exp(), atol=0.03, rtol=0)


def test_entropy_with_filtered_tokens_has_no_nan():
    logits = torch.randn(3, 9, generator=torch.Generator().manual_seed(6), requires_grad=True)
    logp = sampling_logprobs(logits, top_k=3)
    ent = entropy_from_logprobs(logp)
    assert torch.all(torch.isfinite(ent))
    probs = logp.exp()
    kept = probs[torch.isfinite(logp)].reshape(3, 3)
    torch.testing.assert_close(ent, -(kept * kept.log()).sum(-1))
    ent.sum().backward()
    assert torch.all(torch.isfinite(logits.grad))
    uniform = torch.log(torch.tensor([[0.25, 0.25, 0.25, 0.25, 0.0]]))
    torch.testing.assert_close(entropy_from_logprobs(uniform), torch.tensor([math.log(4)]))


def test_sampling_rejects_bad_arguments():
    logits = torch.zeros(2, 5)
    with pytest.raises(ValueError, match="temperature"):
        sampling_logprobs(logits, temperature=0.0)
    with pytest.raises(ValueError, match="top_k"):
        sampling_logprobs(logits, top_k=-1)
    with pytest.raises(ValueError, match="top_p"):
        sampling_logprobs(logits, top_p=0.0)


# --- KL controllers -----------------------------------------------------------------------------------
def test_adaptive_kl_controller_update():
    ctl = AdaptiveKLController(init_coef=0.2, target=6.0, horizon=10000)
    # KL 6.6: error = 6.6/6 - 1 = 0.1; mult = 1 + 0.1 * 100 / 10000 = 1.001
    assert ctl.update(6.6, 100) == pytest.approx(0.2 * 1.001)
    # KL 60: error clipped to 0.2; mult = 1 + 0.2 * 1000 / 10000 = 1.02
    assert ctl.update(torch.tensor(60.0), 1000) == pytest.approx(0.2 * 1.001 * 1.02)
    # KL 0: error clipped to -0.2; mult = 0.98
    assert ctl.update(0.0, 1000) == pytest.approx(0.2 * 1.001 * 1.02 * 0.98)

    restored = AdaptiveKLController(1.0, 1.0, 1.0)
    restored.load_state_dict(ctl.state_dict())
    assert restored.value == ctl.value and restored.target == 6.0 and restored.horizon == 10000
    with pytest.raises(ValueError, match="fixed"):
        restored.load_state_dict(FixedKLController(0.1).state_dict())


def test_fixed_kl_controller_and_factory():
    ctl = FixedKLController(0.05)
    assert ctl.update(100.0, 16) == 0.05
    assert isinstance(make_kl_controller(PPOConfig()), FixedKLController)
    adaptive = make_kl_controller(PPOConfig(kl_controller="adaptive", init_kl_coef=0.3, kl_target=2.0))
    assert isinstance(adaptive, AdaptiveKLController)
    assert (adaptive.value, adaptive.target, adaptive.horizon) == (0.3, 2.0, 10000.0)
    with pytest.raises(ValueError, match="coef"):
        FixedKLController(-1.0)
    with pytest.raises(ValueError, match="target"):
        AdaptiveKLController(0.1, 0.0, 10)
