"""LoRA through PEFT (agents/common/lora.py) on every algorithm: only adapters train, the KL reference is
the policy with its adapters off, checkpoints hold adapters only and resume exactly, merged export."""

from __future__ import annotations

import os

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM

from agents import GRPOConfig, registry
from agents.common import checkpoint as ckpt
from agents.common.lora import is_peft_model, lora_config
from agents.common.on_policy import TIME_METRICS
from tests.agents.algos import ALGOS, make_env
from tests.agents.tiny import PROMPTS, tiny_lm, tiny_tokenizer
from textenv.lm import accepts_kwarg, cache_kwarg
from textenv.scorers import AdaptersOff, KLPenalty

peft = pytest.importorskip("peft")

ALL = ["ppo", *ALGOS]


def lora() -> object:
    return peft.LoraConfig(r=4, lora_alpha=8, target_modules=["c_attn"], fan_in_fan_out=True)


def make_agent(name: str, *, env=None, policy=None, log_dir=None, peft_config="default", **config):
    env = make_env(kl=True) if env is None else env
    policy = tiny_lm(len(tiny_tokenizer()), seed=0) if policy is None else policy
    peft_config = lora() if peft_config == "default" else peft_config
    # fp32: the adapters start as the identity, so the first KL is exactly 0 only without bf16 rounding.
    common = {"episodes_per_iteration": 8, "device": "cpu", "seed": 0, "learning_rate": 3e-2}
    common["mixed_precision"] = "no"
    common["log_dir"] = None if log_dir is None else str(log_dir)
    if name == "ppo":
        common["minibatch_size"] = 4
    entry = registry.get(name)
    cfg = entry.make_config(**common, **config)
    return entry.load()(policy, env, cfg, verbose=0, progress_bar=False, peft_config=peft_config)


def comparable(history):
    return [{k: v for k, v in row.items() if k not in TIME_METRICS} for row in history]


@pytest.mark.parametrize("name", ALL)
def test_only_adapters_and_value_head_train_and_first_kl_is_zero(name):
    agent = make_agent(name)
    trainable = [n for n, p in agent.policy.model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n or n.startswith("value_head.") for n in trainable)
    assert any(n.startswith("value_head.") for n in trainable) == (name == "ppo")
    base = {n: p.clone() for n, p in agent.policy.model.named_parameters() if not p.requires_grad}
    adapters = {n: p.clone() for n, p in agent.policy.model.named_parameters() if p.requires_grad}
    # The env's KL reference is the policy itself with its adapters off: no second model.
    (term,) = agent.kl_terms
    assert isinstance(term.reference, AdaptersOff) and term.reference.get_base_model() is agent.lm
    metrics = agent.train_iteration()
    assert metrics["kl"] == pytest.approx(0.0, abs=1e-6)  # LoRA starts as the identity
    for n, p in agent.policy.model.named_parameters():
        if n in base:
            assert torch.equal(p, base[n]), n
    assert any(
        not torch.equal(p, adapters[n]) for n, p in agent.policy.model.named_parameters() if n in adapters
    )
    agent.train_iteration()
    assert agent.history[-1]["kl"] != 0.0  # the adapters moved the policy away from the reference


def test_env_reference_is_kept_when_asked():
    agent = make_agent("grpo", kl_reference="env")
    (term,) = agent.kl_terms
    assert not isinstance(term.reference, AdaptersOff) and term.reference is not agent.lm
    with pytest.raises(ValueError, match="kl_reference='adapters_off' needs a PEFT policy"):
        make_agent("grpo", peft_config=None, kl_reference="adapters_off")
    with pytest.raises(ValueError, match="kl_reference must be one of"):
        GRPOConfig(kl_reference="base")
    with pytest.raises(TypeError, match=r"peft_config must be a peft\.PeftConfig"):
        make_agent("grpo", peft_config={"r": 4})


def test_grpo_beta_reference_is_the_adapters_off_policy():
    agent = make_agent("grpo", beta=0.1, num_iterations=2)
    assert agent.ref_lm is None and agent._extra_models() == {}
    metrics = agent.train_iteration()
    # The first pass starts at the reference (adapters = identity); the second has moved away from it.
    assert 0.0 < metrics["kl_ref"] < 1.0


