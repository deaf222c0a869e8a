"""TextGen-ReasoningGym-v0 with the real reasoning-gym package: its generated questions as prompts, its own
``score_answer`` as the reward (exact values against the dataset's method), seeded generation, chats and
plain prompts, composites, and the errors of bad arguments and of a missing package."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env
from transformers import AutoTokenizer

import textenv  # noqa: F401  (registers the ids)
from textenv import assets
from textenv.reasoning_gym import EVAL_SEED
from textenv.scorers import Callable, ScoreAnswer, ScorerError

ID = "TextGen-ReasoningGym-v0"
DATASETS = ("countdown", "chain_sum", "basic_arithmetic", "leg_counting")


@pytest.fixture(scope="module")
def rg():
    return pytest.importorskip("reasoning_gym")


@pytest.fixture(scope="module")
def system_prompts(rg):
    from reasoning_gym.utils import SYSTEM_PROMPTS

    return SYSTEM_PROMPTS


@pytest.fixture
def plain_tokenizer():
    """The built-in tokenizer without its chat template."""
    tok = AutoTokenizer.from_pretrained(assets.path("tiny-tokenizer"))
    tok.chat_template = None
    return tok


def wrong_answer(answer: str) -> str:
    """A wrong answer of the same kind: a number off by one, or a right expression with a term changed."""
    if re.fullmatch(r"-?\d+", answer):
        return str(int(answer) + 1)
    return answer + " + 1"


def play(env, text: str, prompt_index: int):
    """One episode whose actions spell ``text`` then EOS; returns the last step's reward and info."""
    tok = env.unwrapped.tokenizer
    ids = tok(text, add_special_tokens=False)["input_ids"]
    assert tok.decode(ids) == text  # the actions spell exactly this text
    env.reset(seed=0, options={"prompt_index": prompt_index})
    for action in [*ids, env.unwrapped.text_spec.eos_token_ids[0]]:
        _, reward, terminated, truncated, info = env.step(action)
        assert not truncated
    assert terminated and info["finish_reason"] == "eos"
    return reward, info


# -- without the package ---------------------------------------------------------------------------


def test_the_id_is_registered_and_says_how_to_install_without_the_package(monkeypatch):
    spec = gym.spec(ID)
    assert spec.entry_point == "textenv.reasoning_gym:make"
    assert spec.vector_entry_point == "textenv.reasoning_gym:make_vector"
    monkeypatch.setitem(sys.modules, "reasoning_gym", None)  # `import reasoning_gym` now fails
    with pytest.raises(ImportError, match=re.escape("pip install 'textenv[reasoning]'")):
        gym.make(ID, dataset="chain_sum")
    with pytest.raises(ImportError, match="needs the reasoning-gym package"):
        gym.make_vec(ID, num_envs=2, dataset="chain_sum")


# -- the reward is the dataset's score_answer ------------------------------------------------------


@pytest.mark.parametrize("name", DATASETS)
def test_scores_are_the_datasets_own_on_right_and_wrong_answers(rg, name):
    dataset = rg.create_dataset(name, size=4, seed=3)
    scorer = ScoreAnswer(dataset)
    for entry in dataset:
        answer = entry["answer"]
        right = f"<think>Let me work it out.</think>\n<answer>{answer}</answer>"
        assert scorer.score_text(right, entry) == dataset.score_answer(answer=answer, entry=entry) == 1.0
        wrong = wrong_answer(answer)
        expected = dataset.score_answer(answer=wrong, entry=entry)
        assert scorer.score_text(f"<answer>{wrong}</answer>", entry) == expected < 1.0
        # No tagged answer: scored as reasoning-gym's evaluation scores it, score_answer(None).
        assert scorer.score_text(answer, entry) == dataset.score_answer(answer=None, entry=entry) < 1.0
        # The last tagged answer counts (reasoning_gym.utils.extract_answer).
        assert scorer.score_text(f"<answer>{wrong}</answer> no: <answer>{answer}</answer>", entry) == 1.0
        assert scorer.score_text(f"<answer>{answer}</answer> no: <answer>{wrong}</answer>", entry) == expected


