"""Tests of PPO checkpoints (agents/common/checkpoint.py): round trips, exact resume, atomic writes."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from agents import PPO, CausalLMWithValueHead, PPOConfig
from agents.common import checkpoint as ckpt
from agents.common.on_policy import TIME_METRICS
from tests.agents.tiny import PROMPTS, P, T, good_fraction, tiny_lm, tiny_tokenizer
from textenv.scorers import Callable
from textenv.scorers.kl import KLPenalty
from textenv.vector import TextGenVectorEnv


def make_env(num_envs: int = 4):
    """A tiny task with a live KL penalty, so the KL controller's state matters on resume."""
    tok = tiny_tokenizer()
    reward = Callable(good_fraction) + KLPenalty(tiny_lm(len(tok), seed=0), coef=0.1)
    return TextGenVectorEnv(
        num_envs=num_envs,
        tokenizer=tok,
        prompts=PROMPTS,
        reward=reward,
        max_prompt_tokens=P,
        max_new_tokens=T,
        eos_token_id=[1, 3],
        autoreset_mode="Disabled",
        observation_format="torch",
    )


def make_ppo(log_dir=None, **config) -> PPO:
    cfg = PPOConfig(
        **{
            "episodes_per_iteration": 8,
            "minibatch_size": 4,
            "device": "cpu",
            "seed": 0,
            "learning_rate": 3e-3,
            "kl_controller": "adaptive",
            "kl_target": 0.5,
            "kl_horizon": 20.0,
            "log_dir": None if log_dir is None else str(log_dir),
            **config,
        }
    )
    return PPO(tiny_lm(len(tiny_tokenizer()), seed=1), make_env(), cfg, verbose=0, progress_bar=False)


def comparable(rows: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k not in TIME_METRICS} for r in rows]


def test_save_load_round_trip_gives_identical_outputs(tmp_path):
    ppo = make_ppo()
    ppo.train_iteration()
    path = ppo.save(tmp_path / "agent")
    assert ckpt.is_checkpoint(path)
    assert os.path.isfile(os.path.join(path, "model", "model.safetensors"))
    assert os.path.isfile(os.path.join(path, "model", "value_head.safetensors"))
    # The tensor state loads without unsafe pickle.
    state = torch.load(os.path.join(path, ckpt.STATE_PT), weights_only=True)
    assert "optimizer" in state and "rng" in state

    loaded = PPO.load(path, env=make_env(), verbose=0, progress_bar=False)
    assert loaded.iteration == 1 and loaded.num_episodes == 8
    assert loaded.kl_coefficient.value == ppo.kl_coefficient.value
    assert loaded.kl_terms[0].coef == ppo.kl_terms[0].coef
    assert loaded.config == ppo.config
    batch = ppo._last_batch
    for agent in (ppo, loaded):
        agent.policy.eval()
    with torch.no_grad():
        a = ppo.policy.model(batch.input_ids, batch.attention_mask)
        b = loaded.policy.model(batch.input_ids, batch.attention_mask)
    assert torch.equal(a.logits, b.logits) and torch.equal(a.values, b.values)
    assert ppo.generate(PROMPTS, seed=5) == loaded.generate(PROMPTS, seed=5)
    # Optimizer state and the continued training match exactly.
    m1, m2 = ppo.train_iteration(), loaded.train_iteration()
    assert comparable([m1]) == comparable([m2])


def test_resumed_run_matches_uninterrupted_run(tmp_path):
    # The value head's own learning rate is a second optimizer group, restored with its state.
    full = make_ppo(tmp_path / "full", checkpoint_interval=1, value_learning_rate=1e-2)
    full.learn(8 * 4)
    # Interrupted after 2 iterations (the final checkpoint of learn), then resumed by a new process.
    part = make_ppo(tmp_path / "part", checkpoint_interval=0, value_learning_rate=1e-2)
    part.learn(8 * 2)
    assert ckpt.latest_checkpoint(tmp_path / "part").endswith("checkpoint-000002")
    resumed = make_ppo(tmp_path / "part", checkpoint_interval=0, value_learning_rate=1e-2)
    resumed.learn(8 * 4, resume=True)
    assert resumed.iteration == 4 and resumed.num_episodes == 32
    assert comparable(resumed.history) == comparable(full.history)
    for pa, pb in zip(full.policy.parameters(), resumed.policy.parameters()):
        assert torch.equal(pa, pb)
    # The CSV holds every iteration once, in order.
    from agents.common.logger import read_csv

    rows = read_csv(tmp_path / "part" / "progress.csv")
    assert [r["iteration"] for r in rows] == [1, 2, 3, 4]
    # Periodic checkpoints keep the 2 newest.
    assert [it for it, _ in ckpt.list_checkpoints(tmp_path / "full")] == [3, 4]
    assert os.path.isfile(tmp_path / "full" / "learning_curve.png")


