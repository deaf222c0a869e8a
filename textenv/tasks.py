"""The task suite: registered text-generation tasks with built-in, offline prompts and rewards.

=======================  ==================  ============================================  ==  ==  =========
id                       prompts             reward (fresh scorers for every env)          P   T   threshold
=======================  ==================  ============================================  ==  ==  =========
TextGen-Sentiment-v0     review-prompts      P(positive) by ``tiny-sentiment``             16  20  0.8
                                             - 0.05 * KL(policy || ``tiny-lm``) per token
                                             - 0.1 if the episode ends without EOS
TextGen-Keyword-v0       keyword-prompts     share of the prompt's ``keywords`` written    24  20  0.8
                                             (whole words, any case) - 0.1 without EOS
TextGen-Copy-v0          copy-prompts        ROUGE-L F-measure against the references      24  24  0.85
TextGen-Arithmetic-v0    arithmetic-prompts  1 if the last number written is the answer    12  6   0.6
                                             (``Answer``: exact-match accuracy), else 0
TextGen-Reverse-v0       reverse-prompts     difflib ``SequenceMatcher`` ratio (LCS) of    16  12  0.7
                                             the stripped text and the reversed words
TextGen-Calculator-v0    calculator-prompts  multi-turn, a calculator tool: 1 if the last  12  48  0.7
                                             number of the final turn is the product
TextGen-GuessNumber-v0   guess-prompts       multi-turn game: ``1 - 0.1 (k - 1)`` when     15  24  0.75
                                             guess ``k`` of at most 4 finds the secret
=======================  ==================  ============================================  ==  ==  =========

Prompts: review openings ("The movie was"); keyword prompts name their one keyword set before the
opening ("Use: villain, boring. The soundtrack was"), an instruction ``tiny-lm`` was trained to
follow; ``"Repeat: <sentence> =>"``; ``"Q: 23+48= A:"``; ``"Reverse: plot dull great =>"``;
``"Q: 37*48= A:"``; ``"Guess my number from 1 to 8:"`` (the secret in the record's metadata).

The two multi-turn tasks (:mod:`textenv.multiturn`), exactly (every string's leading space included)::

    Q: 37*48= A: <call>calc(37*48)</call> <result>1776</result> 1776<EOS>
    |-- prompt --||------ policy turn ------||- the tool's reply -||- answer -|

    Guess my number from 1 to 8: 4<EOS> higher 6<EOS> lower 5<EOS>

Calculator: a turn that ends with ``</call>`` is a tool call (:func:`calculator_tool`: the result, or
`` <error>bad call</error>``), EOS ends the episode. Guess the number: every guess is a turn that ends at
EOS, answered `` higher`` / `` lower`` / `` invalid`` (:func:`guess_referee`); the right guess ends the
episode, as do 4 wrong ones.

Each task has a built-in starting model (``Task.model``): ``tiny-lm`` for the first three,
``tiny-solver`` (trained until right on 35% of the additions) for arithmetic,
``tiny-solver-early`` (the same run, saved when its reverse similarity first reached 0.5) for
reversal and ``tiny-agent`` (trained on tool-use transcripts that call the tool 40% of the time and
copy digits wrongly now and then, and on games whose guesses heed the replies half the time) for the
multi-turn tasks; and recipes for PPO and GRPO (``Task.recipes``, measured over seeds by ``benchmarks/learning.py``).

``reward_threshold`` (also ``gymnasium.spec(id).reward_threshold``) is the mean episode return
over the task's prompts that a competent policy reaches and the untrained starting model does not.
Measured with ``python benchmarks/scorers.py --tasks`` (200 episodes per policy, seed 0, models
sampled at temperature 1; figures in ``benchmarks/RESULTS.md``):

* Sentiment: untrained ``tiny-lm`` 0.47 (its KL to itself is 0). Best of 4 ``tiny-lm`` samples
  0.84 and best of 8 0.92 (reward minus 0.05 times their KL bound ``log n - (n - 1) / n``); the
  KL-regularised optimum ``0.05 * log E[exp(r / 0.05)]`` is about 0.94. Threshold 0.8.
* Keyword: untrained ``tiny-lm`` 0.16; ``tiny-lm`` with +8 on the first token of each keyword
  not yet written (EOS held back until then) 0.76; writing the keywords and EOS 1.0. Threshold 0.8.
* Copy: untrained ``tiny-lm`` 0.68; copying the sentence then EOS 1.0, with one word dropped
  0.93 (one wrong word of the ~8 in a sentence is about 0.87). Threshold 0.85.
* Arithmetic: untrained ``tiny-solver`` 0.355; its greedy answers 0.47; best of 2 samples 0.63,
  best of 4 0.82; the right answer 1.0. Threshold 0.6.
* Reverse: untrained ``tiny-solver-early`` 0.50; best of 2 samples 0.61, best of 4 0.71; its greedy
  text 0.76; the reversal with one word dropped 0.84, exact 1.0. Threshold 0.7.
* Calculator: untrained ``tiny-agent`` 0.28 (it calls the tool in 47% of the episodes and copies both
  numbers right in 63% of its calls; a right call is answered right 95% of the time, a direct answer
  never); always calling and copying right about 0.95. Threshold 0.7. (Figures of the asset build,
  ``tiny-agent/build_info.json``, text-level, 200 episodes; 512 episodes through the env: 0.25.)
* Guess the number: untrained ``tiny-agent`` 0.514 (it solves 60%); uniform random guesses 0.359,
  a random guess among the numbers the replies still allow 0.700, binary search 0.8375 (exact).
  Threshold 0.75: above any strategy that does not narrow the interval well.

The sentiment task is the offline twin of GPT-2/IMDB RLHF: its KL term needs the policy's
log-probs. Agents hand them over with ``KLPenalty.set_policy_logprobs`` before each step, or
bind the policy once::

    env = gym.make("TextGen-Sentiment-v0")
    (kl,) = env.unwrapped.reward.find(KLPenalty)
    kl.bind(policy_lm)  # e.g. the causal LM inside a stable-baselines3 policy

Until then the KL term is 0 and warns once (``if_unbound="zero"``), so random-action checkers
and plain evaluation run; the threshold assumes the KL term is live.

Every keyword of :class:`~textenv.env.TextGenEnv` can be overridden in ``gymnasium.make``
(``reward=`` replaces the whole reward); the sentiment task also takes ``kl_coef=`` and
``missing_eos=``, the keyword task ``missing_eos=``::

    gym.make("TextGen-Sentiment-v0", kl_coef=0.1, max_new_tokens=16)
    gym.make_vec("TextGen-Copy-v0", num_envs=8)  # one TextGenVectorEnv with 8 rows
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from textenv import assets
from textenv.env import TextGenEnv
from textenv.multiturn import Episode, Reply
from textenv.responders import Tools, calculator
from textenv.scorers import (
    ROUGE,
    Answer,
    Keyword,
    KLPenalty,
    MissingEOSPenalty,
    NoReward,
    RewardModel,
    Scorer,
    Similarity,
)

ARITHMETIC_THRESHOLD = 0.6
REVERSE_THRESHOLD = 0.7


def sentiment_reward(*, kl_coef: float = 0.05, missing_eos: float = 0.1) -> Scorer:
    """P(positive) from ``tiny-sentiment`` - ``kl_coef`` * KL to ``tiny-lm`` - ``missing_eos`` without EOS."""
    return (
        RewardModel("tiny-sentiment", label="positive", output="probability", name="sentiment")
        + KLPenalty("tiny-lm", coef=kl_coef, estimator="k1", if_unbound="zero")
        + MissingEOSPenalty(missing_eos)
    )


def keyword_reward(*, missing_eos: float = 0.1) -> Scorer:
    """Share of the prompt's metadata keywords that appear (whole words, any case) - ``missing_eos``."""
    return Keyword(None, mode="fraction") + MissingEOSPenalty(missing_eos)


