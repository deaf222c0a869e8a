"""End-to-end test of ``python -m agents.train`` (the README's main job) with a tiny budget."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from agents.common import checkpoint as ckpt
from agents.common.logger import read_csv
from agents.train import build_parser, main, make_config, parse_args

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _has_tensorboard() -> bool:
    try:
        import tensorboard  # noqa: F401
    except ImportError:
        return False
    return True


def test_flags_map_to_the_config(tmp_path):
    args = build_parser().parse_args(
        [
            *("--lr", "3e-4", "--episodes-per-iteration", "32", "--minibatch-size", "8", "--kl-coef", "0.2"),
            *("--kl-controller", "adaptive", "--top-k", "5", "--out", str(tmp_path), "--target-kl", "0.1"),
        ]
    )
    cfg = make_config(args)
    assert cfg.learning_rate == 3e-4 and cfg.episodes_per_iteration == 32 and cfg.minibatch_size == 8
    assert cfg.init_kl_coef == 0.2 and cfg.kl_controller == "adaptive" and cfg.top_k == 5
    assert cfg.target_approx_kl == 0.1 and cfg.log_dir == str(tmp_path)
    with pytest.raises(ValueError, match="minibatch_size"):
        make_config(build_parser().parse_args(["--episodes-per-iteration", "12", "--minibatch-size", "8"]))


@pytest.mark.subprocess
def test_cli_trains_and_writes_curve_csv_checkpoint_and_samples(tmp_path):
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "agents.train", "--out", str(out), "--episodes", "16"]
    cmd += [
        "--episodes-per-iteration",
        "8",
        "--minibatch-size",
        "8",
        "--ppo-epochs",
        "1",
        "--max-new-tokens",
        "6",
    ]
    cmd += ["--num-samples", "2", "--no-progress", "--device", "cpu", "--threads", "1"]
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "it 2 | ep 16 | score" in proc.stdout
    # The console line's legend comes once, before the first line; no TensorBoard here, said once.
    assert proc.stdout.count("legend: it = iteration, ep = episodes trained so far") == 1
    assert proc.stdout.index("legend:") < proc.stdout.index("it 1 | ep 8")
    assert proc.stdout.count("TensorBoard is not installed") == (0 if _has_tensorboard() else 1)
    assert "16 episodes in" in proc.stdout
    assert "before:" in proc.stdout and "after:" in proc.stdout
    rows = read_csv(out / "progress.csv")
    assert [r["iteration"] for r in rows] == [1, 2]
    assert {"score", "kl", "kl_coef", "entropy", "approx_kl", "reward/sentiment"} <= set(rows[0])
    assert os.path.getsize(out / "learning_curve.png") > 1000
    assert ckpt.latest_checkpoint(out) is not None
    assert ckpt.is_checkpoint(str(out / "final"))
    samples = (out / "samples.txt").read_text()
    assert samples.count("prompt:") == 2 and "TextGen-Sentiment-v0" in samples
    # --resume continues from the checkpoint up to the new total.
    proc = subprocess.run(
        [*cmd[:6], "24", *cmd[7:], "--resume"],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert [r["iteration"] for r in read_csv(out / "progress.csv")] == [1, 2, 3]
    # The summary counts the episodes trained in this run, not the checkpoint's.
    assert "8 episodes in" in proc.stdout and "(24 in all, resumed)" in proc.stdout


def _error(argv, capsys, call=main) -> str:
    """The one-line error of ``python -m agents.train argv``: argparse's, exit code 2, no traceback."""
    with pytest.raises(SystemExit) as info:
        call(argv)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return err.strip().splitlines()[-1]


def test_cli_mistakes_are_one_line_errors_naming_the_flag(tmp_path, capsys):
    out = ["--out", str(tmp_path / "x")]
    assert _error(["--episodes", "0", *out], capsys).endswith(
        "error: argument --episodes: expected an int >= 1, got '0'"
    )
    file = tmp_path / "file.txt"
    file.write_text("x")
    assert f"argument --out: '{file}' is a file, not a directory" in _error(["--out", str(file)], capsys)
    assert "argument --threads: expected an int >= 1, got '0'" in _error(["--threads", "0", *out], capsys)
    line = _error(["--env-kwargs", "[1, 2]", *out], capsys)
    assert "argument --env-kwargs: expected a JSON object such as" in line and "got '[1, 2]'" in line
    assert "argument --num-samples: expected an int >= 0, got '-1'" in _error(
        ["--num-samples", "-1", *out], capsys
    )
    line = _error(["--episodes-per-iteration", "12", "--minibatch-size", "8", *out], capsys)
    assert (
        "argument --minibatch-size: minibatch_size must be a divisor of episodes_per_iteration=12, got 8"
        in line
    )
    line = _error(["--kl-coef", "-1", *out], capsys)
    assert "argument --init-kl-coef/--kl-coef: init_kl_coef must be >= 0 or None, got -1.0" in line
    assert "did you mean 'tiny-lm'" in _error(["--policy", "tiny_lm", *out], capsys)
    assert "--lora-alpha and --lora-target-modules need --lora-r" in _error(
        ["--lora-alpha", "4", *out], capsys
    )
    assert "argument --kl-controller: expected one argument" in _error(["--kl-controller"], capsys)
    assert not os.path.exists(tmp_path / "x")  # nothing was written


