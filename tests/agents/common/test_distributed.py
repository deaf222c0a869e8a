"""Data-parallel training on Accelerate (agents/common/distributed.py): 2 CPU processes (gloo) under torchrun
train, checkpoint and resume; their update equals a 1-process update over the same global batch; every
process keeps the same KL coefficient; only the main process writes files."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys

import pytest
import torch

from agents.common import checkpoint as ckpt
from agents.common.buffers import RolloutBatch
from agents.common.distributed import Distributed, launched_world_size
from agents.common.logger import read_csv
from agents.common.on_policy import TIME_METRICS

pytest.importorskip("accelerate")

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
WORKER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "distributed_worker.py")


def comparable(history):
    return [{k: v for k, v in row.items() if k not in TIME_METRICS} for row in history]


def test_single_process_is_a_no_op(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    dist = Distributed("cpu")
    assert launched_world_size() == 1 and dist.accelerator is None and not dist.enabled
    assert dist.rank == 0 and dist.world_size == 1 and dist.is_main and dist.device is None
    assert dist.mean({"a": 1.5}) == {"a": 1.5} and dist.gather_objects(3) == [3]


@pytest.mark.subprocess
def test_two_processes_train_checkpoint_resume_and_match_one_process(tmp_path):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    cmd += [WORKER, str(tmp_path)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore", "PYTHONPATH": ROOT}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    r0, r1 = (json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1))
    assert r0["first"]["world"] == 2 and r0["first"]["device"] == "cpu"
    # Metrics are reduced across processes: both log the same rows; the global batch is 2 x 8 episodes.
    h0, h1 = r0["first"]["history"], r1["first"]["history"]
    assert comparable(h0) == comparable(h1) and [r["episodes"] for r in h0] == [16, 32]
    # The adaptive controller saw the global KL: the same coefficient on both ranks (and it moved).
    assert r0["first"]["kl_coef"] == r1["first"]["kl_coef"] != 0.1
    assert r0["second"]["coefs"] == r1["second"]["coefs"] == [r0["second"]["kl_coef"]]
    # One checkpoint writer; the checkpoint carries both processes' random states; resume continues.
    run = tmp_path / "run"
    _, state, tensors = ckpt.read_checkpoint(run)
    assert state["world_size"] == 2 and len(state["processes"]) == len(tensors["processes"]) == 2
    assert state["processes"][0]["env_rng"] != state["processes"][1]["env_rng"]  # own seed streams
    assert [r["iteration"] for r in read_csv(run / "progress.csv")] == [1, 2, 3]
    assert comparable(r0["second"]["history"][:2]) == comparable(h0)
    assert len(r0["second"]["history"]) == 3
    assert comparable(r0["second"]["history"]) == comparable(r0["full"])  # exact resume
    assert not any(name.startswith(".tmp") for name in os.listdir(run / "checkpoints"))
    # The 2-process update equals one process's update over both rollouts (the same global batch).
    sys.path.insert(0, os.path.dirname(WORKER))
    from distributed_worker import make_grpo

    w0, w1 = (torch.load(tmp_path / f"weights{r}.pt") for r in (0, 1))
    with open(tmp_path / "batch0.pkl", "rb") as f0, open(tmp_path / "batch1.pkl", "rb") as f1:
        batches = [pickle.load(f0), pickle.load(f1)]  # written by this test's own worker
    assert not torch.equal(batches[0].tokens, batches[1].tokens)
    one = make_grpo(episodes_per_iteration=16)
    initial = {k: v.clone() for k, v in one.lm.state_dict().items()}
    one.train(RolloutBatch.concat(batches))
    for k, v in one.lm.state_dict().items():
        assert torch.equal(w0[k], w1[k]), k  # DDP keeps the processes' weights identical
        torch.testing.assert_close(w0[k], v, atol=1e-5, rtol=1e-4)  # Adam step: 3e-3
    assert any(not torch.equal(initial[k], w0[k]) for k in initial)
