"""Compare RL algorithms on one textenv task: same episode budget, same seeds, one command.

``textenv-compare`` (or ``python examples/compare_algorithms.py``)::

    python examples/compare_algorithms.py --env TextGen-Sentiment-v0 --episodes 512 --seeds 0 1 \\
        --algos ppo grpo rloo reinforce++ scst sb3-ppo sb3-a2c base-lm --out runs/compare

Every algorithm trains the same starting model (default: the built-in ``tiny-lm``) on the same task
for the same number of *episodes* (one episode = one generated text) with each seed, and its
episode returns are recorded in the order the episodes finish. ``--out`` then holds:

- ``curves.csv``: ``algo, seed, episodes, mean_reward``, the mean return of each window of
  ``--window`` consecutive episodes (``episodes`` = episodes seen at the end of the window);
- ``episodes.csv``: ``algo, seed, episode, reward, tokens, kl``, every episode;
- ``learning_curves.png``: mean return against episodes, mean over seeds with a min-max band;
- ``results.md``: episodes to the task's reward threshold (first curve window at or above it), final
  reward (mean return of the last 20% of the budget), KL to the reference per episode (last 20%), each
  mean ± std over seeds, wall time of training and generated tokens per second.

Algorithms (``--algos``; hyper-parameters in :data:`HYPERPARAMETERS`):

- ``ppo``, ``grpo``, ``rloo``, ``reinforce++``, ``scst``: :class:`agents.PPO`, :class:`agents.GRPO`,
  :class:`agents.RLOO`, :class:`agents.REINFORCE` (batch baseline, greedy baseline) on the shared core
  (KV-cached rollouts, one full forward per episode to train); ``agents-ppo`` etc. are aliases;
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
import csv
import functools
import json
import math
import os
import shlex
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = [
    "ALGORITHMS",
    "HYPERPARAMETERS",
    "RunResult",
    "RunSpec",
    "compare",
    "learning_curves",
    "main",
    "plot_learning_curves",
    "results_table",
]

FINAL_FRACTION = 0.2
"""The final reward is the mean return of this last fraction of the episode budget (at least one window)."""

HYPERPARAMETERS: dict[str, dict[str, Any]] = {
    # Same learning rate, discount, GAE and clipping everywhere; batch shapes follow each library's units.
    "ppo": {
        "learning_rate": 1e-4,
        "ppo_epochs": 4,
        "gamma": 1.0,
        "gae_lambda": 0.95,
        "clip_range": 0.2,
        "max_grad_norm": 1.0,
        # episodes_per_iteration = num_envs, minibatch_size = num_envs // 2 (set per run)
    },
    # The critic-free methods: the same passes over each rollout as PPO (4 x 2 minibatches).
    "grpo": {
        "learning_rate": 1e-4,
        "num_iterations": 4,
        "clip_range": 0.2,
        "max_grad_norm": 1.0,
        "group_size": 4,
    },
    "rloo": {
        "learning_rate": 1e-4,
        "num_iterations": 4,
        "clip_range": 0.2,
        "max_grad_norm": 1.0,
        "group_size": 4,
    },
    "reinforce++": {
        "learning_rate": 1e-4,
        "num_iterations": 4,
        "clip_range": 0.2,
        "max_grad_norm": 1.0,
        "baseline": "batch",
    },
    "scst": {
        "learning_rate": 1e-4,
        "num_iterations": 4,
        "clip_range": 0.2,
        "max_grad_norm": 1.0,
        "baseline": "greedy",
    },
    "sb3-ppo": {
        "learning_rate": 1e-4,
        "n_epochs": 4,
        "gamma": 1.0,
        "gae_lambda": 0.95,
        "clip_range": 0.2,
        "ent_coef": 0.0,
        "vf_coef": 0.5,
        "max_grad_norm": 1.0,
        # n_steps = max_new_tokens // 2 (about num_envs episodes per rollout when texts end early),
        # batch_size = num_envs * n_steps // 2: like ppo, 8 optimizer steps per ~num_envs episodes
    },
    "sb3-a2c": {
        "learning_rate": 1e-4,
        "gamma": 1.0,
        "gae_lambda": 0.95,
        "ent_coef": 0.0,
        "vf_coef": 0.5,
        "max_grad_norm": 1.0,
        "use_rms_prop": False,  # Adam, as the other two
        "normalize_advantage": True,
        # n_steps = max(max_new_tokens // 4, 1): about four updates per num_envs episodes
    },
    "base-lm": {},
}
"""Per-algorithm hyper-parameters (``--learning-rate`` overrides every learning rate)."""

ALIASES = {f"agents-{name}": name for name in ("ppo", "grpo", "rloo", "reinforce++", "scst")}
"""Earlier names of the algorithms (``agents-ppo``), accepted everywhere a name is."""


@dataclass(frozen=True)
class RunSpec:
    """What one training run gets; every algorithm of a comparison gets the same spec per seed.

    Attributes:
        env_id: Registered textenv id.
        episodes: Episode budget.
        seed: Seed of the algorithm and of the env's prompt draws.
        model: Starting model: asset name, path or hub name.
        num_envs: Env rows stepped together.
        env_kwargs: Extra env keyword arguments (e.g. ``max_new_tokens``).
        device: Torch device.
        learning_rate: Overrides :data:`HYPERPARAMETERS`' learning rates when set.
    """

    env_id: str
    episodes: int
    seed: int
    model: str = "tiny-lm"
    num_envs: int = 16
    env_kwargs: dict[str, Any] = field(default_factory=dict)
    device: str = "cpu"
    learning_rate: float | None = None

    def hyperparameters(self, algo: str) -> dict[str, Any]:
        """The algorithm's hyper-parameters with the learning-rate override applied."""
        params = dict(HYPERPARAMETERS[algo])
        if self.learning_rate is not None and "learning_rate" in params:
            params["learning_rate"] = self.learning_rate
        return params