RUN_FLAG_BAD_VALUES = {
    "--algo": ["", "dqn", "sb3-ppo"],
    "--env": ["", "TextGen-Nope-v0"],
    "--policy": ["", "tiny_lm"],
    "--episodes": ["0", "-1", "abc", ""],
    "--out": ["", "FILE", "FILE/sub"],
    "--max-new-tokens": ["0", "-1", "abc", ""],
    "--env-kwargs": ["", "[1]", "{", "null", "3"],
    "--num-samples": ["-1", "abc", "", "1.5"],
    "--threads": ["0", "-1", "abc", ""],
    "--lora-r": ["0", "-1", "abc", ""],
    "--lora-alpha": ["0", "-1", "abc", "nan"],
    "--lora-target-modules": [""],
}
"""Bad values of the run's own flags (``FILE``: a file where a directory belongs)."""

SWITCHES = ("--resume", "--no-progress", "--quiet", "--export-merged")
"""Flags without a value: ``--quiet=1`` is the mistake they can hold."""

BAD_VALUES_BY_TYPE = {
    "int": ["-1", "abc", "", "1.5"],
    "float": ["-1", "abc", "", "nan", "inf"],
    "str": ["", "nope"],
}
"""Bad values of a config field's flag, by the field's type (every int and float field refuses -1)."""


def _bad_argvs(algo: str, file: str) -> dict[str, list[list[str]]]:
    """Every flag of ``--algo algo --help`` with its bad command lines."""
    import dataclasses

    from agents.train import algorithm, config_flags

    _, config_cls, presets = algorithm(algo)
    table = {
        flag: [[flag, v.replace("FILE", file)] for v in values]
        for flag, values in RUN_FLAG_BAD_VALUES.items()
    }
    table.update({flag: [[f"{flag}=1"]] for flag in SWITCHES})
    for f in dataclasses.fields(config_cls):
        if f.name == "log_dir" or f.name in presets:
            continue
        kind = str(f.type).removesuffix("| None").strip()
        for flag in config_flags(f.name):
            if kind == "bool":
                table[flag] = [[f"{flag}=1"]]
                table[f"--no-{flag[2:]}"] = [[f"--no-{flag[2:]}=1"]]
            else:
                table[flag] = [[flag, v] for v in BAD_VALUES_BY_TYPE[kind]]
    return table


