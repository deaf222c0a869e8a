"""Multi-turn envs (textenv/multiturn.py, conversation.py, core.py): token in, token out, turn after turn.

The policy's sampled ids stay in the observation as they were sampled (never decoded and re-encoded), each
reply is encoded once and appended on the step that ends the policy's turn, ``policy_mask`` marks the
policy's tokens, and a step that fails (a responder that raises or returns something unusable) leaves the
env as it was.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env
from gymnasium.vector import AutoresetMode, SyncVectorEnv
from transformers import AutoTokenizer

from tests.assertions import assert_same
from tests.builders import tiny_gpt2
from textenv import Episode, Reply, ResponderError, TextGenEnv, assets
from textenv.scorers import Callable
from textenv.scorers.base import EpisodeBatch, Scorer
from textenv.scorers.kl import KLPenalty
from textenv.vector import TextGenVectorEnv

P = 8
MODES = [AutoresetMode.NEXT_STEP, AutoresetMode.SAME_STEP, AutoresetMode.DISABLED]


# --- helpers ----------------------------------------------------------------------------------------------
# ``tokenizer`` (tests/conftest.py) is the built-in byte-level BPE: single characters are tokens that an
# encode merges.


def ids(tokenizer, text: str) -> list[int]:
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def chars(tokenizer, text: str) -> list[int]:
    """``text`` as one token per character (a policy may emit a word this way; an encode would merge it)."""
    out = tokenizer.convert_tokens_to_ids(["\u0120" if c == " " else c for c in text])
    assert tokenizer.unk_token_id not in out
    return out


def real(obs: dict[str, np.ndarray]) -> list[int]:
    """The observation's ids where the attention mask is 1: the prompt's, then every one after it."""
    return obs["input_ids"][obs["attention_mask"] == 1].tolist()


def policy_flags(obs: dict[str, np.ndarray]) -> list[int]:
    """``policy_mask`` at the observation's real tokens (checking that it is 0 everywhere else)."""
    assert not (obs["policy_mask"] & (1 - obs["attention_mask"])).any()
    return obs["policy_mask"][obs["attention_mask"] == 1].tolist()


def zero(prompt: str, text: str, references: list[str], meta: dict[str, Any]) -> float:
    return 0.0


def scripted(*replies: Any):
    """A responder that says ``replies[k]`` after the policy's ``k + 1``-th turn."""

    def respond(episode: Episode) -> Any:
        return replies[episode.policy_turns - 1]

    return respond


class Recorder(Scorer):
    """A terminal scorer that keeps every batch it scores and gives 0.1 per turn of each episode."""

    name = "recorder"

    def __init__(self) -> None:
        self.batches: list[EpisodeBatch] = []

    def score(self, batch: EpisodeBatch) -> list[float]:
        self.batches.append(batch)
        return [0.1 * len(turns) for turns in batch.turns]


def make_env(tokenizer, responder: Any, *, reward: Any = None, prompts: Any = ("Guess:",), **options: Any):
    return TextGenEnv(
        tokenizer=tokenizer,
        prompts=list(prompts),
        reward=Callable(zero) if reward is None else reward,
        responder=responder,
        max_prompt_tokens=options.pop("max_prompt_tokens", P),
        max_new_tokens=options.pop("max_new_tokens", 40),
        **options,
    )


def play(env, actions: list[int]) -> list[tuple]:
    """Steps ``actions``; returns every step's output."""
    return [env.step(a) for a in actions]


# --- the observation: prompt, sampled ids, reply ids ------------------------------------------------------
def test_observation_is_the_prompt_the_sampled_ids_and_the_reply_ids(tokenizer):
    eos = tokenizer.eos_token_id
    great, up = chars(tokenizer, " great"), chars(tokenizer, " up")
    # The policy's ids and a reply's ids that an encode of their text would merge: they must stay as they are.
    assert great != ids(tokenizer, " great") and up != ids(tokenizer, " up")
    responder = scripted(Reply(" lower"), Reply(token_ids=up), Reply(done=True))
    env = make_env(tokenizer, responder)
    obs, _ = env.reset(seed=0)
    expected, flags = list(tokenizer("Guess:")["input_ids"]), [0] * len(tokenizer("Guess:")["input_ids"])
    assert real(obs) == expected and policy_flags(obs) == flags
    turns = [[*great, eos], [*ids(tokenizer, " a fine film"), eos], [*chars(tokenizer, " ok"), eos]]
    replies: list[list[int] | None] = [ids(tokenizer, " lower"), up, None]
    for turn, reply in zip(turns, replies):
        for a in turn:
            obs, reward, terminated, truncated, info = env.step(a)
            expected.append(a)
            flags.append(1)
            ended = a == eos
            if ended and reply is not None:
                expected += reply
                flags += [0] * len(reply)
            assert real(obs) == expected and policy_flags(obs) == flags
            assert info["turn_ended"] is ended and info["inserted"] == (len(reply or []) if ended else 0)
            assert reward == 0.0 and not truncated
            assert terminated is (reply is None and ended)
    assert info["finish_reason"] == "responder"
    assert info["num_tokens"] == sum(len(t) for t in turns)  # the policy's tokens only
    assert info["text"] == " ok"  # the policy's last turn, without its EOS
    assert info["turns"] == [
        {"role": "assistant", "text": " great", "token_ids": [*great, eos], "reward": 0.0},
        {"role": "user", "text": " lower", "token_ids": ids(tokenizer, " lower"), "reward": 0.0},
        {"role": "assistant", "text": " a fine film", "token_ids": turns[1], "reward": 0.0},
        {"role": "user", "text": " up", "token_ids": up, "reward": 0.0},
        {"role": "assistant", "text": " ok", "token_ids": turns[2], "reward": 0.0},
        {"role": "user", "text": "", "token_ids": [], "reward": 0.0},
    ]


