"""TextGenEnv: layout, episode semantics, determinism, prompt sources and bad input."""

from __future__ import annotations

import csv
import json
import subprocess
import sys

import gymnasium as gym
import numpy as np
import pytest

import textenv
from textenv import TextGenEnv

PROMPTS = ["The movie was", "I watched this film and", "The acting in this"]


def length_reward(prompt, text, references, meta):
    return float(len(text))


def make_env(tok, **kwargs):
    options = {"tokenizer": tok, "prompts": PROMPTS, "reward": length_reward, "max_prompt_tokens": 16}
    options.update(kwargs)
    return TextGenEnv(**options)


def word_id(tokenizer, word: str) -> int:
    ids = tokenizer(word, add_special_tokens=False)["input_ids"]
    assert len(ids) == 1, f"{word!r} is not one token: {ids}"
    return ids[0]


def test_spaces_follow_vocab_and_lengths(tokenizer):
    env = make_env(tokenizer, max_prompt_tokens=8, max_new_tokens=5)
    assert env.action_space == gym.spaces.Discrete(len(tokenizer))
    ids_space = env.observation_space["input_ids"]
    assert (
        ids_space.shape == (13,)
        and ids_space.dtype == np.int64
        and ids_space.high.max() == len(tokenizer) - 1
    )
    assert env.observation_space["attention_mask"].high.max() == 1
    assert (env.tokenizer, env.max_prompt_tokens, env.max_new_tokens) == (tokenizer, 8, 5)
    assert env.eos_token_id == (tokenizer.eos_token_id,)


def test_observation_layout_position_by_position(tokenizer):
    P, T = 8, 4
    env = make_env(tokenizer, max_prompt_tokens=P, max_new_tokens=T)
    obs, info = env.reset(seed=0, options={"prompt": "The movie was"})
    prompt_ids = tokenizer("The movie was")["input_ids"]
    n = len(prompt_ids)
    pad = tokenizer.pad_token_id
    expected_ids = [pad] * (P - n) + prompt_ids + [pad] * T
    expected_mask = [0] * (P - n) + [1] * n + [0] * T
    assert obs["input_ids"].tolist() == expected_ids
    assert obs["attention_mask"].tolist() == expected_mask
    assert info == {"prompt": "The movie was"}
    for t, token in enumerate([11, 12, 13]):
        obs, *_ = env.step(token)
        expected_ids[P + t], expected_mask[P + t] = token, 1
        assert obs["input_ids"].tolist() == expected_ids
        assert obs["attention_mask"].tolist() == expected_mask


def test_long_prompt_keeps_its_tail_with_one_warning(tokenizer):
    long_prompt = "The acting was wonderful and the story kept me hooked until the very end"
    ids = tokenizer(long_prompt)["input_ids"]
    assert len(ids) > 4
    with pytest.warns(UserWarning, match="longer than max_prompt_tokens=4") as record:
        env = make_env(tokenizer, prompts=[long_prompt, long_prompt], max_prompt_tokens=4)
    assert len(record) == 1  # once per prompt source, not once per prompt
    obs, _ = env.reset(seed=0)
    assert obs["input_ids"][:4].tolist() == ids[-4:]
    assert obs["attention_mask"][:4].tolist() == [1, 1, 1, 1]


def test_episode_ends_at_eos(tokenizer):
    env = make_env(tokenizer, max_new_tokens=10)
    env.reset(seed=0, options={"prompt_index": 0})
    good = word_id(tokenizer, " good")
    _, r1, term1, trunc1, info1 = env.step(good)
    assert (r1, term1, trunc1, info1) == (0.0, False, False, {})
    _, reward, terminated, truncated, info = env.step(tokenizer.eos_token_id)
    assert terminated is True and truncated is False
    assert info["finish_reason"] == "eos" and info["num_tokens"] == 2
    assert info["text"] == " good" and info["prompt"] == PROMPTS[0]
    assert reward == float(len(" good")) and info["reward_terms"] == {"length_reward": reward}
    with pytest.raises(ValueError, match="after the episode ended"):
        env.step(good)


def test_episode_ends_at_length_cap(tokenizer):
    env = make_env(tokenizer, max_new_tokens=3)
    env.reset(seed=1)
    good = word_id(tokenizer, " good")
    steps = [env.step(good) for _ in range(3)]
    assert [s[2] for s in steps] == [False, False, True]
    _, reward, terminated, _, info = steps[-1]
    assert terminated and info["finish_reason"] == "length" and info["num_tokens"] == 3
    assert info["text"] == " good good good" and reward == float(len(" good good good"))


def test_step_returns_plain_python_types(tokenizer):
    env = make_env(tokenizer, max_new_tokens=1)
    env.reset(seed=0)
    _, reward, terminated, truncated, info = env.step(np.int64(5))
    assert type(reward) is float and type(terminated) is bool and type(truncated) is bool
    assert type(info["num_tokens"]) is int and type(info["reward_terms"]["length_reward"]) is float


