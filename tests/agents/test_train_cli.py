"""End-to-end test of ``python -m agents.train`` (the README's main job) with a tiny budget."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from agents.common import checkpoint as ckpt
from agents.common.logger import read_csv
from agents.train import build_parser, main, make_config

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _assets_built() -> bool:
    from textenv import assets

    try:
        assets.path("tiny-lm")
        assets.path("tiny-sentiment")
    except FileNotFoundError:
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


@pytest.mark.skipif(not _assets_built(), reason="built-in assets missing (python -m textenv.assets.build)")
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


def test_cli_reports_bad_arguments(tmp_path, capsys):
    assert main(["--episodes", "0", "--out", str(tmp_path / "x")]) == 2
    assert "--episodes" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--kl-controller"])


@pytest.mark.skipif(not _assets_built(), reason="built-in assets missing (python -m textenv.assets.build)")
def test_cli_trains_lora_with_the_adapters_off_reference_and_exports_merged(tmp_path):
    pytest.importorskip("peft")
    from transformers import AutoModelForCausalLM

    out = tmp_path / "lora"
    argv = ["--out", str(out), "--episodes", "16", "--episodes-per-iteration", "8", "--minibatch-size", "8"]
    argv += ["--ppo-epochs", "1", "--max-new-tokens", "6", "--num-samples", "1", "--no-progress", "--quiet"]
    argv += ["--device", "cpu", "--lora-r", "2", "--lora-target-modules", "c_attn", "--export-merged"]
    assert main(argv) == 0
    rows = read_csv(out / "progress.csv")
    assert rows[0]["kl"] == pytest.approx(0.0, abs=1e-6)  # reference = tiny-lm = the adapters-off policy
    files = os.listdir(out / "final" / ckpt.MODEL_DIR)
    assert "adapter_model.safetensors" in files and "model.safetensors" not in files
    assert AutoModelForCausalLM.from_pretrained(out / "merged").config.n_layer >= 1
    assert main([*argv[:2], "--lora-alpha", "4"]) == 2  # --lora-alpha needs --lora-r
