"""agents.compare_report: curves, per-task tables and the aggregate report, from known returns."""

from __future__ import annotations

import pytest

from agents import aggregate
from agents.compare_report import (
    RunResult,
    aggregate_report,
    learning_curves,
    normalized_scores,
    results_table,
)


def test_curves_final_reward_and_table_from_known_returns():
    a = RunResult("a", 0, rewards=[0, 0, 1, 1, 1, 1, 1, 1, 1, 1], tokens=[2] * 10, wall_time=2.0)
    b = RunResult("a", 1, rewards=[0, 0, 0, 0, 0, 0, 0, 0, 1, 1], tokens=[3] * 10, wall_time=3.0)
    curves = learning_curves([a, b], window=4)
    assert [(c["seed"], c["episodes"], c["mean_reward"]) for c in curves] == [
        (0, 4, 0.5),
        (0, 8, 1.0),
        (1, 4, 0.0),
        (1, 8, 0.0),
    ]  # the last, partial window is dropped
    assert a.final_reward(window=2) == 1.0 and b.final_reward(window=2) == 1.0  # last 20% = 2 episodes
    assert b.final_reward(window=4) == 0.5  # at least one window
    assert a.tokens_per_s == 10.0 and b.tokens_per_s == 10.0
    table = results_table([a, b], window=4)
    assert "| a | 2 | n/a | 0.750 ± 0.354 | 0.250 ± 0.354 | n/a | 2 ± 1 | 10 ± 0 |" in table
    # Seed 0 reaches 0.75 in the window ending at 8 episodes, seed 1 never.
    assert a.episodes_to_threshold(4, 0.75) == 8 and b.episodes_to_threshold(4, 0.75) is None
    a.kls, b.kls = [1.0] * 10, [3.0] * 10
    table = results_table([a, b], window=4, threshold=0.75)
    assert "| a | 2 | 8 ± 0 (1/2) | 0.750 ± 0.354 | 0.250 ± 0.354 | 2.00 ± 1.41 | 2 ± 1 | 10 ± 0 |" in table


def _run(algo, env, seed, final):
    # Window 2 of 10 episodes: the final reward is the mean of the last 2, here both `final`.
    return RunResult(algo, seed, rewards=[0.0] * 8 + [final, final], tokens=[1] * 10, wall_time=1.0, env=env)


def test_aggregate_report_from_known_final_rewards():
    sentiment, arithmetic = (0.47, 0.8), (0.355, 0.6)
    results = [
        _run("a", "S", 0, 0.47),  # 0.0
        _run("a", "S", 1, 0.8),  # 1.0
        _run("a", "A", 0, 0.6),  # 1.0
        _run("a", "A", 1, 0.4775),  # 0.5
        _run("b", "S", 0, 0.635),  # 0.5
        _run("b", "S", 1, 0.635),  # 0.5
        _run("b", "A", 0, 0.355),  # 0.0
        _run("b", "A", 1, 0.355),  # 0.0
        _run("a", "raw", 0, 5.0),
        _run("b", "raw", 0, 7.0),
    ]
    scales = {"S": sentiment, "A": arithmetic, "raw": None}
    scores, included, left_out = normalized_scores(results, 2, scales)
    assert included == ["S", "A"] and left_out == ["raw"]
    assert scores["a"] == [pytest.approx([0.0, 1.0]), pytest.approx([1.0, 0.5])]
    assert scores["b"] == [pytest.approx([0.5, 0.5]), pytest.approx([0.0, 0.0])]
    report = aggregate_report(results, 2, scales, command="textenv-compare ...")
    assert "# Aggregate over 2 task(s) x 2 seed(s)" in report and "`textenv-compare ...`" in report
    assert "Left out (no untrained return or no reward threshold" in report and "): raw." in report
    assert "S (0.47 -> 0.8), A (0.355 -> 0.6)" in report
    # IQM of a's four runs 0, 1, 1, 0.5: the middle two, 0.5 and 1 -> 0.75; b: 0, 0, 0.5, 0.5 -> 0.25.
    iqm_a = aggregate.iqm_interval(scores["a"])
    assert iqm_a.point == pytest.approx(0.75) and aggregate.iqm(scores["b"]) == pytest.approx(0.25)
    assert f"| a | 4 | {iqm_a.format()} |" in report
    # P(a > b): task S pairs (0 vs .5, .5) 0, 0, (1 vs .5, .5) 1, 1 -> 1/2; task A all four won -> 1.
    assert aggregate.probability_of_improvement(scores["a"], scores["b"]) == pytest.approx(0.75)
    poi = aggregate.probability_of_improvement_interval(scores["a"], scores["b"])
    assert f"| a | — | {poi.format()} |" in report
    one_seed = aggregate_report([r for r in results if r.seed == 0], 2, scales)
    assert "| a | 2 | 0.500 (one seed: no interval) |" in one_seed  # IQM of 0 and 1
    nothing = aggregate_report(results, 2, {"raw": None})
    assert "nothing to aggregate" in nothing
