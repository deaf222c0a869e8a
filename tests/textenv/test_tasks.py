"""The task suite: registration, both env checkers, overrides, fresh scorers, and reachable thresholds."""

from __future__ import annotations

import warnings

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env as gym_check_env

import textenv
from textenv import tasks
from textenv.scorers import ROUGE, Answer, Keyword, KLPenalty, MissingEOSPenalty, RewardModel, Similarity

TASK_IDS = [t.id for t in tasks.TASKS]
# The only warning a checker may raise: the sentiment task's KL term has no policy to compare with
# while the checkers step random actions (it is 0 then, by design: if_unbound="zero").
EXPECTED_WARNING = "has no policy log-probs, so its reward is 0"


def test_suite_ids_are_registered_with_thresholds_and_both_entry_points():
    assert TASK_IDS == [
        "TextGen-Sentiment-v0", "TextGen-Keyword-v0", "TextGen-Copy-v0", "TextGen-Arithmetic-v0", "TextGen-Reverse-v0",
        "TextGen-Calculator-v0", "TextGen-GuessNumber-v0",
    ]  # fmt: skip
    for task in tasks.TASKS:
        spec = gym.spec(task.id)
        assert spec.reward_threshold == task.reward_threshold
        assert spec.entry_point == "textenv.tasks:make" and spec.kwargs == {"task": task.key}
        assert spec.vector_entry_point == "textenv.tasks:make_vector"
        assert f"{task.id}" in tasks.__doc__ and f"{task.reward_threshold:g}" in tasks.__doc__
    assert gym.spec("TextGen-v0").vector_entry_point == "textenv.vector:TextGenVectorEnv"
    textenv.register_envs()  # idempotent


def _unexpected(caught):
    return [str(w.message) for w in caught if EXPECTED_WARNING not in str(w.message)]


@pytest.mark.parametrize("task_id", TASK_IDS)
def test_gymnasium_env_checker(task_id):
    env = gym.make(task_id)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        gym_check_env(env.unwrapped)
    assert _unexpected(caught) == []
    env.close()


@pytest.mark.parametrize("task_id", TASK_IDS)
def test_stable_baselines3_env_checker(task_id):
    sb3_checker = pytest.importorskip("stable_baselines3.common.env_checker")
    env = gym.make(task_id)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        sb3_checker.check_env(env.unwrapped, warn=True)
    assert _unexpected(caught) == []


def test_default_rewards():
    terms = {task_id: gym.make(task_id).unwrapped.reward.terms() for task_id in TASK_IDS}
    sentiment = terms["TextGen-Sentiment-v0"]
    assert [(n, type(s)) for n, _, s in sentiment] == [
        ("sentiment", RewardModel),
        ("kl", KLPenalty),
        ("missing_eos", MissingEOSPenalty),
    ]
    assert sentiment[0][2].output == "probability" and sentiment[0][2].label == 1
    assert [type(s) for _, _, s in terms["TextGen-Keyword-v0"]] == [Keyword, MissingEOSPenalty]
    assert terms["TextGen-Keyword-v0"][0][2].words is None  # each prompt's own keywords
    assert [type(s) for _, _, s in terms["TextGen-Copy-v0"]] == [ROUGE]
    ((_, _, answer),) = terms["TextGen-Arithmetic-v0"]
    assert isinstance(answer, Answer) and answer.correct == 1.0 and answer.format == 0.0
    ((_, _, similarity),) = terms["TextGen-Reverse-v0"]
    assert isinstance(similarity, Similarity) and similarity.strip


def test_keyword_prompts_name_exactly_their_keywords():
    env = gym.make("TextGen-Keyword-v0").unwrapped
    texts = [p.text for p in env.core.prompts]
    assert len(set(texts)) == len(texts)  # so each prompt has one keyword set
    for prompt in env.core.prompts:
        instruction, _, opening = prompt.text.partition(". ")
        assert instruction.startswith("Use: ") and opening, prompt.text
        assert instruction.removeprefix("Use: ").split(", ") == prompt.metadata["keywords"]
        longest = len(env.tokenizer(prompt.text)["input_ids"])
        assert longest <= env.max_prompt_tokens, prompt.text  # the instruction is never truncated away


