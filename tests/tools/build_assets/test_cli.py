"""``python -m tools.build_assets --quick`` end to end, in subprocesses: every asset, seeded to the byte."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer

from tools.build_assets import corpus

REPO_ROOT = Path(__file__).resolve().parents[3]
pytestmark = pytest.mark.subprocess


def _run_quick_build(out: Path, *flags: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "tools.build_assets", "--quick", "--out", str(out), *flags],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )


def _quick_build(out: Path, *flags: str) -> None:
    proc = _run_quick_build(out, *flags)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.fixture(scope="module")
def quick_assets(tmp_path_factory) -> Path:
    """One quick build, shared by the builder's tests."""
    out = tmp_path_factory.mktemp("quick") / "assets"
    _quick_build(out)
    return out


def _files(root: Path) -> list[Path]:
    return sorted(p.relative_to(root) for p in root.rglob("*") if p.is_file())


def test_quick_build_end_to_end_and_byte_for_byte(quick_assets, tmp_path):
    _quick_build(tmp_path / "b")
    files = _files(quick_assets)
    assert files and files == _files(tmp_path / "b")
    for f in files:  # seeded: the same command writes the same bytes
        assert (quick_assets / f).read_bytes() == (tmp_path / "b" / f).read_bytes(), f
    out = quick_assets
    tok = AutoTokenizer.from_pretrained(out / "tiny-lm")
    lm = AutoModelForCausalLM.from_pretrained(out / "tiny-lm")
    solver = AutoModelForCausalLM.from_pretrained(out / "tiny-solver")
    rm = AutoModelForSequenceClassification.from_pretrained(out / "tiny-sentiment")
    assert lm.config.vocab_size == rm.config.vocab_size == solver.config.vocab_size == len(tok)
    # Every model directory holds the very same tokenizer files, chat template included.
    for name in ("tokenizer.json", "tokenizer_config.json"):
        for model in ("tiny-sentiment", "tiny-solver", "tiny-solver-early", "tiny-agent"):
            assert (out / "tiny-lm" / name).read_bytes() == (out / model / name).read_bytes()
    assert tok.chat_template == corpus.CHAT_TEMPLATE
    for name in (
        "review_prompts.txt",
        "keyword_prompts.jsonl",
        "copy_prompts.jsonl",
        "arithmetic_prompts.jsonl",
        "reverse_prompts.jsonl",
        "calculator_prompts.jsonl",
        "guess_prompts.jsonl",
    ):
        assert (out / "data" / name).stat().st_size > 0
    info = json.loads((out / "tiny-sentiment" / "build_info.json").read_text())
    assert info["quick"] is True and 0.0 <= info["heldout_accuracy"] <= 1.0
    info = json.loads((out / "tiny-solver" / "build_info.json").read_text())
    assert 0.0 <= info["arithmetic_accuracy"] <= 1.0
    info = json.loads((out / "tiny-agent" / "build_info.json").read_text())
    assert info["quick"] is True and 0.0 <= info["calculator"]["calculator_accuracy"] <= 1.0
    assert info["guess_number"]["binary_search_return"] == 0.8375


def test_agent_only_build_rebuilds_the_agent_and_the_data_only(quick_assets, tmp_path):
    _quick_build(tmp_path / "agent", "--agent-only")
    built = _files(tmp_path / "agent")
    assert {p.parts[0] for p in built} == {"tiny-agent", "data"}
    for f in built:  # the same bytes as the full build's
        assert (tmp_path / "agent" / f).read_bytes() == (quick_assets / f).read_bytes(), f
    # Another seed's tokenizer in --out: refused before anything is written.
    proc = _run_quick_build(quick_assets, "--agent-only", "--seed", "1")
    assert proc.returncode != 0 and "--agent-only" in proc.stderr and "another tokenizer" in proc.stderr
    for f in built:
        assert (tmp_path / "agent" / f).read_bytes() == (quick_assets / f).read_bytes(), f
