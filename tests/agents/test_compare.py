"""agents.compare: same budget and seeds for every algorithm; curves CSV, PNG and markdown table."""

from __future__ import annotations

import csv
import warnings

import numpy as np
import pytest

from agents.compare import RunResult, compare, learning_curves, main, results_table

ALGOS = ["ppo", "grpo", "rloo", "reinforce++", "scst", "sb3-ppo", "sb3-a2c", "base-lm"]


def read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_compare_writes_curves_table_and_png_with_the_same_budget_everywhere(tmp_path):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        results = compare(
            "TextGen-Sentiment-v0",
            episodes=8,
            seeds=[0, 1],
            algos=ALGOS,
            out=tmp_path,
            num_envs=4,
            window=4,
            env_kwargs={"max_new_tokens": 3},
            log=lambda line: None,
        )
    # Every SB3 run had the task's KL penalty bound to its policy (an unbound one warns).
    assert not [w for w in caught if "no policy log-probs" in str(w.message)]

    assert [(r.algo, r.seed) for r in results] == [(a, s) for a in ALGOS for s in (0, 1)]
    for r in results:
        assert len(r.rewards) == len(r.tokens) == 8, r.algo
        # The agents report each episode's KL to the task's reference (sb3 runs do not).
        assert len(r.kls) == (8 if r.algo in ALGOS[:5] else 0), r.algo
        assert all(1 <= n <= 3 for n in r.tokens) and r.wall_time > 0 and r.tokens_per_s > 0

    curves = read_csv(tmp_path / "curves.csv")
    assert list(curves[0]) == ["algo", "seed", "episodes", "mean_reward"]
    assert len(curves) == len(ALGOS) * 2 * 2  # algos x seeds x windows
    first = next(r for r in results if r.algo == "sb3-ppo" and r.seed == 1)
    row = next(c for c in curves if c["algo"] == "sb3-ppo" and c["seed"] == "1" and c["episodes"] == "4")
    assert float(row["mean_reward"]) == pytest.approx(np.mean(first.rewards[:4]), abs=1e-6)
    assert len(read_csv(tmp_path / "episodes.csv")) == len(ALGOS) * 2 * 8

    table = (tmp_path / "results.md").read_text()
    for algo in ALGOS:
        assert f"| {algo} | 2 |" in table
    assert (tmp_path / "learning_curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


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


def test_bad_arguments_are_refused(tmp_path):
    with pytest.raises(ValueError, match="unknown algorithms \\['dqn'\\]"):
        compare("TextGen-Sentiment-v0", 8, algos=["ppo", "dqn"], out=tmp_path)
    with pytest.raises(ValueError, match="window=16 is larger"):
        compare("TextGen-Sentiment-v0", 8, algos=["agents-ppo"], window=16, out=tmp_path)  # an alias
    with pytest.raises(ValueError, match="episodes must be an int >= 1"):
        compare("TextGen-Sentiment-v0", 0, out=tmp_path)
    with pytest.raises(ValueError, match="seeds is empty"):
        compare("TextGen-Sentiment-v0", 8, seeds=[], out=tmp_path)
    with pytest.raises(SystemExit):
        main(["--algos", "dqn", "--out", str(tmp_path)])
