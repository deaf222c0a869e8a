"""reasoning-gym's procedural tasks by name: ``TextGen-ReasoningGym-v0`` (single turn).

`reasoning-gym <https://github.com/open-thought/reasoning-gym>`_ generates reasoning problems
(arithmetic, countdown, logic puzzles, ciphers, ... over 100 datasets) offline from a seed, and
grades each answer with the dataset's own ``score_answer``. Any of its datasets, or a weighted
composite of several, is a task here; options that are not env arguments configure the dataset::

    env = gym.make("TextGen-ReasoningGym-v0", dataset="countdown", size=500, seed=0, min_numbers=3)
    envs = gym.make_vec("TextGen-ReasoningGym-v0", num_envs=8, dataset="chain_sum", max_terms=3)
    env = gym.make(
        "TextGen-ReasoningGym-v0",
        dataset="composite",  # reasoning-gym's CompositeDataset: each item drawn by weight
        datasets=[
            {"name": "chain_sum", "weight": 2},
            {"name": "leg_counting", "weight": 1, "config": {"max_animals": 3}},
        ],
    )

Needs ``pip install 'textenv[reasoning]'`` (reasoning-gym, Python >= 3.11); without it the id is
still registered and ``gym.make`` says how to install it.

**Prompts.** The ``size`` questions are generated when the env is built. With a tokenizer that has a
chat template (the built-in one has a small one) each prompt is a chat: reasoning-gym's answer-format
instruction as the system message (``reasoning_gym.utils.SYSTEM_PROMPTS["default"]``, the default of
its evaluation script: think step by step, then ``<answer>answer here</answer>``), the question as
the user message. Without a template (or with ``chat_template=False``) the prompt is the instruction,
a blank line and the question. ``system_prompt=`` picks another of reasoning-gym's prompts by name
(``"DeepSeekZero"``, ``"simple"``, ...), gives its own text, or ``None`` for the bare question (the
default with ``answer_format="text"`` or a regex, whose answers are not tagged).

**Reward.** ``dataset.score_answer(answer=..., entry=...)`` on the answer extracted from the generated
text (:class:`~textenv.scorers.reasoning_gym.ScoreAnswer`): by default the last
``<answer>...</answer>`` (reasoning-gym's ``extract_answer``), ``answer_format="text"`` the whole
text, ``"regex:<pattern>"`` the last match. ``format_reward=w`` adds ``w`` times a
:class:`~textenv.scorers.Format` term for a text that holds an answer in the format; ``reward=``
replaces the whole reward. Each prompt's metadata holds the dataset entry (``entry``: ``question``,
``answer``, ``metadata``), so any scorer can read it.

**Seeds.** ``seed=`` (default 0) seeds reasoning-gym's generator: item ``i`` depends only on the
dataset, its options, the seed and ``i``, so the same seed gives the same questions in the same order
in every process. reasoning-gym draws item ``i`` from ``Random(seed + i)``, so nearby seeds share
items (``seed=1`` is ``seed=0`` shifted by one question). A held-out evaluation split is the same task
with a seed at least ``size`` away (``size`` plus the number of parts for a composite, whose part
``j`` is seeded with ``seed + j + 1``): :data:`EVAL_SEED` (one million) for training on seeds from 0
with sizes up to that. Its questions are an independent draw; a dataset with few distinct
questions still repeats some (``chain_sum``: 2 of 500 questions of ``seed=0`` and ``EVAL_SEED``)::

    train = gym.make("TextGen-ReasoningGym-v0", dataset="countdown", seed=0)
    held_out = gym.make("TextGen-ReasoningGym-v0", dataset="countdown", seed=EVAL_SEED, size=200)

``env.reset(seed=...)`` is separate: it seeds which of the generated questions each episode draws.

**Lengths.** ``max_prompt_tokens`` defaults to 512 and ``max_new_tokens`` to 512. With the built-in
tokenizer (byte-level BPE of 1,302 tokens, under 1.5 characters a token on these questions) the
default instruction is 192 tokens, the median dataset's median chat prompt 431 tokens, and the
median prompt fits 512 tokens for 69 of reasoning-gym's 105 datasets (1024: 95); a large-vocabulary
tokenizer of an instruction-tuned model needs fewer tokens (the median question is 394 characters).
A longer prompt keeps its last ``max_prompt_tokens`` tokens (the env warns once): raise the limit for
long puzzles (``arc_agi``, ``boxnet``, ``rectangle_count``, ``codeio``). The questions are generated
when the env is built: 500 take 0.01 s for ``chain_sum``, about 8 s for ``countdown`` (which builds
each expression with sympy). Figures: ``python benchmarks/reasoning_gym_prompts.py --time``.
"""

