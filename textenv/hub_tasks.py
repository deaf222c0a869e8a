"""Tasks on real datasets and models loaded by name: ``TextGen-GSM8K-v0`` and ``TextGen-IMDB-v0``.

=====================  ==============================  ==========================================  ===  ===
id                     prompts                         reward                                      P    T
=====================  ==============================  ==========================================  ===  ===
TextGen-GSM8K-v0       ``openai/gsm8k`` (``main``):    :class:`~textenv.scorers.Answer`: 1.0 for   256  256
                       the question (a chat when the   the right number (after ``####``, in
                       tokenizer has a template); the  ``\\boxed{}`` or last), 0.1 if wrong
                       number after ``####`` answers
TextGen-IMDB-v0        ``stanfordnlp/imdb`` reviews    positive logit of ``lvwerra/distilbert-     8    16
                       over 200 characters, cut to     imdb`` - 0.2 * KL(policy || the starting
                       their first 2 to 8 tokens       model, ``gpt2``) per token
=====================  ==============================  ==========================================  ===  ===

Both load exactly what a user with a network gets (:mod:`textenv.hub`); every name is a keyword
that ``gymnasium.make`` overrides, and a local path works where a name does: a copy of the Hub
repo, any folder of data files, a ``save_to_disk`` folder or one data file (GSM8K's ``main``
configuration is used where the local dataset has one)::

    gym.make("TextGen-GSM8K-v0", model="Qwen/Qwen2.5-0.5B-Instruct", split="test")
    gym.make("TextGen-GSM8K-v0", dataset="~/data/gsm8k_train.jsonl", limit=100)
    gym.make("TextGen-IMDB-v0", dataset="/data/imdb_copy", reward_model="/models/my-classifier")

``limit`` keeps the first ``limit`` rows: ``None`` keeps all, and a prompt source needs at least
one, so ``limit`` is an int >= 1 (0, negative numbers and non-integers are errors, as is a split
with no rows).

The IMDB task is TRL's ``gpt2-sentiment`` example: prompts are the first 2 to 8 (seeded) gpt2
tokens of each review, the reward is the classifier's raw ``POSITIVE`` logit of prompt plus
generation, and a KL penalty keeps the policy near the starting model (bind the policy as for
``TextGen-Sentiment-v0``: ``env.unwrapped.reward.find(KLPenalty)[0].bind(policy_lm)``). Neither task has
a ``reward_threshold``: what is reachable depends on the model.
"""

from __future__ import annotations

import numbers
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from textenv.env import TextGenEnv
from textenv.hub import load_dataset_split, local_dataset_path
from textenv.loading import from_pretrained
from textenv.scorers import Answer, KLPenalty, RewardModel

GSM8K_ANSWER = re.compile(r"####\s*(.+?)\s*$", re.DOTALL)
GSM8K_SYSTEM_PROMPT = "Solve the problem step by step, then write the final answer as '#### <number>'."
GSM8K_CONFIG = "main"

Path = str | os.PathLike[str]


def gsm8k_answer(solution: str) -> str:
    """The final answer of a GSM8K solution: the text after ``####``, thousands commas removed.

    Raises:
        ValueError: No ``####`` in ``solution``.

    Example:
        >>> gsm8k_answer("48/2 = 24 ... 48+24 = 72\\n#### 72")
        '72'
    """
    match = GSM8K_ANSWER.search(solution)
    if match is None:
        raise ValueError(f"a GSM8K answer ends with '#### <number>', got {solution[-80:]!r}")
    return match.group(1).replace(",", "")


