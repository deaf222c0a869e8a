"""agents.compare: same budget and seeds for every algorithm and task; curves CSV, PNG, markdown tables,
the aggregate over tasks and seeds, resuming, and one-line errors for every bad setting."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import warnings

import numpy as np
import pytest

from agents.compare import SettingError, build_parser, compare, default_model, main, score_scale, suite

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ALGOS = ["ppo", "grpo", "rloo", "reinforce++", "scst", "sb3-ppo", "sb3-a2c", "base-lm"]
TINY = {"num_envs": 4, "window": 4, "env_kwargs": {"max_new_tokens": 3}}
"""A budget of a few seconds per run."""


def read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def quiet(line: str) -> None:
    pass


def test_compare_writes_curves_table_and_png_with_the_same_budget_everywhere(tmp_path):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        results = compare(
            "TextGen-Sentiment-v0", episodes=8, seeds=[0, 1], algos=ALGOS, out=tmp_path, log=quiet, **TINY
        )
    # Every SB3 run had the task's KL penalty bound to its policy (an unbound one warns).
    assert not [w for w in caught if "no policy log-probs" in str(w.message)]

    assert [(r.algo, r.seed, r.env) for r in results] == [
        (a, s, "TextGen-Sentiment-v0") for a in ALGOS for s in (0, 1)
    ]
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
    assert (tmp_path / "performance_profiles.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "| ppo | 2 |" in (tmp_path / "aggregate.md").read_text()
    for algo in ALGOS:
        assert sorted(os.listdir(tmp_path / "runs" / "TextGen-Sentiment-v0" / algo)) == [
            "seed-0.json",
            "seed-1.json",
        ]
    params = json.loads((tmp_path / "hyperparameters.json").read_text())
    assert params["scst"] == {
        "baseline": "greedy",
        "num_iterations": 4,
        "episodes_per_iteration": 4,
        "minibatch_size": 2,
    }
    assert params["sb3-a2c"]["use_rms_prop"] is False and params["base-lm"] == {}


def test_tasks_bring_their_model_threshold_and_untrained_return():
    from textenv.tasks import TASKS

    assert suite("builtin") == [t.id for t in TASKS]
    assert score_scale("TextGen-Sentiment-v0") == (0.47, 0.8)
    assert score_scale("TextGen-Arithmetic-v0") == (0.355, 0.6)
    assert all(score_scale(t.id) == (t.untrained_return, t.reward_threshold) for t in TASKS)
    assert score_scale("TextGen-v0") is None  # no threshold, no task: raw
    assert score_scale("TextGen-GSM8K-v0") is None  # a hub task: model-dependent
    assert default_model("TextGen-Arithmetic-v0") == "tiny-solver"
    assert default_model("TextGen-Reverse-v0") == "tiny-solver-early"
    assert default_model("TextGen-v0") == "tiny-lm"


def test_several_tasks_each_from_its_own_model_with_a_folder_each(tmp_path):
    envs = ["TextGen-Sentiment-v0", "TextGen-Arithmetic-v0"]
    results = compare(
        envs, episodes=8, seeds=[0, 1], algos=["rloo", "base-lm"], out=tmp_path, log=quiet, **TINY
    )
    assert [(r.env, r.algo, r.seed) for r in results] == [
        (e, a, s) for e in envs for a in ("rloo", "base-lm") for s in (0, 1)
    ]
    for env in envs:
        for name in ("curves.csv", "episodes.csv", "learning_curves.png", "results.md"):
            assert (tmp_path / env / name).stat().st_size > 0, (env, name)
        assert "| rloo | 2 |" in (tmp_path / env / "results.md").read_text()
    stored = json.loads((tmp_path / "runs" / "TextGen-Arithmetic-v0" / "rloo" / "seed-1.json").read_text())
    assert stored["settings"]["model"] == "tiny-solver" and stored["settings"]["seed"] == 1
    assert stored["result"]["rewards"] == results[6].rewards
    report = (tmp_path / "aggregate.md").read_text()
    assert "Aggregate over 2 task(s) x 2 seed(s)" in report and "| base-lm | 4 |" in report
    assert (tmp_path / "performance_profiles.png").stat().st_size > 1000


def test_an_interrupted_comparison_resumes_without_rerunning_finished_runs(tmp_path):
    settings = {"episodes": 8, "algos": ["grpo", "base-lm"], "log": None, **TINY}
    full = compare("TextGen-Sentiment-v0", seeds=[0, 1], out=tmp_path / "full", **{**settings, "log": quiet})

    class Interrupt(Exception):
        pass

    def interrupt_after_two(line: str) -> None:
        finished.append(line) if "final reward" in line else None
        if len(finished) == 2:
            raise Interrupt

    finished: list[str] = []
    out = tmp_path / "resumed"
    with pytest.raises(Interrupt):
        compare("TextGen-Sentiment-v0", seeds=[0, 1], out=out, **{**settings, "log": interrupt_after_two})
    assert sorted(os.listdir(out / "runs" / "TextGen-Sentiment-v0" / "grpo")) == [
        "seed-0.json",
        "seed-1.json",
    ]
    assert not os.path.exists(out / "runs" / "TextGen-Sentiment-v0" / "base-lm")
    lines: list[str] = []
    resumed = compare("TextGen-Sentiment-v0", seeds=[0, 1], out=out, **{**settings, "log": lines.append})
    read_back = [line for line in lines if "finished earlier, read from" in line]
    assert len(read_back) == 2 and all("grpo seed" in line for line in read_back)
    assert sum("grpo" in line and "episodes from" in line for line in lines) == 0  # not run again
    assert sum("base-lm" in line and "episodes from" in line for line in lines) == 2
    # Read back or run, every run is the one an uninterrupted comparison made (seeded).
    assert [(r.algo, r.seed, r.rewards, r.tokens, r.kls) for r in resumed] == [
        (r.algo, r.seed, r.rewards, r.tokens, r.kls) for r in full
    ]
    # Other settings are refused before anything runs, naming what differs.
    with pytest.raises(SettingError, match="episodes: 8 there, 12 now") as info:
        compare("TextGen-Sentiment-v0", seeds=[0], out=out, **{**settings, "episodes": 12, "log": quiet})
    assert info.value.flag == "--out"
    with pytest.raises(SettingError, match="model: 'tiny-lm' there, 'tiny-solver' now"):
        compare("TextGen-Sentiment-v0", seeds=[0], out=out, model="tiny-solver", **{**settings, "log": quiet})
    (out / "runs" / "TextGen-Sentiment-v0" / "grpo" / "seed-0.json").write_text("{")
    with pytest.raises(SettingError, match=r"cannot read the finished run .*seed-0\.json"):
        compare("TextGen-Sentiment-v0", seeds=[0], out=out, **{**settings, "log": quiet})


def test_bad_arguments_are_refused(tmp_path):
    with pytest.raises(ValueError, match="unknown algorithms \\['dqn'\\]"):
        compare("TextGen-Sentiment-v0", 8, algos=["ppo", "dqn"], out=tmp_path)
    with pytest.raises(ValueError, match="window=16 is larger"):
        compare("TextGen-Sentiment-v0", 8, algos=["agents-ppo"], window=16, out=tmp_path)  # an alias
    with pytest.raises(ValueError, match="episodes must be an int >= 1"):
        compare("TextGen-Sentiment-v0", 0, out=tmp_path)
    with pytest.raises(ValueError, match="seeds is empty"):
        compare("TextGen-Sentiment-v0", 8, seeds=[], out=tmp_path)
    with pytest.raises(ValueError, match="a seed is given twice"):
        compare("TextGen-Sentiment-v0", 8, seeds=[1, 1], out=tmp_path)
    with pytest.raises(ValueError, match="an algorithm is named twice"):
        compare("TextGen-Sentiment-v0", 8, algos=["ppo", "agents-ppo"], out=tmp_path)
    with pytest.raises(ValueError, match="an env is named twice"):
        compare(["TextGen-Copy-v0", "TextGen-Copy-v0"], 8, out=tmp_path)
    with pytest.raises(ValueError, match="env_kwargs must hold JSON values"):
        compare("TextGen-Sentiment-v0", 16, algos=["base-lm"], env_kwargs={"reward": object()}, out=tmp_path)
    with pytest.raises(ValueError, match="unknown suite 'all'"):
        suite("all")
    assert os.listdir(tmp_path) == []  # nothing was written


def _error(argv, capsys) -> str:
    """The one-line error of ``textenv-compare argv`` (argparse exits with code 2)."""
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return err.strip().splitlines()[-1]


def test_cli_mistakes_are_one_line_errors_naming_the_flag(tmp_path, capsys):
    # base-lm and a small budget: a mistake wrongly accepted fails fast instead of training long.
    base = ["--out", str(tmp_path / "out"), "--episodes", "32", "--num-envs", "8", "--algos", "base-lm"]
    assert _error([*base, "--episodes", "0"], capsys).endswith(
        "error: argument --episodes: episodes must be an int >= 1, got 0"
    )
    line = _error([*base, "--episodes", "4"], capsys)  # the window is max(--num-envs, --episodes // 16)
    assert "argument --episodes: episodes=4 is less than one curve window" in line and "--num-envs" in line
    assert "argument --window: window=64 is larger than the budget episodes=32" in _error(
        [*base, "--window", "64"], capsys
    )
    line = _error([*base, "--num-envs", "6", "--algos", "ppo", "grpo"], capsys)
    assert "argument --num-envs: num_envs=6 does not fit grpo: group_size must be a divisor" in line
    assert "make --num-envs a multiple of grpo's group_size 4" in line
    assert "num_envs=5 does not fit ppo" in _error([*base, "--num-envs", "5", "--algos", "ppo"], capsys)
    line = _error([*base, "--env", "TextGen-Sentimnt-v0"], capsys)
    assert "argument --env: unknown env 'TextGen-Sentimnt-v0'; registered textenv ids:" in line
    file = tmp_path / "file.txt"
    file.write_text("x")
    assert f"argument --out: '{file}' is a file, not a directory" in _error(
        [*base, "--out", str(file)], capsys
    )
    assert "not allowed with argument" in _error(
        [*base, "--suite", "builtin", "--env", "TextGen-Copy-v0"], capsys
    )
    assert not os.path.exists(tmp_path / "out")  # nothing was written


def _help_flags(parser) -> list[str]:
    import re

    return sorted(set(re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", parser.format_help())) - {"--help"})


def _bad_values(tmp_path) -> dict[str, list[str]]:
    file = tmp_path / "file.txt"
    file.write_text("x")
    numbers = ["-1", "abc", "", "1.5"]
    return {
        "--env": ["", "TextGen-Nope-v0", str(file)],
        "--envs": ["", "nope"],
        "--suite": ["", "all"],
        "--episodes": [*numbers, "0"],
        "--seeds": ["-1", "abc", "", "1.5", str(2**63)],
        "--algos": ["", "dqn"],
        "--out": ["", str(file), str(file / "sub")],
        "--model": ["", "tiny_lm"],
        "--num-envs": [*numbers, "0"],
        "--window": [*numbers, "0"],
        "--learning-rate": ["-1", "0", "abc", "", "nan", "inf"],
        "--env-kwargs": ["", "[1]", "{", "3", "null"],
        "--device": ["", "gpu", "cuda:99"],
        "--threads": [*numbers, "0"],
    }


def test_cli_fuzz_every_flag_with_bad_values(tmp_path, capsys):
    bad = _bad_values(tmp_path)
    assert sorted(bad) == _help_flags(build_parser())  # every flag of --help, and only those
    # A small valid comparison, so that a value wrongly accepted fails fast instead of training long.
    base = ["--algos", "base-lm", "--episodes", "4", "--num-envs", "2", "--out", str(tmp_path / "out")]
    for flag, values in bad.items():
        for value in values:
            line = _error([*base, flag, value], capsys)
            assert flag in line or (flag == "--envs" and "--env" in line), (flag, value, line)
    assert not os.path.exists(tmp_path / "out")


@pytest.mark.subprocess
def test_cli_error_in_a_subprocess_is_one_line_and_exit_code_2(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "agents.compare", "--episodes", "0", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert proc.returncode == 2 and proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert lines[0].startswith("usage: textenv-compare") and "Traceback" not in proc.stderr
    assert lines[-1] == "textenv-compare: error: argument --episodes: episodes must be an int >= 1, got 0"