def test_answer_formats_whole_text_and_regex(rg):
    dataset = rg.create_dataset("chain_sum", size=2, seed=0)
    entry = dataset[0]
    answer = entry["answer"]
    assert ScoreAnswer(dataset, answer_format="text").score_text(f"  {answer}\n", entry) == 1.0
    assert ScoreAnswer(dataset, answer_format="text").score_text(
        f"= {answer}", entry
    ) == dataset.score_answer(answer=f"= {answer}", entry=entry)
    by_group = ScoreAnswer(dataset, answer_format=r"regex:=\s*(-?\d+)")
    assert by_group.score_text(f"1 + 1 = 2, so the sum = {answer}", entry) == 1.0
    assert by_group.score_text(f"the sum = {answer}, and 1 + 1 = 2", entry) == 0.0  # the last match
    whole_match = ScoreAnswer(dataset, answer_format=re.compile(r"-?\d+$"))
    assert whole_match.score_text(f"it is {answer}", entry) == 1.0


def test_the_scorer_reads_the_entry_and_refuses_a_prompt_without_one(rg):
    env = gym.make(ID, dataset="chain_sum", size=2, seed=0, max_new_tokens=2)
    assert isinstance(env.unwrapped.reward, ScoreAnswer)
    env.reset(seed=0, options={"prompt": "What is 2+2?"})  # an ad-hoc prompt: no reasoning-gym entry
    env.step(5)
    with pytest.raises(ScorerError, match="reasoning-gym entry"):
        env.step(6)
    with pytest.raises(TypeError, match="needs a reasoning-gym dataset"):
        ScoreAnswer([1, 2, 3])


# -- episodes ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["countdown", "leg_counting"])
def test_an_episode_that_spells_the_right_answer_scores_one_and_a_wrong_one_the_datasets_score(rg, name):
    env = gym.make(ID, dataset=name, size=3, seed=7, max_new_tokens=48)
    check_env(env.unwrapped, skip_render_check=True)
    prompt = env.unwrapped.core.prompts[1]
    entry = prompt.metadata["entry"]
    dataset = env.unwrapped.reward.dataset
    assert entry == dataset[1] and entry == rg.create_dataset(name, size=3, seed=7)[1]

    reward, info = play(env, f"<answer>{entry['answer']}</answer>", 1)
    assert reward == 1.0 and info["reward_terms"] == {"score_answer": 1.0}
    assert info["text"] == f"<answer>{entry['answer']}</answer>" and info["prompt"] == entry["question"]

    wrong = wrong_answer(entry["answer"])
    reward, info = play(env, f"<answer>{wrong}</answer>", 1)
    assert reward == dataset.score_answer(answer=wrong, entry=entry) < 1.0


def test_the_vector_env_scores_every_row(rg):
    envs = gym.make_vec(ID, num_envs=2, dataset="chain_sum", size=4, seed=1, max_new_tokens=24)
    tok = envs.tokenizer
    entries = [envs.core.prompts[i].metadata["entry"] for i in (2, 3)]
    texts = [
        f"<answer>{entries[0]['answer']}</answer>",
        f"<answer>{wrong_answer(entries[1]['answer'])}</answer>",
    ]
    ids = [tok(t, add_special_tokens=False)["input_ids"] + [envs.text_spec.eos_token_ids[0]] for t in texts]
    envs.reset(seed=0, options={"prompt_index": [2, 3]})
    rewards: dict[int, float] = {}
    for t in range(max(map(len, ids))):
        actions = np.array([row[t] if t < len(row) else row[-1] for row in ids])
        _, reward, terminated, _, _ = envs.step(actions)
        for r in np.flatnonzero(terminated):
            rewards.setdefault(int(r), float(reward[r]))
    assert rewards == {0: 1.0, 1: 0.0}


