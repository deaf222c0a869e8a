"""token_logprobs (agents/common/logprobs.py): the LM head in chunks of positions gives the values and the
gradients of the plain full-logits computation, never holds (B, T, V) logits for the backward, and falls
back to the plain computation for heads that are not a linear map of the final hidden states."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn
from transformers import (
    CohereConfig,
    CohereForCausalLM,
    GPT2Config,
    GPT2LMHeadModel,
    LlamaConfig,
    LlamaForCausalLM,
    Qwen2Config,
    Qwen2ForCausalLM,
)

from agents.common.logprobs import UnsupportedHeadError, split_lm_head, token_logprobs
from agents.common.sampling import SamplingParams, entropy_from_logprobs, sample_tokens
from tests.builders import tiny_gpt2

V, P, T, B = 40, 4, 6, 3
EOS, PAD = 1, 0
FILTERED = SamplingParams(temperature=0.7, top_k=12, top_p=0.9, eos_token_ids=(EOS,), min_new_tokens=3)


def gpt2() -> nn.Module:
    return tiny_gpt2(V, seed=None, width=16, positions=32, eos_token_id=EOS)


def llama(tie: bool = False) -> nn.Module:
    return LlamaForCausalLM(_decoder_config(LlamaConfig, tie))


def qwen2(tie: bool = True) -> nn.Module:
    return Qwen2ForCausalLM(_decoder_config(Qwen2Config, tie))


def _decoder_config(cls, tie: bool):
    return cls(
        vocab_size=V,
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=32,
        tie_word_embeddings=tie,
        eos_token_id=EOS,
        pad_token_id=PAD,
    )


def llama_head_bias() -> nn.Module:
    """A Llama whose LM head has a bias (as some checkpoints do): the head is still one nn.Linear."""
    model = llama()
    model.lm_head = nn.Linear(16, V, bias=True)
    return model


MODELS = {"gpt2": gpt2, "llama": llama, "qwen2-tied": qwen2, "llama-head-bias": llama_head_bias}


def build(name: str, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    model = MODELS[name]()
    torch.manual_seed(seed + 1)
    with torch.no_grad():  # random init is tiny; spread the logits so that top-k/top-p filter something
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.3)
    return model.eval()


def episode_batch(model: nn.Module, sampling: SamplingParams) -> dict[str, torch.Tensor]:
    """Left-padded prompts and T tokens sampled from ``sampling``; row 1 ends after 4 tokens (right pad)."""
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(2, V, (B, P), generator=g)
    mask = torch.ones(B, P, dtype=torch.long)
    ids[0, :2], mask[0, :2] = PAD, 0  # left padding
    with torch.no_grad():
        for t in range(T):
            pos = (mask.cumsum(1) - 1).clamp(min=0)
            logits = model(ids, attention_mask=mask, position_ids=pos).logits[:, -1].float()  # (B, V)
            token = sample_tokens(sampling.logprobs(logits, step=t), generator=g)  # (B,)
            ids = torch.cat([ids, token[:, None]], 1)
            mask = torch.cat([mask, torch.ones(B, 1, dtype=torch.long)], 1)
    ids[1, P + 4 :], mask[1, P + 4 :] = PAD, 0  # right padding after row 1's 4th token
    position_ids = (mask.cumsum(1) - 1).clamp(min=0)
    return {"input_ids": ids, "attention_mask": mask, "position_ids": position_ids, "tokens": ids[:, P:]}


def reference(model, b, sampling):
    """The plain computation, written out: full logits, sampling transform, gather, entropy, hidden states."""
    out = model(
        b["input_ids"],
        attention_mask=b["attention_mask"],
        position_ids=b["position_ids"],
        logits_to_keep=T + 1,
        output_hidden_states=True,
    )
    logits = out.logits[:, -(T + 1) : -1].float()  # (B, T, V)
    logp_all = torch.log_softmax(logits, -1) if sampling is None else sampling.logprobs(logits)
    logp = logp_all.gather(-1, b["tokens"].unsqueeze(-1)).squeeze(-1)
    return logp, entropy_from_logprobs(logp_all), out.hidden_states[-1]


def loss_of(logp, entropy, hidden, b):
    """A loss on every output: weighted log-probs (as advantages), an entropy bonus, a value-head-like term."""
    g = torch.Generator().manual_seed(1)
    weights = torch.randn(logp.shape, generator=g)
    probe = torch.randn(hidden.shape[-1], generator=g)
    mask = b["attention_mask"][:, P:].bool()
    live = mask & torch.isfinite(logp)
    return (
        torch.where(live, logp * weights, 0.0).sum() / mask.sum()
        + 0.1 * torch.where(mask, entropy, 0.0).sum() / mask.sum()
        + (hidden.float() @ probe).pow(2).mean()
    )


def grads_of(model, forward, b):
    model.zero_grad(set_to_none=True)
    logp, entropy, hidden = forward()
    loss_of(logp, entropy, hidden, b).backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    return (logp.detach(), entropy.detach(), hidden.detach()), grads


def chunked(model, b, sampling, chunk_size, **kwargs):
    def forward():
        return token_logprobs(
            model,
            b["input_ids"],
            b["attention_mask"],
            b["position_ids"],
            b["tokens"],
            sampling=sampling,
            with_entropy=True,
            entropy_grad=True,
            return_hidden=True,
            chunk_size=chunk_size,
            **kwargs,
        )

    return forward


def assert_same(got, want, rtol=1e-5, atol=1e-5):
    (values, grads), (ref_values, ref_grads) = got, want
    for name, x, y in zip(("logprobs", "entropy", "hidden"), values, ref_values, strict=True):
        torch.testing.assert_close(x, y, rtol=rtol, atol=atol, msg=lambda m, name=name: f"{name}: {m}")
    assert grads.keys() == ref_grads.keys()
    for name, grad in grads.items():
        torch.testing.assert_close(
            grad, ref_grads[name], rtol=rtol, atol=atol, msg=lambda m, n=name: f"{n}: {m}"
        )


@pytest.mark.parametrize("name", sorted(MODELS))
@pytest.mark.parametrize(
    "sampling", [FILTERED, SamplingParams(), None], ids=["filtered", "plain", "log_softmax"]
)
@pytest.mark.parametrize("chunk_size", [1, 4, "auto"])
def test_values_and_gradients_equal_the_full_logits(name, sampling, chunk_size):
    model = build(name)
    b = episode_batch(model, FILTERED)
    want = grads_of(model, lambda: reference(model, b, sampling), b)
    got = grads_of(model, chunked(model, b, sampling, chunk_size), b)
    assert_same(got, want)
    logp = got[0][0]
    mask = b["attention_mask"][:, P:].bool()
    # The sampled tokens are in the support, and the transform changed their log-probs.
    if sampling is FILTERED:
        assert torch.isfinite(logp[mask]).all()
        with torch.no_grad():
            assert not torch.allclose(logp, reference(model, b, None)[0])
    assert set(got[1]) == {n for n, p in model.named_parameters()}  # every parameter got a gradient


def test_no_chunking_is_exactly_the_plain_computation():
    model = build("qwen2-tied")
    b = episode_batch(model, FILTERED)
    want = grads_of(model, lambda: reference(model, b, FILTERED), b)
    got = grads_of(model, chunked(model, b, FILTERED, None), b)
    assert_same(got, want, rtol=0, atol=0)


def test_min_new_tokens_masks_eos_across_chunk_boundaries():
    # EOS is filtered out at steps 0..2 only: with one position per chunk each chunk must know its step.
    model = build("llama")
    b = episode_batch(model, FILTERED)
    tokens = b["tokens"].clone()
    tokens[:, :] = EOS
    b = {**b, "tokens": tokens}
    with torch.no_grad():
        scores = token_logprobs(
            model,
            b["input_ids"],
            b["attention_mask"],
            b["position_ids"],
            tokens,
            sampling=FILTERED,
            chunk_size=1,
        )
        plain = SamplingParams(temperature=0.7, eos_token_ids=(EOS,), min_new_tokens=3)
        unfiltered = token_logprobs(
            model,
            b["input_ids"],
            b["attention_mask"],
            b["position_ids"],
            tokens,
            sampling=plain,
            chunk_size=2,
        )
    assert torch.isneginf(scores.logprobs[:, :3]).all()
    assert (
        torch.isneginf(unfiltered.logprobs[:, :3]).all() and torch.isfinite(unfiltered.logprobs[:, 3:]).all()
    )


def test_no_grad_values_equal_the_plain_computation():
    model = build("gpt2")
    b = episode_batch(model, FILTERED)
    with torch.no_grad():
        want, want_entropy, _ = reference(model, b, None)
        got = token_logprobs(
            model,
            b["input_ids"],
            b["attention_mask"],
            b["position_ids"],
            b["tokens"],
            with_entropy=True,
            chunk_size=2,
        )
    torch.testing.assert_close(got.logprobs, want, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(got.entropy, want_entropy, rtol=1e-5, atol=1e-5)
    assert got.hidden is None


def test_entropy_without_grad_is_a_statistic():
    model = build("llama")
    b = episode_batch(model, FILTERED)
    scores = token_logprobs(
        model,
        b["input_ids"],
        b["attention_mask"],
        b["position_ids"],
        b["tokens"],
        sampling=FILTERED,
        with_entropy=True,
    )
    assert scores.logprobs.requires_grad and not scores.entropy.requires_grad
    assert scores.hidden is None


@pytest.mark.parametrize("name", ["gpt2", "qwen2-tied"])
def test_no_full_logits_are_kept_for_the_backward(name):
    model = build(name)
    b = episode_batch(model, FILTERED)

    def saved_shapes(chunk_size):
        shapes = []

        def pack(t):
            shapes.append(tuple(t.shape))
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            chunked(model, b, FILTERED, chunk_size)()
        return shapes

    assert any(s[-1] == V and len(s) == 3 and s[1] >= T for s in saved_shapes(None))  # the plain path does
    assert not any(len(s) == 3 and s[-1] == V for s in saved_shapes(2))


def test_bf16_autocast_matches_the_plain_computation_to_bf16_precision():
    model = build("qwen2-tied")
    b = episode_batch(model, FILTERED)

    def under_autocast(forward):
        def run():
            with torch.autocast("cpu", dtype=torch.bfloat16):
                return forward()

        return run

    (ref_values, ref_grads) = grads_of(model, under_autocast(lambda: reference(model, b, FILTERED)), b)
    (values, grads) = grads_of(model, under_autocast(chunked(model, b, FILTERED, 2)), b)
    # Same logits (bf16 matmuls of the same rows), so the same log-probs and entropies.
    torch.testing.assert_close(values[0], ref_values[0], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(values[1], ref_values[1], rtol=1e-5, atol=1e-5)
    # The head's gradients run in float32 (autocast rounds them to bf16): equal to bf16 precision.
    for name, grad in grads.items():
        error = (grad - ref_grads[name]).norm() / ref_grads[name].norm()
        assert error < 3e-2, name


@pytest.mark.parametrize("targets", [["q_proj", "v_proj"], ["q_proj", "lm_head"]], ids=["trunk", "head"])
def test_lora_gradients_equal_the_full_logits(targets):
    peft = pytest.importorskip("peft")
    model = peft.get_peft_model(build("llama"), peft.LoraConfig(r=4, lora_alpha=8, target_modules=targets))
    with torch.no_grad():  # adapters start as the identity (B = 0); give them a value so that they matter
        for n, p in model.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.3)
    b = episode_batch(model, FILTERED)
    want = grads_of(model, lambda: reference(model, b, FILTERED), b)
    got = grads_of(model, chunked(model, b, FILTERED, 4), b)
    assert_same(got, want)
    assert got[1] and all("lora_" in n for n in got[1])


class ScaledLogits(GPT2LMHeadModel):
    """A GPT-2 whose forward scales its logits, with nothing in its config to say so."""

    def forward(self, *args, **kwargs):
        out = super().forward(*args, **kwargs)
        out.logits = out.logits * 0.5
        return out


def test_a_head_that_is_not_linear_is_refused_by_the_probe_and_modes_are_restored():
    torch.manual_seed(0)
    model = ScaledLogits(GPT2Config(n_layer=1, n_embd=16, n_head=2, vocab_size=V, n_positions=32)).train()
    with pytest.raises(UnsupportedHeadError, match="4-token probe"):
        split_lm_head(model)
    assert all(m.training for m in model.modules())


def test_split_lm_head_returns_the_decoder_and_the_output_embeddings():
    model = build("llama")
    trunk, head = split_lm_head(model)
    assert trunk is model.model and head is model.lm_head


def test_logit_scale_falls_back_to_the_full_logits_with_a_warning():
    torch.manual_seed(0)
    config = _decoder_config(CohereConfig, tie=True)
    model = CohereForCausalLM(config).eval()
    with pytest.raises(UnsupportedHeadError, match="logit_scale"):
        split_lm_head(model)
    b = episode_batch(model, FILTERED)
    want = grads_of(model, lambda: reference(model, b, FILTERED), b)
    with pytest.warns(UserWarning, match="logit_scale"):
        got = grads_of(model, chunked(model, b, FILTERED, 2), b)
    assert_same(got, want, rtol=0, atol=0)


@pytest.mark.parametrize(
    ("chunk_size", "error"),
    [(0, ValueError), (-2, ValueError), (True, TypeError), (1.5, TypeError), ("all", TypeError)],
)
def test_bad_chunk_size_is_refused(chunk_size, error):
    model = build("gpt2")
    b = episode_batch(model, FILTERED)
    with pytest.raises(error, match=f"chunk_size must be a positive int, 'auto' or None, got {chunk_size!r}"):
        token_logprobs(
            model, b["input_ids"], b["attention_mask"], b["position_ids"], b["tokens"], chunk_size=chunk_size
        )


def test_mismatched_shapes_are_value_errors():
    model = build("gpt2")
    b = episode_batch(model, FILTERED)
    ids, mask, pos, tokens = b["input_ids"], b["attention_mask"], b["position_ids"], b["tokens"]
    with pytest.raises(ValueError, match="tokens must be"):
        token_logprobs(model, ids, mask, pos, tokens[:2])
    with pytest.raises(ValueError, match="attention_mask must have the shape"):
        token_logprobs(model, ids, mask[:, 1:], pos, tokens)
    with pytest.raises(ValueError, match="input_ids must be"):
        token_logprobs(model, ids[0], mask, pos, tokens)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a supported model never warns
        token_logprobs(model, ids, mask, pos, tokens)
