"""Time of one iteration (rollout + update) of an :mod:`agents` algorithm, comparable to TRL 1.16's trainers.

Same models, tokenizer and prompts as the peers (``benchmarks/fixture.py``, ``shared/peers/common.py``): a
random-init GPT-2 of shape tiny/small/gpt2, exactly N sampled tokens per episode (EOS masked), a reward
that counts "good" (costs nothing), one update per rollout (``num_iterations=1``, one minibatch: the
on-policy path, as TRL's ``num_iterations=1``). ``--group`` completions per prompt for GRPO and RLOO;
``--beta`` adds the k3 KL to a frozen reference in the loss (GRPO/RLOO/REINFORCE, as TRL's ``beta``) or, for
PPO, the env's KL penalty against a reference. One warm-up iteration, then the best and median of ``--iters``.

Compare with ``shared/peers/trl_grpo.py SIZE BATCH NEW ITERS [--algo rloo] [--group G] [--beta B]``.

usage: python benchmarks/algo_iteration.py --algo grpo --size small --batch 16 --new-tokens 32 --group 4 \\
    [--beta B] [--bf16]
prints ``seconds_per_iteration`` (best), the phase split, and ``samples_per_s X`` as its last line.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import warnings
from typing import Any

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from agents import registry
from benchmarks import fixture

ALGOS = registry.AGENTS
"""``--algo``: the :mod:`agents` algorithms of :mod:`agents.registry`."""


def count_good(prompts: list[str], texts: list[str], refs: list, metas: list) -> list[float]:
    """The peers' reward: occurrences of "good" in the text (costs nothing)."""
    return [float(t.count("good")) for t in texts]


def build(args: argparse.Namespace) -> Any:
    """The agent of ``args.algo`` on a fixture env of ``args.batch`` rows."""
    from textenv.scorers import Callable
    from textenv.scorers.kl import KLPenalty
    from textenv.vector import TextGenVectorEnv

    tok = fixture.tokenizer()
    model = fixture.model(args.size)
    reward: Any = Callable(count_good, batched=True, name="good")
    if args.algo == "ppo" and args.beta > 0:
        reward = reward + KLPenalty(fixture.model(args.size), coef=args.beta)
    env = TextGenVectorEnv(
        num_envs=args.batch,
        tokenizer=tok,
        prompts=fixture.prompts(args.batch),
        reward=reward,
        max_prompt_tokens=8,
        max_new_tokens=args.new_tokens,
        vocab_size=model.config.vocab_size,
        eos_token_id=fixture.EOS_ID,
        autoreset_mode="Disabled",
        observation_format="torch",
        device=args.device,
    )
    common: dict[str, Any] = {
        "episodes_per_iteration": args.batch,
        "minibatch_size": args.batch,
        "learning_rate": 1e-6,
        "device": args.device,
        "seed": 0,
        "mixed_precision": "bf16" if args.bf16 else "no",
    }
    algo = registry.get(args.algo)
    cls = algo.load()
    # One update per rollout: PPO's epochs, the critic-free methods' passes (TRL's num_iterations=1).
    if args.algo == "ppo":
        extra: dict[str, Any] = {"ppo_epochs": 1, "init_kl_coef": args.beta}
    else:
        extra = {"num_iterations": 1, "beta": args.beta}
        if "group_size" in algo.config_fields():
            extra["group_size"] = args.group
    config = algo.make_config(**common, **extra)
    return cls(model, env, config, min_new_tokens=args.new_tokens, verbose=0, progress_bar=False)


CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}
"""``--clock``: wall time, or this process's CPU time (with 1 thread, barely disturbed by other jobs)."""


def time_iterations(
    agent: Any, iters: int, new_tokens: int, clock: str = "wall"
) -> tuple[list[float], list[tuple[float, float]]]:
    """Runs one warm-up and ``iters`` timed iterations of ``agent``, timed with ``CLOCKS[clock]``.

    Returns:
        ``(seconds of each timed iteration, (rollout_s, update_s) of each)``.

    Raises:
        RuntimeError: An episode did not have exactly ``new_tokens`` tokens.
    """
    now = CLOCKS[clock]
    times, phases = [], []
    for i in range(iters + 1):
        if agent.device.type == "cuda":
            torch.cuda.synchronize()
        start = now()
        metrics = agent.train_iteration()
        if agent.device.type == "cuda":
            torch.cuda.synchronize()
        elapsed = now() - start
        if i:  # the first iteration warms up
            times.append(elapsed)
            phases.append((metrics["rollout_time"], metrics["update_time"]))
        if metrics["episode_length"] != new_tokens:
            raise RuntimeError(f"episodes had {metrics['episode_length']} tokens, expected {new_tokens}")
    return times, phases


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--algo", choices=ALGOS, default="grpo")
    parser.add_argument("--size", choices=sorted(fixture.SIZES), default="small")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--group", type=int, default=4, help="completions per prompt (GRPO, RLOO)")
    parser.add_argument("--beta", type=float, default=0.0, help="KL weight to a frozen reference (0: none)")
    parser.add_argument("--iters", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--clock", choices=sorted(CLOCKS), default="wall", help="cpu: this process's CPU time"
    )
    parser.add_argument(
        "--bf16", action="store_true", help="mixed_precision='bf16' (CUDA, or a CPU with native bf16)"
    )
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    torch.set_num_threads(args.threads)
    agent = build(args)
    times, phases = time_iterations(agent, args.iters, args.new_tokens, args.clock)
    best = min(times)
    rollout, update = phases[times.index(best)]
    precision = "bf16" if args.bf16 else "fp32"
    print(
        f"algo={args.algo} size={args.size} batch={args.batch} new={args.new_tokens} group={args.group} "
        f"beta={args.beta} iters={args.iters} device={agent.device} {precision} threads={torch.get_num_threads()} clock={args.clock}"
    )
    print(f"seconds_per_iteration {best:.3f} (median {statistics.median(times):.3f})")
    print(f"rollout_s {rollout:.3f} update_s {update:.3f}")
    print(f"tokens_per_s {args.batch * args.new_tokens / best:.1f}")
    print(f"samples_per_s {args.batch / best:.2f}")


if __name__ == "__main__":
    main()