def _play(env, index, text):
    """Writes ``text`` then EOS on prompt ``index``; returns the episode's return."""
    tok = env.tokenizer
    env.reset(options={"prompt_index": index})
    total = 0.0
    for token in [*tok(text, add_special_tokens=False)["input_ids"], tok.eos_token_id]:
        _, r, terminated, truncated, info = env.step(token)
        total += r
        if terminated or truncated:
            break
    return total, info


def test_arithmetic_rewards_exactly_the_right_answer():
    env = gym.make("TextGen-Arithmetic-v0").unwrapped
    prompt = env.core.prompts[0]
    a, b = (int(x) for x in prompt.text.removeprefix("Q: ").removesuffix("= A:").split("+"))
    assert prompt.metadata["answer"] == str(a + b)
    assert _play(env, 0, f" {a + b}") == (1.0, _play(env, 0, f" {a + b}")[1])
    assert _play(env, 0, f" {a + b + 1}")[0] == 0.0
    assert _play(env, 0, " no idea")[0] == 0.0
    for i in range(len(env.core.prompts)):  # every right answer fits the episode
        total, info = _play(env, i, " " + env.core.prompts[i].metadata["answer"])
        assert total == 1.0 and info["finish_reason"] == "eos"


def test_reverse_rewards_difflib_ratio_and_exact_reversal_fits():
    import difflib

    env = gym.make("TextGen-Reverse-v0").unwrapped
    for i in range(len(env.core.prompts)):
        prompt = env.core.prompts[i]
        words = prompt.text.removeprefix("Reverse: ").removesuffix(" =>").split()
        assert prompt.references == (" ".join(reversed(words)),)
        total, info = _play(env, i, " " + prompt.references[0])
        assert total == 1.0 and info["finish_reason"] == "eos"
    words = env.core.prompts[0].text.removeprefix("Reverse: ").removesuffix(" =>").split()
    total, _ = _play(env, 0, " " + " ".join(words))  # copied, not reversed
    assert total == pytest.approx(
        difflib.SequenceMatcher(None, " ".join(words), env.core.prompts[0].references[0]).ratio()
    )


def test_every_make_builds_fresh_scorers():
    a, b = (gym.make("TextGen-Sentiment-v0").unwrapped for _ in range(2))
    assert a.reward.find(KLPenalty)[0] is not b.reward.find(KLPenalty)[0]


def test_make_overrides_any_keyword():
    env = gym.make("TextGen-Sentiment-v0", max_new_tokens=8, kl_coef=0.05, missing_eos=0.5).unwrapped
    assert env.max_new_tokens == 8
    assert env.reward.find(KLPenalty)[0].coef == 0.05 and env.reward.find(MissingEOSPenalty)[0].value == 0.5
    env = gym.make("TextGen-Sentiment-v0", reward="keyword:great", prompts=["The film was"]).unwrapped
    assert [n for n, _, _ in env.reward.terms()] == ["keyword"] and env.core.prompts[0].text == "The film was"
    env = gym.make("TextGen-Keyword-v0", reward=None, prompts=None).unwrapped  # None: the task's defaults
    assert isinstance(env.reward.terms()[0][2], Keyword) and "keywords" in env.core.prompts[0].metadata
    with pytest.raises(TypeError, match="only apply to the default reward"):
        gym.make("TextGen-Sentiment-v0", reward="keyword:great", kl_coef=0.1)
    with pytest.raises(TypeError):
        gym.make("TextGen-Copy-v0", kl_coef=0.1)  # no such option for this task


def test_vector_entry_points():
    for task_id in TASK_IDS:
        envs = gym.make_vec(task_id, num_envs=2, vectorization_mode="vector_entry_point", max_new_tokens=4)
        obs, _ = envs.reset(seed=0)
        assert obs["input_ids"].shape[0] == 2
        envs.close()