def test_a_reply_is_encoded_once_on_its_own(tokenizer):
    # The turn ends at a stop string in the middle of a word; the reply's text finishes the word. The reply
    # is encoded alone: the text of the conversation is never encoded again (which would merge the word).
    seen: list[Episode] = []

    def respond(episode: Episode) -> Reply:
        seen.append(episode)
        return Reply("at")

    policy = ids(tokenizer, " a gre")
    assert ids(tokenizer, " a great") != policy + ids(tokenizer, "at")
    env = make_env(tokenizer, respond, end_of_turn=[], stop_strings=["gre"])
    obs, _ = env.reset(seed=0)
    prompt = real(obs)
    out = play(env, policy)
    assert [o[4]["turn_ended"] for o in out] == [False] * (len(policy) - 1) + [True]
    obs, *_ = env.step(ids(tokenizer, "x")[0])
    assert real(obs) == prompt + policy + ids(tokenizer, "at") + ids(tokenizer, "x")
    (episode,) = seen
    assert episode.row == 0 and episode.prompt.text == "Guess:" and episode.policy_turns == 1
    assert episode.last.text == " a gre" and episode.last.token_ids == tuple(policy)
    assert episode.messages() == [{"role": "assistant", "content": " a gre"}]


# --- chat templates ---------------------------------------------------------------------------------------
QWEN = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
CHAT = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi there"}]


def chat_tokenizer(template: str = QWEN):
    """The built-in tokenizer with a Qwen-like template; ``<|im_end|>`` is its EOS and ends turns."""
    tokenizer = AutoTokenizer.from_pretrained(assets.path("tiny-tokenizer"))
    tokenizer.add_special_tokens({"additional_special_tokens": ["<|im_start|>", "<|im_end|>"]})
    tokenizer.eos_token = "<|im_end|>"
    tokenizer.chat_template = template
    return tokenizer


@pytest.fixture(scope="module")
def qwen():
    return chat_tokenizer()


def template_ids(tokenizer, messages: list[dict[str, str]]) -> list[int]:
    return list(
        tokenizer.apply_chat_template(messages, tokenize=True, add_generation_prompt=True, return_dict=False)
    )


def template_text(tokenizer, messages: list[dict[str, str]]) -> str:
    return str(tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True))


def chat_env(tokenizer, responder: Any, **options: Any) -> TextGenEnv:
    return make_env(
        tokenizer, responder, prompts=[{"messages": CHAT}], max_prompt_tokens=32, max_new_tokens=96, **options
    )


def test_chat_template_ids_after_every_reply(qwen):
    end = qwen.eos_token_id
    responder = scripted(Reply("Why?"), Reply("4", role="tool"), Reply(done=True))
    env = chat_env(qwen, responder)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # prefix-preserving: nothing to say
        obs, _ = env.reset(seed=0)
        assert real(obs) == template_ids(qwen, CHAT)
        messages = list(CHAT)
        for text, reply, role in [(" A film", "Why?", "user"), (" It is", "4", "tool")]:
            turn = [*ids(qwen, text), end]
            *_, (obs, _, terminated, _, info) = play(env, turn)
            messages += [{"role": "assistant", "content": text}, {"role": role, "content": reply}]
            assert real(obs) == template_ids(qwen, messages) and not terminated
            assert info["inserted"] == len(template_ids(qwen, messages)) - len(
                template_ids(qwen, messages[:-2])
            ) - len(turn)
        *_, (obs, _, terminated, _, info) = play(env, [*ids(qwen, " Done"), end])
    assert terminated and info["finish_reason"] == "responder"
    # The policy's tokens are exactly its turns' (the template's markup around them is the env's).
    flags = policy_flags(obs)
    assert [i for i, f in zip(real(obs), flags) if f] == [
        *ids(qwen, " A film"),
        end,
        *ids(qwen, " It is"),
        end,
        *ids(qwen, " Done"),
        end,
    ]


def count_prefix_warnings(caught: list[warnings.WarningMessage]) -> int:
    return sum("not prefix-preserving" in str(w.message) for w in caught)


def test_emitted_ids_a_template_would_merge_are_kept_and_said_once(qwen):
    # Character by character: the template's encode of the conversation merges the characters, so its ids
    # are not a continuation of the observation; the env keeps the sampled ids and says so once per env.
    end = qwen.eos_token_id
    great, film = chars(qwen, " great"), chars(qwen, " film")
    responder = scripted(Reply("Why?"), Reply("Sure."), Reply(done=True))
    env = chat_env(qwen, responder)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _episode in range(2):
            obs, _ = env.reset(seed=0)
            expected = template_ids(qwen, CHAT)
            for turn in (great, film):
                *_, (obs, *_) = play(env, [*turn, end])
                expected += [*turn, end]
                assert real(obs)[: len(expected)] == expected  # the sampled ids, as sampled
                expected = real(obs)
            messages = [
                *CHAT,
                {"role": "assistant", "content": " great"},
                {"role": "user", "content": "Why?"},
                {"role": "assistant", "content": " film"},
                {"role": "user", "content": "Sure."},
            ]
            # The text is the template's, to the character.
            assert qwen.decode(real(obs)) == template_text(qwen, messages)
    assert count_prefix_warnings(caught) == 1