def copy_reward() -> Scorer:
    """ROUGE-L F-measure against the prompt's references (best reference)."""
    return ROUGE("rougeL")


def arithmetic_reward() -> Scorer:
    """1 when the last number written equals the prompt's ``answer``, else 0 (exact-match accuracy)."""
    return Answer(key="answer", format=0.0, name="correct")


def reverse_reward() -> Scorer:
    """difflib's ``SequenceMatcher`` ratio of the stripped generation against the reversed words."""
    return Similarity(strip=True)


def calculator_reward() -> Scorer:
    """1 when the last number of the policy's final turn is the prompt's ``answer``, else 0."""
    return Answer(key="answer", format=0.0, name="correct")


CALL_END = "</call>"
"""The calculator task's stop string: a policy turn that ends with it is a tool call."""


def calculator_tool() -> Tools:
    """The calculator task's responder: ``<call>calc(37*48)</call>`` gets `` <result>1776</result>``."""
    return Tools(calc=calculator, error_template=" <error>bad call</error>")


GUESS_MAX = 8
"""The guessing game's numbers run from 1 to this."""
MAX_GUESSES = 4
TURN_COST = 0.1
"""What each guess after the first costs: guess ``k`` right returns ``1 - TURN_COST * (k - 1)``."""
_NUMBER = re.compile(r"-?\d+")


