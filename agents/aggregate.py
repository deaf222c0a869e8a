"""Scores aggregated over tasks and seeds, with confidence intervals (Agarwal et al., NeurIPS 2021).

"Deep Reinforcement Learning at the Edge of the Statistical Precipice" asks a comparison of a few runs
per task for:

- the **interquartile mean** (IQM) of the runs' normalised scores pooled over every task: the mean of the
  middle 50% (``scipy.stats.trim_mean(scores, 0.25)``, as the paper's library ``rliable`` computes it);
- its **stratified bootstrap** 95% interval: each task's runs are resampled with replacement on their own
  (one ``scipy.stats.bootstrap`` sample per task, so every resample keeps the task mix), the statistic
  is recomputed on each resample, and the interval is the 2.5th to 97.5th percentile (``rliable``'s
  percentile interval);
- the **probability of improvement** ``P(X > Y)``: per task, the chance that a run of ``X`` beats a run of
  ``Y``, ties counting one half, which is the Mann-Whitney ``U`` of ``X`` divided by ``n * m``
  (``scipy.stats.mannwhitneyu``); averaged over tasks. Its interval resamples ``X``'s and ``Y``'s runs of
  every task independently;
- **performance profiles**: the fraction of runs (over tasks and seeds) whose score exceeds ``tau``,
  for each ``tau``, with pointwise stratified bootstrap bands.

Scores come in as one 1-d sequence per task: the runs (seeds) of that task. ``rliable`` itself is not
used: it does not import with current releases of its dependency ``arch``.

Example:
    >>> scores = [[0.1, 0.4, 0.5, 0.9], [0.2, 0.3, 1.1, 1.2]]  # two tasks, four seeds each
    >>> round(iqm(scores), 3)  # the mean of the middle four of the eight: 0.4, 0.5, 0.9, 0.3
    0.525
    >>> probability_of_improvement([[1.0, 2.0]], [[0.0, 2.0]])  # 1 + 1 + 0 + 0.5 of 4 pairs
    0.625
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import stats

__all__ = [
    "CONFIDENCE",
    "N_RESAMPLES",
    "Interval",
    "iqm",
    "iqm_interval",
    "mean_interval",
    "normalized_score",
    "performance_profile",
    "performance_profile_interval",
    "probability_of_improvement",
    "probability_of_improvement_interval",
]

CONFIDENCE = 0.95
"""Confidence level of every interval."""

N_RESAMPLES = 10_000
"""Bootstrap resamples per interval (``rliable`` uses 2,000 to 50,000)."""

IQM_CUT = 0.25
"""``trim_mean`` cuts this fraction of the runs at each end: the interquartile mean."""

ScoresByTask = Sequence[ArrayLike]
"""One 1-d sequence of run scores per task."""


@dataclass(frozen=True)
class Interval:
    """A point estimate and its confidence interval.

    Attributes:
        point: The statistic of the observed runs.
        low: Lower end of the interval.
        high: Upper end of the interval.
    """

    point: float
    low: float
    high: float

    def format(self, spec: str = ".3f") -> str:
        """``"0.512 [0.401, 0.633]"``."""
        return f"{self.point:{spec}} [{self.low:{spec}}, {self.high:{spec}}]"


def normalized_score(score: float, *, untrained: float, threshold: float) -> float:
    """``(score - untrained) / (threshold - untrained)``: 0 at the untrained model, 1 at the threshold.

    Raises:
        ValueError: ``threshold`` equal to ``untrained``, or a value that is not finite.
    """
    for name, value in (("score", score), ("untrained", untrained), ("threshold", threshold)):
        if not math.isfinite(value):
            raise ValueError(f"{name} must be finite, got {value!r}")
    if threshold == untrained:
        raise ValueError(f"threshold and untrained are both {threshold!r}: no scale to normalise by")
    return (score - untrained) / (threshold - untrained)


def iqm(scores_by_task: ScoresByTask) -> float:
    """The interquartile mean of every run of every task, pooled.

    Raises:
        ValueError: No task, a task without runs, a score that is not finite.
    """
    return float(_pooled_iqm(*_tasks(scores_by_task, "scores_by_task")))


def probability_of_improvement(x_by_task: ScoresByTask, y_by_task: ScoresByTask) -> float:
    """``P(X > Y)``: per task the share of (run of X, run of Y) pairs that X wins, ties one half; the mean
    over tasks.

    Raises:
        ValueError: Different numbers of tasks, a task without runs, a score that is not finite.
    """
    x, y = _paired_tasks(x_by_task, y_by_task)
    return float(_improvement(len(x))(*x, *y))


def performance_profile(scores_by_task: ScoresByTask, taus: ArrayLike) -> NDArray[np.float64]:
    """The fraction of runs, pooled over tasks, whose score is above each ``tau``.

    Returns:
        ``(len(taus),)`` fractions.

    Raises:
        ValueError: No task, a task without runs, a score or ``tau`` that is not finite.
    """
    return _profile(_taus(taus))(*_tasks(scores_by_task, "scores_by_task"))


def iqm_interval(
    scores_by_task: ScoresByTask,
    *,
    confidence: float = CONFIDENCE,
    n_resamples: int = N_RESAMPLES,
    seed: int = 0,
) -> Interval:
    """:func:`iqm` and its stratified bootstrap percentile interval.

    Raises:
        ValueError: As :func:`iqm`, or a task with fewer than two runs (nothing to resample).
    """
    tasks = _tasks(scores_by_task, "scores_by_task", minimum_runs=2)
    low, high = _bootstrap(tasks, _pooled_iqm, confidence, n_resamples, seed)
    return Interval(float(_pooled_iqm(*tasks)), float(low), float(high))


def mean_interval(
    scores: ArrayLike, *, confidence: float = CONFIDENCE, n_resamples: int = N_RESAMPLES, seed: int = 0
) -> Interval:
    """The mean of one task's run scores and its bootstrap (percentile) interval.

    Raises:
        ValueError: Fewer than two scores, or a score that is not finite.

    Example:
        >>> mean_interval([0.5, 0.7, 0.6]).point
        0.6
    """
    (x,) = _tasks([scores], "scores", minimum_runs=2)
    low, high = _bootstrap([x], lambda a, axis=-1: np.mean(a, axis=axis), confidence, n_resamples, seed)
    return Interval(float(np.mean(x)), float(low), float(high))


def probability_of_improvement_interval(
    x_by_task: ScoresByTask,
    y_by_task: ScoresByTask,
    *,
    confidence: float = CONFIDENCE,
    n_resamples: int = N_RESAMPLES,
    seed: int = 0,
) -> Interval:
    """:func:`probability_of_improvement` and its stratified bootstrap interval (each task's runs of X
    and of Y resampled independently).

    Raises:
        ValueError: As :func:`probability_of_improvement`, or a task with fewer than two runs.
    """
    x, y = _paired_tasks(x_by_task, y_by_task, minimum_runs=2)
    statistic = _improvement(len(x))
    low, high = _bootstrap([*x, *y], statistic, confidence, n_resamples, seed)
    return Interval(float(statistic(*x, *y)), float(low), float(high))


def performance_profile_interval(
    scores_by_task: ScoresByTask,
    taus: ArrayLike,
    *,
    confidence: float = CONFIDENCE,
    n_resamples: int = N_RESAMPLES,
    seed: int = 0,
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
    """:func:`performance_profile` and its pointwise stratified bootstrap band.

    Returns:
        ``(profile, low, high)``, each ``(len(taus),)``.

    Raises:
        ValueError: As :func:`performance_profile`, or a task with fewer than two runs.
    """
    tasks = _tasks(scores_by_task, "scores_by_task", minimum_runs=2)
    statistic = _profile(_taus(taus))
    low, high = _bootstrap(tasks, statistic, confidence, n_resamples, seed)
    return statistic(*tasks), np.asarray(low, dtype=float), np.asarray(high, dtype=float)


# --- statistics of resamples: each sample is (..., runs); the result drops the runs axis ---------------
def _pooled_iqm(*tasks: NDArray[np.float64], axis: int = -1) -> NDArray[np.float64]:
    return stats.trim_mean(np.concatenate(tasks, axis=axis), IQM_CUT, axis=axis)


def _improvement(num_tasks: int) -> Callable[..., NDArray[np.float64]]:
    """The statistic of samples ``(x_task1, ..., x_taskK, y_task1, ..., y_taskK)``."""

    def statistic(*samples: NDArray[np.float64], axis: int = -1) -> NDArray[np.float64]:
        per_task = [
            # U of x counts the pairs x wins plus half the ties.
            stats.mannwhitneyu(x, y, axis=axis, method="asymptotic").statistic
            / (x.shape[axis] * y.shape[axis])
            for x, y in zip(samples[:num_tasks], samples[num_tasks:])
        ]
        return np.mean(per_task, axis=0)

    return statistic


def _profile(taus: NDArray[np.float64]) -> Callable[..., NDArray[np.float64]]:
    def statistic(*tasks: NDArray[np.float64], axis: int = -1) -> NDArray[np.float64]:
        pooled = np.moveaxis(np.concatenate(tasks, axis=axis), axis, -1)  # (..., runs)
        return np.stack([(pooled > tau).mean(axis=-1) for tau in taus], axis=0)  # (taus, ...)

    return statistic


def _bootstrap(
    samples: Sequence[NDArray[np.float64]],
    statistic: Callable[..., Any],
    confidence: float,
    n_resamples: int,
    seed: int,
) -> tuple[Any, Any]:
    """Percentile interval of ``statistic`` over resamples that redraw each sample on its own."""
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence!r}")
    if isinstance(n_resamples, bool) or not isinstance(n_resamples, int) or n_resamples < 1:
        raise ValueError(f"n_resamples must be an int >= 1, got {n_resamples!r}")
    result = stats.bootstrap(
        tuple(samples),
        statistic,
        n_resamples=n_resamples,
        vectorized=True,
        axis=-1,
        confidence_level=confidence,
        method="percentile",
        random_state=np.random.default_rng(seed),  # `rng=` from scipy 1.15; this works from 1.13 on
    )
    return result.confidence_interval.low, result.confidence_interval.high


# --- input checks --------------------------------------------------------------------------------------
def _tasks(scores_by_task: ScoresByTask, name: str, minimum_runs: int = 1) -> list[NDArray[np.float64]]:
    if isinstance(scores_by_task, (str, bytes)) or not isinstance(scores_by_task, Sequence):
        raise TypeError(f"{name} must be a sequence of per-task score sequences, got {scores_by_task!r}")
    if not scores_by_task:
        raise ValueError(f"{name} is empty: give the runs of at least one task")
    tasks = []
    for i, runs in enumerate(scores_by_task):
        array = np.asarray(runs, dtype=float)
        if array.ndim != 1:
            raise ValueError(f"{name}[{i}] must be a 1-d sequence of run scores, got shape {array.shape}")
        if len(array) < minimum_runs:
            raise ValueError(
                f"{name}[{i}] has {len(array)} run(s); a bootstrap interval needs at least {minimum_runs}"
            )
        if not np.isfinite(array).all():
            raise ValueError(f"{name}[{i}] holds a score that is not finite: {array.tolist()}")
        tasks.append(array)
    return tasks


def _paired_tasks(
    x_by_task: ScoresByTask, y_by_task: ScoresByTask, minimum_runs: int = 1
) -> tuple[list[NDArray[np.float64]], list[NDArray[np.float64]]]:
    x = _tasks(x_by_task, "x_by_task", minimum_runs)
    y = _tasks(y_by_task, "y_by_task", minimum_runs)
    if len(x) != len(y):
        raise ValueError(f"x_by_task has {len(x)} tasks and y_by_task {len(y)}: give the same tasks")
    return x, y


def _taus(taus: ArrayLike) -> NDArray[np.float64]:
    array = np.atleast_1d(np.asarray(taus, dtype=float))
    if array.ndim != 1 or not len(array) or not np.isfinite(array).all():
        raise ValueError(f"taus must be a non-empty 1-d sequence of finite numbers, got {taus!r}")
    return array