def test_peft_model_is_seen_through_for_forward_kwargs():
    lm = peft.get_peft_model(tiny_lm(len(tiny_tokenizer())), lora())
    assert accepts_kwarg(lm, "logits_to_keep") and accepts_kwarg(lm, "position_ids")
    assert not accepts_kwarg(lm, "no_such_argument")
    assert cache_kwarg(lm) == cache_kwarg(lm.get_base_model())
    assert accepts_kwarg(AdaptersOff(lm), "logits_to_keep")
    with pytest.raises(TypeError, match="AdaptersOff needs a PEFT model"):
        AdaptersOff(tiny_lm(len(tiny_tokenizer())))


def test_set_reference_mid_episode_rereads_the_rows():
    """A reference swapped while rows run gives the same KL as one set from the start."""
    vocab = len(tiny_tokenizer())
    ref = tiny_lm(vocab, seed=3)
    logp = torch.log_softmax(torch.randn(8, vocab, generator=torch.Generator().manual_seed(0)), -1)
    runs = []
    for swap in (False, True):
        term = KLPenalty(ref if not swap else tiny_lm(vocab, seed=4), coef=1.0, estimator="full")
        env = make_env(kl=False)
        env = type(env)(
            num_envs=8,
            tokenizer=tiny_tokenizer(),
            prompts=PROMPTS,
            reward=term,
            max_prompt_tokens=4,
            max_new_tokens=6,
            autoreset_mode="Disabled",
            observation_format="torch",
        )
        env.reset(seed=0)
        kls = []
        for t in range(3):
            if swap and t == 2:
                term.set_reference(ref)
            term.set_policy_logprobs(logp)
            env.step(torch.full((8,), 5 + t))
            kls.append(term.step_kl().clone())
        runs.append(kls)
    assert torch.allclose(runs[0][2], runs[1][2], atol=1e-6)
    assert not torch.allclose(runs[0][0], runs[1][0])


def test_checkpoint_holds_adapters_only_and_resume_is_exact(tmp_path):
    full = make_agent("ppo", log_dir=tmp_path / "full", checkpoint_interval=1)
    full.learn(8 * 3)
    part = make_agent("ppo", log_dir=tmp_path / "part")
    part.learn(8 * 2)
    path = ckpt.latest_checkpoint(tmp_path / "part")
    model_dir = os.path.join(path, ckpt.MODEL_DIR)
    files = set(os.listdir(model_dir))
    assert {"adapter_config.json", "adapter_model.safetensors", "value_head.safetensors"} <= files
    assert "model.safetensors" not in files
    saved = load_file(os.path.join(model_dir, "adapter_model.safetensors"))
    assert saved and all("lora_" in k for k in saved)
    resumed = make_agent("ppo", log_dir=tmp_path / "part")
    resumed.learn(8 * 3, resume=True)
    assert comparable(resumed.history) == comparable(full.history)
    for (n, a), b in zip(full.policy.named_parameters(), resumed.policy.parameters()):
        assert torch.equal(a, b), n


def test_load_rebuilds_base_and_adapters_and_merged_export_matches(tmp_path):
    base_dir = tmp_path / "base"
    tiny_lm(len(tiny_tokenizer()), seed=0).save_pretrained(base_dir)
    policy = AutoModelForCausalLM.from_pretrained(base_dir)
    agent = make_agent("grpo", policy=policy, beta=0.1)
    agent.train_iteration()
    agent.save(tmp_path / "c")
    loaded = type(agent).load(tmp_path / "c", env=make_env(kl=True), verbose=0, progress_bar=False)
    assert is_peft_model(loaded.lm) and loaded.ref_lm is None
    ids = torch.tensor([[3, 4, 5, 6, 7]])
    with torch.no_grad():
        want = agent.lm(input_ids=ids).logits
        assert torch.equal(loaded.lm(input_ids=ids).logits, want)
    assert comparable([agent.train_iteration()]) == comparable([loaded.train_iteration()])
    # Merged export: a plain transformers model with the same logits as the adapted one.
    out = agent.save(tmp_path / "merged", merged=True)
    assert not os.path.exists(os.path.join(out, "adapter_config.json"))
    plain = AutoModelForCausalLM.from_pretrained(out)
    assert not is_peft_model(plain)
    with torch.no_grad():
        torch.testing.assert_close(plain(input_ids=ids).logits, agent.lm(input_ids=ids).logits)
    assert is_peft_model(agent.lm)  # the export did not merge the training model


def test_lora_config_of_the_command_line():
    cfg = lora_config(8, None, ["c_attn"])
    assert cfg.r == 8 and cfg.lora_alpha == 16 and set(cfg.target_modules) == {"c_attn"}
    with pytest.raises(ValueError, match="lora r must be an int >= 1"):
        lora_config(0)
