"""TextGen-GSM8K-v0 and TextGen-IMDB-v0 end to end on tiny local stand-ins in the real Hub formats.

The stand-ins are created here: dataset directories laid out as the Hub repos (parquet files under a
configuration folder, README ``configs``), a tiny DistilBERT sentiment classifier and its tokenizer
saved with ``save_pretrained``, and the built-in tiny causal LM. They load through the same
``load_dataset`` / ``from_pretrained`` calls as a Hub name does.
"""

from __future__ import annotations

import re
import warnings

import datasets
import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env
from transformers import (
    AutoModelForCausalLM,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    DistilBertConfig,
    DistilBertForSequenceClassification,
    DistilBertTokenizerFast,
)

import textenv.loading
from textenv import assets
from textenv.hub_tasks import GSM8K_SYSTEM_PROMPT, HUB_TASKS, gsm8k_answer
from textenv.scorers import KLPenalty

GSM8K_ROWS = [
    {
        "question": "Tom has 3 apples and buys 2 more. How many apples does he have?",
        "answer": "3+2=5\n#### 5",
    },
    {"question": "A box holds 1,000 pens; 1 is lost. How many are left?", "answer": "1000-1=999\n#### 999"},
    {"question": "It is 4 degrees and drops 10. What is it now?", "answer": "4-10=-6\n#### -6"},
]
WORDS = [
    "the",
    "movie",
    "was",
    "great",
    "fun",
    "and",
    "the",
    "acting",
    "was",
    "bad",
    "boring",
    "plot",
    "but",
    "I",
    "loved",
    "it",
]


def hub_layout(root, config: str, splits: dict[str, list[dict]], features=None) -> str:
    """A dataset directory laid out as a Hub dataset repo: ``CONFIG/SPLIT-00000-of-00001.parquet`` + README."""
    lines = ["---", "configs:", f"- config_name: {config}", "  default: true", "  data_files:"]
    for split, rows in splits.items():
        (root / config).mkdir(parents=True, exist_ok=True)
        ds = datasets.Dataset.from_list(rows, features=features)
        ds.to_parquet(str(root / config / f"{split}-00000-of-00001.parquet"))
        lines += [f"  - split: {split}", f"    path: {config}/{split}-*"]
    (root / "README.md").write_text("\n".join([*lines, "---", ""]))
    return str(root)


@pytest.fixture(scope="module")
def gsm8k_dir(tmp_path_factory):
    return hub_layout(tmp_path_factory.mktemp("gsm8k"), "main", {"train": GSM8K_ROWS, "test": GSM8K_ROWS[:1]})


@pytest.fixture(scope="module")
def imdb_dir(tmp_path_factory):
    rng = np.random.default_rng(0)
    rows = [
        {"text": " ".join(rng.choice(WORDS, size=60)).capitalize() + ".", "label": i % 2} for i in range(6)
    ] + [{"text": "Too short.", "label": 0}]
    features = datasets.Features(
        {"text": datasets.Value("string"), "label": datasets.ClassLabel(names=["neg", "pos"])}
    )
    return hub_layout(tmp_path_factory.mktemp("imdb"), "plain_text", {"train": rows, "test": rows}, features)


@pytest.fixture(scope="module")
def classifier_dir(tmp_path_factory):
    """A tiny DistilBERT sentiment classifier saved as lvwerra/distilbert-imdb is (labels NEGATIVE/POSITIVE)."""
    root = tmp_path_factory.mktemp("classifier")
    vocab = root / "vocab.txt"
    vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *sorted(set(WORDS) | {"."})]))
    tokenizer = DistilBertTokenizerFast(vocab_file=str(vocab))
    torch.manual_seed(0)
    config = DistilBertConfig(
        vocab_size=tokenizer.vocab_size,
        dim=16,
        hidden_dim=32,
        n_layers=1,
        n_heads=2,
        max_position_embeddings=64,
        id2label={0: "NEGATIVE", 1: "POSITIVE"},
        label2id={"NEGATIVE": 0, "POSITIVE": 1},
    )
    DistilBertForSequenceClassification(config).save_pretrained(str(root / "model"))
    tokenizer.save_pretrained(str(root / "model"))
    return str(root / "model")