def rollout(env, seed, actions):
    out = [env.reset(seed=seed)]
    for a in actions:
        obs, reward, terminated, truncated, info = env.step(a)
        out.append((obs, reward, terminated, truncated, info))
        if terminated:
            out.append(env.reset())
    return out


def test_same_seed_same_actions_identical(tokenizer):
    actions = [7, 8, 9, 10, 11, 12, 13, 14, 15, 16]
    a = rollout(make_env(tokenizer, max_new_tokens=3), 42, actions)
    b = rollout(make_env(tokenizer, max_new_tokens=3), 42, actions)
    assert repr(a) == repr(b)


def test_different_seeds_draw_different_prompts(tokenizer):
    env = make_env(tokenizer, prompts=[f"The movie number {i} was" for i in range(50)])
    draws = {
        seed: [env.reset(seed=seed)[1]["prompt"]] + [env.reset()[1]["prompt"] for _ in range(4)]
        for seed in range(4)
    }
    assert len({tuple(v) for v in draws.values()}) == 4
    again = [env.reset(seed=2)[1]["prompt"]] + [env.reset()[1]["prompt"] for _ in range(4)]
    assert again == draws[2]


def test_reset_options_choose_the_prompt(tokenizer):
    env = make_env(tokenizer)
    assert env.reset(options={"prompt_index": 2})[1]["prompt"] == PROMPTS[2]
    assert env.reset(options={"prompt": "A brand new prompt"})[1]["prompt"] == "A brand new prompt"
    with pytest.raises(ValueError, match=r"prompt_index.*\[0, 3\).*7"):
        env.reset(options={"prompt_index": 7})
    with pytest.raises(ValueError, match="unknown reset options"):
        env.reset(options={"promt": "typo"})


@pytest.mark.parametrize(
    ("action", "error", "match"),
    [
        (-1, ValueError, r"action -1 is outside the action space \[0, "),
        (10**6, ValueError, "action 1000000 is outside"),
        (1.5, TypeError, "action must be an integer token id, got float"),
        ("3", TypeError, "got str"),
        (np.array([1, 2]), TypeError, "got ndarray"),
    ],
)
def test_bad_actions(tokenizer, action, error, match):
    env = make_env(tokenizer)
    env.reset(seed=0)
    with pytest.raises(error, match=match):
        env.step(action)
    env.step(5)  # the episode is untouched by the rejected action


def test_prompt_sources(tokenizer, tmp_path):
    records = [
        {"prompt": "The movie was", "references": ["great"], "lang": "en"},
        {"prompt": "I liked", "references": ["it", "this film"]},
    ]
    (tmp_path / "p.txt").write_text("The movie was\n\nI liked\n", encoding="utf-8")
    (tmp_path / "p.jsonl").write_text("\n".join(json.dumps(r) for r in records) + "\n", encoding="utf-8")
    with (tmp_path / "p.csv").open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=["prompt", "lang"])
        writer.writeheader()
        writer.writerows([{"prompt": "The movie was", "lang": "en"}, {"prompt": "I liked", "lang": "fr"}])
    import datasets

    dataset = datasets.Dataset.from_dict({"text": ["The movie was", "I liked"], "label": [1, 0]})
    seen = []

    def spy(prompt, text, references, meta):
        seen.append((prompt, list(references), meta))
        return 0.0

    for source, column in [
        (["The movie was", "I liked"], "prompt"),
        (records, "prompt"),
        (str(tmp_path / "p.txt"), "prompt"),
        (tmp_path / "p.jsonl", "prompt"),
        (str(tmp_path / "p.csv"), "prompt"),
        (dataset, "text"),
    ]:
        env = make_env(tokenizer, prompts=source, prompt_column=column, reward=spy, max_new_tokens=1)
        assert [p.text for p in env.core.prompts] == ["The movie was", "I liked"]
        env.reset(options={"prompt_index": 0})
        env.step(5)
    assert seen[1] == ("The movie was", ["great"], {"lang": "en"})  # references and metadata travel
    assert seen[4] == ("The movie was", [], {"lang": "en"})
    assert seen[5] == ("The movie was", [], {"label": 1})


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"prompts": []}, ValueError, "is empty; expected at least one prompt"),
        ({"prompts": "/nonexistent/prompts.txt"}, ValueError, "'/nonexistent/prompts.txt' does not exist"),
        ({"prompts": ["fine", "   "]}, ValueError, r"prompt 1 is empty \('   '\)"),
        ({"prompts": [{"text": "no prompt key"}]}, ValueError, "prompt record 0 has no 'prompt' key"),
        ({"prompts": [3]}, TypeError, "prompt record 0 must be a string or a dict, got int"),
        ({"prompts": 3.5}, TypeError, "prompts must be a list"),
        ({"max_new_tokens": 0}, ValueError, "max_new_tokens must be >= 1, got 0"),
        ({"max_new_tokens": 2.0}, TypeError, "max_new_tokens must be an int, got float"),
        ({"max_prompt_tokens": -3}, ValueError, "max_prompt_tokens must be >= 1, got -3"),
        ({"vocab_size": 10}, ValueError, "vocab_size=10 is smaller than the tokenizer's"),
        ({"eos_token_id": 10**7}, ValueError, "eos_token_id 10000000 is outside"),
        ({"eos_token_id": "x"}, TypeError, "eos_token_id must be an int or a list of ints"),
        ({"render_mode": "rgb_array"}, ValueError, "render_mode must be one of"),
        ({"reward": 42}, TypeError, "reward must be a Scorer, a callable or a string spec"),
        ({"tokenizer": 42}, TypeError, "tokenizer must be a name, a local path or a transformers tokenizer"),
    ],
)
def test_bad_construction(tokenizer, kwargs, error, match):
    with pytest.raises(error, match=match):
        make_env(tokenizer, **kwargs)