def test_cli_fuzz_every_flag_with_bad_values(tmp_path, capsys):
    import re

    file = tmp_path / "file.txt"
    file.write_text("x")
    tested: set[str] = set()
    for algo in ("ppo", "grpo", "rloo", "reinforce++", "scst"):
        table = _bad_argvs(algo, str(file))
        help_text = build_parser(algo).format_help()
        assert set(re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", help_text)) - {"--help"} == set(table), algo
        for flag, argvs in table.items():
            if flag in tested:
                continue
            tested.add(flag)
            for argv in argvs:
                # parse_args finds every mistake; a value wrongly accepted returns instead of training.
                line = _error(["--algo", algo, "--out", str(tmp_path / "x"), *argv], capsys, call=parse_args)
                assert flag in line or flag.replace("--no-", "--") in line, (algo, argv, line)
    assert {"--group-size", "--num-iterations", "--ppo-epochs", "--lr"} <= tested
    assert not os.path.exists(tmp_path / "x")


@pytest.mark.subprocess
def test_cli_error_in_a_subprocess_is_one_line_and_exit_code_2(tmp_path):
    cmd = [sys.executable, "-m", "agents.train", "--threads", "0", "--out", str(tmp_path / "x")]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert proc.returncode == 2 and proc.stdout == "" and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == (
        "python -m agents.train: error: argument --threads: expected an int >= 1, got '0'"
    )


@pytest.mark.parametrize("algo", ["ppo", "grpo", "rloo", "reinforce++", "scst"])
def test_every_config_field_is_a_flag_with_its_docstring_and_default(algo, capsys):
    import dataclasses

    from agents.common.config import field_docs
    from agents.train import algorithm

    _, config_cls, presets = algorithm(algo)
    with pytest.raises(SystemExit):
        main(["--algo", algo, "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    docs = field_docs(config_cls)
    for f in dataclasses.fields(config_cls):
        if f.name == "log_dir" or f.name in presets:
            assert f"--{f.name.replace('_', '-')} " not in help_text
            continue
        assert f"--{f.name.replace('_', '-')}" in help_text, f.name
        assert docs[f.name][:60] in help_text, f.name  # the help is the field's docstring
    defaults = vars(build_parser(algo).parse_args(["--algo", algo]))
    for f in dataclasses.fields(config_cls):
        if f.name not in ("log_dir", "checkpoint_interval", *presets):
            assert defaults[f.name] == f.default, f.name


def test_algo_flags_map_to_their_config(tmp_path):
    from agents import GRPOConfig, REINFORCEConfig

    args = parse_args(
        [
            *("--algo", "grpo", "--group-size", "8", "--loss-type", "dapo", "--clip-range-high", "0.28"),
            *("--no-scale-rewards", "--beta", "0.04", "--max-grad-norm", "none", "--out", str(tmp_path)),
        ]
    )
    cfg = make_config(args)
    assert isinstance(cfg, GRPOConfig) and cfg.group_size == 8 and cfg.loss_type == "dapo"
    assert cfg.clip_range_high == 0.28 and cfg.scale_rewards is False and cfg.beta == 0.04
    assert cfg.max_grad_norm is None and cfg.checkpoint_interval == 5
    scst = make_config(parse_args(["--algo", "scst", "--out", str(tmp_path)]))
    assert isinstance(scst, REINFORCEConfig) and scst.baseline == "greedy"
    assert make_config(parse_args(["--algo", "reinforce++"])).baseline == "batch"
    with pytest.raises(SystemExit):
        parse_args(["--algo", "scst", "--baseline", "none"])  # a preset, not a flag
    with pytest.raises(SystemExit):
        parse_args(["--algo", "ppo", "--group-size", "4"])  # not PPO's


def test_resume_without_checkpoint_and_unknown_env_are_one_line_argparse_errors(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        parse_args(["--resume", "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and "error: --resume: no checkpoint in" in err
    with pytest.raises(SystemExit) as exit_info:
        parse_args(["--env", "TextGen-Sentimnt-v0"])
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert exit_info.value.code == 2 and "unknown env 'TextGen-Sentimnt-v0'" in last
    assert "TextGen-Sentiment-v0" in last and "TextGen-Keyword-v0" in last


def test_cli_trains_a_critic_free_algorithm(tmp_path, capsys):
    out = tmp_path / "g"
    argv = ["--algo", "rloo", "--out", str(out), "--episodes", "8", "--episodes-per-iteration", "8"]
    argv += [
        "--group-size",
        "4",
        "--max-new-tokens",
        "4",
        "--num-samples",
        "0",
        "--no-progress",
        "--device",
        "cpu",
    ]
    assert main([*argv, "--threads", "1"]) == 0
    stdout = capsys.readouterr().out
    assert "it 1 | ep 8 | score" in stdout
    # --num-samples 0: no prompt is generated before or after.
    assert "before |" not in stdout and "prompt:" not in (out / "samples.txt").read_text()
    from agents import RLOO

    agent = RLOO.load(out / "final", verbose=0, progress_bar=False)
    assert agent.num_episodes == 8 and agent.config.group_size == 4


def test_cli_trains_lora_with_the_adapters_off_reference_and_exports_merged(tmp_path, capsys):
    pytest.importorskip("peft")
    from transformers import AutoModelForCausalLM

    out = tmp_path / "lora"
    argv = ["--out", str(out), "--episodes", "16", "--episodes-per-iteration", "8", "--minibatch-size", "8"]
    argv += ["--ppo-epochs", "1", "--max-new-tokens", "6", "--num-samples", "1", "--no-progress", "--quiet"]
    argv += ["--device", "cpu", "--lora-r", "2", "--lora-target-modules", "c_attn", "--export-merged"]
    argv += ["--mixed-precision", "no"]  # fp32: the first KL is exactly 0 (no bf16 rounding)
    assert main(argv) == 0
    rows = read_csv(out / "progress.csv")
    assert rows[0]["kl"] == pytest.approx(0.0, abs=1e-6)  # reference = tiny-lm = the adapters-off policy
    files = os.listdir(out / "final" / ckpt.MODEL_DIR)
    assert "adapter_model.safetensors" in files and "model.safetensors" not in files
    assert AutoModelForCausalLM.from_pretrained(out / "merged").config.n_layer >= 1
    assert "need --lora-r" in _error([*argv[:2], "--lora-alpha", "4"], capsys)