def play(env, text: str, *, prompt_index: int = 0):
    """One episode whose actions are the tokens of ``text`` then EOS; returns (return, end info, prompt)."""
    tok = env.unwrapped.tokenizer
    env.reset(seed=0, options={"prompt_index": prompt_index})
    total, info = 0.0, {}
    for token in [*tok(text, add_special_tokens=False)["input_ids"], tok.eos_token_id]:
        _, reward, terminated, _, info = env.step(token)
        total += reward
        if terminated:
            break
    assert terminated and info["text"] == text
    return total, info


def test_gsm8k_answers():
    assert [gsm8k_answer(r["answer"]) for r in GSM8K_ROWS] == ["5", "999", "-6"]
    assert gsm8k_answer("so 1,234\n#### 1,234") == "1234"
    with pytest.raises(ValueError, match="ends with '#### <number>'"):
        gsm8k_answer("no marker")


def test_gsm8k_end_to_end(gsm8k_dir):
    env = gym.make("TextGen-GSM8K-v0", dataset=gsm8k_dir, model=assets.path("tiny-lm"), max_new_tokens=32)
    core = env.unwrapped.core
    assert [p.text for p in core.prompts] == [r["question"] for r in GSM8K_ROWS]
    assert [p.metadata["answer"] for p in core.prompts] == ["5", "999", "-6"]
    assert play(env, " 3+2=5 #### 5")[0] == 1.0
    assert play(env, " #### 1,000", prompt_index=1)[0] == pytest.approx(0.1)  # well-formed, wrong
    assert play(env, " it is -6", prompt_index=2)[0] == 1.0
    assert play(env, " no idea", prompt_index=2)[0] == 0.0
    env.close()


def test_gsm8k_overrides(gsm8k_dir):
    env = gym.make(
        "TextGen-GSM8K-v0",
        dataset=gsm8k_dir,
        split="test",
        model=assets.path("tiny-lm"),
        correct=2.0,
        format=0.0,
    )
    assert len(env.unwrapped.core.prompts) == 1
    assert env.unwrapped.reward.correct == 2.0 and env.unwrapped.reward.format == 0.0
    vec = gym.make_vec(
        "TextGen-GSM8K-v0", num_envs=2, vectorization_mode="vector_entry_point", dataset=gsm8k_dir,
        model=assets.path("tiny-lm"), limit=2,
    )  # fmt: skip
    obs, _ = vec.reset(seed=0)
    assert obs["input_ids"].shape == (2, 256 + 256) and len(vec.unwrapped.core.prompts) == 2
    with pytest.raises(ValueError, match="has no column 'problem'"):
        gym.make(
            "TextGen-GSM8K-v0", dataset=gsm8k_dir, model=assets.path("tiny-lm"), question_column="problem"
        )
    with pytest.raises(ValueError, match="could not be loaded"):
        gym.make("TextGen-GSM8K-v0", dataset=gsm8k_dir, model=assets.path("tiny-lm"), split="validation")


def test_save_to_disk_directory_works_where_a_name_does(gsm8k_dir, tmp_path):
    saved = tmp_path / "saved"
    datasets.load_dataset(gsm8k_dir, "main").save_to_disk(str(saved))
    env = gym.make("TextGen-GSM8K-v0", dataset=str(saved), split="test", model=assets.path("tiny-lm"))
    assert [p.metadata["answer"] for p in env.unwrapped.core.prompts] == ["5"]


