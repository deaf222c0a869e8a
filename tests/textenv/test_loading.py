"""Tests of textenv.loading: no remote code through any entry, misspelled names, scoped quiet loads."""

from __future__ import annotations

import builtins
import json
import shutil
from pathlib import Path

import gymnasium as gym
import pytest
import torch
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer
from transformers.utils import logging as hf_logging

import textenv  # noqa: F401  (registers the envs)
from textenv import TextGenEnv, assets
from textenv.lm import load_causal_lm
from textenv.loading import from_pretrained, quiet_transformers, resolve_pretrained
from textenv.scorers import KLPenalty, RewardModel
from textenv.tokenization import load_tokenizer

EVIL_CODE = """
import pathlib
pathlib.Path({marker!r}).write_text("remote code ran")
from transformers import GPT2Config, GPT2LMHeadModel, GPT2ForSequenceClassification, PreTrainedTokenizerFast

class EvilConfig(GPT2Config):
    model_type = {model_type!r}

class EvilLM(GPT2LMHeadModel):
    config_class = EvilConfig

class EvilClassifier(GPT2ForSequenceClassification):
    config_class = EvilConfig

class EvilTokenizer(PreTrainedTokenizerFast):
    pass
"""


def plant(tmp_path: Path, asset: str, model_type: str) -> tuple[Path, Path]:
    """A copy of a built-in model folder whose config and tokenizer point at custom code (auto_map)."""
    folder = tmp_path / f"{asset}-{model_type}"
    shutil.copytree(assets.path(asset), folder)
    marker = tmp_path / f"RAN-{asset}-{model_type}"
    (folder / "evil.py").write_text(EVIL_CODE.format(marker=str(marker), model_type=model_type))
    config = json.loads((folder / "config.json").read_text())
    config["model_type"] = model_type
    config["auto_map"] = {
        "AutoConfig": "evil.EvilConfig",
        "AutoModelForCausalLM": "evil.EvilLM",
        "AutoModelForSequenceClassification": "evil.EvilClassifier",
    }
    (folder / "config.json").write_text(json.dumps(config))
    tok_config = json.loads((folder / "tokenizer_config.json").read_text())
    tok_config["auto_map"] = {"AutoTokenizer": ["evil.EvilTokenizer", "evil.EvilTokenizer"]}
    (folder / "tokenizer_config.json").write_text(json.dumps(tok_config))
    return folder, marker


@pytest.fixture
def no_prompt(monkeypatch):
    """Fails the test if anything asks on standard input (transformers' "run remote code?" prompt)."""

    def refuse(*args, **kwargs):
        raise AssertionError(f"something prompted on stdin: {args!r}")

    monkeypatch.setattr(builtins, "input", refuse)


def test_planted_code_runs_when_trusted(tmp_path):
    # Control: the planted folder really does run its code when remote code is trusted.
    folder, marker = plant(tmp_path, "tiny-lm", "gpt2")
    AutoConfig.from_pretrained(folder, trust_remote_code=True)
    assert marker.read_text() == "remote code ran"


# A known model_type loads the library's own class silently; an unknown one is refused with a clear error.
@pytest.mark.parametrize("model_type", ["gpt2", "evil-gpt"])
def test_no_entry_runs_remote_code(tmp_path, no_prompt, model_type, tokenizer):
    lm_dir, lm_marker = plant(tmp_path, "tiny-lm", model_type)
    rm_dir, rm_marker = plant(tmp_path, "tiny-sentiment", model_type)
    entries = {
        "tokenizer=": lambda: TextGenEnv(tokenizer=str(lm_dir), reward="length"),
        "load_tokenizer": lambda: load_tokenizer(str(lm_dir)),
        "load_causal_lm": lambda: load_causal_lm(str(lm_dir)),
        "reward_model spec": lambda: TextGenEnv(reward=f"reward_model:{rm_dir}"),
        "RewardModel tokenizer=": lambda: RewardModel(assets.path("tiny-sentiment"), tokenizer=str(rm_dir)),
        "kl spec": lambda: TextGenEnv(reward=f"kl:{lm_dir}:0.1"),
        "KLPenalty": lambda: KLPenalty(str(lm_dir)),
        "gym.make": lambda: gym.make("TextGen-v0", tokenizer=tokenizer, reward=f"kl:{lm_dir}:0.1"),
    }
    for entry, build in entries.items():
        try:
            build()
        except ValueError as err:
            # Refused: the message names the value and says how remote code would be allowed.
            assert model_type != "gpt2", (entry, err)
            assert str(lm_dir) in str(err) or str(rm_dir) in str(err), (entry, err)
            assert "trust_remote_code" in str(err), (entry, err)
        assert not lm_marker.exists() and not rm_marker.exists(), entry


