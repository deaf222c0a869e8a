"""LoRA (PEFT) against full fine-tuning: trainable parameters, peak memory and iteration time.

Same fixture as the other benchmarks (``benchmarks/fixture.py``): a random-init GPT-2 of shape
tiny/small/gpt2, 8-token prompts, ``--new-tokens`` sampled tokens per episode (EOS is not masked, so that the sampling
distribution is the model's own and the first KL is exactly that of the weights; a random-init model
almost never samples EOS), a free reward and a live KL penalty. Full fine-tuning keeps the reference as a second copy of the model (the env's
``KLPenalty``); LoRA uses the policy itself with its adapters off (no copy). Each mode runs in its own
subprocess so that its peak memory is its own: peak RSS (``ru_maxrss``) on CPU, and
``torch.cuda.max_memory_allocated`` on CUDA. One warm-up iteration, then the median of ``--iters``.
LoRA's KL at the first iteration is printed: 0, the adapters start as the identity.

usage: python benchmarks/lora.py --size gpt2 --batch 8 --new-tokens 16 --iters 2 [--device cuda --bf16]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
import warnings

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks import fixture


def count_good(prompts: list[str], texts: list[str], refs: list, metas: list) -> list[float]:
    """The peers' reward: occurrences of "good" in the text (costs nothing)."""
    return [float(t.count("good")) for t in texts]


def build(args: argparse.Namespace, lora: bool):
    """The agent: full fine-tuning with a reference copy, or LoRA with the adapters-off reference."""
    import agents
    from textenv.scorers import Callable
    from textenv.scorers.kl import KLPenalty
    from textenv.vector import TextGenVectorEnv

    model = fixture.model(args.size)
    # LoRA: the env's reference is the policy module itself until the agent swaps in AdaptersOff(policy)
    # (so no second copy is ever built); full fine-tuning needs a frozen copy.
    reference = model if lora else fixture.model(args.size)
    env = TextGenVectorEnv(
        num_envs=args.batch,
        tokenizer=fixture.tokenizer(),
        prompts=fixture.prompts(args.batch),
        reward=Callable(count_good, batched=True, name="good") + KLPenalty(reference, coef=0.05),
        max_prompt_tokens=8,
        max_new_tokens=args.new_tokens,
        vocab_size=model.config.vocab_size,
        eos_token_id=fixture.EOS_ID,
        autoreset_mode="Disabled",
        observation_format="torch",
        device=args.device,
    )
    cls = {"ppo": agents.PPO, "grpo": agents.GRPO, "rloo": agents.RLOO, "reinforce": agents.REINFORCE}[
        args.algo
    ]
    extra = {"ppo_epochs": 1, "minibatch_size": args.batch} if args.algo == "ppo" else {}
    extra |= {"group_size": 2} if args.algo in ("grpo", "rloo") else {}
    config = cls.config_class(
        episodes_per_iteration=args.batch,
        learning_rate=1e-4 if lora else 1.41e-5,
        device=args.device,
        seed=0,
        mixed_precision="bf16" if args.bf16 else "no",
        **extra,
    )
    peft_config = None
    if lora:
        from agents.common.lora import lora_config

        peft_config = lora_config(args.lora_r, None, args.target_modules)
    return cls(
        model,
        env,
        config,
        verbose=0,
        progress_bar=False,
        peft_config=peft_config,
    )


def peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def measure(args: argparse.Namespace, lora: bool) -> dict[str, float]:
    """One mode, in this process: parameters, first-iteration KL, median iteration time, peak memory."""
    warnings.filterwarnings("ignore")
    torch.set_num_threads(args.threads)
    agent = build(args, lora)
    trainable = sum(p.numel() for p in agent.policy.parameters() if p.requires_grad)
    total = sum(p.numel() for p in agent.policy.parameters())
    times, first_kl = [], float("nan")
    for i in range(args.iters + 1):
        if agent.device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        metrics = agent.train_iteration()
        if agent.device.type == "cuda":
            torch.cuda.synchronize()
        if i == 0:
            first_kl = metrics["kl"]
        else:
            times.append(time.perf_counter() - start)
    return {
        "trainable": trainable,
        "total": total,
        "first_kl": first_kl,
        "seconds": statistics.median(times),
        "peak_mb": peak_memory_mb(agent.device),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=sorted(fixture.SIZES), default="gpt2")
    parser.add_argument("--algo", choices=["ppo", "grpo", "rloo", "reinforce"], default="ppo")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--new-tokens", type=int, default=16)
    parser.add_argument("--iters", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--bf16", action="store_true", help="mixed_precision='bf16'")
    parser.add_argument("--lora-r", type=int, default=16)
    parser.add_argument("--target-modules", nargs="+", default=["c_attn", "c_proj", "c_fc"])
    parser.add_argument("--only", choices=["full", "lora"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.only:
        print(json.dumps(measure(args, args.only == "lora")))
        return
    results = {}
    for mode in ("full", "lora"):
        cmd = [sys.executable, os.path.abspath(__file__), *sys.argv[1:], "--only", mode]
        out = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if out.returncode:
            raise SystemExit(f"{mode} run failed:\n{out.stderr[-3000:]}")
        results[mode] = json.loads(out.stdout.strip().splitlines()[-1])
    precision = "bf16" if args.bf16 else "fp32"
    print(
        f"{args.algo} size={args.size} batch={args.batch} new={args.new_tokens} iters={args.iters} "
        f"device={args.device} {precision} lora r={args.lora_r} on {' '.join(args.target_modules)}"
    )
    memory = "peak_rss_mb" if args.device == "cpu" else "peak_cuda_mb"
    print(f"{'mode':<6} {'trainable':>12} {'of total':>12} {memory:>12} {'s/iter':>8} {'first KL':>9}")
    for mode, r in results.items():
        print(
            f"{mode:<6} {r['trainable']:>12,} {r['total']:>12,} {r['peak_mb']:>12.0f} "
            f"{r['seconds']:>8.2f} {r['first_kl']:>9.2g}"
        )
    full, lora = results["full"], results["lora"]
    print(
        f"lora/full: trainable {lora['trainable'] / full['trainable']:.4f}, peak memory "
        f"{lora['peak_mb'] / full['peak_mb']:.2f}, time {lora['seconds'] / full['seconds']:.2f}"
    )


if __name__ == "__main__":
    main()