def test_imdb_end_to_end(imdb_dir, classifier_dir):
    lm_path = assets.path("tiny-lm")
    env = gym.make("TextGen-IMDB-v0", dataset=imdb_dir, model=lm_path, reward_model=classifier_dir)
    core = env.unwrapped.core
    # Prompts: reviews over 200 characters, each cut to its first n in [2, 8] tokens (seeded), as TRL does.
    reviews = [r["text"] for r in datasets.load_dataset(imdb_dir, split="train") if len(r["text"]) > 200]
    tok = AutoTokenizer.from_pretrained(lm_path)
    lengths = np.random.default_rng(0).integers(2, 9, size=len(reviews))
    assert [p.text for p in core.prompts] == [
        tok.decode(tok(r)["input_ids"][:n]) for r, n in zip(reviews, lengths)
    ]
    assert len(set(lengths)) > 1 and core.max_prompt_tokens == 8 and core.max_new_tokens == 16
    # The observation holds the review's own first n tokens (re-encoding the opening drifts nowhere here).
    for i, (review, n) in enumerate(zip(reviews, lengths)):
        obs, _ = env.reset(seed=0, options={"prompt_index": i})
        assert obs["input_ids"][8 - n : 8].tolist() == tok(review)["input_ids"][:n]

    # Reward: the classifier's POSITIVE logit of prompt + generation, minus the KL to the starting model.
    (kl,) = env.unwrapped.reward.find(KLPenalty)
    assert kl.coef == 0.2
    kl.bind(AutoModelForCausalLM.from_pretrained(lm_path).eval())  # the policy is the starting model: KL 0
    total, info = play(env, " the acting was great")
    clf = AutoModelForSequenceClassification.from_pretrained(classifier_dir).eval()
    clf_tok = AutoTokenizer.from_pretrained(classifier_dir)
    with torch.no_grad():
        logit = clf(**clf_tok(core.prompts[0].text + " the acting was great", return_tensors="pt")).logits[
            0, 1
        ]
    assert info["reward_terms"]["sentiment"] == pytest.approx(float(logit), abs=1e-5)
    assert info["reward_terms"]["kl"] == pytest.approx(0.0, abs=1e-6)
    assert total == pytest.approx(float(logit), abs=1e-5)


@pytest.fixture
def stand_in_kwargs(gsm8k_dir, imdb_dir, classifier_dir):
    return {
        "TextGen-GSM8K-v0": {"dataset": gsm8k_dir, "model": assets.path("tiny-lm"), "max_new_tokens": 8},
        "TextGen-IMDB-v0": {
            "dataset": imdb_dir,
            "model": assets.path("tiny-lm"),
            "reward_model": classifier_dir,
        },
    }


@pytest.mark.parametrize("task_id", [t.id for t in HUB_TASKS])
def test_registered_and_both_env_checkers_pass(task_id, stand_in_kwargs):
    task = next(t for t in HUB_TASKS if t.id == task_id)
    spec = gym.spec(task_id)
    assert spec.entry_point == "textenv.hub_tasks:make" and spec.reward_threshold is None
    assert spec.vector_entry_point == "textenv.hub_tasks:make_vector" and spec.kwargs == {"task": task.key}
    sb3_checker = pytest.importorskip("stable_baselines3.common.env_checker")
    env = gym.make(task_id, **stand_in_kwargs[task_id])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        check_env(env.unwrapped)
        sb3_checker.check_env(env.unwrapped, warn=True)
    # The IMDB KL term is 0 (and says so) while the checkers step random actions without a policy.
    assert [str(w.message) for w in caught if "has no policy log-probs" not in str(w.message)] == []


def test_offline_errors_name_what_could_not_be_downloaded(gsm8k_dir, imdb_dir, monkeypatch):
    monkeypatch.setattr(textenv.loading, "hub_reachable", lambda timeout=5.0: False)
    with pytest.raises(
        ValueError, match=r"dataset 'openai/gsm8k' .*could not be downloaded: the Hugging Face Hub"
    ):
        gym.make("TextGen-GSM8K-v0", model=assets.path("tiny-lm"))
    with pytest.raises(ValueError, match=r"tokenizer='no-such-org/no-such-model' could not be downloaded"):
        gym.make("TextGen-GSM8K-v0", dataset=gsm8k_dir, model="no-such-org/no-such-model")
    with pytest.raises(ValueError, match=r"reward_model='no-such-org/no-such-imdb' could not be downloaded"):
        gym.make(
            "TextGen-IMDB-v0",
            dataset=imdb_dir,
            model=assets.path("tiny-lm"),
            reward_model="no-such-org/no-such-imdb",
        )
    from huggingface_hub import constants

    # Offline mode was restored (datasets < 2.19 names its flag HF_DATASETS_OFFLINE).
    datasets_offline = getattr(datasets.config, "HF_HUB_OFFLINE", None)
    if datasets_offline is None:
        datasets_offline = datasets.config.HF_DATASETS_OFFLINE
    assert not datasets_offline and not constants.HF_HUB_OFFLINE


