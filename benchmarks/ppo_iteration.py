"""Time of one full PPO iteration (rollout + update) of ``agents.PPO``, comparable to TRL's classic PPOTrainer.

Same models, tokenizer and prompts as the peers (``benchmarks/fixture.py``): a random-init GPT-2 of shape
tiny/small/gpt2, 8-token prompts, exactly N sampled tokens per episode (EOS masked), a reward that
costs nothing, 4 PPO epochs over the batch with minibatch = batch (TRL: ``trl_ppo.py`` in
``shared/peers``). TRL's PPOTrainer always runs a reference model, so by default the env carries a KL
penalty (coefficient 0.05) against a frozen copy of the initial model, like for like; ``--no-kl`` drops it.
One warm-up iteration, then the best and median of ``--iters``.

usage: python benchmarks/ppo_iteration.py --size small --batch 16 --new-tokens 32 [--no-kl] [--bf16] [--device cpu]
       [--no-kl-after-rollout]
prints ``seconds_per_iteration`` (best), the phase split, and ``samples_per_s X`` as its last line.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import warnings

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks import fixture
from benchmarks.algo_iteration import CLOCKS, time_iterations


def count_good(prompts: list[str], texts: list[str], refs: list, metas: list) -> list[float]:
    """The peers' reward: occurrences of "good" in the text (costs nothing)."""
    return [float(t.count("good")) for t in texts]


def build(
    size: str,
    batch: int,
    new_tokens: int,
    device: str,
    kl: bool,
    bf16: bool = False,
    kl_after_rollout: bool = True,
):
    """The agent on a fixture env of ``batch`` rows."""
    from agents import PPO, PPOConfig
    from textenv.scorers import Callable
    from textenv.vector import TextGenVectorEnv

    tok = fixture.tokenizer()
    model = fixture.model(size)
    reward = Callable(count_good, batched=True, name="good")
    if kl:
        from textenv.scorers.kl import KLPenalty

        reward = reward + KLPenalty(fixture.model(size), coef=0.05)
    env = TextGenVectorEnv(
        num_envs=batch,
        tokenizer=tok,
        prompts=fixture.prompts(batch),
        reward=reward,
        max_prompt_tokens=8,
        max_new_tokens=new_tokens,
        vocab_size=model.config.vocab_size,
        eos_token_id=fixture.EOS_ID,
        autoreset_mode="Disabled",
        observation_format="torch",
        device=device,
    )
    config = PPOConfig(
        episodes_per_iteration=batch,
        minibatch_size=batch,
        ppo_epochs=4,
        learning_rate=1.41e-5,
        device=device,
        seed=0,
        init_kl_coef=0.05,
        mixed_precision="bf16" if bf16 else "no",
        kl_after_rollout=kl_after_rollout,
    )
    return PPO(model, env, config, min_new_tokens=new_tokens, verbose=0, progress_bar=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=sorted(fixture.SIZES), default="small")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--iters", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--clock", choices=sorted(CLOCKS), default="wall", help="cpu: this process's CPU time"
    )
    parser.add_argument(
        "--kl",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="KL penalty to a frozen reference copy, as TRL always has one (--no-kl: none)",
    )
    parser.add_argument(
        "--kl-after-rollout",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="score the KL after the rollout, one batched reference forward (--no-kl-after-rollout: the "
        "env steps the reference once per token)",
    )
    parser.add_argument(
        "--bf16", action="store_true", help="mixed_precision='bf16' (CUDA, or a CPU with native bf16)"
    )
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    torch.set_num_threads(args.threads)
    ppo = build(
        args.size, args.batch, args.new_tokens, args.device, args.kl, args.bf16, args.kl_after_rollout
    )
    times, phases = time_iterations(ppo, args.iters, args.new_tokens, args.clock)
    best = min(times)
    rollout, update = phases[times.index(best)]
    precision = "bf16" if args.bf16 else "fp32"
    print(
        f"size={args.size} batch={args.batch} new={args.new_tokens} iters={args.iters} device={ppo.device} "
        f"{precision} kl={args.kl} kl_after_rollout={args.kl_after_rollout} threads={torch.get_num_threads()} clock={args.clock}"
    )
    print(f"seconds_per_iteration {best:.3f} (median {statistics.median(times):.3f})")
    print(f"rollout_s {rollout:.3f} update_s {update:.3f}")
    print(f"samples_per_s {args.batch / best:.2f}")


if __name__ == "__main__":
    main()