def test_load_then_continue_equals_uninterrupted(tmp_path):
    full = make_ppo()
    for _ in range(3):
        full.train_iteration()
    part = make_ppo()
    part.train_iteration()
    part.save(tmp_path / "c")
    resumed = PPO.load(tmp_path / "c", env=make_env(), verbose=0, progress_bar=False)
    resumed.learn(16)
    assert comparable(resumed.history) == comparable(full.history)


def test_failed_write_keeps_previous_checkpoint(tmp_path, monkeypatch):
    ppo = make_ppo(tmp_path)
    ppo.train_iteration()
    first = ppo.save_checkpoint()
    ppo.train_iteration()
    target = tmp_path / "agent"
    ppo.save(target)
    before = {n: (target / "model" / n).read_bytes() for n in os.listdir(target / "model")}

    original = CausalLMWithValueHead.save_pretrained

    def crash_midway(self, directory, **kwargs):
        original(self, directory, **kwargs)  # weights written ...
        raise OSError("disk full")  # ... then the process "dies" before the rest

    monkeypatch.setattr(CausalLMWithValueHead, "save_pretrained", crash_midway)
    ppo.train_iteration()
    with pytest.raises(OSError, match="disk full"):
        ppo.save_checkpoint()
    with pytest.raises(OSError, match="disk full"):
        ppo.save(target)
    # The previous checkpoints are intact and still the newest; no temporary directory is left over.
    assert ckpt.latest_checkpoint(tmp_path) == first
    after = {n: (target / "model" / n).read_bytes() for n in os.listdir(target / "model")}
    assert after == before
    leftovers = [
        n for n in os.listdir(tmp_path / "checkpoints") + os.listdir(tmp_path) if n.startswith(".tmp-")
    ]
    assert leftovers == []
    monkeypatch.undo()
    assert PPO.load(first, env=make_env(), verbose=0).iteration == 1
    assert PPO.load(target, env=make_env(), verbose=0).iteration == 2


def test_interrupted_replace_and_stale_temp_dirs_are_recovered(tmp_path):
    ppo = make_ppo(tmp_path)
    ppo.train_iteration()
    path = ppo.save_checkpoint()
    # A crash between the two renames of a replace leaves only "<name>.old"; a killed write leaves ".tmp-*".
    os.rename(path, path + ".old")
    os.makedirs(os.path.join(os.path.dirname(path), ".tmp-checkpoint-000002-x", "model"))
    assert ckpt.latest_checkpoint(tmp_path) == path + ".old"
    assert ckpt.resolve_checkpoint(path) == path + ".old"
    resumed = make_ppo(tmp_path)
    resumed.learn(16, resume=True)
    assert resumed.iteration == 2
    names = sorted(os.listdir(tmp_path / "checkpoints"))
    assert names == ["checkpoint-000001.old", "checkpoint-000002"]


def test_checkpoint_holds_everything_to_resume(tmp_path):
    ppo = make_ppo()
    ppo.train_iteration()
    _, state, tensors = ckpt.read_checkpoint(ppo.save(tmp_path / "c"))
    for key in ("iteration", "num_episodes", "config", "kl_controller", "env_rng", "rng", "history"):
        assert key in state, key
    assert state["kl_controller"]["type"] == "adaptive"
    assert len(state["env_rng"]) == 4  # one prompt generator per env row
    assert set(tensors["rng"]) >= {"torch", "generator", "shuffle_generator"}
    assert tensors["optimizer"]["state"]
    with pytest.raises(FileNotFoundError):
        ckpt.read_checkpoint(tmp_path / "nothing")
    assert np.isfinite(state["history"][0]["score"])


# --- a corrupt checkpoint never loads -------------------------------------------------------------------
@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    ppo = make_ppo()
    ppo.train_iteration()
    return ppo.save(tmp_path_factory.mktemp("ckpt") / "good")