def test_a_template_that_is_not_prefix_preserving_keeps_the_sampled_ids(qwen):
    trimmed = chat_tokenizer(QWEN.replace("{{ m['content'] }}", "{{ m['content'] | trim }}"))
    end = trimmed.eos_token_id
    env = chat_env(trimmed, scripted(Reply("Why?"), Reply(done=True)))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _episode in range(2):
            obs, _ = env.reset(seed=0)
            turn = [*ids(trimmed, " A film"), end]  # the template trims the leading space away
            *_, (obs, _, _, _, info) = play(env, turn)
            assert (
                real(obs)[: len(template_ids(trimmed, CHAT)) + len(turn)]
                == template_ids(trimmed, CHAT) + turn
            )
            inserted = real(obs)[-info["inserted"] :]
            assert trimmed.decode(inserted).endswith(
                "<|im_start|>user\nWhy?<|im_end|>\n<|im_start|>assistant\n"
            )
            play(env, [end])
    assert count_prefix_warnings(caught) == 1


# --- how turns and episodes end ---------------------------------------------------------------------------
def test_end_of_turn_ids_and_an_eos_that_ends_the_episode(tokenizer):
    bar = ids(tokenizer, "|")
    env = make_env(tokenizer, scripted(*[Reply(" ok")] * 5), end_of_turn=bar)
    env.reset(seed=0)
    out = play(env, chars(tokenizer, " hi") + bar + chars(tokenizer, " bye") + [tokenizer.eos_token_id])
    assert [o[4]["turn_ended"] for o in out] == [False, False, False, True] + [False] * 4 + [False]
    assert [o[2] for o in out] == [False] * 8 + [True]
    assert out[-1][4]["finish_reason"] == "eos" and out[-1][4]["text"] == " bye"


def test_stop_strings_end_turns_and_eos_ends_the_episode(tokenizer):
    seen: list[str] = []

    def respond(episode: Episode) -> Reply:
        seen.append(episode.last.text)
        return Reply(" <result>5</result>")

    eos = tokenizer.eos_token_id
    env = make_env(tokenizer, respond, end_of_turn=[], stop_strings=["</call>"], max_new_tokens=60)
    env.reset(seed=0)
    # The stop string arrives in pieces, character by character at the end; "</call" alone is not it.
    call = ids(tokenizer, " <call>add(2, 3)</call") + chars(tokenizer, ">")
    out = play(env, call)
    assert [o[4]["turn_ended"] for o in out] == [False] * (len(call) - 1) + [True]
    assert seen == [" <call>add(2, 3)</call>"] and out[-1][4]["inserted"] == len(
        ids(tokenizer, " <result>5</result>")
    )
    # An EOS is not an end-of-turn token here (end_of_turn=[]): it ends the episode.
    *_, (_obs, _, terminated, _, info) = play(env, [*ids(tokenizer, " 5"), eos])
    assert terminated and info["finish_reason"] == "eos" and info["text"] == " 5"
    assert [t["role"] for t in info["turns"]] == ["assistant", "user", "assistant"]


def test_a_stop_string_that_ends_in_a_multi_byte_character(tokenizer):
    # "→" is three byte-level tokens, none of which decodes to the character alone.
    arrow = ids(tokenizer, "→")
    assert len(arrow) == 3 and all("→" not in tokenizer.decode([i]) for i in arrow)
    env = make_env(tokenizer, scripted(Reply(" ok")), end_of_turn=[], stop_strings=["→"])
    env.reset(seed=0)
    out = play(env, ids(tokenizer, " done") + arrow)
    assert [o[4]["turn_ended"] for o in out] == [False] * (len(out) - 1) + [True]


def test_max_turns_ends_the_episode_and_records_the_last_reply(tokenizer):
    eos = tokenizer.eos_token_id
    env = make_env(tokenizer, scripted(Reply(" one", reward=0.5), Reply(" two", reward=0.25)), max_turns=2)
    env.reset(seed=0)
    play(env, [*chars(tokenizer, "a"), eos])
    *_, (obs, reward, terminated, _, info) = play(env, [*chars(tokenizer, "b"), eos])
    assert terminated and info["finish_reason"] == "max_turns"
    assert reward == 0.25  # the last turn's reward still arrives
    assert info["turns"][-1] == {
        "role": "user",
        "text": " two",
        "token_ids": ids(tokenizer, " two"),
        "reward": 0.25,
    }
    assert real(obs)[-2:] == [*chars(tokenizer, "b"), eos]  # recorded, not inserted
    assert info["inserted"] == 0


def test_the_responder_ends_the_episode(tokenizer):
    eos = tokenizer.eos_token_id
    env = make_env(tokenizer, scripted(Reply(" bye", done=True, reward=1.0)))
    env.reset(seed=0)
    obs, reward, terminated, _, info = env.step(eos)
    assert terminated and info["finish_reason"] == "responder" and reward == 1.0
    assert real(obs)[-1] == eos and info["inserted"] == 0
    assert info["turns"][-1]["text"] == " bye" and info["turns"][-1]["token_ids"] == ids(tokenizer, " bye")


