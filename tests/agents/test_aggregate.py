"""agents.aggregate: IQM, probability of improvement and performance profiles with stratified bootstrap
intervals, against hand-computed values and against the definitions of Agarwal et al. (2021)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agents.aggregate import (
    Interval,
    iqm,
    iqm_interval,
    normalized_score,
    performance_profile,
    performance_profile_interval,
    probability_of_improvement,
    probability_of_improvement_interval,
)

scores = st.lists(st.floats(-10, 10, allow_nan=False), min_size=1, max_size=9)
tasks = st.lists(scores, min_size=1, max_size=4)


def test_normalised_score_is_zero_at_the_untrained_return_and_one_at_the_threshold():
    scores = [normalized_score(r, untrained=0.47, threshold=0.8) for r in (0.47, 0.8, 0.635, 0.3)]
    assert scores == pytest.approx([0.0, 1.0, 0.5, -0.17 / 0.33])
    with pytest.raises(ValueError, match="no scale"):
        normalized_score(0.5, untrained=0.5, threshold=0.5)
    with pytest.raises(ValueError, match="score must be finite"):
        normalized_score(float("nan"), untrained=0.0, threshold=1.0)


def test_iqm_is_the_mean_of_the_middle_half_of_all_runs_pooled():
    assert iqm([[1, 2, 3, 4, 5, 6, 7, 8]]) == 4.5  # (3 + 4 + 5 + 6) / 4
    assert iqm([[8, 1, 7, 2], [3, 6, 4, 5]]) == 4.5  # pooled over tasks, order free
    assert iqm([[0.1, 0.4, 0.5, 0.9], [0.2, 0.3, 1.1, 1.2]]) == pytest.approx(0.525)
    assert iqm([[100.0, 0, 1, 2]]) == 1.5  # an outlier is cut


@given(
    st.lists(st.floats(-10, 10, allow_nan=False), min_size=4, max_size=40).filter(lambda x: len(x) % 4 == 0)
)
def test_iqm_matches_the_papers_definition(values):
    n = len(values)
    middle = sorted(values)[n // 4 : 3 * n // 4]
    assert iqm([values[: n // 2], values[n // 2 :]]) == pytest.approx(np.mean(middle), abs=1e-9)


def test_probability_of_improvement_by_hand():
    # Task 1: x = 1, 2, 3 against y = 2, 2: pairs won 0 + 0 + 0.5 + 0.5 + 1 + 1 = 3 of 6.
    # Task 2: x = 3, 3, 3 against y = 3, 1: ties 3 x 0.5 and wins 3 x 1 = 4.5 of 6.
    x, y = [[1, 2, 3], [3, 3, 3]], [[2, 2], [3, 1]]
    assert probability_of_improvement(x, y) == pytest.approx((3 / 6 + 4.5 / 6) / 2)
    assert probability_of_improvement(y, x) == pytest.approx(1 - (3 / 6 + 4.5 / 6) / 2)
    assert probability_of_improvement([[1.0]], [[1.0]]) == 0.5


@settings(max_examples=50)
@given(st.data())
def test_probability_of_improvement_matches_the_papers_definition(data):
    x = data.draw(tasks)
    y = [data.draw(scores) for _ in x]
    by_pairs = [
        np.mean([1.0 if a > b else 0.5 if a == b else 0.0 for a, b in itertools.product(xt, yt)])
        for xt, yt in zip(x, y)
    ]
    assert probability_of_improvement(x, y) == pytest.approx(np.mean(by_pairs), abs=1e-12)
    assert probability_of_improvement(x, y) + probability_of_improvement(y, x) == pytest.approx(1.0)


def test_performance_profile_by_hand():
    runs = [[0.1, 0.5, 0.9], [0.2, 1.2]]  # five runs pooled
    assert performance_profile(runs, [0.0, 0.5, 1.0, 2.0]).tolist() == [
        1.0,
        0.4,
        0.2,
        0.0,
    ]  # 0.5 is not > 0.5


@given(tasks, st.floats(-11, 11))
def test_performance_profile_is_the_fraction_of_runs_above_tau(by_task, tau):
    pooled = [s for runs in by_task for s in runs]
    assert performance_profile(by_task, [tau])[0] == pytest.approx(sum(s > tau for s in pooled) / len(pooled))


def test_the_bootstrap_is_stratified_by_task():
    # Task A is all 0, task B all 1: every stratified resample keeps four of each, so its IQM is 0.5 every
    # time. The same eight runs as one task resample to any mix of 0s and 1s.
    assert iqm_interval([[0, 0, 0, 0], [1, 1, 1, 1]]) == Interval(0.5, 0.5, 0.5)
    pooled = iqm_interval([[0, 0, 0, 0, 1, 1, 1, 1]])
    assert pooled.point == 0.5 and pooled.low < 0.5 < pooled.high
    # X beats Y in every pair of every task: every resample does too.
    assert probability_of_improvement_interval([[2, 3], [5, 6]], [[0, 1], [4, 4]]) == Interval(1.0, 1.0, 1.0)
    profile, low, high = performance_profile_interval([[0, 0], [1, 1]], [0.5])
    assert (profile.tolist(), low.tolist(), high.tolist()) == ([0.5], [0.5], [0.5])


def _resample(by_task, rng, n_resamples):
    """The paper's stratified bootstrap written out: each task's runs resampled on their own."""
    return [np.asarray(runs)[rng.integers(0, len(runs), (n_resamples, len(runs)))] for runs in by_task]


def test_intervals_agree_with_a_stratified_bootstrap_written_out():
    rng = np.random.default_rng(7)
    by_task = [rng.normal(loc, 0.3, size=n) for loc, n in ((0.0, 5), (1.0, 6), (0.5, 5))]
    other = [rng.normal(loc, 0.3, size=5) for loc in (0.2, 0.8, 0.9)]
    n = 20_000
    # IQM of 16 pooled runs: the mean of the middle 8 of each resample.
    pooled = np.sort(np.concatenate(_resample(by_task, rng, n), axis=1), axis=1)  # (n, 16)
    low, high = np.percentile(pooled[:, 4:12].mean(1), [2.5, 97.5])
    interval = iqm_interval(by_task, n_resamples=n)
    assert interval.point == iqm(by_task)
    assert (interval.low, interval.high) == pytest.approx((low, high), abs=0.01)
    # P(X > Y): per task the share of won pairs (ties 1/2), averaged over tasks.
    wins = [
        ((x[:, :, None] > y[:, None, :]) + 0.5 * (x[:, :, None] == y[:, None, :])).mean((1, 2))
        for x, y in zip(_resample(by_task, rng, n), _resample(other, rng, n))
    ]
    low, high = np.percentile(np.mean(wins, axis=0), [2.5, 97.5])
    interval = probability_of_improvement_interval(by_task, other, n_resamples=n)
    assert (interval.low, interval.high) == pytest.approx((low, high), abs=0.01)


def test_intervals_are_seeded_and_take_the_confidence_level():
    by_task = [[0.1, 0.5, 0.9, 0.3], [0.2, 1.2, 0.4, 0.8]]
    assert iqm_interval(by_task, seed=3) == iqm_interval(by_task, seed=3)
    wide, narrow = iqm_interval(by_task, confidence=0.99), iqm_interval(by_task, confidence=0.5)
    assert (
        wide.low <= narrow.low <= narrow.high <= wide.high and narrow.high - narrow.low < wide.high - wide.low
    )
    assert Interval(0.5, 0.25, 0.75).format(".2f") == "0.50 [0.25, 0.75]"


def test_bad_input_names_the_argument():
    with pytest.raises(ValueError, match="scores_by_task is empty"):
        iqm([])
    with pytest.raises(
        ValueError, match="scores_by_task\\[1\\] has 1 run\\(s\\); a bootstrap interval needs at least 2"
    ):
        iqm_interval([[0.0, 1.0], [1.0]])
    with pytest.raises(ValueError, match="scores_by_task\\[0\\] holds a score that is not finite"):
        iqm([[0.0, float("inf")]])
    with pytest.raises(ValueError, match="must be a 1-d sequence"):
        iqm([[[0.0, 1.0]]])
    with pytest.raises(TypeError, match="must be a sequence of per-task score sequences"):
        iqm("0.5")
    with pytest.raises(ValueError, match="x_by_task has 2 tasks and y_by_task 1"):
        probability_of_improvement([[0.0], [1.0]], [[0.0]])
    with pytest.raises(ValueError, match="taus must be a non-empty 1-d sequence"):
        performance_profile([[0.0]], [])
    with pytest.raises(ValueError, match="confidence must be in \\(0, 1\\)"):
        iqm_interval([[0.0, 1.0]], confidence=95)
    with pytest.raises(ValueError, match="n_resamples must be an int >= 1"):
        iqm_interval([[0.0, 1.0]], n_resamples=0)


def test_mean_interval_is_the_mean_with_a_percentile_bootstrap_interval():
    from agents.aggregate import mean_interval

    values = np.array([0.2, 0.4, 0.6, 0.8, 1.0])
    interval = mean_interval(values, n_resamples=2000, seed=3)
    assert interval.point == pytest.approx(0.6)
    # The same percentile bootstrap written out: resample the five values with replacement, take the mean.
    rng = np.random.default_rng(3)
    means = np.sort(values[rng.integers(0, 5, size=(20000, 5))].mean(1))
    assert interval.low == pytest.approx(np.quantile(means, 0.025), abs=0.02)
    assert interval.high == pytest.approx(np.quantile(means, 0.975), abs=0.02)
    assert mean_interval([0.5, 0.5, 0.5]).format() == "0.500 [0.500, 0.500]"
    with pytest.raises(ValueError):
        mean_interval([0.5])