@dataclass
class RunResult:
    """One algorithm, one seed.

    Attributes:
        algo: Algorithm name.
        seed: Seed.
        rewards: Return of every episode, in the order the episodes finished (budget-long).
        tokens: Generated tokens of every episode.
        wall_time: Seconds of training (model and env construction excluded).
        kls: KL to the reference of every episode (summed over its tokens), where the algorithm reports it.
    """

    algo: str
    seed: int
    rewards: list[float]
    tokens: list[int]
    wall_time: float
    kls: list[float] = field(default_factory=list)

    @property
    def tokens_per_s(self) -> float:
        """Generated tokens per second of training."""
        return sum(self.tokens) / self.wall_time if self.wall_time > 0 else float("nan")

    def final_reward(self, window: int) -> float:
        """Mean return of the last ``FINAL_FRACTION`` of the episodes (at least ``window`` episodes)."""
        n = max(window, math.ceil(FINAL_FRACTION * len(self.rewards)))
        return float(np.mean(self.rewards[-n:]))

    def final_kl(self, window: int) -> float:
        """Mean KL per episode over the same last episodes as :meth:`final_reward`; NaN when not reported."""
        if not self.kls:
            return float("nan")
        n = max(window, math.ceil(FINAL_FRACTION * len(self.kls)))
        return float(np.mean(self.kls[-n:]))

    def episodes_to_threshold(self, window: int, threshold: float) -> int | None:
        """Episodes seen at the end of the first window whose mean return reaches ``threshold``, or ``None``."""
        for end in range(window, len(self.rewards) + 1, window):
            if np.mean(self.rewards[end - window : end]) >= threshold:
                return end
        return None


Runner = Callable[
    [RunSpec], tuple[list[float], list[int], float] | tuple[list[float], list[int], float, list[float]]
]


# --- runners -------------------------------------------------------------------------------------
def _resolve_model(name: str) -> str:
    from textenv.loading import resolve_pretrained

    return resolve_pretrained(name, argument="model")