def gsm8k_prompts(
    dataset: Path = "openai/gsm8k",
    *,
    config: str | None = GSM8K_CONFIG,
    split: str = "train",
    question_column: str = "question",
    answer_column: str = "answer",
    limit: int | None = None,
    chat: bool = False,
    system_prompt: str | None = GSM8K_SYSTEM_PROMPT,
) -> list[dict[str, Any]]:
    """GSM8K as prompt records: ``{"prompt": question, "answer": "72", "solution": full answer}``.

    With ``chat=True`` each record also holds ``messages``: ``system_prompt`` (unless ``None``) and
    the question as the user message, for the env to render with the tokenizer's chat template.

    Args:
        dataset: Hub name or local path (see :func:`textenv.hub.load_dataset_split`).
        config: Dataset configuration. The default, ``"main"``, applies where the dataset has it
            (the Hub dataset, a copy of its repo); other local datasets (a folder of data files, a
            ``save_to_disk`` folder, a data file) load as they are.
        split: Split (slicing such as ``"test[:100]"`` works).
        question_column: Column of the question.
        answer_column: Column of the worked solution that ends with ``#### <answer>``.
        limit: Keep only the first ``limit`` rows (an int >= 1), or ``None`` for all.
        chat: Add ``messages`` to each record.
        system_prompt: The system message of a chat.

    Raises:
        ValueError: A missing column, an answer without ``####`` (the message names the row), a
            ``limit`` below 1, a dataset or split without rows, or a local path that does not exist.
        TypeError: A ``limit`` that is no int.
    """
    _check_limit(limit)
    config = _gsm8k_config(dataset, config)
    rows = _rows(
        load_dataset_split(dataset, config=config, split=split), (question_column, answer_column), dataset
    )
    rows = rows if limit is None else rows[: int(limit)]
    records = []
    for i, row in enumerate(rows):
        try:
            answer = gsm8k_answer(str(row[answer_column]))
        except ValueError as err:
            raise ValueError(f"row {i} of dataset {str(dataset)!r}: {err}") from None
        record: dict[str, Any] = {
            "prompt": row[question_column],
            "answer": answer,
            "solution": row[answer_column],
        }
        if chat:
            system = [{"role": "system", "content": system_prompt}] if system_prompt is not None else []
            record["messages"] = [*system, {"role": "user", "content": row[question_column]}]
        records.append(record)
    return records


def imdb_prompts(
    tokenizer: Any,
    dataset: Path = "stanfordnlp/imdb",
    *,
    config: str | None = None,
    split: str = "train",
    text_column: str = "text",
    min_chars: int = 200,
    min_tokens: int = 2,
    max_tokens: int = 8,
    limit: int | None = None,
    seed: int = 0,
) -> list[dict[str, Any]]:
    """Review openings as in TRL's gpt2-sentiment example: reviews over ``min_chars`` characters, each cut to
    its first ``n`` tokens, ``n`` drawn uniformly from ``[min_tokens, max_tokens]`` (seeded).

    Returns:
        Records ``{"prompt": opening text, "label": the review's label (when the dataset has one)}``.
    """
    if not 1 <= min_tokens <= max_tokens:
        raise ValueError(f"need 1 <= min_tokens <= max_tokens, got {min_tokens} and {max_tokens}")
    _check_limit(limit)
    rows = _rows(load_dataset_split(dataset, config=config, split=split), (text_column,), dataset)
    rows = [r for r in rows if len(r[text_column]) > min_chars]
    if not rows:
        raise ValueError(
            f"dataset {str(dataset)!r} has no {text_column!r} longer than {min_chars} characters"
        )
    rows = rows if limit is None else rows[: int(limit)]
    rng = np.random.default_rng(seed)
    lengths = rng.integers(min_tokens, max_tokens + 1, size=len(rows))
    # The first 8 tokens of a review lie well inside its first 200 characters: tokenise only those.
    heads = tokenizer([r[text_column][: max(min_chars, 25 * max_tokens)] for r in rows])["input_ids"]
    records = []
    for row, ids, n in zip(rows, heads, lengths):
        record: dict[str, Any] = {"prompt": tokenizer.decode(ids[:n])}
        if "label" in row:
            record["label"] = row["label"]
        records.append(record)
    return records


def _check_limit(limit: object) -> None:
    if limit is None:
        return
    if isinstance(limit, bool) or not isinstance(limit, numbers.Integral):
        raise TypeError(
            f"limit must be an int >= 1 or None (all rows), got {type(limit).__name__}: {limit!r}"
        )
    if limit < 1:
        raise ValueError(
            f"limit must be an int >= 1 or None (all rows), got {limit}: a prompt source needs at least one row"
        )


