"""The built-in offline assets (textenv.assets): names, tokenizer, models and data files, as shipped.

The builder that writes them (``python -m tools.build_assets``) is tested in tests/tools/build_assets/.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

from textenv import assets
from tools.build_assets import corpus
from tools.build_assets import protocols as P


@pytest.fixture(scope="module")
def rm():
    return AutoModelForSequenceClassification.from_pretrained(assets.path("tiny-sentiment")).eval()


def _positive_prob(rm, tokenizer, texts: list[str]) -> torch.Tensor:
    enc = tokenizer(texts, return_tensors="pt", padding=True)
    with torch.no_grad():
        return torch.softmax(rm(**enc).logits, dim=-1)[:, 1]


def test_every_name_resolves_to_an_existing_path():
    assert set(assets.NAMES) == {
        "tiny-lm", "tiny-tokenizer", "tiny-sentiment", "tiny-solver", "tiny-solver-early", "tiny-agent",
        "review-prompts", "keyword-prompts", "copy-prompts", "arithmetic-prompts", "reverse-prompts",
        "calculator-prompts", "guess-prompts",
    }  # fmt: skip
    assert set(assets.PRETRAINED) == {
        "tiny-lm", "tiny-tokenizer", "tiny-sentiment", "tiny-solver", "tiny-solver-early", "tiny-agent",
    }  # fmt: skip
    for name in assets.NAMES:
        p = Path(assets.path(name))
        assert p.is_absolute() and p.exists(), name
    assert assets.path("tiny-tokenizer") == assets.path("tiny-lm")
    assert Path(assets.path("tiny-sentiment")).is_dir()
    assert Path(assets.path("copy-prompts")).is_file()


def test_unknown_name_raises_value_error_listing_valid_names():
    with pytest.raises(ValueError, match="'gpt-5'") as info:
        assets.path("gpt-5")
    assert "tiny-lm" in str(info.value) and "copy-prompts" in str(info.value)


def test_missing_asset_tells_how_to_build(monkeypatch, tmp_path):
    monkeypatch.setattr(assets, "_ROOT", tmp_path)
    with pytest.raises(FileNotFoundError, match=r"python -m tools\.build_assets"):
        assets.path("tiny-lm")


def test_tokenizer_special_tokens_and_round_trip(tokenizer, tiny_lm, rm):
    assert tokenizer.padding_side == "left"
    assert tokenizer.eos_token == tokenizer.bos_token == "<|endoftext|>"
    assert tokenizer.pad_token == "<pad>" and tokenizer.pad_token_id != tokenizer.eos_token_id
    for text in ["The movie was wonderful!", "  spaces,\ttabs\nand newlines ", "Ünïcode: 日本語 😀", ""]:
        ids = tokenizer(text)["input_ids"]
        assert tokenizer.eos_token_id not in ids  # no special tokens are added implicitly
        assert tokenizer.decode(ids) == text
    for model in (tiny_lm, rm):
        assert model.config.vocab_size == len(tokenizer)
        assert model.config.pad_token_id == tokenizer.pad_token_id
        assert model.config.eos_token_id == tokenizer.eos_token_id


def test_lm_generates_reviews_and_stops(tokenizer, tiny_lm):
    torch.manual_seed(0)
    enc = tokenizer(["The movie was"] * 8, return_tensors="pt")
    out = tiny_lm.generate(**enc, do_sample=True, max_new_tokens=32, pad_token_id=tokenizer.pad_token_id)
    new = out[:, enc["input_ids"].shape[1] :]
    texts = tokenizer.batch_decode(new, skip_special_tokens=True)
    assert all(t.strip() for t in texts)
    # A trained review LM ends most of its reviews well within 32 tokens.
    assert (new == tokenizer.eos_token_id).any(dim=1).float().mean() >= 0.5


def test_lm_batched_left_padded_generation(tokenizer, tiny_lm):
    torch.manual_seed(0)
    enc = tokenizer(["I", "I watched this film last night and"], return_tensors="pt", padding=True)
    assert enc["attention_mask"][0, 0] == 0  # left padding
    out = tiny_lm.generate(**enc, do_sample=False, max_new_tokens=12, pad_token_id=tokenizer.pad_token_id)
    texts = tokenizer.batch_decode(out[:, enc["input_ids"].shape[1] :], skip_special_tokens=True)
    assert all(t.strip() for t in texts)


def test_chat_template_renders_roles_and_encodes_like_its_text(tokenizer):
    messages = [{"role": "user", "content": "Review this movie."}]
    text = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    assert (
        text
        == "user: Review this movie. assistant:"
        == corpus.render_chat(messages, add_generation_prompt=True)
    )
    ids = tokenizer.apply_chat_template(
        messages, add_generation_prompt=True, tokenize=True, return_dict=False
    )
    assert list(ids) == tokenizer(text)["input_ids"]
    # The role names are whole tokens (the tokenizer was trained on chat-formatted texts).
    assert tokenizer.tokenize(text)[:2] == ["user", ":"] and tokenizer.tokenize(text)[-2:] == [
        "Ġassistant",
        ":",
    ]
    config = json.loads((Path(assets.path("tiny-tokenizer")) / "tokenizer_config.json").read_text())
    assert config["chat_template"] == corpus.CHAT_TEMPLATE


def test_lm_follows_a_chat_templated_request(tokenizer, tiny_lm):
    torch.manual_seed(0)
    text = tokenizer.apply_chat_template(
        [{"role": "user", "content": "Write a movie review."}], add_generation_prompt=True, tokenize=False
    )
    enc = tokenizer([text] * 8, return_tensors="pt")
    out = tiny_lm.generate(**enc, do_sample=True, max_new_tokens=40, pad_token_id=tokenizer.pad_token_id)
    new = out[:, enc["input_ids"].shape[1] :]
    assert (new == tokenizer.eos_token_id).any(dim=1).float().mean() >= 0.5
    assert all(t.strip() and "user:" not in t for t in tokenizer.batch_decode(new, skip_special_tokens=True))


def _solver_accuracy(tokenizer, solver, rows, seed):
    """Sampled (temperature 1) exact-match accuracy, as TextGen-Arithmetic-v0 scores it."""
    from textenv.scorers.answer import NUMBER

    torch.manual_seed(seed)
    enc = tokenizer([r["prompt"] for r in rows], return_tensors="pt", padding=True)
    out = solver.generate(
        **enc, do_sample=True, top_k=0, max_new_tokens=6, pad_token_id=tokenizer.pad_token_id
    )
    texts = tokenizer.batch_decode(out[:, enc["input_ids"].shape[1] :], skip_special_tokens=True)
    last = [NUMBER.findall(t)[-1] if NUMBER.findall(t) else None for t in texts]
    return sum(x == r["answer"] for x, r in zip(last, rows)) / len(rows)


def test_solver_is_right_sometimes_and_wrong_often(tokenizer):
    solver = AutoModelForCausalLM.from_pretrained(assets.path("tiny-solver")).eval()
    assert solver.config.vocab_size == len(tokenizer)
    rows = _read_jsonl(assets.path("arithmetic-prompts"))
    accuracy = _solver_accuracy(tokenizer, solver, rows, seed=0)
    assert 0.2 <= accuracy <= 0.6, accuracy
    greedy = tokenizer([rows[0]["prompt"]], return_tensors="pt")
    out = solver.generate(**greedy, do_sample=False, max_new_tokens=6, pad_token_id=tokenizer.pad_token_id)
    assert (
        tokenizer.decode(out[0, greedy["input_ids"].shape[1] :], skip_special_tokens=True).strip().isdigit()
    )


def _sample_turn(model, tokenizer, ids: list[int], seed: int, stop: list[str] | None) -> list[int]:
    """One policy turn sampled by transformers' own generate (EOS or a stop string ends it)."""
    torch.manual_seed(seed)
    out = model.generate(
        input_ids=torch.tensor([ids]),
        attention_mask=torch.ones(1, len(ids), dtype=torch.long),
        do_sample=True,
        top_k=0,
        max_new_tokens=24,
        stop_strings=stop,
        tokenizer=tokenizer,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    return out[0, len(ids) :].tolist()


def test_agent_calls_the_calculator_in_the_protocol(tokenizer, tiny_agent):
    assert tiny_agent.config.vocab_size == len(tokenizer)
    rows = _read_jsonl(assets.path("calculator-prompts"))[:24]
    calls, right = [], 0
    for i, row in enumerate(rows):
        ids = tokenizer(row["prompt"], add_special_tokens=False)["input_ids"]
        turn = _sample_turn(tiny_agent, tokenizer, ids, seed=i, stop=[P.CALL_END])
        text = tokenizer.decode(turn, skip_special_tokens=True)
        if not text.endswith(P.CALL_END):  # a direct answer: a number, then EOS
            assert turn[-1] == tokenizer.eos_token_id and text.strip().isdigit(), text
            continue
        calls.append(text)
        reply = P.calculator_reply(text)
        ids += turn + tokenizer(reply, add_special_tokens=False)["input_ids"]
        final = _sample_turn(tiny_agent, tokenizer, ids, seed=i, stop=[P.CALL_END])
        right += P.calculator_return(tokenizer.decode(final, skip_special_tokens=True), row["answer"]) == 1.0
    # It calls sometimes, in the exact call format, and answers right only through the tool.
    assert 0 < len(calls) < len(rows)
    assert sum(re.fullmatch(r" <call>calc\(\d\d\*\d\d\)</call>", c) is not None for c in calls) >= 0.8 * len(
        calls
    )
    assert right >= 1


def test_agent_plays_the_guessing_game_in_the_protocol(tokenizer, tiny_agent):
    turns = []
    for i, row in enumerate(_read_jsonl(assets.path("guess-prompts"))[:16]):
        game = P.GuessGame(row["secret"])
        ids = tokenizer(row["prompt"], add_special_tokens=False)["input_ids"]
        reply: str | None = ""
        while reply is not None:
            turn = _sample_turn(tiny_agent, tokenizer, ids, seed=100 * i + len(turns), stop=None)
            assert turn[-1] == tokenizer.eos_token_id  # every guess ends its turn with EOS
            turns.append(tokenizer.decode(turn, skip_special_tokens=True))
            reply = game.reply(turns[-1])
            ids += turn + (tokenizer(reply, add_special_tokens=False)["input_ids"] if reply else [])
    assert sum(re.fullmatch(r" [1-8]", t) is not None for t in turns) >= 0.9 * len(turns), turns


def test_agent_build_info_holds_its_untrained_figures():
    info = json.loads((Path(assets.path("tiny-agent")) / "build_info.json").read_text())
    assert info["quick"] is False and info["config"]["n_positions"] >= 64
    calc, game = info["calculator"], info["guess_number"]
    # The useful range: right sometimes, through the tool; in the game above guessing blind and well
    # below binary search.
    assert 0.2 <= calc["calculator_accuracy"] <= 0.4 and 0.2 <= calc["call_rate"] <= 0.7
    assert game["uniform_random_return"] < game["guess_return"] < game["binary_search_return"] - 0.2


def test_reward_model_labels(rm):
    assert rm.config.id2label == {0: "negative", 1: "positive"}
    assert rm.config.label2id == {"negative": 0, "positive": 1}


def test_reward_model_ranks_positive_above_negative(tokenizer, rm):
    pairs = [
        ("The acting was wonderful and the story kept me hooked.",
         "I hated this film; the plot was dull and the ending was awful."),
        ("What a brilliant movie!", "What a terrible movie!"),
        ("I loved this film. The soundtrack was beautiful.", "I was bored the whole time."),
        ("The movie was great", "The movie was boring"),
        ("The ending was perfect and the cast was superb.", "The ending was awful and the cast was dreadful."),
        ("I would highly recommend this movie to anyone.", "Do not waste your money on this movie."),
    ]  # fmt: skip
    pos = _positive_prob(rm, tokenizer, [p for p, _ in pairs])
    neg = _positive_prob(rm, tokenizer, [n for _, n in pairs])
    assert (pos > neg).all(), (pos, neg)
    assert (pos > 0.5).all() and (neg < 0.5).all()


def test_reward_model_ignores_left_padding(tokenizer, rm):
    texts = ["The movie was great", "I watched this film with my family and the plot was awful."]
    alone = torch.cat([_positive_prob(rm, tokenizer, [t]) for t in texts])
    batched = _positive_prob(rm, tokenizer, texts)
    assert ((alone > 0.5) == (batched > 0.5)).all()
    assert (alone - batched).abs().max() < 0.25


def _read_jsonl(path: str) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines()]