def run_agent(spec: RunSpec, algo: str) -> tuple[list[float], list[int], float, list[float]]:
    """An :mod:`agents` algorithm: ``num_envs`` episodes per iteration, two minibatches, the task's own KL
    coefficient (fixed); returns the returns, tokens and KL of every episode and the wall time."""
    import agents

    cls_name = {
        "ppo": "PPO",
        "grpo": "GRPO",
        "rloo": "RLOO",
        "reinforce++": "REINFORCE",
        "scst": "REINFORCE",
    }[algo]
    cls = getattr(agents, cls_name)
    config = cls.config_class(
        **spec.hyperparameters(algo),
        episodes_per_iteration=spec.num_envs,
        minibatch_size=max(spec.num_envs // 2, 1),
        kl_controller="fixed",
        seed=spec.seed,
        device=spec.device,
    )
    agent = cls(
        _resolve_model(spec.model),
        spec.env_id,
        config,
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


def _run_sb3(spec: RunSpec, algo: str) -> tuple[list[float], list[int], float]:
    from stable_baselines3 import A2C, PPO

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
    if algo == "sb3-ppo":
        n_steps = max(max_new_tokens // 2, 1)
        batch_size = max(spec.num_envs * n_steps // 2, 2)  # SB3 refuses batch_size=1
        model = PPO(LMPolicy, venv, n_steps=n_steps, batch_size=batch_size, **params, **common)
    else:
        model = A2C(LMPolicy, venv, n_steps=max(max_new_tokens // 4, 1), **params, **common)
    bind_kl(venv, model, required=False)
    recorder = EpisodeRecorder(max_episodes=spec.episodes)
    start = time.perf_counter()
    # Far more steps than the budget needs: the recorder stops training at the episode budget.
    model.learn(
        total_timesteps=2 * spec.episodes * max_new_tokens + model.n_steps * spec.num_envs, callback=recorder
    )
    elapsed = time.perf_counter() - start
    venv.close()
    return recorder.returns, recorder.lengths, elapsed


def run_sb3_ppo(spec: RunSpec) -> tuple[list[float], list[int], float]:
    """stable-baselines3 PPO with :class:`agents.sb3.LMPolicy`."""
    return _run_sb3(spec, "sb3-ppo")


def run_sb3_a2c(spec: RunSpec) -> tuple[list[float], list[int], float]:
    """stable-baselines3 A2C with :class:`agents.sb3.LMPolicy` (Adam)."""
    return _run_sb3(spec, "sb3-a2c")


def run_base_lm(spec: RunSpec) -> tuple[list[float], list[int], float]:
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
    return rewards[: spec.episodes], tokens[: spec.episodes], elapsed


ALGORITHMS: dict[str, Runner] = {
    **{
        name: functools.partial(run_agent, algo=name)
        for name in ("ppo", "grpo", "rloo", "reinforce++", "scst")
    },
    "sb3-ppo": run_sb3_ppo,
    "sb3-a2c": run_sb3_a2c,
    "base-lm": run_base_lm,
}
"""Name -> runner. A runner takes a :class:`RunSpec` and returns ``(returns, tokens, wall_time)`` and,
when it knows them, the episodes' KL."""


# --- results ------------------------------------------------------------------------------------
def learning_curves(results: Sequence[RunResult], window: int) -> list[dict[str, Any]]:
    """The mean return of every window of ``window`` consecutive episodes of every run.

    Returns:
        Rows ``{"algo", "seed", "episodes", "mean_reward"}``; ``episodes`` counts the episodes seen at
        the end of the window (a last, shorter window is dropped).
    """
    rows = []
    for result in results:
        for end in range(window, len(result.rewards) + 1, window):
            chunk = result.rewards[end - window : end]
            rows.append(
                {
                    "algo": result.algo,
                    "seed": result.seed,
                    "episodes": end,
                    "mean_reward": float(np.mean(chunk)),
                }
            )
    return rows


def plot_learning_curves(
    rows: Sequence[dict[str, Any]],
    path: str,
    *,
    title: str = "",
    ylabel: str = "mean episode reward",
    threshold: float | None = None,
) -> None:
    """Mean return against episodes per algorithm: mean over seeds, min-max band over seeds.

    Args:
        rows: :func:`learning_curves` rows.
        path: PNG file to write.
        title: Plot title.
        ylabel: Y-axis label.
        threshold: Draws a dashed line there (the task's ``reward_threshold``), unless ``None``.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=120)
    for algo in dict.fromkeys(row["algo"] for row in rows):
        by_x: dict[int, list[float]] = {}
        for row in rows:
            if row["algo"] == algo:
                by_x.setdefault(row["episodes"], []).append(row["mean_reward"])
        xs = sorted(by_x)
        values = [np.asarray(by_x[x]) for x in xs]
        seeds = max(len(v) for v in values)
        (line,) = ax.plot(xs, [v.mean() for v in values], label=f"{algo} ({seeds} seed{'s' * (seeds > 1)})")
        ax.fill_between(
            xs, [v.min() for v in values], [v.max() for v in values], color=line.get_color(), alpha=0.2
        )
    if threshold is not None:
        ax.axhline(
            threshold, color="gray", linestyle="--", linewidth=1, label=f"reward threshold {threshold:g}"
        )
    ax.set_xlabel("episodes")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _mean_std(values: Sequence[float], fmt: str) -> str:
    array = np.asarray(values, dtype=float)
    std = array.std(ddof=1) if len(array) > 1 else 0.0
    return f"{format(array.mean(), fmt)} ± {format(std, fmt)}"


def _to_threshold(runs: Sequence[RunResult], window: int, threshold: float | None) -> str:
    if threshold is None:
        return "n/a"
    reached = [e for e in (r.episodes_to_threshold(window, threshold) for r in runs) if e is not None]
    if not reached:
        return f"not reached (0/{len(runs)})"
    return f"{_mean_std(reached, '.0f')} ({len(reached)}/{len(runs)})"


def results_table(results: Sequence[RunResult], window: int, threshold: float | None = None) -> str:
    """Markdown table, one row per algorithm: episodes to ``threshold`` (mean over the seeds that reached
    it, and how many did), final reward, first-window reward, final KL, wall time, tokens/s."""
    lines = [
        "| algorithm | seeds | episodes to threshold | final reward | first window | KL | wall time (s) | tokens/s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for algo in dict.fromkeys(r.algo for r in results):
        runs = [r for r in results if r.algo == algo]
        kls = [r.final_kl(window) for r in runs]
        lines.append(
            f"| {algo} | {len(runs)} "
            f"| {_to_threshold(runs, window, threshold)} "
            f"| {_mean_std([r.final_reward(window) for r in runs], '.3f')} "
            f"| {_mean_std([float(np.mean(r.rewards[:window])) for r in runs], '.3f')} "
            f"| {'n/a' if any(math.isnan(k) for k in kls) else _mean_std(kls, '.2f')} "
            f"| {_mean_std([r.wall_time for r in runs], '.0f')} "
            f"| {_mean_std([r.tokens_per_s for r in runs], '.0f')} |"
        )
    return "\n".join(lines)


def _write_csv(path: str, header: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)


# --- driver -------------------------------------------------------------------------------------
def _check_int(name: str, value: object, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    return value


def compare(
    env: str,
    episodes: int,
    seeds: Sequence[int] = (0,),
    algos: Sequence[str] = ("ppo", "grpo", "rloo", "reinforce++", "scst", "sb3-ppo", "sb3-a2c"),
    out: str | os.PathLike[str] = "runs/compare",
    *,
    model: str = "tiny-lm",
    num_envs: int = 16,
    window: int | None = None,
    env_kwargs: dict[str, Any] | None = None,
    device: str = "cpu",
    learning_rate: float | None = None,
    command: str | None = None,
    log: Callable[[str], None] = print,
) -> list[RunResult]:
    """Trains every algorithm with every seed on ``env`` and writes curves, CSVs and the table to ``out``.

    Args:
        env: Registered textenv id, e.g. ``"TextGen-Sentiment-v0"``.
        episodes: Episode budget of every run.
        seeds: Seeds; each algorithm runs once per seed.
        algos: Names from :data:`ALGORITHMS` (or :data:`ALIASES`).
        out: Output directory (created).
        model: Starting model: asset name (``"tiny-lm"``), local path or hub name.
        num_envs: Env rows stepped together (also the agents' episodes per iteration).
        window: Episodes per curve point (default ``max(num_envs, episodes // 16)``).
        env_kwargs: Extra env keyword arguments, e.g. ``{"max_new_tokens": 8}``.
        device: Torch device of models and envs.
        learning_rate: Overrides every algorithm's learning rate.
        command: The command line, recorded in ``results.md``.
        log: Where progress lines go.

    Returns:
        One :class:`RunResult` per (algorithm, seed).

    Raises:
        ValueError: An unknown algorithm, an empty seed list or a bad count.
    """
    episodes = _check_int("episodes", episodes, 1)
    num_envs = _check_int("num_envs", num_envs, 1)
    unknown = [a for a in algos if ALIASES.get(a, a) not in ALGORITHMS]
    if unknown or not algos:
        raise ValueError(
            f"unknown algorithms {unknown or list(algos)}; choose from {sorted(ALGORITHMS)} (or {sorted(ALIASES)})"
        )
    if not seeds:
        raise ValueError("seeds is empty; give at least one seed")
    window = max(num_envs, episodes // 16) if window is None else _check_int("window", window, 1)
    if window > episodes:
        raise ValueError(f"window={window} is larger than the budget episodes={episodes}")
    os.makedirs(out, exist_ok=True)

    results = []
    for algo in algos:
        for seed in seeds:
            spec = RunSpec(
                env_id=env,
                episodes=episodes,
                seed=int(seed),
                model=model,
                num_envs=num_envs,
                env_kwargs=dict(env_kwargs or {}),
                device=device,
                learning_rate=learning_rate,
            )
            log(f"[compare] {algo} seed {seed}: {episodes} episodes on {env} ...")
            rewards, tokens, wall_time, *kls = ALGORITHMS[ALIASES.get(algo, algo)](spec)  # named as given
            result = RunResult(
                algo, int(seed), list(rewards), list(tokens), float(wall_time), list(kls[0]) if kls else []
            )
            results.append(result)
            log(
                f"[compare] {algo} seed {seed}: final reward {result.final_reward(window):.3f}, "
                f"{wall_time:.0f} s, {result.tokens_per_s:.0f} tokens/s"
            )
    _write_outputs(results, out, env=env, episodes=episodes, seeds=seeds, window=window, command=command)
    return results


def _write_outputs(
    results: Sequence[RunResult],
    out: str | os.PathLike[str],
    *,
    env: str,
    episodes: int,
    seeds: Sequence[int],
    window: int,
    command: str | None,
) -> None:
    import gymnasium as gym

    import textenv  # noqa: F401  (registers the ids for gym.spec)

    curves = learning_curves(results, window)
    _write_csv(
        os.path.join(out, "curves.csv"),
        ["algo", "seed", "episodes", "mean_reward"],
        [[r["algo"], r["seed"], r["episodes"], f"{r['mean_reward']:.6f}"] for r in curves],
    )
    _write_csv(
        os.path.join(out, "episodes.csv"),
        ["algo", "seed", "episode", "reward", "tokens", "kl"],
        [
            [r.algo, r.seed, i + 1, f"{reward:.6f}", n, f"{r.kls[i]:.6f}" if i < len(r.kls) else ""]
            for r in results
            for i, (reward, n) in enumerate(zip(r.rewards, r.tokens))
        ],
    )
    threshold = gym.spec(env).reward_threshold
    plot_learning_curves(
        curves,
        os.path.join(out, "learning_curves.png"),
        title=f"{env} (mean over seeds, band: min-max)",
        ylabel=f"mean episode reward (per {window} episodes)",
        threshold=threshold,
    )
    final_n = max(window, math.ceil(FINAL_FRACTION * episodes))
    header = [
        f"# {env}: {episodes} episodes, seeds {', '.join(str(s) for s in seeds)}",
        "",
        f"Final reward: mean return of the last {final_n} episodes; first window: of the first {window}; "
        "mean ± std over seeds. Episodes to threshold: end of the first window whose mean return reaches "
        f"the task's threshold ({threshold}), over the seeds that reached it. KL: KL to the reference per "
        "episode (nats, last episodes as the final reward; n/a where not reported). Wall time: training only. "
        "Tokens/s: generated tokens per second of training.",
        "",
        "",
    ]
    if command:
        header[1:1] = ["", f"`{command}`"]
    with open(os.path.join(out, "results.md"), "w") as f:
        f.write("\n".join(header) + results_table(results, window, threshold) + "\n")
    with open(os.path.join(out, "hyperparameters.json"), "w") as f:
        json.dump(
            {
                algo: HYPERPARAMETERS[ALIASES.get(algo, algo)]
                for algo in dict.fromkeys(r.algo for r in results)
            },
            f,
            indent=2,
        )


def main(argv: Sequence[str] | None = None) -> None:
    """The ``textenv-compare`` command line."""
    parser = argparse.ArgumentParser(
        prog="textenv-compare",
        description="Train several RL algorithms on one textenv task with the same episode budget and seeds; "
        "write learning curves (PNG, CSV) and a results table (markdown).",
    )
    parser.add_argument(
        "--env", default="TextGen-Sentiment-v0", help="registered textenv id (default: %(default)s)"
    )
    parser.add_argument(
        "--episodes", type=int, default=512, help="episode budget per run (default: %(default)s)"
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="seeds (default: 0)")
    parser.add_argument(
        "--algos",
        nargs="+",
        default=["ppo", "grpo", "rloo", "reinforce++", "scst", "sb3-ppo", "sb3-a2c"],
        choices=sorted([*ALGORITHMS, *ALIASES]),
        metavar="ALGO",
        help=f"algorithms, of {', '.join(ALGORITHMS)} (old names {', '.join(ALIASES)} also work; default: "
        "ppo grpo rloo reinforce++ scst sb3-ppo sb3-a2c)",
    )
    parser.add_argument("--out", default="runs/compare", help="output directory (default: %(default)s)")
    parser.add_argument("--model", default="tiny-lm", help="starting model: asset name, path or hub name")
    parser.add_argument(
        "--num-envs", type=int, default=16, help="env rows stepped together (default: %(default)s)"
    )
    parser.add_argument("--window", type=int, default=None, help="episodes per curve point")
    parser.add_argument(
        "--learning-rate", type=float, default=None, help="override every algorithm's learning rate"
    )
    parser.add_argument(
        "--env-kwargs", type=json.loads, default={}, help="JSON env keywords, e.g. '{\"max_new_tokens\": 8}'"
    )
    parser.add_argument("--device", default="cpu", help="torch device (default: %(default)s)")
    parser.add_argument(
        "--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)"
    )
    args = parser.parse_args(argv)
    if not isinstance(args.env_kwargs, dict):
        parser.error(f"--env-kwargs must be a JSON object, got {args.env_kwargs!r}")
    if args.threads is not None:
        import torch

        torch.set_num_threads(args.threads)
    command = shlex.join(["textenv-compare", *(sys.argv[1:] if argv is None else argv)])
    compare(
        args.env,
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
    with open(os.path.join(args.out, "results.md")) as f:
        print(f.read())
    print(
        f"[compare] wrote {os.path.join(args.out, 'learning_curves.png')}, curves.csv, episodes.csv, results.md"
    )


if __name__ == "__main__":
    main()
