"""What a comparison reports: each run's record, per-task curves and tables, and the aggregate over tasks.

:class:`RunResult` is one (algorithm, task, seed) run; the functions turn runs into the files that
``textenv-compare`` writes (:mod:`agents.compare`): ``curves.csv``, ``episodes.csv``,
``learning_curves.png`` and ``results.md`` per task, ``aggregate.md`` and ``performance_profiles.png``
over tasks (the estimators are :mod:`agents.aggregate`'s).

Example:
    >>> run = RunResult("ppo", 0, rewards=[0.0, 1.0, 1.0, 1.0], tokens=[3] * 4, wall_time=1.0)
    >>> run.final_reward(window=2), run.episodes_to_threshold(window=2, threshold=1.0)
    (1.0, 4)
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from agents import aggregate

__all__ = [
    "FINAL_FRACTION",
    "RunResult",
    "aggregate_report",
    "learning_curves",
    "normalized_scores",
    "plot_learning_curves",
    "plot_performance_profiles",
    "results_table",
    "write_task_report",
]

FINAL_FRACTION = 0.2
"""The final reward is the mean return of this last fraction of the episode budget (at least one window)."""

Scale = tuple[float, float]
"""``(untrained return, reward threshold)`` of a task: its normalised scores 0 and 1."""


@dataclass
class RunResult:
    """One algorithm, one task, one seed.

    Attributes:
        algo: Algorithm name (as given).
        seed: Seed.
        rewards: Return of every episode, in the order the episodes finished (budget-long).
        tokens: Generated tokens of every episode.
        wall_time: Seconds of training (model and env construction excluded).
        kls: KL to the reference of every episode (summed over its tokens), where the algorithm reports it.
        env: The task's env id.
    """

    algo: str
    seed: int
    rewards: list[float]
    tokens: list[int]
    wall_time: float
    kls: list[float] = field(default_factory=list)
    env: str = ""

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


# --- per task ------------------------------------------------------------------------------------
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


# --- aggregate over tasks and seeds (Agarwal et al. 2021) --------------------------------------------
def normalized_scores(
    results: Sequence[RunResult], window: int, scales: Mapping[str, Scale | None]
) -> tuple[dict[str, list[list[float]]], list[str], list[str]]:
    """The normalised final score of every run, grouped for :mod:`agents.aggregate`.

    Args:
        results: The runs (``RunResult.env`` says the task).
        window: As :meth:`RunResult.final_reward`.
        scales: Every task (in report order) with its ``Scale``, or ``None`` to leave it out.

    Returns:
        ``(scores, included, left_out)``: ``scores[algo]`` holds one list per included task (in the order
        of ``included``) of that algorithm's run scores; ``left_out`` are the tasks without a scale.
    """
    included = {env: scale for env, scale in scales.items() if scale is not None}
    left_out = [env for env, scale in scales.items() if scale is None]
    scores: dict[str, list[list[float]]] = {}
    for algo in dict.fromkeys(r.algo for r in results):
        scores[algo] = []
        for env, (untrained, threshold) in included.items():
            scores[algo].append(
                [
                    aggregate.normalized_score(
                        r.final_reward(window), untrained=untrained, threshold=threshold
                    )
                    for r in results
                    if r.algo == algo and r.env == env
                ]
            )
    return scores, list(included), left_out


def _interval(estimate: Callable[..., aggregate.Interval], point: Callable[..., float], *args: Any) -> str:
    """``point [low, high]``, or the point alone where a task has a single run (nothing to resample)."""
    if min(len(runs) for scores in args for runs in scores) < 2:
        return f"{point(*args):.3f} (one seed: no interval)"
    return estimate(*args).format(".3f")


def aggregate_report(
    results: Sequence[RunResult],
    window: int,
    scales: Mapping[str, Scale | None],
    *,
    command: str | None = None,
) -> str:
    """Markdown: IQM of the normalised final scores with 95% stratified bootstrap intervals, and the
    probability of improvement of every algorithm over every other one (:mod:`agents.aggregate`).

    Args: as :func:`normalized_scores`; ``command`` is recorded.
    """
    scores, included, left_out = normalized_scores(results, window, scales)
    seeds = sorted({r.seed for r in results})
    lines = [f"# Aggregate over {len(included)} task(s) x {len(seeds)} seed(s)", ""]
    if command:
        lines += [f"`{command}`", ""]
    if left_out:
        lines += [
            f"Left out (no untrained return or no reward threshold, so no normalised score; raw scores in "
            f"their results.md): {', '.join(left_out)}.",
            "",
        ]
    if not included:
        return "\n".join([*lines, "No task has a normalised score: nothing to aggregate."]) + "\n"
    tasks = ", ".join(f"{env} ({scales[env][0]:g} -> {scales[env][1]:g})" for env in included)  # type: ignore[index]
    lines += [
        "Score of a run: its final reward (as in results.md) normalised per task as (final - untrained) / "
        "(threshold - untrained), so 0 is the task's untrained starting model and 1 its reward threshold. "
        f"Tasks (untrained -> threshold): {tasks}.",
        "",
        "IQM: interquartile mean of the scores of all runs pooled over tasks and seeds (the mean of the "
        "middle 50%, scipy.stats.trim_mean). [95% CI]: stratified bootstrap percentile interval (each "
        f"task's runs resampled with replacement on their own, {aggregate.N_RESAMPLES:,} resamples, "
        "scipy.stats.bootstrap). Agarwal et al., Deep RL at the Edge of the Statistical Precipice, 2021.",
        "",
        "| algorithm | runs | IQM [95% CI] |",
        "|---|---|---|",
    ]
    for algo, by_task in scores.items():
        runs = sum(len(t) for t in by_task)
        lines.append(f"| {algo} | {runs} | {_interval(aggregate.iqm_interval, aggregate.iqm, by_task)} |")
    algos = list(scores)
    lines += [
        "",
        "## Probability of improvement",
        "",
        "P(row > column): per task, the probability that a run of the row algorithm ends with a higher "
        "score than a run of the column one (Mann-Whitney U / (n m), ties count 1/2, "
        "scipy.stats.mannwhitneyu), averaged over tasks; [95% CI]: stratified bootstrap (each task's runs "
        "of both algorithms resampled independently).",
        "",
        f"| P(row > column) | {' | '.join(algos)} |",
        f"|---|{'---|' * len(algos)}",
    ]
    for x in algos:
        cells = [
            "—"
            if x == y
            else _interval(
                aggregate.probability_of_improvement_interval,
                aggregate.probability_of_improvement,
                scores[x],
                scores[y],
            )
            for y in algos
        ]
        lines.append(f"| {x} | {' | '.join(cells)} |")
    lines += ["", "![Performance profiles](performance_profiles.png)"]
    return "\n".join(lines) + "\n"


def plot_performance_profiles(scores: dict[str, list[list[float]]], path: str) -> None:
    """The fraction of runs whose normalised score exceeds tau, per algorithm, with 95% stratified
    bootstrap bands (none where a task has a single run).

    Args:
        scores: ``{algo: one list of run scores per task}`` (:func:`normalized_scores`).
        path: PNG file to write.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pooled = np.concatenate([np.concatenate(by_task) for by_task in scores.values()])
    first, last = min(0.0, pooled.min()), max(1.0, pooled.max())
    margin = 0.05 * (last - first)  # so the curves start at 1 and end at 0 inside the plot
    taus = np.linspace(first - margin, last + margin, 101)
    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=120)
    for algo, by_task in scores.items():
        if min(len(runs) for runs in by_task) < 2:
            (line,) = ax.plot(taus, aggregate.performance_profile(by_task, taus), label=algo)
            continue
        profile, low, high = aggregate.performance_profile_interval(by_task, taus)
        (line,) = ax.plot(taus, profile, label=algo)
        ax.fill_between(taus, low, high, color=line.get_color(), alpha=0.2)
    for tau, name in ((0.0, "untrained"), (1.0, "threshold")):
        ax.axvline(tau, color="gray", linestyle="--", linewidth=1)
        ax.text(tau, 1.02, name, ha="center", fontsize=8, color="gray")
    ax.set_xlabel("normalised score τ (0: untrained model, 1: task threshold)")
    ax.set_ylabel("fraction of runs with score > τ")
    ax.set_ylim(0, 1.08)
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def write_task_report(
    results: Sequence[RunResult],
    out: str | os.PathLike[str],
    *,
    env: str,
    episodes: int,
    seeds: Sequence[int],
    window: int,
    command: str | None,
    threshold: float | None,
) -> None:
    """Writes one task's ``curves.csv``, ``episodes.csv``, ``learning_curves.png`` and ``results.md``.

    Args:
        results: The task's runs.
        out: Directory (it exists).
        env: The task's env id.
        episodes: Episode budget of every run.
        seeds: Seeds.
        window: Episodes per curve point.
        command: The command line, recorded in ``results.md``.
        threshold: The task's reward threshold, or ``None``.
    """
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