def test_gsm8k_with_a_chat_model_renders_the_chat_template(gsm8k_dir, tmp_path):
    """An instruction-tuned model's tokenizer (saved with a chat template) turns each question into a chat."""
    tok = AutoTokenizer.from_pretrained(assets.path("tiny-lm"))
    tok.chat_template = (
        "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}\n{% endfor %}"
        "{% if add_generation_prompt %}<|assistant|>{% endif %}"
    )
    tok.save_pretrained(str(tmp_path / "chat-model"))
    env = gym.make(
        "TextGen-GSM8K-v0", dataset=gsm8k_dir, model=str(tmp_path / "chat-model"), max_new_tokens=32
    )
    chat = [
        {"role": "system", "content": GSM8K_SYSTEM_PROMPT},
        {"role": "user", "content": GSM8K_ROWS[0]["question"]},
    ]
    expected = tok.apply_chat_template(chat, tokenize=True, add_generation_prompt=True, return_dict=False)
    obs, _ = env.reset(seed=0, options={"prompt_index": 0})
    P = env.unwrapped.max_prompt_tokens
    assert obs["input_ids"][P - len(expected) : P].tolist() == expected
    assert obs["attention_mask"][:P].sum() == len(expected)
    total, info = play(env, " #### 5")
    assert total == 1.0 and info["prompt"] == GSM8K_ROWS[0]["question"]  # the scorer saw the plain question
    plain = gym.make(
        "TextGen-GSM8K-v0", dataset=gsm8k_dir, model=str(tmp_path / "chat-model"), chat_template=False
    )
    assert plain.unwrapped.core.prompts[0].messages == ()


# --- local datasets in every format, bad paths, limits ------------------------------------------------------


def gsm8k_questions(env) -> list[str]:
    return [p.text for p in env.unwrapped.core.prompts]


def make_gsm8k(dataset, **kwargs):
    return gym.make("TextGen-GSM8K-v0", dataset=dataset, model=assets.path("tiny-lm"), **kwargs)


@pytest.fixture(scope="module")
def gsm8k_files(tmp_path_factory):
    """GSM8K rows as a folder of data files (no 'main' configuration), single files and a save_to_disk Dataset."""
    root = tmp_path_factory.mktemp("gsm8k_files")
    rows = datasets.Dataset.from_list(GSM8K_ROWS)
    (root / "folder").mkdir()
    rows.to_json(str(root / "folder" / "train.jsonl"))
    rows.to_json(str(root / "rows.jsonl"))
    rows.to_parquet(str(root / "rows.parquet"))
    rows.to_csv(str(root / "rows.csv"), index=False)
    rows.save_to_disk(str(root / "saved_dataset"))
    # A copy of the Hub repo: two configurations and no default, as openai/gsm8k ("main", "socratic").
    repo = root / "repo"
    socratic = [{**r, "question": "Socratic: " + r["question"]} for r in GSM8K_ROWS]
    lines = ["---", "configs:"]
    for config, config_rows in (("main", GSM8K_ROWS), ("socratic", socratic)):
        (repo / config).mkdir(parents=True)
        datasets.Dataset.from_list(config_rows).to_parquet(
            str(repo / config / "train-00000-of-00001.parquet")
        )
        lines += [
            f"- config_name: {config}",
            "  data_files:",
            "  - split: train",
            f"    path: {config}/train-*",
        ]
    (repo / "README.md").write_text("\n".join([*lines, "---", ""]))
    return root


@pytest.mark.parametrize(
    "name", ["folder", "rows.jsonl", "rows.parquet", "rows.csv", "saved_dataset", "repo"]
)
def test_gsm8k_loads_every_local_format_with_the_default_config(gsm8k_files, name):
    env = make_gsm8k(str(gsm8k_files / name))
    assert gsm8k_questions(env) == [r["question"] for r in GSM8K_ROWS]
    assert [p.metadata["answer"] for p in env.unwrapped.core.prompts] == ["5", "999", "-6"]