def test_agents_policy_loading_runs_no_remote_code(tmp_path, no_prompt):
    from agents.common.policies import load_policy

    folder, marker = plant(tmp_path, "tiny-lm", "gpt2")
    load_policy(str(folder))
    assert not marker.exists()


@pytest.mark.parametrize(
    ("build", "wanted"),
    [
        (lambda: TextGenEnv(tokenizer="tiny_lm"), "tokenizer='tiny_lm'.*did you mean 'tiny-lm'"),
        (lambda: TextGenEnv(reward="kl:tiny_lm:0.1"), "reward spec 'kl:tiny_lm:0.1'.*did you mean 'tiny-lm'"),
        (
            lambda: TextGenEnv(reward="reward_model:tiny_sentiment"),
            "reward spec 'reward_model:tiny_sentiment'.*did you mean 'tiny-sentiment'",
        ),
        (lambda: KLPenalty("tinylm"), "KLPenalty reference='tinylm'.*did you mean 'tiny-lm'"),
        (lambda: load_causal_lm("tiny-lm2"), "model='tiny-lm2'.*did you mean 'tiny-lm'"),
    ],
)
def test_misspelled_builtin_names_are_answered_before_any_hub_access(monkeypatch, build, wanted):
    for cls in (AutoTokenizer, AutoModelForCausalLM):
        original = cls.from_pretrained

        def local_only(name, *args, _original=original, **kwargs):
            assert Path(name).exists(), f"from_pretrained({name!r}) would reach the hub"
            return _original(name, *args, **kwargs)

        monkeypatch.setattr(cls, "from_pretrained", local_only)
    with pytest.raises(ValueError, match=wanted):
        build()


def test_builtin_names_resolve_for_tokenizers_too():
    env = TextGenEnv(tokenizer="tiny-lm", reward="length")
    assert len(env.unwrapped.tokenizer) == len(AutoTokenizer.from_pretrained(assets.path("tiny-lm")))
    assert resolve_pretrained("tiny-sentiment", argument="x") == assets.path("tiny-sentiment")
    assert resolve_pretrained("gpt2", argument="x") == "gpt2"  # hub names pass unchanged


def test_failed_load_names_argument_and_value(tmp_path):
    missing = tmp_path / "no-model-here" / "sub"
    missing.mkdir(parents=True)  # an existing folder without a model
    with pytest.raises(ValueError, match=r"reward spec 'kl:.*sub:0\.1'.*KLPenalty reference='.*sub'"):
        TextGenEnv(reward=f"kl:{missing}:0.1")
    with pytest.raises(ValueError, match=r"tokenizer='.*sub'"):
        load_tokenizer(str(missing))
    with pytest.raises(TypeError, match="model must be a name"):
        from_pretrained(AutoTokenizer, 3, argument="model")  # type: ignore[arg-type]


def test_quiet_transformers_restores_user_settings():
    before = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_info()
    hf_logging.enable_progress_bar()
    try:
        with pytest.raises(RuntimeError), quiet_transformers():
            assert hf_logging.get_verbosity() == hf_logging.ERROR
            assert not hf_logging.is_progress_bar_enabled()
            raise RuntimeError("boom")
        assert hf_logging.get_verbosity() == hf_logging.INFO and hf_logging.is_progress_bar_enabled()
        hf_logging.disable_progress_bar()
        with quiet_transformers():
            pass
        assert not hf_logging.is_progress_bar_enabled()
    finally:
        hf_logging.set_verbosity(before[0])
        (hf_logging.enable_progress_bar if before[1] else hf_logging.disable_progress_bar)()


def test_project_loads_print_no_progress_bars_or_length_warnings(capfd):
    # Prompts far longer than the tokenizer's model_max_length (128) are truncated by the env on purpose.
    long_prompt = "The movie was " + "very " * 200
    capfd.readouterr()
    with pytest.warns(UserWarning, match="longer than max_prompt_tokens"):
        env = TextGenEnv(prompts=[long_prompt], reward="sentiment + kl:tiny-lm:0.05", max_prompt_tokens=8)
    env.reset(options={"prompt": long_prompt})
    out, err = capfd.readouterr()
    assert "Loading weights" not in out + err
    assert "Token indices sequence length" not in out + err
    assert torch.equal(env.core.input_ids[0, :8], env.core.prompt_ids[0])


@pytest.mark.parametrize("value_head", [False, True])
def test_misspelled_policy_name_is_answered_before_any_hub_access(value_head):
    from agents.common.policies import load_policy

    with pytest.raises(ValueError, match=r"policy='tiny_lm'.*did you mean 'tiny-lm'"):
        load_policy("tiny_lm", value_head=value_head)


@pytest.mark.parametrize("name", assets.PRETRAINED)
def test_every_builtin_model_resolves_to_its_folder(name):
    assert resolve_pretrained(name, argument="policy") == assets.path(name)