from __future__ import annotations

import dataclasses
import difflib
import inspect
import math
import numbers
import re
from collections.abc import Mapping, Sequence
from types import ModuleType
from typing import Any

from textenv import assets
from textenv.env import TextGenEnv
from textenv.options import OPTION_NAMES
from textenv.scorers import Format, Scorer
from textenv.scorers.reasoning_gym import ENTRY_KEY, ScoreAnswer, format_pattern
from textenv.tokenization import load_tokenizer

ENV_ID = "TextGen-ReasoningGym-v0"
INSTALL_HINT = "pip install 'textenv[reasoning]' (or pip install reasoning-gym; it needs Python >= 3.11)"
DEFAULT_SIZE = 500  # reasoning-gym's own default
DEFAULT_SEED = 0
EVAL_SEED = 1_000_000
"""The seed of a held-out evaluation split: a training split with ``seed + size (+ parts of a composite)
<= EVAL_SEED``, e.g. ``seed=0`` of any size up to a million, shares no generator seed with it."""
DEFAULT_MAX_PROMPT_TOKENS = 512
DEFAULT_MAX_NEW_TOKENS = 512
COMPOSITE = "composite"
AUTO = "auto"
DEFAULT_SYSTEM_PROMPT = "default"  # the key of reasoning_gym.utils.SYSTEM_PROMPTS its evaluation uses


def import_reasoning_gym() -> ModuleType:
    """The ``reasoning_gym`` package.

    Raises:
        ImportError: It is not installed; the message says how to install it.
    """
    try:
        import reasoning_gym
        import reasoning_gym.composite  # registers "composite" (reasoning-gym's __init__ may not import it)
    except ImportError as err:
        raise ImportError(f"{ENV_ID} needs the reasoning-gym package: {INSTALL_HINT}") from err
    return reasoning_gym


def dataset_names() -> list[str]:
    """The names reasoning-gym's ``create_dataset`` accepts (``"composite"`` included), sorted."""
    import_reasoning_gym()
    from reasoning_gym.factory import DATASETS

    return sorted(DATASETS)


def dataset_options(name: str) -> tuple[str, ...]:
    """The options of a dataset: the fields of its reasoning-gym config (``size`` and ``seed`` included).

    Raises:
        ValueError: ``name`` is not a reasoning-gym dataset (the message suggests near names).
    """
    import_reasoning_gym()
    from reasoning_gym.factory import DATASETS

    if not isinstance(name, str):
        raise TypeError(f"dataset must be a reasoning-gym dataset name such as 'countdown', got {name!r}")
    if name not in DATASETS:
        close = difflib.get_close_matches(name, DATASETS, n=3)
        hint = f"did you mean {' or '.join(map(repr, close))}? " if close else ""
        raise ValueError(
            f"dataset={name!r} is not a reasoning-gym dataset; {hint}its {len(DATASETS)} datasets are "
            f"{', '.join(sorted(DATASETS))}"
        )
    return tuple(f.name for f in dataclasses.fields(DATASETS[name][1]))


def create_dataset(name: str, *, size: int = DEFAULT_SIZE, seed: int = DEFAULT_SEED, **config: Any) -> Any:
    """``reasoning_gym.create_dataset(name, size=size, seed=seed, **config)`` with its input checked.

    For ``name="composite"``, ``datasets`` lists the parts: dicts ``{"name", "weight" (default 1),
    "config" (default {})}`` or reasoning-gym ``DatasetSpec`` objects; part ``i`` is seeded with
    ``seed + i + 1`` unless its config gives a seed (reasoning-gym's rule).

    Raises:
        ValueError: An unknown dataset, a bad size, seed or part, or a config the dataset rejects.
        TypeError: An option the dataset does not have, or a value of the wrong type.

    Example:
        >>> dataset = create_dataset("chain_sum", size=10, seed=0, max_terms=3)  # doctest: +SKIP
        >>> dataset[0]["question"], dataset[0]["answer"]  # doctest: +SKIP
    """
    rg = import_reasoning_gym()
    _check_options(name, config)
    _check_int("size", size, minimum=1)
    _check_int("seed", seed, minimum=0)
    if name == COMPOSITE:
        config["datasets"] = _composite_parts(config.get("datasets"))
    try:
        return rg.create_dataset(name, size=size, seed=seed, **config)
    except (AssertionError, ValueError) as err:  # reasoning-gym's configs validate with assert
        raise ValueError(f"reasoning-gym dataset {name!r} rejected its config {config!r}: {err}") from err


