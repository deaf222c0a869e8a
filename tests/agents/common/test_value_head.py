"""Tests of agents.common.value_head.CausalLMWithValueHead on a tiny GPT-2 built from a config."""

from __future__ import annotations

import types

import pytest
import torch
from torch import nn
from transformers import AutoModelForCausalLM, GPT2LMHeadModel

from agents.common.value_head import VALUE_HEAD_FILENAME, CausalLMWithValueHead, ValueHeadOutput
from tests.builders import tiny_gpt2

VOCAB = 64


def _tiny_lm(seed: int = 0) -> GPT2LMHeadModel:
    return tiny_gpt2(VOCAB, seed=seed, eos_token_id=0)


@pytest.fixture
def input_ids() -> torch.Tensor:
    return torch.randint(1, VOCAB, (3, 7), generator=torch.Generator().manual_seed(0))  # (B, T)


def test_hidden_size_is_read_from_config():
    lm = _tiny_lm()
    model = CausalLMWithValueHead(lm)
    assert lm.config.hidden_size == 32
    assert model.value_head.in_features == 32 and model.value_head.out_features == 1
    assert model.value_head.weight.dtype == torch.float32
    assert torch.all(model.value_head.bias == 0)
    assert model.config is lm.config and model.device == torch.device("cpu")


def test_hidden_size_falls_back_to_output_embeddings():
    class NoHiddenSize(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.config = types.SimpleNamespace()
            self.head = nn.Linear(24, VOCAB)

        def get_output_embeddings(self) -> nn.Module:
            return self.head

    assert CausalLMWithValueHead(NoHiddenSize()).value_head.in_features == 24

    class Opaque(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.config = types.SimpleNamespace()
            self.w = nn.Parameter(torch.zeros(1))

    with pytest.raises(ValueError, match="hidden size"):
        CausalLMWithValueHead(Opaque())
    with pytest.raises(TypeError, match="lm"):
        CausalLMWithValueHead(nn.Linear(2, 2))


def test_forward_shapes_and_logits_equal_bare_lm(input_ids):
    lm = _tiny_lm()
    model = CausalLMWithValueHead.from_lm(lm)
    attention_mask = torch.ones_like(input_ids)
    attention_mask[0, :2] = 0  # left padding on row 0
    position_ids = (attention_mask.cumsum(-1) - 1).clamp(min=0)
    with torch.no_grad():
        out = model(input_ids, attention_mask=attention_mask, position_ids=position_ids)
        bare = lm(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids).logits
    assert isinstance(out, ValueHeadOutput)
    assert out.logits.shape == (3, 7, VOCAB)
    assert out.values.shape == (3, 7) and out.values.dtype == torch.float32
    assert out.past_key_values is None
    torch.testing.assert_close(out.logits, bare, rtol=0, atol=0)
    # values are the head applied to the last hidden state
    with torch.no_grad():
        hidden = lm(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            output_hidden_states=True,
        ).hidden_states[-1]
    torch.testing.assert_close(out.values, model.value_head(hidden).squeeze(-1))


def test_kv_cache_step_matches_full_forward(input_ids):
    model = CausalLMWithValueHead(_tiny_lm())
    with torch.no_grad():
        full = model(input_ids)
        prefix = model(input_ids[:, :-1], use_cache=True)
        step = model(input_ids[:, -1:], past_key_values=prefix.past_key_values, use_cache=True)
    assert step.past_key_values is not None
    torch.testing.assert_close(step.logits[:, 0], full.logits[:, -1], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(step.values[:, 0], full.values[:, -1], rtol=1e-5, atol=1e-5)


def test_value_head_stays_float32_when_lm_is_cast(input_ids):
    model = CausalLMWithValueHead(_tiny_lm()).to(torch.bfloat16)
    assert next(model.lm.parameters()).dtype == torch.bfloat16
    assert model.value_head.weight.dtype == torch.float32
    with torch.no_grad():
        out = model(input_ids)
    assert out.logits.dtype == torch.bfloat16
    assert out.values.dtype == torch.float32


def test_gradients_reach_lm_and_head(input_ids):
    model = CausalLMWithValueHead(_tiny_lm())
    out = model(input_ids)
    (out.values.sum() + out.logits.float().logsumexp(-1).sum()).backward()
    assert model.value_head.weight.grad is not None
    assert model.lm.transformer.wte.weight.grad is not None


def test_save_and_load_round_trip(tmp_path, input_ids):
    model = CausalLMWithValueHead(_tiny_lm(), value_head_init_std=0.5)
    nn.init.constant_(model.value_head.bias, 0.25)
    model.save_pretrained(tmp_path)

    files = {p.name for p in tmp_path.iterdir()}
    assert VALUE_HEAD_FILENAME in files and "model.safetensors" in files
    assert not [f for f in files if f.endswith((".bin", ".pt", ".pth", ".pkl", ".ckpt"))]

    torch.manual_seed(123)  # a freshly initialised head would differ
    loaded = CausalLMWithValueHead.from_pretrained(tmp_path)
    loaded.eval()
    with torch.no_grad():
        a, b = model(input_ids), loaded(input_ids)
    torch.testing.assert_close(b.logits, a.logits, rtol=0, atol=0)
    torch.testing.assert_close(b.values, a.values, rtol=0, atol=0)

    plain = AutoModelForCausalLM.from_pretrained(tmp_path).eval()
    with torch.no_grad():
        torch.testing.assert_close(plain(input_ids=input_ids).logits, a.logits, rtol=0, atol=0)


def test_from_pretrained_without_head_file_initialises_one(tmp_path, input_ids):
    _tiny_lm().save_pretrained(tmp_path)
    model = CausalLMWithValueHead.from_pretrained(tmp_path)
    assert torch.all(model.value_head.bias == 0)
    with torch.no_grad():
        assert model(input_ids).values.shape == (3, 7)


def test_mismatched_head_file_is_rejected(tmp_path):
    CausalLMWithValueHead(_tiny_lm()).save_pretrained(tmp_path)
    other = CausalLMWithValueHead(tiny_gpt2(VOCAB, seed=None, layers=1, width=16))
    with pytest.raises(ValueError, match="value head file"):
        other.load_value_head(tmp_path / VALUE_HEAD_FILENAME)