def corrupt_copy(saved, tmp_path, edit_json=None, edit_pt=None, remove=None):
    import json
    import shutil

    path = tmp_path / "bad"
    shutil.copytree(saved, path)
    if edit_json is not None:
        state = json.loads((path / ckpt.STATE_JSON).read_text())
        edit_json(state)
        (path / ckpt.STATE_JSON).write_text(json.dumps(state))
    if edit_pt is not None:
        tensors = torch.load(path / ckpt.STATE_PT, weights_only=True)
        edit_pt(tensors)
        torch.save(tensors, path / ckpt.STATE_PT)
    if remove is not None:
        os.remove(path / remove)
    return path


def test_missing_value_head_is_an_error_naming_the_file(saved, tmp_path):
    path = corrupt_copy(saved, tmp_path, remove="model/value_head.safetensors")
    with pytest.raises(FileNotFoundError, match=r"bad/model.*has no value_head.safetensors"):
        PPO.load(path, env=make_env(), verbose=0)
    path = corrupt_copy(saved, tmp_path / "w", remove="model/model.safetensors")
    with pytest.raises(FileNotFoundError, match=r"weights '.*model/model.safetensors' are missing"):
        ckpt.read_checkpoint(path)


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (lambda s: s.pop("iteration"), r"trainer_state.json' has no field 'iteration'"),
        (lambda s: s.pop("kl_controller"), r"trainer_state.json' has no field 'kl_controller'"),
        (lambda s: s.update(num_episodes="8"), r"field 'num_episodes' is str '8', expected int"),
        (lambda s: s.update(num_episodes=-8), r"field 'num_episodes' is -8, expected >= 0"),
        (lambda s: s.update(iteration=True), r"field 'iteration' is bool True, expected int"),
        (lambda s: s.update(config=[1]), r"field 'config' is list \[1\], expected dict"),
        (lambda s: s.update(env_rng="x"), r"field 'env_rng' is str 'x', expected list or null"),
        (lambda s: s.update(kl_coefs=["0.1"]), r"field 'kl_coefs' is \['0.1'\], expected a list of numbers"),
        (
            lambda s: s.update(rng={"python": 1}),
            r"field 'rng' must hold a 'python' list and a 'numpy' object",
        ),
        (lambda s: s.update(format_version=99), r"format_version=99, expected 1"),
    ],
)
def test_bad_trainer_state_json_names_file_and_field(saved, tmp_path, edit, match):
    path = corrupt_copy(saved, tmp_path, edit_json=edit)
    with pytest.raises(ValueError, match=match):
        PPO.load(path, env=make_env(), verbose=0)


def test_garbled_json_names_the_file(saved, tmp_path):
    path = corrupt_copy(saved, tmp_path)
    (path / ckpt.STATE_JSON).write_text('{"iteration": 1, "num_epi')
    with pytest.raises(ValueError, match=r"checkpoint file '.*bad/trainer_state.json' is not valid JSON"):
        ckpt.read_checkpoint(path)


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (
            lambda t: t.pop("optimizer"),
            r"trainer_state.pt': field 'optimizer' must be an optimizer state dict",
        ),
        (lambda t: t["rng"].pop("shuffle_generator"), r"field 'rng.shuffle_generator' must be a tensor"),
        (lambda t: t.pop("rng"), r"trainer_state.pt' has no field 'rng'"),
    ],
)
def test_bad_trainer_state_pt_names_file_and_field(saved, tmp_path, edit, match):
    path = corrupt_copy(saved, tmp_path, edit_pt=edit)
    with pytest.raises(ValueError, match=match):
        PPO.load(path, env=make_env(), verbose=0)


class Payload:
    """An arbitrary object: unsafe pickle would construct it; weights_only loading refuses it."""


def test_trainer_state_pt_is_never_unpickled_unsafely(saved, tmp_path):
    path = corrupt_copy(saved, tmp_path)
    torch.save({"optimizer": Payload(), "rng": {}}, path / ckpt.STATE_PT)
    with pytest.raises(ValueError, match=r"trainer_state.pt' cannot be read as tensors only"):
        ckpt.read_checkpoint(path)
    (path / ckpt.STATE_PT).write_bytes(b"garbage")
    with pytest.raises(ValueError, match=r"trainer_state.pt' cannot be read as tensors only"):
        ckpt.read_checkpoint(path)


def test_save_onto_a_regular_file_refuses_before_touching_anything(tmp_path):
    ppo = make_ppo()
    target = tmp_path / "notes.txt"
    target.write_text("keep me")
    for path in (target, target / "sub"):
        with pytest.raises(FileExistsError, match=r"'.*notes.txt' is an existing file, not a directory"):
            ppo.save(path)
    assert target.read_text() == "keep me"
    assert sorted(os.listdir(tmp_path)) == ["notes.txt"]