def test_data_files_parse_with_documented_fields():
    prompts = Path(assets.path("review-prompts")).read_text(encoding="utf-8").splitlines()
    assert len(prompts) >= 150 and len(set(prompts)) == len(prompts)
    assert all(p and p == p.strip() for p in prompts)

    keyword_rows = _read_jsonl(assets.path("keyword-prompts"))
    assert len(keyword_rows) >= 150
    for row in keyword_rows:
        assert set(row) == {"prompt", "keywords"}
        assert isinstance(row["prompt"], str) and row["prompt"]
        assert 1 <= len(row["keywords"]) <= 2 and all(isinstance(k, str) and k for k in row["keywords"])

    for row in _read_jsonl(assets.path("arithmetic-prompts")):
        assert set(row) == {"prompt", "answer"}
        a, b = row["prompt"].removeprefix("Q: ").removesuffix("= A:").split("+")
        assert row["answer"] == str(int(a) + int(b))
    for row in _read_jsonl(assets.path("reverse-prompts")):
        words = row["prompt"].removeprefix("Reverse: ").removesuffix(" =>").split()
        assert row["references"] == [" ".join(reversed(words))] and 3 <= len(words) <= 5

    calculator_rows = _read_jsonl(assets.path("calculator-prompts"))
    assert len(calculator_rows) == len({r["prompt"] for r in calculator_rows}) == 200
    for row in calculator_rows:
        assert set(row) == {"prompt", "answer"}
        a, b = row["prompt"].removeprefix("Q: ").removesuffix("= A:").split("*")
        assert 10 <= int(a) <= 99 and 10 <= int(b) <= 99 and row["answer"] == str(int(a) * int(b))
    guess_rows = _read_jsonl(assets.path("guess-prompts"))
    assert len(guess_rows) == 200
    assert all(
        row == {"prompt": "Guess my number from 1 to 8:", "secret": row["secret"]} for row in guess_rows
    )
    assert sorted(row["secret"] for row in guess_rows) == sorted(list(range(1, 9)) * 25)

    copy_rows = _read_jsonl(assets.path("copy-prompts"))
    assert len(copy_rows) >= 150
    for row in copy_rows:
        assert set(row) == {"prompt", "references"}
        assert row["references"] and all(isinstance(r, str) and r for r in row["references"])
        assert row["prompt"] == corpus.copy_prompt(row["references"][0])


def test_build_info_reports_heldout_accuracy():
    info = json.loads((Path(assets.path("tiny-sentiment")) / "build_info.json").read_text())
    assert info["quick"] is False
    assert info["heldout_accuracy"] >= 0.95
    assert info["heldout_reviews"] >= 1000
