"""The example scripts run end to end (each in a subprocess, a few steps, built-in assets only)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
pytestmark = pytest.mark.subprocess


def run_example(name: str, *args: str, timeout: float = 240) -> str:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    proc = subprocess.run(
        [sys.executable, str(EXAMPLES / name), *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert proc.returncode == 0, f"{name} {args} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


@pytest.mark.parametrize("policy", ["lm", "random"])
def test_quickstart_plays_episodes(policy):
    out = run_example("quickstart.py", "--policy", policy, "--episodes", "2", "--max-new-tokens", "4")
    assert "episode 0:" in out and "episode 1:" in out
    assert "reward" in out and "sentiment" in out


def test_custom_scorer_reports_the_custom_term():
    out = run_example("custom_scorer.py", "--episodes", "2", "--max-new-tokens", "4")
    lines = [line for line in out.splitlines() if "reward" in line]
    assert len(lines) == 2
    assert all("'enthusiasm'" in line and "'length'" in line for line in lines)


def test_train_ppo_on_a_local_model(tmp_path):
    out = run_example(
        "train_ppo.py",
        *("--model", "tiny-lm", "--episodes", "4", "--episodes-per-iteration", "4"),
        *("--max-new-tokens", "4", "--lr", "1e-4", "--device", "cpu", "--out", str(tmp_path / "agent")),
    )
    assert "before:" in out and "after:" in out and "mean episode reward" in out
    assert (tmp_path / "agent").is_dir()


def test_compare_algorithms_cli(tmp_path):
    out_dir = tmp_path / "compare"
    out = run_example(
        "compare_algorithms.py",
        *(
            "--env",
            "TextGen-Sentiment-v0",
            "--episodes",
            "4",
            "--seeds",
            "0",
            "--num-envs",
            "2",
            "--window",
            "2",
        ),
        *("--algos", "agents-ppo", "sb3-ppo", "sb3-a2c", "--env-kwargs", '{"max_new_tokens": 3}'),
        *("--out", str(out_dir)),
    )
    assert "| agents-ppo |" in out and "| sb3-ppo |" in out and "| sb3-a2c |" in out
    for name in ("learning_curves.png", "curves.csv", "episodes.csv", "results.md"):
        assert (out_dir / name).stat().st_size > 0, name
