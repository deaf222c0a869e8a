"""Every bad input is a clear ValueError/TypeError naming the value; valid odd inputs are accepted."""

from __future__ import annotations

import json

import huggingface_hub.constants
import numpy as np
import pytest
import torch

from textenv import TextGenEnv, load_prompts
from textenv.scorers import Callable, ScorerError
from textenv.vector import TextGenVectorEnv

PROMPTS = ["The movie was", "I liked the", "This film is"]


@pytest.fixture(scope="module")
def envs():
    return TextGenVectorEnv(num_envs=3, prompts=PROMPTS, reward="length")


def test_numpy_seed_arrays_are_valid_seeds(envs):
    _, info_np = envs.reset(seed=np.arange(3, dtype=np.int64) + 5)
    _, info_int = envs.reset(seed=5)  # row i gets 5 + i
    np.testing.assert_array_equal(info_np["prompt"], info_int["prompt"])
    envs.reset(seed=np.uint8(7))
    envs.reset(seed=[np.int32(1), None, 3])
    with pytest.raises(TypeError, match=r"seed of row 0 must be an int or None, got float64"):
        envs.reset(seed=np.array([1.0, 2.5, 3.0]))
    with pytest.raises(ValueError, match=r"seed of row 0 must be >= 0, got -1"):
        envs.reset(seed=np.array([-1, 2, 3]))
    with pytest.raises(ValueError, match=r"one seed per row, 3 of them, got shape \(3, 1\)"):
        envs.reset(seed=np.zeros((3, 1), dtype=int))


def test_reversed_action_arrays_are_accepted(envs):
    envs.reset(seed=0)
    obs, *_ = envs.step(np.array([7, 6, 5])[::-1])
    np.testing.assert_array_equal(obs["input_ids"][:, envs.max_prompt_tokens], [5, 6, 7])


@pytest.mark.parametrize("options", [3, "prompt", ["prompt_index", 0]])
def test_options_must_be_a_dict(envs, options):
    with pytest.raises(TypeError, match=rf"options must be a dict or None, got {type(options).__name__}"):
        envs.reset(options=options)


def test_both_prompt_and_index_are_refused():
    env = TextGenEnv(prompts=PROMPTS, reward="length")
    with pytest.raises(ValueError, match="both 'prompt' and 'prompt_index'"):
        env.reset(options={"prompt": "x", "prompt_index": 0})


def test_lone_surrogates_are_refused_with_the_prompt():
    with pytest.raises(ValueError, match=r"prompt 1 \('bad \\ud800'\) holds '\\ud800'.*lone surrogate"):
        load_prompts(["fine", "bad \ud800"])
    env = TextGenEnv(prompts=PROMPTS, reward="length")
    with pytest.raises(
        ValueError, match=r"options\['prompt'\] = 'x\\udfff' is not a usable prompt.*lone surrogate"
    ):
        env.reset(options={"prompt": "x\udfff"})


def test_undecodable_prompt_files_name_the_file(tmp_path):
    for name, data in {
        "bin.txt": b"\xff\xfe\x00\x81 binary",
        "latin.jsonl": '{"prompt": "caf\xe9"}'.encode("latin-1"),
    }.items():
        path = tmp_path / name
        path.write_bytes(data)
        with pytest.raises(ValueError, match=rf"prompt file '.*{name}' is not UTF-8 text"):
            load_prompts(path)


def test_deeply_nested_json_names_file_and_line(tmp_path):
    path = tmp_path / "deep.jsonl"
    path.write_text('{"prompt": "ok"}\n\n' + "[" * 100_000 + "]" * 100_000 + "\n")
    with pytest.raises(ValueError, match=r"line 3 of '.*deep.jsonl' nests JSON too deeply"):
        load_prompts(path)


def test_csv_with_byte_order_mark_is_read(tmp_path):
    path = tmp_path / "excel.csv"
    path.write_text("prompt,references,lang\nHello there,hi,en\n", encoding="utf-8-sig")
    (prompt,) = load_prompts(path)
    assert prompt.text == "Hello there" and prompt.references == ("hi",) and prompt.metadata == {"lang": "en"}


def test_a_directory_is_not_a_prompt_file(tmp_path):
    with pytest.raises(
        ValueError, match=r"prompt source '.*' is a directory; expected a .txt, .jsonl or .csv file"
    ):
        load_prompts(tmp_path)
    with pytest.raises(ValueError, match="does not exist"):
        load_prompts(tmp_path / "missing.txt")


def test_reward_specs_name_themselves_for_unknown_tokenizers_and_models(monkeypatch):
    with pytest.raises(
        ValueError, match=r"reward spec 'bleu:nope' \(bleu\[:TOKENIZE\]\): BLEU tokenize='nope'.*'13a'"
    ):
        TextGenEnv(prompts=PROMPTS, reward="bleu:nope")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(
        ValueError, match=r"reward spec 'reward_model:no-org/no-model' .*model='no-org/no-model'"
    ):
        TextGenEnv(prompts=PROMPTS, reward="reward_model:no-org/no-model")


