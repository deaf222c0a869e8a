"""KLPenalty with the reference "the policy with its LoRA adapters off" (textenv.scorers.AdaptersOff): the
KV-cached reference steps the base weights through the policy's own modules, interleaved with the policy."""

from __future__ import annotations

import copy

import pytest
import torch

from textenv.scorers import AdaptersOff, KLPenalty

from .test_kl import ESTIMATORS, drive, expected_rewards, make_core

peft = pytest.importorskip("peft")


def lora_policy(base):
    """``base`` (copied) with LoRA adapters whose B matrices are non-zero: a policy that differs from it."""
    model = peft.get_peft_model(
        copy.deepcopy(base),
        peft.LoraConfig(r=4, lora_alpha=8, target_modules=["c_attn"], fan_in_fan_out=True),
    )
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.copy_(0.5 * torch.randn(p.shape, generator=g))
    return model.eval()


@pytest.mark.parametrize("estimator", ESTIMATORS)
def test_adapters_off_reference_equals_the_base_model(tokenizer, tiny_lm, estimator):
    policy = lora_policy(tiny_lm)
    kl = KLPenalty(AdaptersOff(policy), coef=0.5, estimator=estimator, policy=policy)
    core = make_core(tokenizer, kl)
    seen = []

    def check(row, rewards):
        # Reference = the base model (adapters off); policy = the same modules with adapters on.
        want = expected_rewards(estimator, policy, tiny_lm, core, row, 0.5)
        assert rewards == pytest.approx(want, rel=1e-4, abs=1e-5)  # float32: incremental vs full forward
        seen.append(row)

    drive(core, kl, 14, check=check)
    assert seen and any(r != 0.0 for r in kl.step_kl().tolist())
    ids = torch.tensor([[5, 6, 7]])
    with torch.no_grad():  # the adapters are back on after every reference forward
        assert not torch.allclose(policy(input_ids=ids).logits, tiny_lm(input_ids=ids).logits)


def test_adapters_off_is_zero_at_the_identity_and_never_touches_the_policy_mode(tokenizer, tiny_lm):
    policy = peft.get_peft_model(
        copy.deepcopy(tiny_lm), peft.LoraConfig(r=2, target_modules=["c_attn"], fan_in_fan_out=True)
    )
    policy.train()
    ref = AdaptersOff(policy)
    assert not ref.training and list(ref.children()) == []  # the policy is not a submodule
    ref.eval()
    assert policy.training  # so .eval()/.to() on the reference never reach the policy
    policy.eval()
    kl = KLPenalty(ref, coef=1.0, estimator="full", policy=policy)
    drive(make_core(tokenizer, kl), kl, 6, check=lambda row, rewards: None)
    assert kl.step_kl().abs().max() < 1e-6