def guess_referee(episode: Episode) -> Reply:
    """The guessing game's side: `` higher`` / `` lower`` after a wrong guess, `` invalid`` when the turn
    names no number from 1 to :data:`GUESS_MAX` (its last number counts), the end at the right one, with
    the return ``1 - TURN_COST * (k - 1)`` for guess ``k``. A function of the episode (the secret is the
    prompt's metadata), so one referee serves every row."""
    numbers = _NUMBER.findall(episode.last.text)
    guess = int(numbers[-1]) if numbers else None
    secret = int(episode.prompt.metadata["secret"])
    if guess == secret:
        return Reply(reward=1.0 - TURN_COST * (episode.policy_turns - 1), done=True)
    if guess is None or not 1 <= guess <= GUESS_MAX:
        return Reply(" invalid")
    return Reply(" higher" if secret > guess else " lower")


@dataclass(frozen=True)
class Task:
    """One registered task: its defaults and how to build a fresh env (or vector env) from them.

    Attributes:
        id: Gymnasium id.
        key: Short name; the registry's entry points ``textenv.tasks:make`` and ``make_vector`` get it as
            ``task=<key>``.
        prompts: Built-in prompt asset name.
        reward: Builds a new reward scorer; its keyword arguments may be given to ``gymnasium.make``.
        reward_threshold: Mean episode return a competent policy reaches (see the module docstring).
        env_kwargs: Other :class:`TextGenEnv` defaults.
        model: The built-in starting model (asset name) that the threshold and recipe are measured from.
        recipes: How the project's algorithms learn the task from ``model``, by algorithm name
            (``agents.registry``: ``"ppo"``, ``"grpo"``): ``episodes`` (the budget) and config fields (the
            rest are the config's defaults); measured over seeds by ``benchmarks/learning.py`` (figures in
            ``benchmarks/RESULTS.md``).
        untrained_return: Mean episode return of ``model`` untrained (see the module docstring), or
            ``None`` if unknown. ``textenv-compare`` normalises a score to 0 there and to 1 at
            ``reward_threshold``.
    """

    id: str
    key: str
    prompts: str
    reward: Callable[..., Scorer]
    reward_threshold: float
    env_kwargs: Mapping[str, Any] = field(default_factory=dict)
    model: str = "tiny-lm"
    recipes: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    untrained_return: float | None = None

    def kwargs(self, overrides: Mapping[str, Any]) -> dict[str, Any]:
        """The env keyword arguments: defaults, then ``overrides``; a new reward unless one is given.

        Raises:
            TypeError: Reward options (``kl_coef=``) together with ``reward=``.
        """
        overrides = dict(overrides)
        reward_options = {k: overrides.pop(k) for k in _reward_options(self.reward) if k in overrides}
        kwargs = {**self.env_kwargs, **overrides}
        # None means "the task's default", as it means "the env's default" for TextGenEnv.
        if kwargs.get("prompts") is None:
            kwargs["prompts"] = assets.path(self.prompts)
        if kwargs.get("reward") is None:
            kwargs["reward"] = self.reward(**reward_options)
        elif reward_options:
            raise TypeError(
                f"{self.id}: {sorted(reward_options)} only apply to the default reward, not to reward="
            )
        return kwargs

    def make(self, **kwargs: Any) -> TextGenEnv:
        """A new single env."""
        return TextGenEnv(**self.kwargs(kwargs))

    def make_vector(self, num_envs: int = 1, **kwargs: Any):
        """A new :class:`textenv.vector.TextGenVectorEnv` with ``num_envs`` rows (one shared reward)."""
        from textenv.vector import TextGenVectorEnv  # imported late: vector.py imports much of textenv

        return TextGenVectorEnv(num_envs=num_envs, **self.kwargs(kwargs))


