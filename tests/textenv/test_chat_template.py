"""Chat-templated prompts: the observation holds exactly the template's token ids; scorers see plain text."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from transformers import AutoTokenizer

from textenv import TextGenEnv, assets
from textenv.prompts import load_prompts
from textenv.scorers import Callable

# A small ChatML-like template (as instruction-tuned models ship), set here on the built-in tokenizer.
TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}<|end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)
CHAT = [{"role": "system", "content": "Answer briefly."}, {"role": "user", "content": "What is 2+3?"}]
P = 96


@pytest.fixture
def chat_tokenizer():
    tok = AutoTokenizer.from_pretrained(assets.path("tiny-tokenizer"))
    tok.chat_template = TEMPLATE
    return tok


def template_ids(tok, messages) -> list[int]:
    return list(
        tok.apply_chat_template(messages, tokenize=True, add_generation_prompt=True, return_dict=False)
    )


def left_padded(ids: list[int], pad: int) -> tuple[np.ndarray, np.ndarray]:
    return np.array([pad] * (P - len(ids)) + ids), np.array([0] * (P - len(ids)) + [1] * len(ids))


def seen_prompts(log: list[str]):
    def record(prompt, text, refs, meta):
        log.append(prompt)
        return 0.0

    return Callable(record)


def test_observation_is_exactly_the_template_ids(chat_tokenizer):
    log: list[str] = []
    prompts = [{"messages": CHAT, "answer": "5"}, "The movie was"]
    env = TextGenEnv(
        tokenizer=chat_tokenizer,
        prompts=prompts,
        reward=seen_prompts(log),
        max_prompt_tokens=P,
        max_new_tokens=3,
    )
    expected = template_ids(chat_tokenizer, CHAT)
    assert 10 < len(expected) <= P
    obs, _ = env.reset(seed=0, options={"prompt_index": 0})
    ids, mask = left_padded(expected, env.unwrapped.text_spec.pad_token_id)
    np.testing.assert_array_equal(obs["input_ids"][:P], ids)
    np.testing.assert_array_equal(obs["attention_mask"][:P], mask)
    # "auto": the plain prompt is not templated.
    obs, _ = env.reset(seed=0, options={"prompt_index": 1})
    plain = chat_tokenizer("The movie was")["input_ids"]
    np.testing.assert_array_equal(obs["input_ids"][P - len(plain) : P], plain)
    # Scorers get the user content, not the template markup.
    env.reset(seed=0, options={"prompt_index": 0})
    _, _, terminated, _, info = env.step(chat_tokenizer.eos_token_id)
    assert terminated and log == ["What is 2+3?"] and info["prompt"] == "What is 2+3?"


def test_chat_template_true_false(chat_tokenizer):
    on = TextGenEnv(
        tokenizer=chat_tokenizer, prompts=["Hi"], reward="length", max_prompt_tokens=P, chat_template=True
    )
    obs, _ = on.reset(seed=0)
    expected = template_ids(chat_tokenizer, [{"role": "user", "content": "Hi"}])
    np.testing.assert_array_equal(obs["input_ids"][:P], left_padded(expected, on.text_spec.pad_token_id)[0])
    obs, _ = on.reset(seed=0, options={"prompt": "Bye"})  # ad-hoc prompts are templated too
    expected = template_ids(chat_tokenizer, [{"role": "user", "content": "Bye"}])
    np.testing.assert_array_equal(obs["input_ids"][:P], left_padded(expected, on.text_spec.pad_token_id)[0])

    off = TextGenEnv(
        tokenizer=chat_tokenizer,
        prompts=[{"messages": CHAT}],
        reward="length",
        max_prompt_tokens=P,
        chat_template=False,
    )
    obs, _ = off.reset(seed=0)
    plain = chat_tokenizer("What is 2+3?")["input_ids"]
    np.testing.assert_array_equal(obs["input_ids"][:P], left_padded(plain, off.text_spec.pad_token_id)[0])


def test_vector_env_rows_hold_the_template_ids(chat_tokenizer):
    vec = gym.make_vec(
        "TextGen-v0", num_envs=2, vectorization_mode="vector_entry_point", tokenizer=chat_tokenizer,
        prompts=[{"messages": CHAT}], reward="length", max_prompt_tokens=P,
    )  # fmt: skip
    obs, _ = vec.reset(seed=0)
    ids = left_padded(template_ids(chat_tokenizer, CHAT), vec.unwrapped.text_spec.pad_token_id)[0]
    np.testing.assert_array_equal(obs["input_ids"][:, :P], np.stack([ids, ids]))


def test_tokenizer_without_template_is_a_clear_error():
    tok = AutoTokenizer.from_pretrained(assets.path("tiny-tokenizer"))
    tok.chat_template = None
    with pytest.raises(
        ValueError, match=r"prompt 0 \('What is 2\+3\?'\) is a chat .* has none; set tokenizer.chat_template"
    ):
        TextGenEnv(tokenizer=tok, prompts=[{"messages": CHAT}], reward="length")
    with pytest.raises(ValueError, match="chat_template must be True, False or 'auto'"):
        TextGenEnv(tokenizer=tok, prompts=["Hi"], reward="length", chat_template="yes")
    with pytest.raises(ValueError, match="chat_template must be True, False or 'auto'"):
        TextGenEnv(tokenizer=tok, prompts=["Hi"], reward="length", chat_template=1)  # type: ignore[arg-type]


def test_prompt_records_with_messages():
    (chat, both) = load_prompts([{"messages": CHAT, "answer": 5}, {"prompt": "2+3?", "messages": CHAT[1:]}])
    assert chat.text == "What is 2+3?" and chat.messages == tuple(CHAT) and chat.metadata == {"answer": 5}
    assert both.text == "2+3?" and both.messages == (CHAT[1],)
    assert load_prompts([{"prompt": "x", "messages": None}])[0].messages == ()
    with pytest.raises(
        TypeError, match="messages of prompt 0 must be dicts with string 'role' and 'content'"
    ):
        load_prompts([{"messages": [{"role": "user"}]}])
    with pytest.raises(TypeError, match="messages of prompt 0 must be a non-empty list"):
        load_prompts([{"messages": "hi"}])
    with pytest.raises(ValueError, match=r"has no 'prompt' key \(nor 'messages'\)"):
        load_prompts([{"answer": 5}])