@pytest.mark.parametrize("room", [1, 2, 3])
def test_a_reply_that_does_not_fit_ends_the_episode_with_length(tokenizer, room):
    # The reply takes 1 token and at least one more policy token must follow it: room 2 is enough.
    eos = tokenizer.eos_token_id
    reply = ids(tokenizer, " no")
    assert len(reply) == 1
    T = 10
    env = make_env(tokenizer, scripted(Reply(" no", reward=0.5)), max_new_tokens=T)
    env.reset(seed=0)
    first = [*chars(tokenizer, "abcdefghij")[: T - room - 1], eos]
    *_, (obs, reward, terminated, _, info) = play(env, first)
    assert reward == 0.5
    if room < 2:
        assert terminated and info["finish_reason"] == "length" and info["inserted"] == 0
        assert info["turns"][-1] == {"role": "user", "text": " no", "token_ids": reply, "reward": 0.5}
        assert real(obs)[-1] == eos
        return
    assert not terminated and info["inserted"] == 1 and real(obs)[-2:] == [eos, *reply]
    # The budget counts the policy's tokens and the inserted ones: T positions after the prompt in all.
    steps = play(env, chars(tokenizer, "xyz")[: room - 1])
    obs, _, terminated, _, info = steps[-1]
    assert terminated and info["finish_reason"] == "length"
    assert obs["attention_mask"][P:].sum() == T and obs["policy_mask"][P:].sum() == T - 1
    assert info["num_tokens"] == T - 1


def test_a_turn_that_ends_on_the_last_token_of_the_budget_is_answered(tokenizer):
    # No room for the reply: it is recorded, not inserted, and its reward counts.
    eos = tokenizer.eos_token_id
    T = 6
    env = make_env(tokenizer, scripted(Reply(" right", reward=1.0)), max_new_tokens=T)
    env.reset(seed=0)
    *_, (obs, reward, terminated, _, info) = play(env, [*chars(tokenizer, "abcde"), eos])
    assert terminated and info["finish_reason"] == "length" and info["turn_ended"]
    assert reward == 1.0 and info["reward_terms"]["responder"] == 1.0
    assert info["turns"][-1] == {
        "role": "user",
        "text": " right",
        "token_ids": ids(tokenizer, " right"),
        "reward": 1.0,
    }
    assert info["inserted"] == 0 and obs["attention_mask"][P:].sum() == T


def test_turn_options_need_a_responder_and_turns_that_can_end(tokenizer):
    with pytest.raises(ValueError, match=r"only apply with a responder="):
        TextGenEnv(tokenizer=tokenizer, reward=Callable(zero), max_turns=2)
    with pytest.raises(ValueError, match="would never end"):
        make_env(tokenizer, scripted(Reply()), end_of_turn=[])
    with pytest.raises(TypeError, match="stop_strings must be a list of non-empty strings"):
        make_env(tokenizer, scripted(Reply()), stop_strings="</call>")
    with pytest.raises(TypeError, match="responder must be a callable"):
        make_env(tokenizer, "a responder")
    with pytest.raises(ValueError, match="max_turns must be"):
        make_env(tokenizer, scripted(Reply()), max_turns=0)


# --- rewards and what scorers see -------------------------------------------------------------------------
def test_reply_rewards_arrive_on_the_turn_end_and_scorers_see_the_conversation(tokenizer):
    eos = tokenizer.eos_token_id
    recorder = Recorder()
    env = make_env(
        tokenizer,
        scripted(Reply(" more", reward=0.25), Reply(" bye", reward=-0.5, done=True)),
        reward=recorder + 2.0 * Callable(lambda p, text, r, m: float(len(text)), name="chars"),
    )
    env.reset(seed=0)
    first, second = [*ids(tokenizer, " a cat"), eos], [*chars(tokenizer, " dog"), eos]
    out = play(env, first + second)
    rewards = [o[1] for o in out]
    ends = len(first) - 1
    assert rewards[ends] == 0.25 and all(r == 0.0 for i, r in enumerate(rewards[:-1]) if i != ends)
    info = out[-1][4]
    terms = info["reward_terms"]
    # The last step: the reply's reward, 0.1 per turn (4) from the recorder, 2 * len(" dog").
    assert terms == {"recorder": pytest.approx(0.4), "chars": 8.0, "responder": -0.25}
    assert rewards[-1] == pytest.approx(-0.5 + 0.4 + 8.0)
    assert sum(rewards) == pytest.approx(sum(terms.values()))
    (batch,) = recorder.batches
    assert batch.texts == [" dog"] and batch.token_ids == [second] and batch.finish_reasons == ["responder"]
    assert batch.prompts == ["Guess:"] and batch.prompt_ids == [list(tokenizer("Guess:")["input_ids"])]
    (turns,) = batch.turns
    assert [(t.role, t.text, list(t.token_ids), t.reward) for t in turns] == [
        ("assistant", " a cat", first, 0.0),
        ("user", " more", ids(tokenizer, " more"), 0.25),
        ("assistant", " dog", second, 0.0),
        ("user", " bye", ids(tokenizer, " bye"), -0.5),
    ]
    assert info["turns"] == [t.as_dict() for t in turns]


def test_batched_callable_scores_the_policys_last_turn(tokenizer):
    got: list[list[str]] = []

    def score(prompts, texts, references, metas):
        got.append(list(texts))
        return [1.0] * len(texts)

    eos = tokenizer.eos_token_id
    env = make_env(tokenizer, scripted(Reply(" go"), Reply(done=True)), reward=Callable(score, batched=True))
    env.reset(seed=0)
    *_, (_, reward, terminated, _, _info) = play(
        env, [*ids(tokenizer, " first"), eos, *ids(tokenizer, " second"), eos]
    )
    assert terminated and got == [[" second"]] and reward == 1.0