def _gsm8k_config(dataset: Path, config: str | None) -> str | None:
    """``config``, except that GSM8K's ``"main"`` is dropped for a local dataset that has no such configuration."""
    local = local_dataset_path(dataset)
    if local is None or config != GSM8K_CONFIG:
        return config
    if os.path.isfile(local):
        return None
    import inspect

    import datasets

    # datasets < 4 runs a folder's loading script unless told not to; 4 and later run none and take no flag.
    no_scripts = (
        {"trust_remote_code": False}
        if "trust_remote_code" in inspect.signature(datasets.load_dataset_builder).parameters
        else {}
    )
    try:
        builder = datasets.load_dataset_builder(local, **no_scripts)
    except (OSError, ValueError):
        # Several configurations and no default (a copy of the Hub repo), or a folder that does not
        # load: the load itself uses or reports it.
        return config
    return config if config in builder.builder_configs else None


def _rows(dataset: Any, columns: tuple[str, ...], name: Path) -> list[dict[str, Any]]:
    missing = [c for c in columns if c not in dataset.column_names]
    if missing:
        raise ValueError(
            f"dataset {str(name)!r} has no column {missing[0]!r}; its columns are {dataset.column_names} "
            "(choose others with question_column= / answer_column= / text_column=)"
        )
    return list(dataset)


@dataclass(frozen=True)
class HubTask:
    """A registered task whose prompts and models load by name; see the module docstring.

    Attributes:
        id: Gymnasium id.
        key: The registry's entry points ``textenv.hub_tasks:make`` and ``make_vector`` get it as ``task=<key>``.
        build: ``build(**overrides) -> TextGenEnv`` keyword arguments.
        reward_threshold: ``None``: it depends on the model.
    """

    id: str
    key: str
    build: Callable[..., dict[str, Any]]
    reward_threshold: float | None = None

    def make(self, **kwargs: Any) -> TextGenEnv:
        """A new single env."""
        return TextGenEnv(**self.build(**kwargs))

    def make_vector(self, num_envs: int = 1, **kwargs: Any):
        """A new :class:`textenv.vector.TextGenVectorEnv` with ``num_envs`` rows."""
        from textenv.vector import TextGenVectorEnv  # imported late, as in textenv.tasks

        return TextGenVectorEnv(num_envs=num_envs, **self.build(**kwargs))


def gsm8k_kwargs(
    *,
    dataset: Path = "openai/gsm8k",
    config: str | None = GSM8K_CONFIG,
    split: str = "train",
    question_column: str = "question",
    answer_column: str = "answer",
    limit: int | None = None,
    system_prompt: str | None = GSM8K_SYSTEM_PROMPT,
    model: Path = "Qwen/Qwen2.5-0.5B-Instruct",
    correct: float = 1.0,
    format: float = 0.1,
    **env_kwargs: Any,
) -> dict[str, Any]:
    """``TextGen-GSM8K-v0``'s env arguments.

    When the tokenizer has a chat template (an instruction-tuned model's) and ``chat_template`` is
    not ``False``, each prompt is a chat (``system_prompt``, then the question) rendered with it;
    otherwise the prompt is the question itself.

    Args:
        dataset, config, split, question_column, answer_column, limit, system_prompt: See
            :func:`gsm8k_prompts`.
        model: Name or path of the causal LM whose tokenizer the env uses (the policy to train).
        correct, format: The :class:`~textenv.scorers.Answer` rewards.
        env_kwargs: Other :class:`~textenv.env.TextGenEnv` arguments (``reward=`` replaces the reward).
    """
    from transformers import AutoTokenizer

    env_kwargs.setdefault("max_prompt_tokens", 256)
    env_kwargs.setdefault("max_new_tokens", 256)
    if env_kwargs.get("tokenizer") is None:
        env_kwargs["tokenizer"] = from_pretrained(AutoTokenizer, model, argument="tokenizer")
    if env_kwargs.get("prompts") is None:
        env_kwargs["prompts"] = gsm8k_prompts(
            dataset,
            config=config,
            split=split,
            question_column=question_column,
            answer_column=answer_column,
            limit=limit,
            chat=env_kwargs.get("chat_template", "auto") is not False
            and bool(getattr(env_kwargs["tokenizer"], "chat_template", None)),
            system_prompt=system_prompt,
        )
    if env_kwargs.get("reward") is None:
        env_kwargs["reward"] = Answer(correct=correct, format=format)
    return env_kwargs


