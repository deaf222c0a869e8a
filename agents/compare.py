"""Compare RL algorithms on textenv tasks: same episode budget, same seeds, one command.

``textenv-compare`` (or ``python examples/compare_algorithms.py``)::

    textenv-compare --env TextGen-Sentiment-v0 --episodes 512 --seeds 0 1 \\
        --algos ppo grpo rloo reinforce++ scst sb3-ppo sb3-a2c base-lm --out runs/compare
    textenv-compare --suite builtin --episodes 2048 --seeds 0 1 2 3 4 --algos ppo grpo rloo --out runs/suite

Every algorithm trains the same starting model on each task for the same number of *episodes* (one
episode = one generated text) with each seed, and its episode returns are recorded in the order the
episodes finish. The starting model is ``--model``, or by default each task's own
(:attr:`textenv.tasks.Task.model`: ``tiny-solver`` for arithmetic, ...; ``tiny-lm`` for other envs).
``--suite builtin`` is every task of :data:`textenv.tasks.TASKS`. For each task ``--out`` holds (in
``--out`` itself for one task, in ``--out/<env id>/`` for several):

- ``curves.csv``: ``algo, seed, episodes, mean_reward``, the mean return of each window of
  ``--window`` consecutive episodes (``episodes`` = episodes seen at the end of the window);
- ``episodes.csv``: ``algo, seed, episode, reward, tokens, kl``, every episode;
- ``learning_curves.png``: mean return against episodes, mean over seeds with a min-max band;
- ``results.md``: episodes to the task's reward threshold (first curve window at or above it), final
  reward (mean return of the last 20% of the budget), KL to the reference per episode (last 20%), each
  mean ± std over seeds, wall time of training and generated tokens per second.

and over all tasks and seeds (Agarwal et al., NeurIPS 2021; estimators in :mod:`agents.aggregate`):

- ``aggregate.md``: per algorithm the interquartile mean (IQM) of the normalised final score of every
  run with its 95% stratified bootstrap interval, and the probability that each algorithm improves on
  each other one, with its interval;
- ``performance_profiles.png``: the fraction of runs whose normalised score exceeds tau, with bands.

**Normalised score.** A run's final reward ``r`` on a task becomes ``(r - untrained) / (threshold -
untrained)``: 0 is the task's untrained starting model (:attr:`textenv.tasks.Task.untrained_return`),
1 its ``reward_threshold`` (``gymnasium.spec(id).reward_threshold``), so tasks of different reward
scales pool. An env without both (``TextGen-v0``, the hub tasks, any env not in
:data:`textenv.tasks.TASKS` or whose task leaves ``untrained_return`` at ``None``) is reported raw in its
``results.md`` and left out of the aggregate, which says so.

**Resuming.** Each finished (algorithm, task, seed) run is written to
``--out/runs/<env id>/<algo>/seed-<seed>.json`` with the settings it ran with. Run the same command
again after an interruption (or with more seeds, algorithms or tasks) and the runs found there are read
back instead of run again; a run found there with other settings (episodes, env rows, env keywords,
model, device, learning rate, hyper-parameters) is refused before anything runs.

Algorithms (``--algos``): :data:`agents.registry.ALGORITHMS`, each with the comparison's
hyper-parameters:

- ``ppo``, ``grpo``, ``rloo``, ``reinforce++``, ``scst``: :class:`agents.PPO`, :class:`agents.GRPO`,
  :class:`agents.RLOO`, :class:`agents.REINFORCE` (batch baseline, greedy baseline) on the shared core
  (KV-cached rollouts, one full forward per episode to train), ``--num-envs`` episodes per iteration in
  two minibatches; ``agents-ppo`` etc. are aliases;
- ``sb3-ppo`` / ``sb3-a2c``: stable-baselines3 PPO / A2C with :class:`agents.sb3.LMPolicy` on the
  task's batched vector env (``textenv.sb3.TextGenVecEnvAdapter``), one full forward per token;
- ``base-lm``: no training, the starting model sampled as it is (the level to beat).

A task's KL penalty is live for every algorithm: ``agents.PPO`` hands its log-probs to the env,
the SB3 policies are bound with :func:`agents.sb3.bind_kl`; the KL coefficient is the task's.

Example:
    >>> from agents.compare import compare
    >>> results = compare("TextGen-Sentiment-v0", episodes=64, seeds=[0], algos=["ppo", "grpo"], out="runs/c")  # doctest: +SKIP
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import shlex
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from agents import registry
from agents.cli import env_id, int_at_least, json_object, output_dir
from agents.compare_report import (
    RunResult,
    Scale,
    aggregate_report,
    learning_curves,
    normalized_scores,
    plot_learning_curves,
    plot_performance_profiles,
    results_table,
    write_task_report,
)
from agents.registry import ALGORITHMS, ALIASES

if TYPE_CHECKING:
    from textenv.tasks import Task

__all__ = [
    "ALGORITHMS",
    "ALIASES",
    "DEFAULT_ALGOS",
    "Comparison",
    "RunResult",
    "RunSpec",
    "SettingError",
    "compare",
    "learning_curves",
    "main",
    "plan",
    "plot_learning_curves",
    "results_table",
    "run_comparison",
]

DEFAULT_ALGOS = ("ppo", "grpo", "rloo", "reinforce++", "scst", "sb3-ppo", "sb3-a2c")
"""``--algos`` when none are given."""

DEFAULT_ENV = "TextGen-Sentiment-v0"
"""``--env`` when neither ``--env`` nor ``--suite`` is given."""

FALLBACK_MODEL = "tiny-lm"
"""The starting model of an env that is not a built-in task (when ``--model`` is not given)."""

SUITES = ("builtin",)
"""``--suite`` names: ``builtin`` is every task of :data:`textenv.tasks.TASKS`."""

RUNS_DIR = "runs"
"""Where under ``--out`` each finished run is kept (``runs/<env id>/<algo>/seed-<seed>.json``)."""


class SettingError(ValueError):
    """A comparison setting that cannot run, found before any run starts.

    Attributes:
        flag: The ``textenv-compare`` flag that sets it (the command line's one-line error names it).
    """

    def __init__(self, message: str, *, flag: str) -> None:
        super().__init__(message)
        self.flag = flag


@dataclass(frozen=True)
class RunSpec:
    """What one training run gets; every algorithm of a comparison gets the same spec per task and seed.

    Attributes:
        env_id: Registered textenv id.
        episodes: Episode budget.
        seed: Seed of the algorithm and of the env's prompt draws.
        model: Starting model: asset name, path or hub name.
        num_envs: Env rows stepped together.
        env_kwargs: Extra env keyword arguments (e.g. ``max_new_tokens``).
        device: Torch device.
        learning_rate: Overrides every algorithm's learning rate when set.
    """

    env_id: str
    episodes: int
    seed: int
    model: str = FALLBACK_MODEL
    num_envs: int = 16
    env_kwargs: dict[str, Any] = field(default_factory=dict)
    device: str = "cpu"
    learning_rate: float | None = None

    def hyperparameters(self, algo: str) -> dict[str, Any]:
        """The algorithm's comparison hyper-parameters (:attr:`agents.registry.Algorithm.comparison`) with
        the learning-rate override applied."""
        entry = registry.get(algo)
        params = dict(entry.comparison)
        if self.learning_rate is not None and entry.library != "none":
            params["learning_rate"] = self.learning_rate
        return params


@dataclass(frozen=True)
class Comparison:
    """A checked comparison (:func:`plan`): every run it makes and how it reports them.

    Attributes:
        envs: Env ids, in report order.
        algos: Algorithm names as given (aliases kept), in report order.
        seeds: Seeds.
        episodes: Episode budget of every run.
        window: Episodes per curve point.
        out: Output directory.
        runs: ``(algo, spec)`` of every run, in run order (task, then algorithm, then seed).
        command: The command line, recorded in the reports.
    """

    envs: tuple[str, ...]
    algos: tuple[str, ...]
    seeds: tuple[int, ...]
    episodes: int
    window: int
    out: str
    runs: tuple[tuple[str, RunSpec], ...]
    command: str | None = None

    def task_dir(self, env: str) -> str:
        """Where a task's curves and table go: ``out`` for a single task, ``out/<env id>`` for several."""
        return self.out if len(self.envs) == 1 else os.path.join(self.out, env)


# --- tasks: starting model, threshold, untrained return -------------------------------------------
def builtin_task(env: str) -> Task | None:
    """The :class:`textenv.tasks.Task` of a registered id (through its Gymnasium spec), or ``None``."""
    import gymnasium as gym

    from textenv.tasks import TASKS

    spec_id = gym.spec(env).id
    return next((task for task in TASKS if task.id == spec_id), None)


def suite(name: str) -> list[str]:
    """The env ids of a ``--suite`` (``"builtin"``: :data:`textenv.tasks.TASKS`)."""
    if name not in SUITES:
        raise SettingError(f"unknown suite {name!r}; choose from {', '.join(SUITES)}", flag="--suite")
    from textenv.tasks import TASKS

    return [task.id for task in TASKS]


def default_model(env: str) -> str:
    """A task's own starting model (``Task.model``), ``tiny-lm`` for other envs."""
    task = builtin_task(env)
    return task.model if task is not None else FALLBACK_MODEL


def score_scale(env: str) -> Scale | None:
    """``(untrained return, reward threshold)`` of an env, or ``None`` when it lacks either (then its scores
    are reported raw and left out of the aggregate)."""
    import gymnasium as gym

    task = builtin_task(env)
    threshold = gym.spec(env).reward_threshold
    if task is None or task.untrained_return is None or threshold is None:
        return None
    return float(task.untrained_return), float(threshold)


# --- runners -------------------------------------------------------------------------------------
def _resolve_model(name: str) -> str:
    from textenv.loading import resolve_pretrained

    return resolve_pretrained(name, argument="model")


RunOutput = tuple[list[float], list[int], float, list[float]]
"""What a runner returns: the return and tokens of every episode, the wall time and the episodes' KL
(empty where the algorithm does not report it)."""


def agent_config(spec: RunSpec, algo: str, **fields: Any) -> Any:
    """The config of an :mod:`agents` algorithm in the comparison: the registry's hyper-parameters,
    ``num_envs`` episodes per iteration in two minibatches, then ``fields``.

    Raises:
        ValueError: A setting the config refuses (``group_size`` that does not divide ``num_envs``, ...).
    """
    return registry.get(algo).make_config(
        **spec.hyperparameters(algo),
        episodes_per_iteration=spec.num_envs,
        minibatch_size=max(spec.num_envs // 2, 1),
        kl_controller="fixed",
        seed=spec.seed,
        device=spec.device,
        **fields,
    )


def run_agent(spec: RunSpec, algo: str) -> RunOutput:
    """An :mod:`agents` algorithm (:func:`agent_config`) with the task's own KL coefficient, fixed."""
    cls = registry.get(algo).load()
    agent = cls(
        _resolve_model(spec.model),
        spec.env_id,
        agent_config(spec, algo),
        env_kwargs=spec.env_kwargs,
        verbose=0,
        progress_bar=False,
    )
    rewards: list[float] = []
    tokens: list[int] = []
    kls: list[float] = []

    def record(local: dict[str, Any]) -> None:
        batch = local["batch"]
        rewards.extend(float(r) for r in batch.scores)
        tokens.extend(int(n) for n in batch.mask.sum(1).tolist())
        if batch.kl is not None:
            kls.extend(float(k) for k in batch.kl)

    start = time.perf_counter()
    agent.learn(spec.episodes, callback=record)
    elapsed = time.perf_counter() - start
    agent.close()
    n = spec.episodes
    return rewards[:n], tokens[:n], elapsed, kls[:n]


def _sb3_env(spec: RunSpec) -> Any:
    from stable_baselines3.common.vec_env import VecMonitor

    from textenv.sb3 import TextGenVecEnvAdapter

    return VecMonitor(
        TextGenVecEnvAdapter.make(spec.env_id, num_envs=spec.num_envs, device=spec.device, **spec.env_kwargs)
    )


def run_sb3(spec: RunSpec, algo: str) -> RunOutput:
    """stable-baselines3 PPO or A2C (Adam) with :class:`agents.sb3.LMPolicy`; no KL reported."""
    from agents.sb3 import LMPolicy, bind_kl
    from agents.sb3.callbacks import EpisodeRecorder

    venv = _sb3_env(spec)
    max_new_tokens = int(venv.get_attr("max_new_tokens")[0])
    params = spec.hyperparameters(algo)
    model: Any
    common: dict[str, Any] = {
        "policy_kwargs": {"model": _resolve_model(spec.model)},
        "seed": spec.seed,
        "device": spec.device,
    }
    cls = registry.get(algo).load()
    if registry.resolve(algo) == "sb3-ppo":
        n_steps = max(max_new_tokens // 2, 1)
        batch_size = max(spec.num_envs * n_steps // 2, 2)  # SB3 refuses batch_size=1
        model = cls(LMPolicy, venv, n_steps=n_steps, batch_size=batch_size, **params, **common)
    else:
        model = cls(LMPolicy, venv, n_steps=max(max_new_tokens // 4, 1), **params, **common)
    bind_kl(venv, model, required=False)
    recorder = EpisodeRecorder(max_episodes=spec.episodes)
    start = time.perf_counter()
    # Far more steps than the budget needs: the recorder stops training at the episode budget.
    model.learn(
        total_timesteps=2 * spec.episodes * max_new_tokens + model.n_steps * spec.num_envs, callback=recorder
    )
    elapsed = time.perf_counter() - start
    venv.close()
    return recorder.returns, recorder.lengths, elapsed, []


def run_base_lm(spec: RunSpec, algo: str = "base-lm") -> RunOutput:
    """No training: samples the starting model (KL bound to it) for the budget."""
    import torch

    from agents.sb3 import LMPolicy, bind_kl

    venv = _sb3_env(spec)
    torch.manual_seed(spec.seed)
    venv.seed(spec.seed)
    policy = LMPolicy(
        venv.observation_space, venv.action_space, lambda _: 0.0, model=_resolve_model(spec.model)
    )
    policy.to(spec.device).set_training_mode(False)
    bind_kl(venv, policy, required=False)
    rewards: list[float] = []
    tokens: list[int] = []
    start = time.perf_counter()
    obs = venv.reset()
    while len(rewards) < spec.episodes:
        actions, _ = policy.predict(obs)
        obs, _, _, infos = venv.step(actions)
        for info in infos:
            if "episode" in info:
                rewards.append(float(info["episode"]["r"]))
                tokens.append(int(info["episode"]["l"]))
    elapsed = time.perf_counter() - start
    venv.close()
    return rewards[: spec.episodes], tokens[: spec.episodes], elapsed, []


RUNNERS: dict[str, Callable[[RunSpec, str], RunOutput]] = {
    "agents": run_agent,
    "sb3": run_sb3,
    "none": run_base_lm,
}
"""The runner of each :attr:`agents.registry.Algorithm.library`."""


# --- finished runs on disk (resuming) --------------------------------------------------------------
def run_path(out: str | os.PathLike[str], algo: str, spec: RunSpec) -> str:
    """``out/runs/<env id>/<algo>/seed-<seed>.json`` (the algorithm's own name, not an alias)."""
    return os.path.join(out, RUNS_DIR, spec.env_id, registry.resolve(algo), f"seed-{spec.seed}.json")


def run_settings(algo: str, spec: RunSpec) -> dict[str, Any]:
    """Everything a run's outcome depends on, as JSON values: a stored run is reused only under the same."""
    settings = {
        "algo": registry.resolve(algo),
        **dataclasses.asdict(spec),
        "hyperparameters": _hyperparameters(algo, spec),
    }
    return json.loads(json.dumps(settings))  # the JSON form, as read back from disk


def load_run(path: str, settings: dict[str, Any], algo: str) -> RunResult | None:
    """The run stored at ``path`` (named ``algo``), or ``None`` if there is none.

    Raises:
        SettingError: The file is unreadable, or was made with other settings (``--out``).
    """
    if not os.path.exists(path):
        return None
    try:
        with open(path) as f:
            stored = json.load(f)
        stored_settings = stored["settings"]
        if not isinstance(stored_settings, dict):
            raise TypeError(f"its settings are {type(stored_settings).__name__}, not an object")
        result = RunResult(algo=algo, **stored["result"])
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise SettingError(
            f"cannot read the finished run {path}: {err}; delete it to run it again", flag="--out"
        ) from None
    if stored_settings != settings:
        keys = sorted(k for k in {*settings, *stored_settings} if settings.get(k) != stored_settings.get(k))
        diff = "; ".join(f"{k}: {stored_settings.get(k)!r} there, {settings.get(k)!r} now" for k in keys)
        raise SettingError(
            f"{path} is a run made with other settings ({diff}); rerun with its settings to resume, or "
            "choose another --out",
            flag="--out",
        )
    return result


def save_run(path: str, settings: dict[str, Any], result: RunResult) -> None:
    """Writes a finished run atomically (an interrupted write leaves no partial file)."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fields = {k: v for k, v in dataclasses.asdict(result).items() if k != "algo"}
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        json.dump({"settings": settings, "result": fields}, f)
    os.replace(tmp, path)


# --- driver -------------------------------------------------------------------------------------
def _count(value: object, name: str, flag: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise SettingError(f"{name} must be an int >= {minimum}, got {value!r}", flag=flag)
    return value


def _check_envs(envs: Sequence[str]) -> tuple[str, ...]:
    if not envs:
        raise SettingError("no env given; name at least one textenv id", flag="--env")
    for env in envs:
        try:
            env_id(env)
        except argparse.ArgumentTypeError as err:
            raise SettingError(str(err), flag="--env") from None
    if len(set(envs)) < len(envs):
        raise SettingError(f"an env is named twice in {list(envs)}", flag="--env")
    return tuple(envs)


def _check_seeds(seeds: Sequence[int]) -> tuple[int, ...]:
    from agents.common.config import MAX_SEED

    if not seeds:
        raise SettingError("seeds is empty; give at least one seed", flag="--seeds")
    for seed in seeds:
        if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < MAX_SEED:
            raise SettingError(f"seeds must be ints in [0, 2**63), got {seed!r}", flag="--seeds")
    if len(set(seeds)) < len(seeds):
        raise SettingError(f"a seed is given twice in {list(seeds)}", flag="--seeds")
    return tuple(seeds)


def _check_algos(algos: Sequence[str]) -> tuple[str, ...]:
    unknown = [a for a in algos if a not in ALGORITHMS and a not in ALIASES]
    if unknown or not algos:
        raise SettingError(
            f"unknown algorithms {unknown or list(algos)}; choose from {sorted(ALGORITHMS)} (or {sorted(ALIASES)})",
            flag="--algos",
        )
    canonical = [registry.resolve(a) for a in algos]
    if len(set(canonical)) < len(canonical):
        raise SettingError(f"an algorithm is named twice in {list(algos)}", flag="--algos")
    return tuple(algos)


def _check_window(window: int | None, episodes: int, num_envs: int) -> int:
    if window is None:
        window = max(num_envs, episodes // 16)
        if window > episodes:
            raise SettingError(
                f"episodes={episodes} is less than one curve window: the window defaults to "
                f"max(--num-envs, --episodes // 16) = {window}; raise --episodes, or lower --window or --num-envs",
                flag="--episodes",
            )
        return window
    window = _count(window, "window", "--window", 1)
    if window > episodes:
        raise SettingError(f"window={window} is larger than the budget episodes={episodes}", flag="--window")
    return window


def _check_num_envs_fit(spec: RunSpec, algos: Sequence[str]) -> None:
    """Every :mod:`agents` algorithm accepts ``--num-envs`` episodes per iteration in two minibatches."""
    for algo in algos:
        entry = registry.get(algo)
        if entry.library != "agents":
            continue
        try:
            agent_config(spec, algo)
        except ValueError as err:
            group = getattr(entry.make_config(), "group_size", None)
            hint = f"a multiple of {algo}'s group_size {group}" if group else "an even number"
            raise SettingError(
                f"num_envs={spec.num_envs} does not fit {algo}: {err} (each iteration is --num-envs episodes "
                f"in two minibatches of --num-envs // 2); make --num-envs {hint}",
                flag="--num-envs",
            ) from None


def plan(
    envs: Sequence[str],
    episodes: int,
    seeds: Sequence[int],
    algos: Sequence[str],
    out: str | os.PathLike[str],
    *,
    model: str | None = None,
    num_envs: int = 16,
    window: int | None = None,
    env_kwargs: dict[str, Any] | None = None,
    device: str = "cpu",
    learning_rate: float | None = None,
    command: str | None = None,
) -> Comparison:
    """Checks a comparison's settings, and the runs already in ``out``, before anything runs.

    Args: as :func:`compare` (``envs``: one id or several).

    Raises:
        SettingError: A setting that cannot run (its ``flag`` names the command-line flag), or a run in
            ``out`` made with other settings.
    """
    from textenv.lm import resolve_device
    from textenv.loading import resolve_pretrained

    envs = _check_envs([envs] if isinstance(envs, str) else list(envs))
    episodes = _count(episodes, "episodes", "--episodes", 1)
    num_envs = _count(num_envs, "num_envs", "--num-envs", 1)
    seeds = _check_seeds(list(seeds))
    algos = _check_algos(list(algos))
    window = _check_window(window, episodes, num_envs)
    try:
        out = output_dir(os.fspath(out))
    except argparse.ArgumentTypeError as err:
        raise SettingError(str(err), flag="--out") from None
    if learning_rate is not None and not (
        not isinstance(learning_rate, bool)
        and isinstance(learning_rate, (int, float))
        and math.isfinite(learning_rate)
        and learning_rate > 0
    ):
        raise SettingError(
            f"learning_rate must be a finite number > 0, got {learning_rate!r}", flag="--learning-rate"
        )
    if not isinstance(env_kwargs, (dict, type(None))):
        raise SettingError(f"env_kwargs must be a dict, got {env_kwargs!r}", flag="--env-kwargs")
    try:
        resolve_device(device)
    except (TypeError, ValueError) as err:
        raise SettingError(str(err), flag="--device") from None
    if model is not None:
        try:
            resolve_pretrained(model, argument="model")
        except (TypeError, ValueError) as err:
            raise SettingError(str(err), flag="--model") from None
    runs = tuple(
        (
            algo,
            RunSpec(
                env_id=env,
                episodes=episodes,
                seed=seed,
                model=model if model is not None else default_model(env),
                num_envs=num_envs,
                env_kwargs=dict(env_kwargs or {}),
                device=device,
                learning_rate=None if learning_rate is None else float(learning_rate),
            ),
        )
        for env in envs
        for algo in algos
        for seed in seeds
    )
    _check_num_envs_fit(runs[0][1], algos)
    for algo, spec in runs:
        try:
            settings = run_settings(algo, spec)
        except (TypeError, ValueError) as err:
            raise SettingError(
                f"env_kwargs must hold JSON values (they are recorded): {err}", flag="--env-kwargs"
            ) from None
        load_run(run_path(out, algo, spec), settings, algo)  # refuses a run made with other settings
    return Comparison(envs, algos, seeds, episodes, window, out, runs, command)


def run_comparison(comparison: Comparison, log: Callable[[str], None] = print) -> list[RunResult]:
    """Runs (or reads back, when ``out`` holds them) every run of a :func:`plan` and writes the reports.

    Returns:
        One :class:`RunResult` per (task, algorithm, seed), in run order.
    """
    results = []
    for algo, spec in comparison.runs:
        where = f"{algo} seed {spec.seed} on {spec.env_id}"
        path, settings = run_path(comparison.out, algo, spec), run_settings(algo, spec)
        result = load_run(path, settings, algo)
        if result is not None:
            log(f"[compare] {where}: finished earlier, read from {path}")
            results.append(result)
            continue
        log(f"[compare] {where}: {spec.episodes} episodes from {spec.model} ...")
        entry = registry.get(algo)
        rewards, tokens, wall_time, kls = RUNNERS[entry.library](spec, entry.name)
        result = RunResult(
            algo, spec.seed, list(rewards), list(tokens), float(wall_time), list(kls), env=spec.env_id
        )
        save_run(path, settings, result)
        results.append(result)
        log(
            f"[compare] {where}: final reward {result.final_reward(comparison.window):.3f}, "
            f"{wall_time:.0f} s, {result.tokens_per_s:.0f} tokens/s"
        )
    write_outputs(comparison, results)
    return results


def compare(
    env: str | Sequence[str],
    episodes: int,
    seeds: Sequence[int] = (0,),
    algos: Sequence[str] = DEFAULT_ALGOS,
    out: str | os.PathLike[str] = "runs/compare",
    *,
    model: str | None = None,
    num_envs: int = 16,
    window: int | None = None,
    env_kwargs: dict[str, Any] | None = None,
    device: str = "cpu",
    learning_rate: float | None = None,
    command: str | None = None,
    log: Callable[[str], None] = print,
) -> list[RunResult]:
    """Trains every algorithm with every seed on every task and writes curves, CSVs, tables and the
    aggregate to ``out``; runs already finished in ``out`` are read back, not run again.

    Args:
        env: Registered textenv id, e.g. ``"TextGen-Sentiment-v0"``, or several.
        episodes: Episode budget of every run.
        seeds: Seeds; each algorithm runs once per task and seed.
        algos: Names from :data:`agents.registry.ALGORITHMS` (or :data:`agents.registry.ALIASES`).
        out: Output directory (created).
        model: Starting model of every task: asset name, local path or hub name; ``None``: each task's own.
        num_envs: Env rows stepped together (also the agents' episodes per iteration).
        window: Episodes per curve point (default ``max(num_envs, episodes // 16)``).
        env_kwargs: Extra env keyword arguments, e.g. ``{"max_new_tokens": 8}``.
        device: Torch device of models and envs.
        learning_rate: Overrides every algorithm's learning rate.
        command: The command line, recorded in ``results.md`` and ``aggregate.md``.
        log: Where progress lines go.

    Returns:
        One :class:`RunResult` per (task, algorithm, seed).

    Raises:
        SettingError: (a ``ValueError``) a setting that cannot run, or a run in ``out`` made with other
            settings; raised before anything runs.
    """
    comparison = plan(
        env,
        episodes,
        seeds,
        algos,
        out,
        model=model,
        num_envs=num_envs,
        window=window,
        env_kwargs=env_kwargs,
        device=device,
        learning_rate=learning_rate,
        command=command,
    )
    return run_comparison(comparison, log)


def write_outputs(comparison: Comparison, results: Sequence[RunResult]) -> None:
    """Each task's CSVs, curves and table; ``hyperparameters.json``, ``aggregate.md`` and the profiles."""
    import gymnasium as gym

    os.makedirs(comparison.out, exist_ok=True)
    for env in comparison.envs:
        task_dir = comparison.task_dir(env)
        os.makedirs(task_dir, exist_ok=True)
        write_task_report(
            [r for r in results if r.env == env],
            task_dir,
            env=env,
            episodes=comparison.episodes,
            seeds=comparison.seeds,
            window=comparison.window,
            command=comparison.command,
            threshold=gym.spec(env).reward_threshold,
        )
    first: dict[str, RunSpec] = {}
    for algo, spec in comparison.runs:
        first.setdefault(algo, spec)
    with open(os.path.join(comparison.out, "hyperparameters.json"), "w") as f:
        json.dump({algo: _hyperparameters(algo, spec) for algo, spec in first.items()}, f, indent=2)
    scales = {env: score_scale(env) for env in comparison.envs}
    with open(os.path.join(comparison.out, "aggregate.md"), "w") as f:
        f.write(aggregate_report(results, comparison.window, scales, command=comparison.command))
    scores, included, _ = normalized_scores(results, comparison.window, scales)
    if included:
        plot_performance_profiles(scores, os.path.join(comparison.out, "performance_profiles.png"))


def _hyperparameters(algo: str, spec: RunSpec) -> dict[str, Any]:
    """An algorithm's presets, comparison values and batch shape (the :mod:`agents` configs' other
    fields are their defaults): ``hyperparameters.json`` and the settings a stored run is checked by."""
    entry = registry.get(algo)
    params = {**entry.presets, **spec.hyperparameters(algo)}
    if entry.library == "agents":
        params.update(episodes_per_iteration=spec.num_envs, minibatch_size=max(spec.num_envs // 2, 1))
    return params


# --- command line ----------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    """The ``textenv-compare`` parser."""
    parser = argparse.ArgumentParser(
        prog="textenv-compare",
        description="Train several RL algorithms on textenv tasks with the same episode budget and seeds; "
        "write learning curves (PNG, CSV) and a results table (markdown) per task, and the aggregate over "
        "tasks and seeds (IQM and probability of improvement with 95%% stratified bootstrap intervals, "
        "performance profiles). Finished runs in --out are reused when the command is run again.",
    )
    tasks = parser.add_mutually_exclusive_group()
    tasks.add_argument(
        "--env",
        "--envs",
        dest="envs",
        nargs="+",
        default=None,
        metavar="ID",
        help=f"registered textenv id(s) (default: {DEFAULT_ENV})",
    )
    tasks.add_argument(
        "--suite",
        choices=SUITES,
        default=None,
        help="a task suite: builtin = every task of textenv.tasks.TASKS",
    )
    parser.add_argument(
        "--episodes", type=int, default=512, help="episode budget per run (default: %(default)s)"
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="seeds (default: 0)")
    parser.add_argument(
        "--algos",
        nargs="+",
        default=list(DEFAULT_ALGOS),
        choices=[*ALGORITHMS, *ALIASES],
        metavar="ALGO",
        help=f"algorithms, of {', '.join(ALGORITHMS)} (old names {', '.join(ALIASES)} also work; default: "
        f"{' '.join(DEFAULT_ALGOS)})",
    )
    parser.add_argument("--out", default="runs/compare", help="output directory (default: %(default)s)")
    parser.add_argument(
        "--model",
        default=None,
        help="starting model of every task: asset name, path or hub name (default: each task's own, "
        f"textenv.tasks.Task.model; {FALLBACK_MODEL} for other envs)",
    )
    parser.add_argument(
        "--num-envs", type=int, default=16, help="env rows stepped together (default: %(default)s)"
    )
    parser.add_argument("--window", type=int, default=None, help="episodes per curve point")
    parser.add_argument(
        "--learning-rate", type=float, default=None, help="override every algorithm's learning rate"
    )
    parser.add_argument(
        "--env-kwargs", type=json_object, default={}, help="JSON env keywords, e.g. '{\"max_new_tokens\": 8}'"
    )
    parser.add_argument("--device", default="cpu", help="torch device (default: %(default)s)")
    parser.add_argument(
        "--threads", type=int_at_least(1), default=None, help="torch CPU threads (default: torch's choice)"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """The ``textenv-compare`` command line; a bad flag is argparse's one-line error (exit code 2)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    envs = suite(args.suite) if args.suite else (args.envs or [DEFAULT_ENV])
    command = shlex.join(["textenv-compare", *(sys.argv[1:] if argv is None else argv)])
    try:
        comparison = plan(
            envs,
            args.episodes,
            args.seeds,
            args.algos,
            args.out,
            model=args.model,
            num_envs=args.num_envs,
            window=args.window,
            env_kwargs=args.env_kwargs,
            device=args.device,
            learning_rate=args.learning_rate,
            command=command,
        )
    except SettingError as err:
        parser.error(f"argument {err.flag}: {err}")
    if args.threads is not None:
        import torch

        torch.set_num_threads(args.threads)
    try:
        run_comparison(comparison)
    except (ValueError, TypeError) as err:  # e.g. an env keyword the env refuses; finished runs are kept
        parser.exit(2, f"{parser.prog}: error: {err}\n")
    for env in comparison.envs:
        with open(os.path.join(comparison.task_dir(env), "results.md")) as f:
            print(f.read())
    with open(os.path.join(comparison.out, "aggregate.md")) as f:
        print(f.read())
    print(
        f"[compare] wrote {comparison.out}: learning_curves.png, curves.csv, episodes.csv, results.md per task; aggregate.md"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