# --- a responder that fails leaves the env as it was -------------------------------------------------------
class Flaky:
    """Answers ``bad`` (raises it, when it is an exception) while ``broken``; a good reply otherwise."""

    def __init__(self, bad: Any, rows: tuple[int, ...] = (0,)):
        self.bad, self.rows, self.broken = bad, rows, True
        self.reset_broken = False

    def reset(self, episode: Episode) -> None:
        if self.reset_broken:
            raise RuntimeError("no session")

    def respond(self, episode: Episode) -> Any:
        if self.broken and episode.row in self.rows:
            if isinstance(self.bad, Exception):
                raise self.bad
            return self.bad
        return Reply(f" ok{episode.row}" * (episode.row + 1), reward=0.5)


def snapshot(env) -> dict[str, Any]:
    core = env.unwrapped.core
    conv = core.conversations
    return {
        "tensors": [x.clone() for x in (core.input_ids, core.attention_mask, core.policy_mask)],
        "counts": (core.num_generated.clone(), core.done.clone(), core.term_totals.clone()),
        "turns": [list(t) for t in conv.turns],
        "turn_start": list(conv.turn_start),
    }


def assert_snapshot(a: dict[str, Any], b: dict[str, Any]) -> None:
    for x, y in zip(a["tensors"] + list(a["counts"]), b["tensors"] + list(b["counts"])):
        assert torch.equal(x, y)
    assert a["turns"] == b["turns"] and a["turn_start"] == b["turn_start"]


BAD_REPLIES = [
    pytest.param(RuntimeError("down"), "raised RuntimeError: down in respond", id="raises"),
    pytest.param(3, "returned int: 3; expected a textenv.Reply", id="int"),
    pytest.param(Reply(reward=math.nan), r"Reply.reward=nan; expected a finite number", id="nan"),
    pytest.param(Reply(reward=-math.inf), r"Reply.reward=-inf; expected a finite number", id="inf"),
    pytest.param(Reply(reward="1"), r"Reply.reward='1'; expected a finite number", id="str-reward"),  # type: ignore[arg-type]
    pytest.param(
        Reply(token_ids=[5, -1]), r"Reply.token_ids with -1; expected ints in \[0, 1302\)", id="neg"
    ),
    pytest.param(Reply(token_ids=[1302]), r"with 1302; expected ints in \[0, 1302\)", id="big"),
    pytest.param(Reply(token_ids=[2.0]), r"with 2.0; expected ints", id="float-id"),  # type: ignore[list-item]
    pytest.param(Reply(" a", token_ids=[5]), "both text and token_ids", id="both"),
    pytest.param(Reply(text=5), r"Reply.text=5; expected a str or None", id="text"),  # type: ignore[arg-type]
    pytest.param(Reply(done="yes"), r"Reply.done='yes'; expected a bool", id="done"),  # type: ignore[arg-type]
]


@pytest.mark.parametrize(("bad", "match"), BAD_REPLIES)
def test_a_bad_reply_is_a_responder_error_and_changes_nothing(tokenizer, bad, match):
    eos = tokenizer.eos_token_id
    flaky, clean = Flaky(bad), Flaky(bad)
    clean.broken = False
    env, twin = make_env(tokenizer, flaky, max_turns=2), make_env(tokenizer, clean, max_turns=2)
    for e in (env, twin):
        e.reset(seed=0)
        play(e, ids(tokenizer, " hi"))
    before = snapshot(env)
    with pytest.raises(ResponderError, match="responder Flaky") as err:
        env.step(eos)
    assert err.match(match) and isinstance(err.value, ValueError)
    assert_snapshot(snapshot(env), before)
    # The same step again (now answered) equals the step of an env that never failed.
    flaky.broken = False
    assert_same(env.step(eos), twin.step(eos))
    assert_same(env.step(eos), twin.step(eos))  # the second turn ends the episode (max_turns=2)


def test_a_failing_row_fails_the_vector_step_for_every_row(tokenizer):
    # Row 0's turn ends too, and its reply was fine: nothing of the step happens anywhere.
    eos = tokenizer.eos_token_id
    flaky = Flaky(ValueError("row 1 is down"), rows=(1,))
    env = TextGenVectorEnv(
        num_envs=3,
        tokenizer=tokenizer,
        prompts=["Guess:"],
        reward=Callable(zero),
        responder=flaky,
        max_prompt_tokens=P,
        max_new_tokens=20,
        autoreset_mode="Disabled",
    )
    env.reset(seed=0)
    env.step(np.array(ids(tokenizer, " a") * 3))
    before = snapshot(env)
    with pytest.raises(ResponderError, match="responder Flaky raised ValueError: row 1 is down in respond"):
        env.step(np.array([eos, eos, 5]))
    assert_snapshot(snapshot(env), before)
    flaky.broken = False
    _obs, rewards, *_, info = env.step(np.array([eos, eos, 5]))
    assert info["inserted"].tolist() == [len(ids(tokenizer, " ok0")), len(ids(tokenizer, " ok1 ok1")), 0]
    assert rewards.tolist() == [0.5, 0.5, 0.0]