def test_unknown_file_format(tokenizer, tmp_path):
    path = tmp_path / "prompts.parquet"
    path.write_text("x")
    with pytest.raises(ValueError, match=r"unknown format '\.parquet'; expected one of"):
        make_env(tokenizer, prompts=str(path))


def test_prompt_that_tokenises_to_nothing():
    # A tokenizer whose normaliser drops punctuation turns "!!!" into no tokens at all.
    from tokenizers import Regex, Tokenizer, models, normalizers, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    raw = Tokenizer(models.WordLevel({"hello": 0, "<eos>": 1, "[UNK]": 2}, unk_token="[UNK]"))
    raw.normalizer = normalizers.Replace(Regex(r"[^\w\s]"), "")
    raw.pre_tokenizer = pre_tokenizers.Whitespace()
    tok = PreTrainedTokenizerFast(tokenizer_object=raw, eos_token="<eos>", unk_token="[UNK]")
    with pytest.raises(ValueError, match=r"prompt 1 \('!!!'\) tokenises to no tokens"):
        TextGenEnv(tokenizer=tok, prompts=["hello", "!!!"], reward=length_reward)


def test_tokenizer_without_eos():
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    raw = Tokenizer(models.WordLevel({"hello": 0, "[UNK]": 1}, unk_token="[UNK]"))
    raw.pre_tokenizer = pre_tokenizers.Whitespace()
    tok = PreTrainedTokenizerFast(tokenizer_object=raw, unk_token="[UNK]")
    with pytest.raises(ValueError, match="has no EOS token; pass eos_token_id"):
        TextGenEnv(tokenizer=tok, prompts=["hello"], reward=length_reward)
    env = TextGenEnv(tokenizer=tok, prompts=["hello"], reward=length_reward, eos_token_id=[0, 1])
    env.reset(seed=0)
    assert env.step(1)[4]["finish_reason"] == "eos"


def test_vocab_size_can_exceed_the_tokenizer(tokenizer):
    env = make_env(tokenizer, vocab_size=len(tokenizer) + 64)
    env.reset(seed=0)
    assert env.action_space.n == len(tokenizer) + 64
    env.step(len(tokenizer) + 63)  # a padded-vocabulary id is a legal action


def test_render_modes(tokenizer, capsys):
    env = make_env(tokenizer, render_mode="ansi")
    env.reset(options={"prompt_index": 0})
    env.step(word_id(tokenizer, " good"))
    assert env.render() == "The movie was\u2502 good"
    human = make_env(tokenizer, render_mode="human")
    human.reset(options={"prompt_index": 0})
    human.step(word_id(tokenizer, " good"))
    assert capsys.readouterr().out.splitlines()[-1] == "The movie was\u2502 good"


def test_default_env_plays_a_full_episode_offline():
    env = gym.make("TextGen-v0")
    env.reset(seed=0)
    terminated, steps = False, 0
    while not terminated:
        _obs, reward, terminated, _truncated, info = env.step(env.action_space.sample())
        steps += 1
    assert steps <= env.unwrapped.max_new_tokens
    assert info["finish_reason"] in {"eos", "length"} and isinstance(info["text"], str)
    assert 0.0 <= reward <= 1.0  # default reward: positive-sentiment probability of the built-in RM


@pytest.mark.subprocess
def test_module_prefix_registers_without_import(tmp_path):
    code = (
        "import gymnasium as gym, sys\n"
        "assert 'textenv' not in sys.modules\n"
        "env = gym.make('textenv:TextGen-v0', reward=lambda p, t, r, m: 0.0)\n"
        "env.reset(seed=0)\n"
        "print(type(env.unwrapped).__name__)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, check=True
    )
    assert out.stdout.strip() == "TextGenEnv"


def test_public_names():
    assert textenv.TextGenEnv is TextGenEnv
    assert "TextGen-v0" in gym.registry
