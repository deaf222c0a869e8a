"""IncrementalLM: cached one-token steps equal a full forward, across independent row resets."""

from __future__ import annotations

import pytest
import torch
from transformers import (
    LlamaConfig,
    LlamaForCausalLM,
    Qwen2Config,
    Qwen2ForCausalLM,
)

from tests.builders import tiny_gpt2
from textenv.lm import IncrementalLM, left_padded_positions, load_causal_lm, resolve_device

VOCAB = 50


def build_model(kind: str, attn: str = "sdpa") -> torch.nn.Module:
    if kind == "gpt2":  # absolute position embeddings
        model = tiny_gpt2(VOCAB, seed=0, positions=128)
    else:  # rotary positions and grouped-query attention
        torch.manual_seed(0)
        config = LlamaConfig(
            hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, vocab_size=VOCAB, max_position_embeddings=128,
        )  # fmt: skip
        model = LlamaForCausalLM(config)
    model.config._attn_implementation = attn
    return model.eval()


@pytest.fixture(scope="module", params=["gpt2-sdpa", "gpt2-eager", "llama-sdpa"])
def model(request):
    kind, attn = request.param.split("-")
    return build_model(kind, attn)


def left_pad(rows: list[list[int]], width: int) -> tuple[torch.Tensor, torch.Tensor]:
    ids = torch.zeros(len(rows), width, dtype=torch.long)
    mask = torch.zeros(len(rows), width, dtype=torch.long)
    for i, row in enumerate(rows):
        ids[i, width - len(row) :] = torch.tensor(row)
        mask[i, width - len(row) :] = 1
    return ids, mask


@torch.no_grad()
def next_logits(model, sequence: list[int]) -> torch.Tensor:
    return model(torch.tensor([sequence])).logits[0, -1]


def test_left_padded_positions():
    mask = torch.tensor([[0, 0, 1, 1, 1], [1, 1, 1, 1, 1]])
    assert left_padded_positions(mask).tolist() == [[0, 0, 0, 1, 2], [0, 1, 2, 3, 4]]


def test_steps_equal_full_forward_with_independent_resets(model):
    gen = torch.Generator().manual_seed(1)
    P, T, B = 6, 8, 3
    prompts = [[3, 4], [5, 6, 7, 8, 9, 10], [11, 12, 13]]
    lm = IncrementalLM(model, num_rows=B, max_length=P + T)
    logits = lm.reset_rows(torch.arange(B), *left_pad(prompts, P))
    sequences = [list(p) for p in prompts]
    for b in range(B):
        torch.testing.assert_close(logits[b], next_logits(model, sequences[b]), atol=1e-5, rtol=1e-5)
    widths = set()
    for step in range(40):
        tokens = torch.randint(1, VOCAB, (B,), generator=gen)
        active = torch.tensor([True, step % 3 != 0, step % 5 != 4])
        lm.step(tokens, active)
        for b in range(B):
            if active[b]:
                sequences[b].append(int(tokens[b]))
        if step % 7 == 6:  # rows restart at different times, so the cache must mix episodes
            row = step % B
            fresh = torch.randint(1, VOCAB, (1 + step % P,), generator=gen).tolist()
            lm.reset_rows(torch.tensor([row]), *left_pad([fresh], P))
            sequences[row] = fresh
        widths.add(lm.slot_mask.shape[1])
        for b in range(B):
            torch.testing.assert_close(lm.logits[b], next_logits(model, sequences[b]), atol=1e-4, rtol=1e-4)
    assert max(widths) <= 2 * (P + T) + P  # compaction keeps the cache bounded


def test_partial_first_reset(model):
    lm = IncrementalLM(model, num_rows=3, max_length=10)
    ids, mask = left_pad([[1, 2, 3]], 4)
    lm.reset_rows(torch.tensor([1]), ids, mask)
    logits = lm.step(torch.tensor([0, 7, 0]), torch.tensor([False, True, False]))
    torch.testing.assert_close(logits[1], next_logits(model, [1, 2, 3, 7]), atol=1e-5, rtol=1e-5)
    assert torch.isfinite(logits).all()


def test_step_before_reset_is_an_error(model):
    with pytest.raises(RuntimeError, match="before reset_rows"):
        IncrementalLM(model, num_rows=1, max_length=4).step(torch.tensor([1]))


def test_load_and_devices(model, tmp_path):
    model.save_pretrained(tmp_path)
    loaded = load_causal_lm(str(tmp_path), device="cpu")
    torch.testing.assert_close(next_logits(loaded, [1, 2]), next_logits(model, [1, 2]))
    assert load_causal_lm(model) is model
    assert resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(ValueError, match="device 'gpu0' is not a device"):
        resolve_device("gpu0")
    with pytest.raises(TypeError, match="model must be a name, a local path or a torch module"):
        load_causal_lm(3)


@pytest.mark.parametrize("prefill_bf16", [True, False])
def test_prefill_and_steps_in_different_precisions(prefill_bf16):
    """A prefill under bf16 autocast and steps outside it (or the reverse) follow the same episode.

    This is what the KL reference sees when an agent resets the env inside its bf16 rollout context
    and steps it with autocast off; the cache buffers used to keep the prefill's dtype and the first
    step failed in ``scatter_``.
    """
    model = build_model("gpt2")
    bf16 = torch.autocast("cpu", dtype=torch.bfloat16)
    prompts = [[3, 4, 5], [6, 7]]
    lm = IncrementalLM(model, num_rows=2, max_length=12)
    for _episode in range(2):  # the second reset writes a prefill of the other dtype into the buffers
        with bf16 if prefill_bf16 else torch.autocast("cpu", enabled=False):
            lm.reset_rows(torch.arange(2), *left_pad(prompts, 4))
        sequences = [list(p) for p in prompts]
        for token in (8, 9, 10):
            with torch.autocast("cpu", enabled=False) if prefill_bf16 else bf16:
                logits = lm.step(torch.tensor([token, token]))
            for row, seq in enumerate(sequences):
                seq.append(token)
                # bf16 keys/values on one side: equal to the fp32 forward within bf16 precision.
                torch.testing.assert_close(logits[row], next_logits(model, seq), rtol=0.05, atol=0.05)