def test_a_function_responder_is_named_by_its_qualified_name(tokenizer):
    def referee(episode: Episode) -> object:
        return {"text": "no"}

    env = make_env(tokenizer, referee)
    env.reset(seed=0)
    with pytest.raises(ResponderError, match=r"responder .*referee \(row 0, prompt 'Guess:'\) returned dict"):
        env.step(tokenizer.eos_token_id)
    # A reset after the failed step starts a fresh episode.
    obs, _ = env.reset(seed=0)
    assert real(obs) == list(tokenizer("Guess:")["input_ids"]) and env.unwrapped.core.conversations.turns == [
        []
    ]
    obs, *_, info = env.step(ids(tokenizer, " a")[0])
    assert real(obs)[-1] == ids(tokenizer, " a")[0] and info == {"turn_ended": False, "inserted": 0}


def test_a_responder_whose_reset_raises_fails_reset_and_keeps_the_episode(tokenizer):
    eos = tokenizer.eos_token_id
    flaky, clean = Flaky(None), Flaky(None)
    flaky.broken = clean.broken = False
    env, twin = make_env(tokenizer, flaky), make_env(tokenizer, clean)
    for e in (env, twin):
        e.reset(seed=0)
        play(e, [*ids(tokenizer, " hi"), eos])
    before = snapshot(env)
    flaky.reset_broken = True
    with pytest.raises(ResponderError, match=r"responder Flaky raised RuntimeError: no session in reset\(\)"):
        env.reset(seed=1)
    assert_snapshot(snapshot(env), before)
    # The running episode continues as if nothing happened.
    for a in [*ids(tokenizer, " there"), eos]:
        assert_same(env.step(a), twin.step(a))
    flaky.reset_broken = False
    assert_same(env.reset(seed=1), twin.reset(seed=1))


# --- the vector env ---------------------------------------------------------------------------------------
def talker(reward: float):
    """A responder that answers the prompts "Guess:", "Tell me" and "Why not?" with 1, 2 and 3 words (rows
    insert different numbers of tokens) and ends the episode after the third turn."""

    def respond(episode: Episode) -> Reply:
        if episode.policy_turns == 3:
            return Reply(" end", reward=10 * reward, done=True)
        return Reply(" go" * (len(episode.prompt.text) - 5), reward=reward * episode.policy_turns)

    return respond


def vector_kwargs(tokenizer, **overrides: Any) -> dict[str, Any]:
    kwargs: dict[str, Any] = {
        "tokenizer": tokenizer,
        "prompts": ["Guess:", "Tell me", "Why not?"],
        "reward": Callable(lambda p, text, r, m: float(len(text)), name="chars"),
        "responder": talker(0.1),
        "max_prompt_tokens": P,
        "max_new_tokens": 14,
        "eos_token_id": [0, 2],  # 2 ("!") ends the episode, 0 a turn
        "end_of_turn": [0],
    }
    kwargs.update(overrides)
    return kwargs


def test_rows_insert_different_numbers_of_tokens_on_one_step(tokenizer):
    env = TextGenVectorEnv(
        num_envs=3, autoreset_mode="Disabled", **vector_kwargs(tokenizer, max_new_tokens=30)
    )
    obs, _ = env.reset(seed=0, options={"prompt_index": [0, 1, 2]})
    rows = [{k: v[r] for k, v in obs.items()} for r in range(3)]
    expected = [real(row) for row in rows]
    flags = [policy_flags(row) for row in rows]
    replies = [ids(tokenizer, " go" * (r + 1)) for r in range(3)]
    for actions in ([0, 0, 0], [40, 0, 41], [0, 42, 0]):
        obs, rewards, terminated, _, info = env.step(np.array(actions))
        inserted = [len(replies[r]) if a == 0 else 0 for r, a in enumerate(actions)]
        assert info["inserted"].tolist() == inserted and info["_inserted"].all()
        assert info["turn_ended"].tolist() == [a == 0 for a in actions] and info["_turn_ended"].all()
        for r in range(3):
            expected[r] += [actions[r]] + (replies[r] if actions[r] == 0 else [])
            flags[r] += [1] + [0] * inserted[r]
            row = {k: v[r] for k, v in obs.items()}
            assert real(row) == expected[r] and policy_flags(row) == flags[r]
        assert not terminated.any()
    np.testing.assert_allclose(rewards, [0.2, 0.0, 0.2])


def random_actions(rng: np.random.Generator, n: int) -> np.ndarray:
    """Letters, with end-of-turn (0) 25% and EOS (2) 5% of the time."""
    actions = rng.integers(34, 60, size=n)
    u = rng.random(n)
    actions[u < 0.25] = 0
    actions[u > 0.95] = 2
    return actions


@pytest.mark.parametrize("mode", MODES, ids=lambda m: m.value)
def test_vector_env_equals_single_envs_in_every_autoreset_mode(tokenizer, mode):
    kwargs = vector_kwargs(tokenizer)
    ours = TextGenVectorEnv(num_envs=3, autoreset_mode=mode, **kwargs)
    sync = SyncVectorEnv([lambda: TextGenEnv(**kwargs) for _ in range(3)], autoreset_mode=mode)
    assert_same(ours.reset(seed=5), sync.reset(seed=5))
    rng = np.random.default_rng(0)
    reasons: dict[str, int] = {}
    inserted_counts = set()
    for t in range(60):
        actions = random_actions(rng, 3)
        out, expected = ours.step(actions), sync.step(actions)
        assert_same(out, expected, f"step {t}")
        _, _, terminated, truncated, info = out
        final = info.get("final_info", info)
        for r in np.flatnonzero(terminated):
            reasons[final["finish_reason"][r]] = reasons.get(final["finish_reason"][r], 0) + 1
        if "inserted" in info:
            inserted_counts.add(tuple(info["inserted"][info["_inserted"]].tolist()))
        if mode is AutoresetMode.DISABLED and (terminated | truncated).any():
            mask = terminated | truncated
            assert_same(
                ours.reset(options={"reset_mask": mask}), sync.reset(options={"reset_mask": mask.copy()})
            )
    # The script ends episodes every way a multi-turn episode ends, and rows insert different amounts.
    assert set(reasons) == {"eos", "length", "responder"}, reasons
    assert any(len(set(c) - {0}) > 1 for c in inserted_counts), inserted_counts