def _copy_policy_return(env, index):
    tok = env.tokenizer
    ids = tok(env.core.prompts[index].references[0], add_special_tokens=False)["input_ids"] + [
        tok.eos_token_id
    ]
    env.reset(options={"prompt_index": index})
    total = 0.0
    for token in ids:
        _, r, terminated, _, info = env.step(token)
        total += r
        if terminated:
            break
    return total, info


def test_copy_threshold_is_reached_by_copying_and_fits_every_prompt():
    env = gym.make("TextGen-Copy-v0").unwrapped
    returns = []
    for i in range(len(env.core.prompts)):
        total, info = _copy_policy_return(env, i)
        assert info["finish_reason"] == "eos", f"prompt {i}: the copy does not fit max_new_tokens"
        returns.append(total)
    assert np.mean(returns) >= gym.spec("TextGen-Copy-v0").reward_threshold
    # The whole sentence is in the observation: no prompt is truncated.
    tok = env.tokenizer
    longest = max(len(tok(p.text)["input_ids"]) for p in env.core.prompts)
    assert longest <= env.max_prompt_tokens


@pytest.mark.parametrize("task_id", TASK_IDS)
def test_untrained_lm_stays_below_the_threshold(task_id):
    from transformers import AutoModelForCausalLM

    from textenv import assets
    from textenv.lm import IncrementalLM

    task = next(t for t in tasks.TASKS if t.id == task_id)
    lm = AutoModelForCausalLM.from_pretrained(assets.path(task.model), use_safetensors=True).eval()
    env = gym.make(task_id).unwrapped
    for kl in env.reward.find(KLPenalty):
        kl.bind(kl.reference)  # the policy is the reference: the KL term is live and exactly 0
    sampler = IncrementalLM(lm, num_rows=1, max_length=env.core.length)
    g = torch.Generator().manual_seed(0)
    P, returns = env.max_prompt_tokens, []
    # Short episodes are cheap: more of them where a 0/1 reward or a game makes 32 too noisy.
    episodes = 128 if env.text_spec.multi_turn else 96 if env.max_new_tokens <= 12 else 32
    for i in range(episodes):
        obs, _ = env.reset(seed=i)
        logits = sampler.reset_rows(
            torch.arange(1),
            torch.as_tensor(obs["input_ids"][None, :P]),
            torch.as_tensor(obs["attention_mask"][None, :P]),
        )
        total, done, column = 0.0, False, P
        while not done:
            action = torch.multinomial(torch.softmax(logits[0], -1), 1, generator=g)
            obs, r, done, _, info = env.step(int(action))
            total += r
            span = obs["input_ids"][column : column + 1 + info.get("inserted", 0)]  # the token and a reply
            logits = sampler.extend(torch.arange(1), torch.as_tensor(span[None]), torch.tensor([len(span)]))
            column += len(span)
        returns.append(total)
    assert np.mean(returns) < gym.spec(task_id).reward_threshold - 0.1


def test_every_task_documents_a_recipe_and_a_starting_model():
    from textenv import assets

    for task in tasks.TASKS:
        assert task.model in assets.NAMES and set(task.recipes) >= {"ppo", "grpo"}
        assert all(recipe["episodes"] > 0 for recipe in task.recipes.values())
        assert task.id in tasks.__doc__


def test_calculator_episode_exactly_as_documented():
    env = gym.make("TextGen-Calculator-v0").unwrapped
    tok = env.tokenizer
    ids = lambda text: tok(text, add_special_tokens=False)["input_ids"]  # noqa: E731
    for index, record in ((0, env.text_spec.prompts[0]), (1, env.text_spec.prompts[1])):
        obs, _ = env.reset(options={"prompt_index": index})
        a, b = (int(x) for x in record.text.removeprefix("Q: ").removesuffix("= A:").split("*"))
        call = ids(f" <call>calc({a}*{b})</call>")
        for token in call:
            obs, reward, done, _, info = env.step(token)
        assert info["turn_ended"] and not done and reward == 0.0
        P = env.max_prompt_tokens
        reply = obs["input_ids"][P + len(call) : P + len(call) + info["inserted"]].tolist()
        assert reply == ids(f" <result>{a * b}</result>") and str(a * b) == record.metadata["answer"]
        answer = ids(f" {a * b}") if index == 0 else ids(" 1800")
        for token in [*answer, tok.eos_token_id]:
            obs, reward, done, _, info = env.step(token)
        assert done and info["finish_reason"] == "eos" and reward == float(index == 0)
        assert info["reward_terms"]["correct"] == float(index == 0)
    env.reset(options={"prompt_index": 0})
    for token in ids(" <call>calc(3**2)</call>"):
        obs, _, done, _, info = env.step(token)
    assert tok.decode(obs["input_ids"][obs["attention_mask"].astype(bool)]).endswith(
        " <error>bad call</error>"
    )