def imdb_kwargs(
    *,
    dataset: Path = "stanfordnlp/imdb",
    config: str | None = None,
    split: str = "train",
    text_column: str = "text",
    limit: int | None = None,
    min_tokens: int = 2,
    max_tokens: int = 8,
    prompt_seed: int = 0,
    model: Path = "gpt2",
    reward_model: Path = "lvwerra/distilbert-imdb",
    reward_label: int | str = 1,
    kl_coef: float = 0.2,
    **env_kwargs: Any,
) -> dict[str, Any]:
    """``TextGen-IMDB-v0``'s env arguments.

    Args:
        dataset, config, split, text_column, limit, min_tokens, max_tokens: See :func:`imdb_prompts`.
        prompt_seed: Seed of the prompt lengths.
        model: Name or path of the starting causal LM: its tokenizer is the env's, and it is the KL
            reference.
        reward_model: Name or path of the sentiment classifier.
        reward_label: The classifier output whose raw logit is the reward (1: ``POSITIVE``, as TRL).
        kl_coef: KL coefficient (TRL's ``init_kl_coef``; fixed here).
        env_kwargs: Other :class:`~textenv.env.TextGenEnv` arguments (``reward=`` replaces the reward,
            and then no classifier or reference model is loaded).
    """
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer

    from textenv.lm import resolve_device

    env_kwargs.setdefault("max_prompt_tokens", max_tokens)
    env_kwargs.setdefault("max_new_tokens", 16)
    if env_kwargs.get("tokenizer") is None:
        env_kwargs["tokenizer"] = from_pretrained(AutoTokenizer, model, argument="tokenizer")
    if env_kwargs.get("prompts") is None:
        env_kwargs["prompts"] = imdb_prompts(
            env_kwargs["tokenizer"],
            dataset,
            config=config,
            split=split,
            text_column=text_column,
            min_tokens=min_tokens,
            max_tokens=max_tokens,
            limit=limit,
            seed=prompt_seed,
        )
    if env_kwargs.get("reward") is None:
        device = resolve_device(env_kwargs.get("device", "cpu"))
        classifier = from_pretrained(
            AutoModelForSequenceClassification, reward_model, argument="reward_model", use_safetensors=True
        )
        classifier_tokenizer = from_pretrained(AutoTokenizer, reward_model, argument="reward_model")
        reference = from_pretrained(AutoModelForCausalLM, model, argument="model", use_safetensors=True)
        env_kwargs["reward"] = RewardModel(
            classifier.eval().requires_grad_(False).to(device),
            tokenizer=classifier_tokenizer,
            label=reward_label,
            output="logit",
            name="sentiment",
        ) + KLPenalty(
            reference.eval().requires_grad_(False).to(device), coef=kl_coef, estimator="k1", if_unbound="zero"
        )
    return env_kwargs


GSM8K = HubTask(id="TextGen-GSM8K-v0", key="gsm8k", build=gsm8k_kwargs)
IMDB = HubTask(id="TextGen-IMDB-v0", key="imdb", build=imdb_kwargs)
HUB_TASKS: tuple[HubTask, ...] = (GSM8K, IMDB)
"""The tasks of this module, registered by :mod:`textenv.registration`."""


HUB_TASKS_BY_KEY: dict[str, HubTask] = {task.key: task for task in HUB_TASKS}


# The entry points of the registry (textenv.registration): gymnasium passes the spec's `task` keyword.
def make(task: str, **kwargs: Any) -> TextGenEnv:
    """A new single env of the hub task ``task`` (its key): what ``gymnasium.make(id)`` calls."""
    return HUB_TASKS_BY_KEY[task].make(**kwargs)


def make_vector(task: str, num_envs: int = 1, **kwargs: Any):
    """A new vector env of the hub task ``task``: what ``gymnasium.make_vec`` calls."""
    return HUB_TASKS_BY_KEY[task].make_vector(num_envs, **kwargs)


# gymnasium.make reads an entry point's metadata to validate render_mode.
make.metadata = TextGenEnv.metadata  # type: ignore[attr-defined]