def test_an_explicit_config_of_a_local_repo_copy_is_used(gsm8k_files):
    env = make_gsm8k(str(gsm8k_files / "repo"), config="socratic")
    assert gsm8k_questions(env)[0] == "Socratic: " + GSM8K_ROWS[0]["question"]
    with pytest.raises(ValueError, match=r"could not be loaded from its local path: .*'socratic' not found"):
        make_gsm8k(str(gsm8k_files / "folder"), config="socratic")


def test_a_data_file_path_relative_to_the_working_directory(gsm8k_files, monkeypatch):
    monkeypatch.chdir(gsm8k_files)
    assert len(gsm8k_questions(make_gsm8k("rows.jsonl", limit=2))) == 2
    assert len(gsm8k_questions(make_gsm8k("./folder"))) == 3


@pytest.mark.parametrize(
    "path", ["{tmp}/no_such_folder", "{tmp}/no_such_file.jsonl", "./no_such_folder", "~/no_such_textenv_dir",
             "no_such_file.parquet", "data/gsm8k/no_such"],
)  # fmt: skip
def test_a_path_that_does_not_exist_is_reported_as_such(path, tmp_path, monkeypatch):
    # No Hub access needed: a path is never downloaded (a probe would fail the test at once).
    monkeypatch.setattr(textenv.loading, "hub_reachable", lambda timeout=5.0: pytest.fail("probed the Hub"))
    path = path.format(tmp=tmp_path)
    with pytest.raises(ValueError, match=rf"dataset path '{re.escape(path)}' does not exist") as caught:
        make_gsm8k(path)
    assert "download" not in str(caught.value)


def test_a_hub_name_that_is_neither_downloadable_nor_local(monkeypatch):
    monkeypatch.setattr(textenv.loading, "hub_reachable", lambda timeout=5.0: False)
    with pytest.raises(
        ValueError, match=r"could not be downloaded: .*nor is there a local file or directory"
    ):
        make_gsm8k("no-such-org/no-such-gsm8k")


@pytest.mark.parametrize(
    ("limit", "error", "match"),
    [
        (-1, ValueError, r"limit must be an int >= 1 or None \(all rows\), got -1"),
        (0, ValueError, r"got 0: a prompt source needs at least one row"),
        (2.0, TypeError, r"limit must be an int >= 1 or None \(all rows\), got float: 2.0"),
        (True, TypeError, r"got bool: True"),
        ("2", TypeError, r"got str: '2'"),
    ],
)
def test_bad_limits_are_errors(gsm8k_dir, imdb_dir, classifier_dir, limit, error, match):
    with pytest.raises(error, match=match):
        make_gsm8k(gsm8k_dir, limit=limit)
    with pytest.raises(error, match=match):
        gym.make(
            "TextGen-IMDB-v0",
            dataset=imdb_dir,
            model=assets.path("tiny-lm"),
            reward_model=classifier_dir,
            limit=limit,
        )


def test_limits_keep_the_first_rows(gsm8k_dir):
    assert gsm8k_questions(make_gsm8k(gsm8k_dir, limit=np.int64(1))) == [GSM8K_ROWS[0]["question"]]
    assert len(gsm8k_questions(make_gsm8k(gsm8k_dir, limit=10))) == 3  # more than there are: all


def test_a_dataset_without_rows_is_an_error(tmp_path):
    features = datasets.Features({"question": datasets.Value("string"), "answer": datasets.Value("string")})
    empty = datasets.Dataset.from_dict({"question": [], "answer": []}, features=features)
    empty.to_parquet(str(tmp_path / "empty.parquet"))
    empty.save_to_disk(str(tmp_path / "empty_saved"))
    with pytest.raises(ValueError, match=r"'.*empty.parquet' .*could not be loaded from its local path"):
        make_gsm8k(str(tmp_path / "empty.parquet"))
    with pytest.raises(ValueError, match=r"'.*empty_saved' .*could not be loaded from its local path"):
        make_gsm8k(str(tmp_path / "empty_saved"))