def _check_options(name: str, config: Mapping[str, Any]) -> None:
    options = dataset_options(name)
    unknown = [k for k in config if k not in options]
    if unknown:
        raise TypeError(
            f"reasoning-gym dataset {name!r} has no option {unknown[0]!r}; its options are {', '.join(options)}"
        )


def _check_int(name: str, value: object, *, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}: {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")


def _composite_parts(parts: object) -> list[Any]:
    """The ``datasets`` of a composite as reasoning-gym ``DatasetSpec`` objects, each checked."""
    from reasoning_gym.composite import DatasetSpec

    example = '[{"name": "chain_sum", "weight": 2}, {"name": "leg_counting", "config": {"max_animals": 3}}]'
    if isinstance(parts, (str, bytes)) or not isinstance(parts, Sequence) or not parts:
        raise ValueError(
            f"dataset='composite' needs datasets=, a non-empty list such as {example}; got {parts!r}"
        )
    specs = []
    for i, part in enumerate(parts):
        if isinstance(part, DatasetSpec):
            part = {"name": part.name, "weight": part.weight, "config": part.config}
        if not isinstance(part, Mapping) or "name" not in part or set(part) - {"name", "weight", "config"}:
            raise ValueError(
                f"datasets[{i}] must be a dict with 'name' and optional 'weight' and 'config' (or a "
                f"reasoning_gym DatasetSpec), e.g. {example}; got {part!r}"
            )
        name, weight, config = part["name"], part.get("weight", 1.0), part.get("config", {})
        if name == COMPOSITE:
            raise ValueError(
                f"datasets[{i}] is itself 'composite'; expected a dataset name such as 'chain_sum'"
            )
        if not isinstance(config, Mapping):
            raise TypeError(f"datasets[{i}]['config'] must be a dict of {name!r} options, got {config!r}")
        _check_options(name, config)
        if (
            isinstance(weight, bool)
            or not isinstance(weight, numbers.Real)
            or not (math.isfinite(weight) and float(weight) > 0)
        ):
            raise ValueError(f"datasets[{i}]['weight'] must be a positive number, got {weight!r}")
        specs.append(DatasetSpec(name=name, weight=float(weight), config=dict(config)))
    return specs


def system_prompt_text(system_prompt: str | None, *, answer_format: object = "tags") -> str | None:
    """The answer-format instruction of the prompts.

    Args:
        system_prompt: ``"auto"`` (reasoning-gym's ``"default"`` prompt when the answer is tagged,
            none otherwise), a key of ``reasoning_gym.utils.SYSTEM_PROMPTS``, any other text (used
            as it is) or ``None`` (no instruction).
        answer_format: The scorer's answer format (see :func:`~textenv.scorers.reasoning_gym.answer_extractor`).

    Example:
        >>> system_prompt_text("direct")  # doctest: +SKIP
        'Answer the question directly. Provide your answer between <answer> and </answer> tags. ...'
    """
    if system_prompt is None:
        return None
    if not isinstance(system_prompt, str):
        raise TypeError(
            f"system_prompt must be 'auto', a reasoning_gym SYSTEM_PROMPTS name, a text or None, got "
            f"{type(system_prompt).__name__}: {system_prompt!r}"
        )
    import_reasoning_gym()
    from reasoning_gym.utils import SYSTEM_PROMPTS

    if system_prompt == AUTO:
        system_prompt = DEFAULT_SYSTEM_PROMPT if answer_format == "tags" else None
        if system_prompt is None:
            return None
    text = SYSTEM_PROMPTS.get(system_prompt, system_prompt).strip()
    if not text:
        raise ValueError(f"system_prompt is blank ({system_prompt!r}); expected a text, a name or None")
    return text


def reasoning_gym_prompts(
    dataset: Any, *, system_prompt: str | None = None, chat: bool = False
) -> list[dict]:
    """Every item of a reasoning-gym dataset as a prompt record.

    A record is ``{"messages": [system, user], "entry": item}`` with ``chat=True`` (no system
    message when ``system_prompt`` is ``None``), else ``{"prompt": system_prompt + "\\n\\n" +
    question, "entry": item}``; ``entry`` becomes the prompt's metadata, which
    :class:`~textenv.scorers.reasoning_gym.ScoreAnswer` reads.

    Args:
        dataset: A reasoning-gym dataset (``create_dataset(...)``).
        system_prompt: The instruction text (see :func:`system_prompt_text`), or ``None``.
        chat: Records with ``messages`` for the tokenizer's chat template.
    """
    records = []
    for i in range(len(dataset)):
        entry = dataset[i]
        question = entry["question"]
        if chat:
            system = [] if system_prompt is None else [{"role": "system", "content": system_prompt}]
            records.append({"messages": [*system, {"role": "user", "content": question}], ENTRY_KEY: entry})
        else:
            text = question if system_prompt is None else f"{system_prompt}\n\n{question}"
            records.append({"prompt": text, ENTRY_KEY: entry})
    return records


def reasoning_gym_kwargs(
    env_class: type = TextGenEnv,
    *,
    dataset: object = None,
    size: int | None = None,
    seed: int | None = None,
    answer_format: str | re.Pattern[str] = "tags",
    system_prompt: str | None = AUTO,
    format_reward: float = 0.0,
    **kwargs: Any,
) -> dict[str, Any]:
    """``TextGen-ReasoningGym-v0``'s arguments for ``env_class`` (see the module docstring).

    Args:
        env_class: :class:`~textenv.env.TextGenEnv` or :class:`~textenv.vector.TextGenVectorEnv`.
        dataset: A reasoning-gym dataset name (``"composite"`` included) or a dataset object
            (``reasoning_gym.create_dataset(...)``, used as it is).
        size: Number of questions (default 500); a name only.
        seed: reasoning-gym's generation seed (default 0); a name only.
        answer_format: Where the answer is in the text (see
            :func:`~textenv.scorers.reasoning_gym.answer_extractor`).
        system_prompt: The instruction (see :func:`system_prompt_text`).
        format_reward: Weight of a ``Format`` term for a text that holds an answer in ``answer_format``.
        kwargs: The dataset's options (fields of its reasoning-gym config, e.g. ``max_terms=3``, or
            ``datasets=`` of a composite), then ``env_class`` arguments (``tokenizer=``,
            ``max_new_tokens=``, ``reward=`` to replace the reward, ...).

    Raises:
        ImportError: reasoning-gym is not installed.
        TypeError, ValueError: A bad dataset, option or argument (the message names it).
    """
    if dataset is None:
        raise TypeError(f"{ENV_ID} needs dataset=, a reasoning-gym dataset name such as 'countdown'")
    import_reasoning_gym()
    if kwargs.pop("prompts", None) is not None:
        raise TypeError(f"{ENV_ID} generates its prompts from dataset=; prompts= is not an option")
    # The cheap checks first: a bad argument fails before any question is generated.
    pattern = format_pattern(answer_format)
    instruction = system_prompt_text(system_prompt, answer_format=answer_format)
    _check_format_reward(format_reward, pattern, has_reward=kwargs.get("reward") is not None)
    if isinstance(dataset, str):
        options = dataset_options(dataset)
        config = {k: kwargs.pop(k) for k in list(kwargs) if k in options}
        _check_env_arguments(
            env_class, kwargs, f"reasoning-gym dataset {dataset!r} has the options {options}"
        )
        dataset = create_dataset(
            dataset,
            size=DEFAULT_SIZE if size is None else size,
            seed=DEFAULT_SEED if seed is None else seed,
            **config,
        )
    elif not callable(getattr(dataset, "score_answer", None)):
        raise TypeError(
            "dataset must be a reasoning-gym dataset name such as 'countdown' or a dataset object "
            f"(reasoning_gym.create_dataset(...)), got {type(dataset).__name__}: {dataset!r}"
        )
    elif size is not None or seed is not None:
        raise TypeError(
            f"size= and seed= configure a dataset given by name; the dataset object {type(dataset).__name__} has "
            f"its own (size {getattr(dataset, 'size', '?')}, seed {getattr(dataset, 'seed', '?')})"
        )
    else:
        _check_env_arguments(env_class, kwargs, "a dataset object takes no options")
    score = ScoreAnswer(dataset, answer_format=answer_format)
    if kwargs.get("reward") is None:
        reward: Scorer = score
        if format_reward and pattern is not None:  # None only for "text", where format_reward was refused
            reward = score + format_reward * Format(pattern)
        kwargs["reward"] = reward
    tokenizer = load_tokenizer(
        assets.path("tiny-tokenizer") if kwargs.get("tokenizer") is None else kwargs["tokenizer"]
    )
    # As the env renders them: a chat when the tokenizer has a template and chat_template is not False.
    chat = kwargs.get("chat_template", "auto") is not False and bool(
        getattr(tokenizer, "chat_template", None)
    )
    kwargs["tokenizer"] = tokenizer
    kwargs["prompts"] = reasoning_gym_prompts(dataset, system_prompt=instruction, chat=chat)
    kwargs.setdefault("max_prompt_tokens", DEFAULT_MAX_PROMPT_TOKENS)
    kwargs.setdefault("max_new_tokens", DEFAULT_MAX_NEW_TOKENS)
    return kwargs


def _check_format_reward(format_reward: object, pattern: object, *, has_reward: bool) -> None:
    if (
        isinstance(format_reward, bool)
        or not isinstance(format_reward, numbers.Real)
        or not math.isfinite(format_reward)
    ):
        raise TypeError(
            f"format_reward must be a finite number, got {type(format_reward).__name__}: {format_reward!r}"
        )
    if format_reward and has_reward:
        raise TypeError(f"{ENV_ID}: format_reward= applies to the default reward, not to reward=")
    if format_reward and pattern is None:
        raise ValueError(
            f"format_reward={format_reward} needs an answer format to check; answer_format='text' takes "
            "any text as the answer (use 'tags' or 'regex:<pattern>')"
        )


def _check_env_arguments(env_class: type, kwargs: Mapping[str, Any], options: str) -> None:
    """A keyword that is neither a dataset option nor an env argument is a TypeError naming both."""
    parameters = [
        name
        for name, p in inspect.signature(env_class).parameters.items()
        if p.kind is not inspect.Parameter.VAR_KEYWORD
    ]
    accepted = (*parameters, *OPTION_NAMES)
    unknown = [k for k in kwargs if k not in accepted]
    if unknown:
        raise TypeError(
            f"{ENV_ID} got an unexpected keyword {unknown[0]!r}: {options}, and {env_class.__name__} the "
            f"arguments {accepted}"
        )


def make(**kwargs: Any) -> TextGenEnv:
    """``TextGen-ReasoningGym-v0``: a :class:`~textenv.env.TextGenEnv` (see :func:`reasoning_gym_kwargs`).

    Example:
        >>> env = gym.make("TextGen-ReasoningGym-v0", dataset="chain_sum", size=100, seed=0)  # doctest: +SKIP
    """
    return TextGenEnv(**reasoning_gym_kwargs(TextGenEnv, **kwargs))


def make_vector(num_envs: int = 1, **kwargs: Any):
    """``TextGen-ReasoningGym-v0`` as a :class:`~textenv.vector.TextGenVectorEnv` with ``num_envs`` rows.

    Example:
        >>> envs = gym.make_vec("TextGen-ReasoningGym-v0", num_envs=8, dataset="chain_sum")  # doctest: +SKIP
    """
    from textenv.vector import TextGenVectorEnv  # imported late, as in textenv.tasks

    return TextGenVectorEnv(num_envs=num_envs, **reasoning_gym_kwargs(TextGenVectorEnv, **kwargs))


# gymnasium.make reads an entry point's metadata to validate render_mode.
make.metadata = TextGenEnv.metadata  # type: ignore[attr-defined]