def _reward_options(builder: Callable[..., Scorer]) -> tuple[str, ...]:
    return tuple(getattr(builder, "__kwdefaults__", None) or ())


SENTIMENT = Task(
    id="TextGen-Sentiment-v0",
    key="sentiment",
    prompts="review-prompts",
    reward=sentiment_reward,
    reward_threshold=0.8,
    untrained_return=0.47,
    env_kwargs={"max_prompt_tokens": 16, "max_new_tokens": 20},
    recipes={
        "ppo": {"episodes": 4096, "learning_rate": 5e-5, "mixed_precision": "no"},
        "grpo": {
            "episodes": 4096,
            "learning_rate": 1e-4,
            "num_iterations": 4,
            "minibatch_size": 8,
            "mixed_precision": "no",
        },
    },
)
KEYWORD = Task(
    id="TextGen-Keyword-v0",
    key="keyword",
    prompts="keyword-prompts",
    reward=keyword_reward,
    reward_threshold=0.8,
    untrained_return=0.16,
    env_kwargs={"max_prompt_tokens": 24, "max_new_tokens": 20},
    # As on Copy, the fresh value head's noise stalled PPO on some seeds (0.73 to 0.75 after 12,000
    # episodes on 2 of 5): the head learns at its own, higher rate, and Monte-Carlo advantages. With
    # 16-episode batches that still left 2 of 5 seeds at 0.67-0.69 (an entropy bonus did not help);
    # 64-episode batches and 20,000 episodes: 4 of 5 seeds reach 0.8, seed 1 ends at 0.77 (RESULTS.md).
    recipes={
        "ppo": {
            "episodes": 20000,
            "learning_rate": 1e-4,
            "value_learning_rate": 1e-3,
            "gae_lambda": 1.0,
            "episodes_per_iteration": 64,
            "minibatch_size": 32,
            "mixed_precision": "no",
        },
        "grpo": {
            "episodes": 12000,
            "learning_rate": 1e-4,
            "episodes_per_iteration": 64,
            "minibatch_size": 32,
            "group_size": 8,
            "mixed_precision": "no",
        },
    },
)
COPY = Task(
    id="TextGen-Copy-v0",
    key="copy",
    prompts="copy-prompts",
    reward=copy_reward,
    reward_threshold=0.85,
    untrained_return=0.68,
    env_kwargs={"max_prompt_tokens": 24, "max_new_tokens": 24},
    # Near the ROUGE ceiling the signal is one wrong word in a sentence: the value head must learn at
    # its own, higher rate (a fresh head is noise of the rewards' size), Monte-Carlo advantages
    # (gae_lambda 1) keep its remaining error from biasing them, and one epoch keeps the steps small.
    recipes={
        "ppo": {
            "episodes": 32768,
            "learning_rate": 1e-4,
            "value_learning_rate": 1e-3,
            "gae_lambda": 1.0,
            "ppo_epochs": 1,
            "episodes_per_iteration": 64,
            "minibatch_size": 32,
            "temperature": 0.7,
            "mixed_precision": "no",
        },
        "grpo": {
            "episodes": 16384,
            "learning_rate": 5e-5,
            "episodes_per_iteration": 64,
            "minibatch_size": 32,
            "group_size": 8,
            "temperature": 0.7,
            "mixed_precision": "no",
        },
    },
)
ARITHMETIC = Task(
    id="TextGen-Arithmetic-v0",
    key="arithmetic",
    prompts="arithmetic-prompts",
    reward=arithmetic_reward,
    reward_threshold=ARITHMETIC_THRESHOLD,
    untrained_return=0.355,
    env_kwargs={"max_prompt_tokens": 12, "max_new_tokens": 6},
    model="tiny-solver",
    recipes={
        "ppo": {
            "episodes": 16384,
            "learning_rate": 5e-5,
            "episodes_per_iteration": 64,
            "minibatch_size": 32,
            "mixed_precision": "no",
        },
        "grpo": {
            "episodes": 49152,
            "learning_rate": 1e-4,
            "episodes_per_iteration": 128,
            "minibatch_size": 64,
            "group_size": 16,
            "mixed_precision": "no",
        },
    },
)
REVERSE = Task(
    id="TextGen-Reverse-v0",
    key="reverse",
    prompts="reverse-prompts",
    reward=reverse_reward,
    reward_threshold=REVERSE_THRESHOLD,
    untrained_return=0.50,
    env_kwargs={"max_prompt_tokens": 16, "max_new_tokens": 12},
    model="tiny-solver-early",
    recipes={
        "ppo": {
            "episodes": 16384,
            "learning_rate": 5e-5,
            "episodes_per_iteration": 64,
            "minibatch_size": 32,
            "temperature": 0.7,
            "mixed_precision": "no",
        },
        "grpo": {
            "episodes": 16384,
            "learning_rate": 5e-5,
            "episodes_per_iteration": 64,
            "minibatch_size": 32,
            "group_size": 8,
            "temperature": 0.7,
            "mixed_precision": "no",
        },
    },
)
CALCULATOR = Task(
    id="TextGen-Calculator-v0",
    key="calculator",
    prompts="calculator-prompts",
    reward=calculator_reward,
    reward_threshold=0.7,
    untrained_return=0.28,
    # EOS ends the episode (the answer); the stop string ends a turn (a call), which the tool answers.
    env_kwargs={
        "max_prompt_tokens": 12,
        "max_new_tokens": 48,
        "responder": calculator_tool(),
        "end_of_turn": [],
        "stop_strings": [CALL_END],
    },
    model="tiny-agent",
    recipes={
        "ppo": {
            "episodes": 16384,
            "learning_rate": 1e-4,
            "episodes_per_iteration": 64,
            "minibatch_size": 32,
            "mixed_precision": "no",
        },
        "grpo": {
            "episodes": 16384,
            "learning_rate": 1e-4,
            "episodes_per_iteration": 64,
            "minibatch_size": 32,
            "group_size": 8,
            "mixed_precision": "no",
        },
    },
)
GUESS_NUMBER = Task(
    id="TextGen-GuessNumber-v0",
    key="guess_number",
    prompts="guess-prompts",
    reward=NoReward,  # the game's return is the responder's
    reward_threshold=0.75,
    untrained_return=0.514,
    env_kwargs={
        "max_prompt_tokens": 15,
        "max_new_tokens": 24,
        "responder": guess_referee,
        "max_turns": MAX_GUESSES,
    },
    model="tiny-agent",
    recipes={
        "ppo": {
            "episodes": 16384,
            "learning_rate": 1e-4,
            "episodes_per_iteration": 64,
            "minibatch_size": 32,
            "mixed_precision": "no",
        },
        "grpo": {
            "episodes": 16384,
            "learning_rate": 1e-4,
            "episodes_per_iteration": 64,
            "minibatch_size": 32,
            "group_size": 8,
            "mixed_precision": "no",
        },
    },
)
TASKS: tuple[Task, ...] = (SENTIMENT, KEYWORD, COPY, ARITHMETIC, REVERSE, CALCULATOR, GUESS_NUMBER)
"""Every task of the suite, in documentation order."""


TASKS_BY_KEY: dict[str, Task] = {task.key: task for task in TASKS}


# The entry points of the registry (textenv.registration): gymnasium passes the spec's `task` keyword.
def make(task: str, **kwargs: Any) -> TextGenEnv:
    """A new single env of the task ``task`` (its key): what ``gymnasium.make(id)`` calls.

    Raises:
        ValueError: An unknown task key.
    """
    return _task(task).make(**kwargs)


def make_vector(task: str, num_envs: int = 1, **kwargs: Any):
    """A new :class:`textenv.vector.TextGenVectorEnv` of the task ``task``: what ``gymnasium.make_vec`` calls."""
    return _task(task).make_vector(num_envs, **kwargs)


def _task(key: str) -> Task:
    if key not in TASKS_BY_KEY:
        raise ValueError(f"unknown task {key!r}; the tasks are {sorted(TASKS_BY_KEY)}")
    return TASKS_BY_KEY[key]


# gymnasium.make reads an entry point's metadata to validate render_mode.
make.metadata = TextGenEnv.metadata  # type: ignore[attr-defined]