# --- IncrementalLM.extend: a span of tokens per row in one forward ------------------------------------------
def build_span_model(kind: str, attn: str) -> torch.nn.Module:
    if kind != "qwen2":
        return build_model(kind, attn)
    torch.manual_seed(0)
    config = Qwen2Config(  # rotary positions, grouped-query attention, biased q/k/v projections
        hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, vocab_size=VOCAB, max_position_embeddings=128,
    )  # fmt: skip
    model = Qwen2ForCausalLM(config)
    model.config._attn_implementation = attn
    return model.eval()


@pytest.fixture(scope="module", params=["gpt2-sdpa", "gpt2-eager", "llama-sdpa", "qwen2-eager"])
def span_model(request):
    kind, attn = request.param.split("-")
    return build_span_model(kind, attn)


def check_rows(lm: IncrementalLM, model, sequences: list[list[int]], stepped: IncrementalLM) -> None:
    """Every row's next-token logits equal a full forward of its sequence and a one-token-at-a-time twin."""
    for b, seq in enumerate(sequences):
        torch.testing.assert_close(lm.logits[b], next_logits(model, seq), atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(lm.logits[b], stepped.logits[b], atol=1e-5, rtol=1e-5)


def step_span(lm: IncrementalLM, rows: list[int], spans: list[list[int]]) -> None:
    """Feeds ``spans`` one token per step() (the reference path extend must equal)."""
    for k in range(max(len(s) for s in spans)):
        tokens = torch.zeros(lm.num_rows, dtype=torch.long)
        active = torch.zeros(lm.num_rows, dtype=torch.bool)
        for r, span in zip(rows, spans):
            if k < len(span):
                tokens[r], active[r] = span[k], True
        lm.step(tokens, active)


def extend(lm: IncrementalLM, rows: list[int], spans: list[list[int]]) -> torch.Tensor:
    S = max(len(s) for s in spans)
    tokens = torch.tensor([s + [VOCAB - 1] * (S - len(s)) for s in spans])  # padded with a real id
    return lm.extend(torch.tensor(rows), tokens, torch.tensor([len(s) for s in spans]))


def test_extend_equals_one_token_steps_and_a_full_forward(span_model):
    P, B = 5, 3
    prompts = [[3, 4], [5, 6, 7, 8, 9], [11, 12, 13]]
    # A small capacity, so the spans outgrow the buffers (which then double).
    lm = IncrementalLM(span_model, num_rows=B, max_length=P + 4)
    stepped = IncrementalLM(span_model, num_rows=B, max_length=P + 4)
    for x in (lm, stepped):
        x.reset_rows(torch.arange(B), *left_pad(prompts, P))
    sequences = [list(p) for p in prompts]
    plan = [
        # (rows stepped with one token, rows given a span: {row: span})
        ({0: 20, 1: 21, 2: 22}, {0: [30, 31, 32], 2: [33]}),  # different lengths; row 1 has none
        ({0: 23, 2: 24}, {1: [34, 35]}),  # row 1 idle on the step, then a span
        ({0: 25, 1: 26, 2: 27}, {0: [36], 1: [37, 38, 39, 40], 2: [41, 42]}),  # every row, past the capacity
        ({1: 28}, {2: [43, 44, 45]}),
    ]
    for one, spans in plan:
        tokens = torch.tensor([one.get(b, 0) for b in range(B)])
        active = torch.tensor([b in one for b in range(B)])
        for x in (lm, stepped):
            x.step(tokens, active)
        for b, token in one.items():
            sequences[b].append(token)
        untouched = {b: lm.logits[b].clone() for b in range(B) if b not in spans}
        rows = sorted(spans)
        logits = extend(lm, rows, [spans[r] for r in rows])
        step_span(stepped, rows, [spans[r] for r in rows])
        assert logits.shape == (B, VOCAB) and logits is lm.logits
        for r in rows:
            sequences[r] += spans[r]
        for b, before in untouched.items():  # rows without a span keep their logits exactly
            assert torch.equal(lm.logits[b], before)
        check_rows(lm, span_model, sequences, stepped)
    # A row restarts while the others continue after their spans: steps stay exact.
    fresh = [7, 8, 9, 10]
    for x in (lm, stepped):
        x.reset_rows(torch.tensor([1]), *left_pad([fresh], P))
    sequences[1] = list(fresh)
    extend(lm, [1], [[46, 47]])
    step_span(stepped, [1], [[46, 47]])
    sequences[1] += [46, 47]
    for x in (lm, stepped):
        x.step(torch.tensor([48, 49, 0]), torch.tensor([True, True, False]))
    sequences[0].append(48)
    sequences[1].append(49)
    check_rows(lm, span_model, sequences, stepped)
    assert lm.slot_mask.sum(1).tolist() == [len(s) for s in sequences]


def test_extend_before_reset_is_an_error(span_model):
    lm = IncrementalLM(span_model, num_rows=1, max_length=4)
    with pytest.raises(RuntimeError, match="before reset_rows"):
        lm.extend(torch.tensor([0]), torch.tensor([[1, 2]]), torch.tensor([2]))