def test_single_env_passes_the_gymnasium_and_sb3_checkers(tokenizer):
    sb3_checker = pytest.importorskip("stable_baselines3.common.env_checker")
    for end_of_turn in ([0], []):
        extra = {"stop_strings": ["."]} if not end_of_turn else {}
        env = TextGenEnv(**{**vector_kwargs(tokenizer), "end_of_turn": end_of_turn, **extra})
        check_env(env, skip_render_check=True)
        sb3_checker.check_env(env, warn=True)


def test_sb3_adapter_equals_dummy_vec_env_of_single_envs(tokenizer):
    pytest.importorskip("stable_baselines3")
    from stable_baselines3.common.vec_env import DummyVecEnv

    from textenv.sb3 import TextGenVecEnvAdapter

    kwargs = vector_kwargs(tokenizer)
    adapter = TextGenVecEnvAdapter(TextGenVectorEnv(num_envs=3, autoreset_mode="SameStep", **kwargs))
    dummy = DummyVecEnv([lambda: TextGenEnv(**kwargs) for _ in range(3)])
    adapter.seed(2)
    dummy.seed(2)
    assert_same(adapter.reset(), dummy.reset())
    rng = np.random.default_rng(1)
    ended = 0
    for t in range(40):
        actions = random_actions(rng, 3)
        out, expected = adapter.step(actions), dummy.step(actions)
        assert_same(out[:3], expected[:3], f"step {t}")
        for a, b in zip(out[3], expected[3]):
            assert_same(a, b, f"step {t} info")
        assert_same(adapter.reset_infos, dummy.reset_infos, f"step {t} reset_infos")
        ended += int(out[2].sum())
    assert ended > 3


# --- the KL penalty: the reference reads the inserted tokens, only the policy's are scored -----------------
@torch.no_grad()
def full_logprobs(model, sequence: list[int]) -> torch.Tensor:
    """``(len - 1,)`` float32 log-prob of token ``j`` given the tokens before it, for ``j >= 1``."""
    logits = model(torch.tensor([sequence])).logits[0].float()
    return torch.log_softmax(logits[:-1], -1).gather(1, torch.tensor(sequence[1:])[:, None]).squeeze(1)


def kl_env(tokenizer, term: KLPenalty, **overrides: Any) -> TextGenVectorEnv:
    # A responder without rewards: every reward of a step is the KL term's.
    kwargs = vector_kwargs(
        tokenizer, reward=Callable(zero) + term, responder=talker(0.0), max_new_tokens=24, **overrides
    )
    return TextGenVectorEnv(num_envs=3, autoreset_mode="Disabled", **kwargs)


def run_kl(env, tokenizer, *, handed: bool, seed: int = 0) -> dict[str, Any]:
    """Steps every row to its episode's end; returns the final observations, each step's KL and rewards by
    column after the prompt, and the log-prob handed over for each policy token (by column)."""
    V, T = len(tokenizer), env.max_new_tokens
    rng = np.random.default_rng(seed)
    g = torch.Generator().manual_seed(seed)
    obs, _ = env.reset(seed=0, options={"prompt_index": [0, 1, 2]})
    pos = np.zeros(3, dtype=np.int64)
    kl, rewards, logp = (np.zeros((3, T)) for _ in range(3))
    running = np.ones(3, dtype=bool)
    while running.any():
        actions = random_actions(rng, 3)
        actions[rng.random(3) < 0.05] = 2
        if handed:
            handed_logp = torch.log_softmax(torch.randn(3, V, generator=g), -1)
            env.set_policy_logprobs(handed_logp)
        obs, step_rewards, terminated, _, info = env.step(actions)
        for r in np.flatnonzero(running):
            kl[r, pos[r]] = info["kl"][r]
            rewards[r, pos[r]] = step_rewards[r]
            if handed:
                logp[r, pos[r]] = float(handed_logp[r, actions[r]])
            pos[r] += 1 + (info["inserted"][r] if "inserted" in info else 0)
        running &= ~terminated
    return {"obs": obs, "kl": kl, "rewards": rewards, "logp": logp}


@pytest.mark.parametrize("estimator", ["k1", "k3"])
def test_per_step_kl_of_a_bound_policy_equals_a_full_forward(tokenizer, estimator):
    reference, policy = tiny_gpt2(len(tokenizer), seed=0), tiny_gpt2(len(tokenizer), seed=1)
    term = KLPenalty(reference, coef=0.5, estimator=estimator, policy=policy)
    env = kl_env(tokenizer, term)
    out = run_kl(env, tokenizer, handed=False)
    inserted = 0
    for r in range(3):
        row = {k: v[r] for k, v in out["obs"].items()}
        seq, flags = real(row), policy_flags(row)
        n_prompt = int(row["attention_mask"][:P].sum())
        logp, logq = full_logprobs(policy, seq), full_logprobs(reference, seq)
        for j in range(n_prompt, len(seq)):
            col = j - n_prompt
            if not flags[j]:
                inserted += 1
                assert out["kl"][r, col] == 0.0
                continue
            d = logq[j - 1] - logp[j - 1]
            expected = -d if estimator == "k1" else torch.expm1(d) - d
            assert out["kl"][r, col] == pytest.approx(float(expected), abs=1e-5), (r, col)
    assert inserted > 6 and np.abs(out["kl"]).max() > 0.01
    np.testing.assert_allclose(out["rewards"], -0.5 * out["kl"], atol=1e-12)