def test_a_composite_draws_from_each_dataset_and_scores_with_the_one_that_made_the_question(rg):
    parts = [
        {"name": "chain_sum", "weight": 1},
        {"name": "leg_counting", "weight": 2, "config": {"min_animals": 1, "max_animals": 2}},
    ]
    env = gym.make(ID, dataset="composite", datasets=parts, size=12, seed=0, max_new_tokens=24)
    entries = [p.metadata["entry"] for p in env.unwrapped.core.prompts]
    from reasoning_gym.composite import DatasetSpec

    specs = [DatasetSpec(p["name"], p["weight"], p.get("config", {})) for p in parts]
    expected = rg.create_dataset("composite", size=12, seed=0, datasets=specs)
    assert entries == list(expected)
    sources = [e["metadata"]["source_dataset"] for e in entries]
    assert set(sources) == {"chain_sum", "leg_counting"}
    for name in ("chain_sum", "leg_counting"):
        i = sources.index(name)
        reward, _ = play(env, f"<answer>{entries[i]['answer']}</answer>", i)
        assert reward == 1.0
        reward, _ = play(env, f"<answer>{wrong_answer(entries[i]['answer'])}</answer>", i)
        assert (
            reward == expected.score_answer(answer=wrong_answer(entries[i]["answer"]), entry=entries[i]) < 1.0
        )


def test_format_reward_and_the_entry_reach_other_scorers(rg):
    env = gym.make(ID, dataset="chain_sum", size=2, seed=0, max_new_tokens=24, format_reward=0.2)
    answer = env.unwrapped.core.prompts[0].metadata["entry"]["answer"]
    reward, info = play(env, f"<answer>{answer}</answer>", 0)
    assert reward == pytest.approx(1.2) and info["reward_terms"] == {"score_answer": 1.0, "format": 0.2}
    reward, info = play(env, f"<answer>{wrong_answer(answer)}</answer>", 0)
    assert reward == pytest.approx(0.2) and info["reward_terms"] == {"score_answer": 0.0, "format": 0.2}
    reward, info = play(env, answer, 0)
    assert info["reward_terms"] == {"score_answer": 0.0, "format": 0.0}

    seen = []
    reward_fn = Callable(lambda prompt, text, refs, meta: seen.append(meta["entry"]) or 0.5)
    env = gym.make(ID, dataset="chain_sum", size=2, seed=0, max_new_tokens=24, reward=reward_fn)
    reward, _ = play(env, "hi", 1)
    assert reward == 0.5 and seen == [rg.create_dataset("chain_sum", size=2, seed=0)[1]]


def test_a_dataset_object_is_used_as_it_is(rg):
    dataset = rg.create_dataset("chain_sum", size=3, seed=11, max_terms=2)
    env = gym.make(ID, dataset=dataset, max_new_tokens=24)
    assert env.unwrapped.reward.dataset is dataset
    assert [p.metadata["entry"] for p in env.unwrapped.core.prompts] == list(dataset)


# -- prompts ----------------------------------------------------------------------------------------


def test_a_tokenizer_with_a_chat_template_gets_the_instruction_as_system_message(rg, system_prompts):
    tok = AutoTokenizer.from_pretrained(assets.path("tiny-tokenizer"))
    tok.chat_template = (
        "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}<|end|>{% endfor %}"
        "{% if add_generation_prompt %}<|assistant|>{% endif %}"
    )
    env = gym.make(ID, dataset="chain_sum", size=2, seed=0, tokenizer=tok, max_new_tokens=4)
    prompt = env.unwrapped.core.prompts[0]
    question = prompt.metadata["entry"]["question"]
    messages = [
        {"role": "system", "content": system_prompts["default"].strip()},
        {"role": "user", "content": question},
    ]
    assert prompt.messages == tuple(messages) and prompt.text == question
    obs, _ = env.reset(seed=0, options={"prompt_index": 0})
    ids = obs["input_ids"][obs["attention_mask"] == 1].tolist()
    assert ids == list(
        tok.apply_chat_template(messages, tokenize=True, add_generation_prompt=True, return_dict=False)
    )
    assert tok.decode(ids).startswith("<|system|>Given a problem")


