"""One process of the 2-process data-parallel test (tests/agents/common/test_distributed.py), run by torchrun.

usage: python -m torch.distributed.run --standalone --nproc_per_node 2 distributed_worker.py OUT
"""

from __future__ import annotations

import json
import os
import pickle
import sys

import torch

sys.path.insert(
    0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
)

from tests.agents.algos import make_env
from tests.agents.tiny import T, tiny_lm, tiny_tokenizer

CONFIG = {
    "episodes_per_iteration": 8,
    "group_size": 4,
    "device": "cpu",
    "seed": 0,
    "learning_rate": 3e-3,
    "kl_controller": "adaptive",
    "kl_target": 0.5,
    "kl_horizon": 100.0,
    "init_kl_coef": 0.1,
    # fp32: the 2-process update must equal the 1-process one to float tolerance, which bf16 rounding
    # of two differently split batches would not give.
    "mixed_precision": "no",
}


def make_grpo(log_dir: str | None = None, **overrides):
    from agents import GRPO, GRPOConfig

    cfg = GRPOConfig(**{**CONFIG, "log_dir": log_dir, **overrides})
    # min_new_tokens = T: every episode has T tokens, so per-process token means average exactly.
    return GRPO(
        tiny_lm(len(tiny_tokenizer()), seed=1),
        make_env(kl=True),
        cfg,
        verbose=0,
        progress_bar=False,
        min_new_tokens=T,
    )


def main(out: str) -> None:
    torch.set_num_threads(1)
    run = os.path.join(out, "run")

    def keep_first_update(local: dict) -> None:
        # This process's first rollout and the weights after the first update (from the initial weights).
        if local["iteration"] == 1:
            rank = local["self"].dist.rank
            with open(os.path.join(out, f"batch{rank}.pkl"), "wb") as f:
                pickle.dump(local["batch"], f)
            weights = {k: v.detach().clone() for k, v in local["self"].lm.state_dict().items()}
            torch.save(weights, os.path.join(out, f"weights{rank}.pt"))

    # Train 2 iterations (global batch 16) and checkpoint, then resume to 3 iterations.
    agent = make_grpo(run)
    agent.learn(16 * 2, callback=keep_first_update)
    first = {
        "history": agent.history,
        "kl_coef": agent.kl_coefficient.value,
        "world": agent.dist.world_size,
        "device": str(agent.device),
    }
    resumed = make_grpo(run)
    resumed.learn(16 * 3, resume=True)
    second = {
        "history": resumed.history,
        "kl_coef": resumed.kl_coefficient.value,
        "coefs": [t.coef for t in resumed.kl_terms],
    }
    # The same 3 iterations without interruption: the resumed run must equal it.
    full = make_grpo(os.path.join(out, "full"))
    full.learn(16 * 3)
    with open(os.path.join(out, f"rank{agent.dist.rank}.json"), "w") as f:
        json.dump({"first": first, "second": second, "full": full.history}, f)


if __name__ == "__main__":
    main(sys.argv[1])