def test_prompt_option_keeps_the_source_prompts_references_and_metadata(tmp_path):
    path = tmp_path / "copy.jsonl"
    records = [
        {"prompt": "Repeat: a cat =>", "references": ["a cat"], "id": 7},
        {"prompt": "Repeat: hi =>", "references": "hi"},
    ]
    path.write_text("\n".join(json.dumps(r) for r in records))
    env = TextGenEnv(prompts=path, reward="bleu", max_new_tokens=4, eos_token_id=0)
    env.reset(options={"prompt": "Repeat: a cat =>"})
    assert env.unwrapped.core.row_prompts[0].metadata == {"id": 7}
    for token in env.unwrapped.tokenizer(" a cat")["input_ids"] + [0]:
        *_, info = env.step(token)
    assert info["reward_terms"]["bleu"] == pytest.approx(1.0)  # sacrebleu 100, BLEU on 0-1
    # A prompt record of its own, with its references, is accepted too.
    env.reset(options={"prompt": {"prompt": "Say: dog =>", "references": ["dog"]}})
    assert env.unwrapped.core.row_prompts[0].references == ("dog",)
    for token in env.unwrapped.tokenizer(" dog")["input_ids"] + [0]:
        *_, info = env.step(token)
    assert info["reward_terms"]["bleu"] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="has no 'prompt' key"):
        env.reset(options={"prompt": {"text": "no key"}})
    with pytest.raises(TypeError, match=r"options\['prompt'\] must be text or a prompt record dict, got int"):
        env.reset(options={"prompt": 3})


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_without_cuda_is_a_clear_error():
    for device in ("cuda", "cuda:1"):
        with pytest.raises(
            ValueError, match=rf"device '{device}': CUDA is not available here; use 'cpu' or 'auto'"
        ):
            TextGenVectorEnv(num_envs=2, prompts=PROMPTS, reward="length", device=device)


# --- NumPy and torch values where Python numbers are valid ----------------------------------------------------

INDEX_2 = [
    2,
    np.int64(2),
    np.array(2),
    np.array(2, dtype=np.uint8),
    torch.tensor(2),
    torch.tensor(2, dtype=torch.int32),
]


@pytest.mark.parametrize("index", INDEX_2, ids=repr)
def test_zero_d_prompt_indices_are_ints(index, envs):
    env = TextGenEnv(prompts=PROMPTS, reward="length")
    assert env.reset(options={"prompt_index": index})[1]["prompt"] == PROMPTS[2]
    _, info = envs.reset(options={"prompt_index": index})  # every reset row uses prompt 2, as an int does
    assert info["prompt"].tolist() == [PROMPTS[2]] * 3
    _, info = envs.reset(options={"prompt_index": index, "reset_mask": np.array([False, True, False])})
    assert info["prompt"][1] == PROMPTS[2] and info["_prompt"].tolist() == [False, True, False]


@pytest.mark.parametrize(
    ("index", "hint"),
    [
        (np.array([2]), r"; expected a Python or NumPy integer.* \(a 1-D array holds one index per row"),
        (torch.tensor([2]), r".*one index per row"),
        (np.array(2.0), ""),
        (torch.tensor(2.0), ""),
        (np.array(True), ""),
        (torch.tensor(True), ""),
        (2.0, ""),
        (True, ""),
        ("2", ""),
        (np.array(3), ""),  # out of range
    ],
    ids=repr,
)
def test_ambiguous_prompt_indices_are_refused(index, hint):
    env = TextGenEnv(prompts=PROMPTS, reward="length")
    with pytest.raises(
        ValueError, match=r"options\['prompt_index'\] must be an int in \[0, 3\), got .*" + hint
    ):
        env.reset(options={"prompt_index": index})


def test_vector_env_one_element_index_arrays_are_per_row(envs):
    with pytest.raises(ValueError, match=r"one index per row \(3\), got array\(\[2\]\)"):
        envs.reset(options={"prompt_index": np.array([2])})
    with pytest.raises(ValueError, match=r"must be an int in \[0, 3\), got array\(2\.\)"):
        envs.reset(options={"prompt_index": np.array(2.0)})


@pytest.mark.parametrize(
    ("value", "reward"),
    [
        (np.bool_(True), 1.0),
        (np.bool_(False), 0.0),
        (np.array(0.5), 0.5),
        (np.array(3, dtype=np.int8), 3.0),
        (np.array(True), 1.0),
        (np.float32(0.25), 0.25),
        (torch.tensor(0.25), 0.25),
        (torch.tensor(True), 1.0),
        (torch.tensor(7), 7.0),
    ],
    ids=repr,
)
def test_reward_functions_may_return_numpy_and_torch_numbers(value, reward):
    for fn in (lambda p, t, r, m: value, Callable(lambda p, t, r, m: value)):
        env = TextGenEnv(prompts=PROMPTS, reward=fn, max_new_tokens=1)
        env.reset(seed=0)
        assert env.step(5)[1] == reward
    batched = Callable(lambda ps, ts, rs, ms: [value] * len(ps), batched=True)
    vector = TextGenVectorEnv(num_envs=2, prompts=PROMPTS, reward=batched, max_new_tokens=1)
    vector.reset(seed=0)
    assert vector.step(np.array([5, 5]))[1].tolist() == [reward, reward]


@pytest.mark.parametrize(
    ("value", "match"),
    [
        (np.complex128(1 + 2j), r"returned complex128 np.complex128\(1\+2j\) at index 0"),
        (np.array("0.5"), r"returned ndarray array\('0.5'"),
        (np.str_("1"), r"returned str_ np.str_\('1'\) at index 0"),
    ],
    ids=repr,
)
def test_reward_functions_returning_no_real_number_are_refused(value, match):
    env = TextGenEnv(prompts=PROMPTS, reward=lambda p, t, r, m: value, max_new_tokens=1)
    env.reset(seed=0)
    with pytest.raises(ScorerError, match=match):
        env.step(5)