def test_without_a_chat_template_the_prompt_is_the_instruction_then_the_question(
    rg, system_prompts, plain_tokenizer
):
    env = gym.make(ID, dataset="chain_sum", size=2, seed=0, tokenizer=plain_tokenizer, max_new_tokens=4)
    prompt = env.unwrapped.core.prompts[1]
    question = prompt.metadata["entry"]["question"]
    assert prompt.messages == () and prompt.text == system_prompts["default"].strip() + "\n\n" + question
    obs, _ = env.reset(seed=0, options={"prompt_index": 1})
    assert obs["input_ids"][obs["attention_mask"] == 1].tolist() == plain_tokenizer(prompt.text)["input_ids"]


def test_chat_template_false_and_other_system_prompts(rg, system_prompts):
    def first(**kwargs):
        return gym.make(
            ID, dataset="chain_sum", size=1, seed=0, max_new_tokens=4, **kwargs
        ).unwrapped.core.prompts[0]

    question = rg.create_dataset("chain_sum", size=1, seed=0)[0]["question"]
    assert first().messages[0]["content"] == system_prompts["default"].strip()  # the built-in template
    assert first(chat_template=False).text == system_prompts["default"].strip() + "\n\n" + question
    assert first(system_prompt="direct").messages[0]["content"] == system_prompts["direct"].strip()
    assert (
        first(system_prompt="Reply with <answer>N</answer>.").messages[0]["content"]
        == "Reply with <answer>N</answer>."
    )
    assert first(system_prompt=None).messages == ({"role": "user", "content": question},)
    # Untagged formats ask nothing of their own: the question carries the dataset's format instructions.
    assert first(answer_format="text").messages == ({"role": "user", "content": question},)
    assert (
        first(answer_format="text", system_prompt="simple").messages[0]["content"] == system_prompts["simple"]
    )


def test_dataset_options_and_env_arguments_are_told_apart(rg):
    env = gym.make(ID, dataset="chain_sum", size=5, seed=0, min_terms=2, max_terms=2, max_new_tokens=7)
    entries = [p.metadata["entry"] for p in env.unwrapped.core.prompts]
    # Two terms: "State the final answer to the following arithmetic problem: 1663 - 5242 ="
    assert len(entries) == 5 and all(len(re.findall(r"\d+", e["question"])) == 2 for e in entries)
    assert env.observation_space["input_ids"].shape == (512 + 7,)
    assert gym.make(ID, dataset="chain_sum", size=1).observation_space["input_ids"].shape == (512 + 512,)


# -- seeds ------------------------------------------------------------------------------------------


def questions(seed: int, name: str = "chain_sum", size: int = 20, **kwargs) -> list[str]:
    env = gym.make(ID, dataset=name, size=size, seed=seed, max_new_tokens=4, **kwargs)
    return [p.metadata["entry"]["question"] for p in env.unwrapped.core.prompts]


def test_the_same_seed_gives_the_same_questions(rg):
    train = questions(0)
    assert train == questions(0) == [e["question"] for e in rg.create_dataset("chain_sum", size=20, seed=0)]
    assert [q.split("\n\n")[-1] for q in questions(0, chat_template=False)] == train  # plain prompts


def test_nearby_seeds_share_questions_and_the_eval_seed_does_not(rg):
    """reasoning-gym draws item i from Random(seed + i), as the module docstring says: seed=1 is seed=0
    shifted by one item, so a held-out split needs a seed at least ``size`` away, such as EVAL_SEED."""
    train = questions(0)
    assert questions(1)[:-1] == train[1:]
    held_out = questions(EVAL_SEED, "countdown", size=10)
    assert not set(questions(0, "countdown", size=10)) & set(held_out)
    assert len(set(held_out)) == 10