@pytest.mark.parametrize("mode", [AutoresetMode.NEXT_STEP, AutoresetMode.SAME_STEP])
def test_kl_of_a_vector_env_equals_single_envs_across_autoresets(tokenizer, mode):
    # One term follows every row (replies and restarts at different steps); each single env has its own.
    reference, policy = tiny_gpt2(len(tokenizer), seed=0), tiny_gpt2(len(tokenizer), seed=1)

    def options() -> dict[str, Any]:
        reward = KLPenalty(reference, coef=0.5, estimator="k3", policy=policy) + Callable(zero)
        return vector_kwargs(tokenizer, reward=reward)

    ours = TextGenVectorEnv(num_envs=3, autoreset_mode=mode, **options())
    sync = SyncVectorEnv([lambda: TextGenEnv(**options()) for _ in range(3)], autoreset_mode=mode)
    ours.reset(seed=3)
    sync.reset(seed=3)
    rng = np.random.default_rng(2)
    inserted, ends = 0, 0
    for t in range(50):
        actions = random_actions(rng, 3)
        obs, rewards, terminated, _, info = ours.step(actions)
        obs_s, rewards_s, terminated_s, *_ = sync.step(actions)
        np.testing.assert_array_equal(obs["input_ids"], obs_s["input_ids"], err_msg=f"step {t}")
        np.testing.assert_allclose(rewards, rewards_s, rtol=1e-5, atol=1e-6, err_msg=f"step {t}")
        np.testing.assert_array_equal(terminated, terminated_s)
        inserted += int(info["inserted"].sum()) if "inserted" in info else 0
        ends += int(terminated.sum())
    assert inserted > 20 and ends > 4


def test_handed_over_kl_equals_a_full_forward_and_score_episodes_and_the_deferred_path(tokenizer):
    reference = tiny_gpt2(len(tokenizer), seed=0)
    out = run_kl(kl_env(tokenizer, KLPenalty(reference, coef=0.5)), tokenizer, handed=True)
    obs = out["obs"]
    mask = obs["policy_mask"][:, P:].astype(bool)
    assert (~mask & (obs["attention_mask"][:, P:] == 1)).sum() > 6  # inserted tokens
    for r in range(3):
        row = {k: v[r] for k, v in obs.items()}
        seq = real(row)
        n_prompt = int(row["attention_mask"][:P].sum())
        logq = full_logprobs(reference, seq)
        cols = np.flatnonzero(mask[r])
        expected = out["logp"][r, cols] - logq[cols + n_prompt - 1].double().numpy()
        np.testing.assert_allclose(out["kl"][r, cols], expected, atol=1e-5, rtol=0)
        assert (out["kl"][r, ~mask[r]] == 0).all()
    # One batched forward over the final observations gives the same KL (the reference reads the inserted
    # tokens, only the policy's are scored).
    term = KLPenalty(reference, coef=0.5)
    ids_, attn = (torch.as_tensor(obs[k]) for k in ("input_ids", "attention_mask"))
    scored = term.score_episodes(ids_, attn, torch.as_tensor(out["logp"]), torch.as_tensor(mask))
    np.testing.assert_allclose(scored.kl.numpy(), out["kl"], atol=1e-5, rtol=0)
    # Inside defer_kl() the steps give 0 for the term; the deferred score equals the per-step rewards.
    env = kl_env(tokenizer, KLPenalty(reference, coef=0.5))
    with env.defer_kl() as deferred:
        later = run_kl(env, tokenizer, handed=True)
    assert np.array_equal(later["obs"]["input_ids"], obs["input_ids"]) and (later["rewards"] == 0).all()
    assert (later["kl"] == 0).all()
    scores = deferred.score(ids_, attn, torch.as_tensor(later["logp"]), torch.as_tensor(mask))
    np.testing.assert_allclose(scores.rewards.numpy(), out["rewards"], atol=1e-5, rtol=0)
    np.testing.assert_allclose(scores.terms["kl"].numpy(), out["rewards"].sum(1), atol=1e-5, rtol=0)


def test_a_reset_the_responder_refuses_draws_no_prompt():
    # The env's prompt draws after a refused reset are those of an env whose reset never failed.
    class Moody:
        def __init__(self):
            self.refuse = False

        def reset(self, episode):
            if self.refuse:
                raise RuntimeError("not now")

        def respond(self, episode):
            return Reply(done=True)

    prompts = [f"prompt {i}" for i in range(50)]
    moody, calm = Moody(), Moody()
    envs = [
        TextGenEnv(prompts=prompts, responder=r, max_new_tokens=4, reward=lambda p, t, r_, m: 0.0)
        for r in (moody, calm)
    ]
    for env in envs:
        env.reset(seed=3)
    moody.refuse = True
    with pytest.raises(ResponderError, match="not now"):
        envs[0].reset()
    moody.refuse = False
    assert [envs[0].reset()[1]["prompt"] for _ in range(5)] == [
        envs[1].reset()[1]["prompt"] for _ in range(5)
    ]