@pytest.mark.parametrize(
    ("secret", "guesses", "replies", "ret"),
    [
        (5, ["4", "6", "5"], [" higher", " lower"], 0.8),
        (8, ["8"], [], 1.0),
        (1, ["x", "9", "2", "3"], [" invalid", " invalid", " lower"], 0.0),
        (3, ["12", "4", "3"], [" invalid", " lower"], 0.8),
    ],
)
def test_guess_number_game_exactly_as_documented(secret, guesses, replies, ret):
    env = gym.make("TextGen-GuessNumber-v0").unwrapped
    tok = env.tokenizer
    index = next(i for i, p in enumerate(env.text_spec.prompts) if p.metadata["secret"] == secret)
    env.reset(options={"prompt_index": index})
    total, seen = 0.0, []
    for guess in guesses:
        for token in [*tok(f" {guess}", add_special_tokens=False)["input_ids"], tok.eos_token_id]:
            obs, reward, done, _, info = env.step(token)
            total += reward
        if info["inserted"]:
            seen.append(tok.decode(obs["input_ids"][obs["attention_mask"].astype(bool)][-info["inserted"] :]))
    assert done and seen == replies and total == pytest.approx(ret)
    assert info["finish_reason"] == ("responder" if ret else "max_turns")
    assert info["reward_terms"] == {"responder": pytest.approx(ret)}


@pytest.mark.slow
@pytest.mark.parametrize("algo", ["ppo", "grpo"])
@pytest.mark.parametrize("task_id", ["TextGen-Calculator-v0", "TextGen-GuessNumber-v0"])
def test_multi_turn_recipes_reach_the_threshold(task_id, algo):
    """PPO's and GRPO's documented recipes learn each multi-turn task (seconds to minutes)."""
    from agents import registry

    task = next(t for t in tasks.TASKS if t.id == task_id)
    recipe = task.recipes[algo]
    entry = registry.get(algo)
    config = entry.make_config(device="cpu", **{k: v for k, v in recipe.items() if k != "episodes"})
    agent = entry.load()(task.model, task_id, config, verbose=0, progress_bar=False)
    window = 5

    def mean_score() -> float:
        return float(np.mean([r["score"] for r in agent.history[-window:]]))

    agent.learn(
        recipe["episodes"],
        callback=lambda _: len(agent.history) < window or mean_score() < task.reward_threshold,
    )
    assert mean_score() >= task.reward_threshold


@pytest.mark.slow
@pytest.mark.parametrize("task_id", ["TextGen-Copy-v0", "TextGen-Arithmetic-v0", "TextGen-Reverse-v0"])
def test_ppo_recipe_reaches_the_threshold(task_id):
    """The documented recipe (Task.recipes["ppo"]) takes the built-in model past the threshold (minutes)."""
    import agents

    task = next(t for t in tasks.TASKS if t.id == task_id)
    recipe = task.recipes["ppo"]
    config = agents.PPOConfig(device="cpu", **{k: v for k, v in recipe.items() if k != "episodes"})
    ppo = agents.PPO(task.model, task_id, config, verbose=0, progress_bar=False)
    window = 5

    def mean_score() -> float:
        return float(np.mean([r["score"] for r in ppo.history[-window:]]))

    ppo.learn(
        recipe["episodes"],
        callback=lambda _: len(ppo.history) < window or mean_score() < task.reward_threshold,
    )
    assert mean_score() >= task.reward_threshold
