"""Fixtures shared by the whole suite: the built-in tokenizer and models, each loaded once per process.

Builders of the tests' own small parts (a word-level tokenizer, a random GPT-2) are in ``tests/builders.py``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedTokenizerBase

from textenv import assets


def pytest_configure(config: pytest.Config) -> None:
    # The models in the tests are tiny: one thread per process is fastest, and with `pytest -n 2`
    # two single-threaded workers use the two cores without fighting over them. Subprocesses
    # (examples, CLI) inherit the variable.
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    torch.set_num_threads(1)


@pytest.fixture(scope="session", autouse=True)
def _sb3_log_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """stable-baselines3 makes a log folder for every model it builds (``/tmp/SB3-<date>`` by default):
    they go to one folder of this run's pytest temporary directory instead of hundreds in ``/tmp``."""
    saved = os.environ.get("SB3_LOGDIR")
    os.environ["SB3_LOGDIR"] = str(tmp_path_factory.mktemp("sb3-logs"))
    yield
    if saved is None:
        del os.environ["SB3_LOGDIR"]
    else:
        os.environ["SB3_LOGDIR"] = saved


@pytest.fixture(scope="session")
def tokenizer() -> PreTrainedTokenizerBase:
    """The built-in tiny tokenizer (``tiny-tokenizer``), shared: a test that changes it loads its own."""
    return AutoTokenizer.from_pretrained(assets.path("tiny-tokenizer"))


@pytest.fixture(scope="session")
def tiny_lm() -> torch.nn.Module:
    """The built-in ``tiny-lm`` in eval mode, shared: a test that trains or changes it loads its own."""
    return AutoModelForCausalLM.from_pretrained(assets.path("tiny-lm"), use_safetensors=True).eval()


@pytest.fixture(scope="session")
def tiny_agent() -> torch.nn.Module:
    """The built-in ``tiny-agent`` (the multi-turn tasks' policy) in eval mode, shared like :func:`tiny_lm`."""
    return AutoModelForCausalLM.from_pretrained(assets.path("tiny-agent")).eval()
