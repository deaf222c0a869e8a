"""Fixtures shared by the whole suite."""

from __future__ import annotations

import os

import pytest
import torch
from transformers import AutoTokenizer

from textenv import assets


def pytest_configure(config: pytest.Config) -> None:
    # The models in the tests are tiny: one thread per process is fastest, and with `pytest -n 2`
    # two single-threaded workers use the two cores without fighting over them. Subprocesses
    # (examples, CLI) inherit the variable.
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def builtin_tokenizer():
    """The built-in tiny tokenizer, loaded once."""
    return AutoTokenizer.from_pretrained(assets.path("tiny-tokenizer"))