GENERATE = """
import json
from textenv.reasoning_gym import create_dataset, reasoning_gym_prompts
parts = [{"name": "countdown", "weight": 1}, {"name": "leg_counting", "weight": 1}]
dataset = create_dataset("composite", size=6, seed=4, datasets=parts)
print(json.dumps(reasoning_gym_prompts(dataset, system_prompt="S", chat=True), default=str))
"""


@pytest.mark.subprocess
def test_the_same_seed_gives_the_same_prompts_in_another_process(rg):
    """No dependence on Python's per-process hash seed (set iteration, hash()): other processes agree."""
    runs = []
    for hash_seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed}
        out = subprocess.run(
            [sys.executable, "-c", GENERATE], capture_output=True, text=True, env=env, check=True
        )
        runs.append(json.loads(out.stdout))
    assert runs[0] == runs[1]
    assert len(runs[0]) == 6 and runs[0][0]["messages"][0] == {"role": "system", "content": "S"}


# -- bad arguments ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({}, TypeError, "needs dataset="),
        ({"dataset": "countdwn"}, ValueError, "did you mean 'countdown'"),
        ({"dataset": 3}, TypeError, "dataset name"),
        ({"dataset": "chain_sum", "max_term": 3}, TypeError, "unexpected keyword 'max_term'.*max_terms"),
        ({"dataset": "chain_sum", "min_terms": 5, "max_terms": 2}, ValueError, "rejected its config"),
        ({"dataset": "chain_sum", "size": 0}, ValueError, "size must be >= 1, got 0"),
        ({"dataset": "chain_sum", "size": "10"}, TypeError, "size must be an int"),
        ({"dataset": "chain_sum", "seed": -1}, ValueError, "seed must be >= 0"),
        ({"dataset": "chain_sum", "answer_format": "tag"}, ValueError, "answer_format must be one of"),
        ({"dataset": "chain_sum", "answer_format": "regex:("}, ValueError, "not a valid regular expression"),
        (
            {"dataset": "chain_sum", "answer_format": "text", "format_reward": 0.1},
            ValueError,
            "answer format to check",
        ),
        ({"dataset": "chain_sum", "format_reward": 0.1, "reward": "length"}, TypeError, "not to reward="),
        (
            {"dataset": "chain_sum", "format_reward": "0.1"},
            TypeError,
            "format_reward must be a finite number",
        ),
        ({"dataset": "chain_sum", "system_prompt": 1}, TypeError, "system_prompt must be"),
        ({"dataset": "chain_sum", "prompts": ["hi"]}, TypeError, "prompts= is not an option"),
        ({"dataset": "composite"}, ValueError, "needs datasets="),
        (
            {"dataset": "composite", "datasets": [{"name": "chain_sun"}]},
            ValueError,
            "did you mean 'chain_sum'",
        ),
        (
            {"dataset": "composite", "datasets": [{"name": "chain_sum", "weight": 0}]},
            ValueError,
            "positive number",
        ),
        (
            {"dataset": "composite", "datasets": [{"name": "chain_sum", "wieght": 1}]},
            ValueError,
            "optional 'weight'",
        ),
        (
            {"dataset": "composite", "datasets": [{"name": "chain_sum", "config": {"x": 1}}]},
            TypeError,
            "no option 'x'",
        ),
    ],
)
def test_bad_arguments_are_named(rg, kwargs, error, match):
    with pytest.raises(error, match=match):
        gym.make(ID, **kwargs)


def test_size_and_seed_belong_to_a_dataset_name(rg):
    with pytest.raises(TypeError, match="size= and seed= configure a dataset given by name"):
        gym.make(ID, dataset=rg.create_dataset("chain_sum", size=2, seed=0), seed=1)
