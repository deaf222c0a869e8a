"""``python -m agents.train``: train a causal LM with PPO on a textenv task (the README's main job).

With no arguments it trains the built-in LM (``tiny-lm``) on ``TextGen-Sentiment-v0`` for a few minutes
on a CPU, showing a progress bar and one line per iteration, and writes to ``--out`` (default
``runs/ppo``)::

    progress.csv            one row of metrics per iteration (TensorBoard events too, if installed)
    learning_curve.png      mean episode reward (and KL to the reference) against episodes
    samples.txt             generations for the same prompts before and after training
    checkpoints/            atomic checkpoints; --resume continues from the newest
    final/                  the trained agent (PPO.load("runs/ppo/final"))

Examples:
    python -m agents.train --out runs/quickstart
    python -m agents.train --env TextGen-Keyword-v0 --episodes 2048 --lr 3e-4
    python -m agents.train --out runs/quickstart --episodes 1024 --resume
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence
from typing import Any

DEFAULT_ENV = "TextGen-Sentiment-v0"
DEFAULT_POLICY = "tiny-lm"
DEFAULT_EPISODES = 4096
SMALL_MODEL_PARAMETERS = 20_000_000

# CLI flag -> PPOConfig field, for the flags that map one to one.
_CONFIG_FLAGS = {
    "lr": "learning_rate",
    "episodes_per_iteration": "episodes_per_iteration",
    "minibatch_size": "minibatch_size",
    "ppo_epochs": "ppo_epochs",
    "grad_accum": "gradient_accumulation_steps",
    "num_envs": "num_envs",
    "gamma": "gamma",
    "gae_lambda": "gae_lambda",
    "clip_range": "clip_range",
    "vf_coef": "vf_coef",
    "ent_coef": "ent_coef",
    "target_kl": "target_approx_kl",
    "kl_controller": "kl_controller",
    "kl_coef": "init_kl_coef",
    "kl_target": "kl_target",
    "kl_horizon": "kl_horizon",
    "temperature": "temperature",
    "top_k": "top_k",
    "top_p": "top_p",
    "seed": "seed",
    "device": "device",
    "mixed_precision": "mixed_precision",
    "checkpoint_interval": "checkpoint_interval",
}


def build_parser() -> argparse.ArgumentParser:
    """The command-line parser (every PPOConfig flag defaults to the config's own default)."""
    p = argparse.ArgumentParser(
        prog="python -m agents.train",
        description="Train a causal LM with PPO on a textenv task; writes metrics, a learning curve, "
        "checkpoints and before/after samples to --out.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--env", default=DEFAULT_ENV, help="textenv id")
    p.add_argument("--policy", default=DEFAULT_POLICY, help="built-in asset name, local path or hub name")
    p.add_argument(
        "--episodes", type=int, default=DEFAULT_EPISODES, help="episodes to train (in all, with --resume)"
    )
    p.add_argument("--out", default="runs/ppo", help="output directory (log_dir)")
    p.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in --out")
    p.add_argument("--max-new-tokens", type=int, default=None, help="override the task's episode length")
    p.add_argument("--env-kwargs", type=json.loads, default=None, help="JSON dict of extra env arguments")
    p.add_argument("--num-samples", type=int, default=6, help="prompts generated before/after training")
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch CPU threads (default: 1 for models under 20M parameters, which run fastest on one "
        "thread and do not slow down when other processes share the cores; else torch's default)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--quiet", action="store_true", help="no per-iteration lines")
    group = p.add_argument_group("PPO hyper-parameters (default: PPOConfig's)")
    floats = {"lr", "gamma", "gae_lambda", "clip_range", "vf_coef", "ent_coef", "target_kl", "kl_coef"}
    floats |= {"kl_target", "kl_horizon", "temperature", "top_p"}
    for flag in _CONFIG_FLAGS:
        kind: Any = (
            float
            if flag in floats
            else (str if flag in ("kl_controller", "device", "mixed_precision") else int)
        )
        group.add_argument(f"--{flag.replace('_', '-')}", dest=flag, type=kind, default=None)
    group.add_argument("--gradient-checkpointing", action="store_true", default=None)
    add_lora_arguments(p)
    return p


def add_lora_arguments(p: argparse.ArgumentParser) -> None:
    """``--lora-r/--lora-alpha/--lora-target-modules/--export-merged`` (LoRA through PEFT)."""
    group = p.add_argument_group("LoRA (needs peft: pip install 'textenv[peft]')")
    group.add_argument(
        "--lora-r", type=int, default=None, help="train LoRA adapters of this rank instead of every weight"
    )
    group.add_argument("--lora-alpha", type=float, default=None, help="LoRA alpha (default: 2 * r)")
    group.add_argument(
        "--lora-target-modules",
        nargs="+",
        default=None,
        help="module names that get adapters (default: PEFT's choice for the architecture, e.g. c_attn)",
    )
    group.add_argument(
        "--export-merged",
        action="store_true",
        help="also write <out>/merged: the policy with its adapters merged, a plain transformers model",
    )


def make_peft_config(args: argparse.Namespace) -> Any:
    """The ``peft.LoraConfig`` of the ``--lora-*`` flags, or ``None`` without ``--lora-r``."""
    if getattr(args, "lora_r", None) is None:
        if getattr(args, "lora_alpha", None) is not None or getattr(args, "lora_target_modules", None):
            raise ValueError("--lora-alpha and --lora-target-modules need --lora-r")
        return None
    from agents.common.lora import lora_config

    return lora_config(args.lora_r, args.lora_alpha, args.lora_target_modules)


def make_config(args: argparse.Namespace) -> Any:
    """A ``PPOConfig`` from the parsed flags (unset flags keep the config's defaults)."""
    from agents.ppo import PPOConfig

    fields = {
        field: getattr(args, flag) for flag, field in _CONFIG_FLAGS.items() if getattr(args, flag) is not None
    }
    if args.gradient_checkpointing:
        fields["gradient_checkpointing"] = True
    fields.setdefault("checkpoint_interval", 5)
    return PPOConfig(log_dir=args.out, **fields)


def sample_prompts(ppo: Any, n: int) -> list[str]:
    """The first ``n`` distinct prompt texts of the env."""
    seen: list[str] = []
    for prompt in ppo.core.prompts:
        if prompt.text not in seen:
            seen.append(prompt.text)
        if len(seen) == n:
            break
    return seen


def write_samples(
    path: str, prompts: Sequence[str], before: Sequence[str], after: Sequence[str], summary: str
) -> str:
    """Writes and returns the before/after text (one block per prompt)."""
    lines = [summary, ""]
    for prompt, b, a in zip(prompts, before, after):
        lines += [f"prompt: {prompt}", f"  before: {b}", f"  after:  {a}", ""]
    text = "\n".join(lines)
    with open(path, "w") as f:
        f.write(text)
    return text


def _reward_threshold(env_id: str) -> float | None:
    import gymnasium as gym

    try:
        return gym.spec(env_id).reward_threshold
    except gym.error.Error:
        return None


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Trains as the flags say; returns a summary (first/last mean score, threshold, paths)."""
    import torch
    from transformers.utils import logging as hf_logging

    import textenv  # noqa: F401  (registers the env ids)
    from agents.common.logger import plot_learning_curve
    from agents.ppo import PPO

    if args.episodes < 1:
        raise ValueError(f"--episodes must be >= 1, got {args.episodes}")
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    hf_logging.disable_progress_bar()  # no per-file bars while the reward models and the policy load
    config = make_config(args)
    env_kwargs = dict(args.env_kwargs or {})
    if args.max_new_tokens is not None:
        env_kwargs["max_new_tokens"] = args.max_new_tokens
    os.makedirs(args.out, exist_ok=True)
    ppo = PPO(
        args.policy,
        args.env,
        config,
        env_kwargs=env_kwargs,
        verbose=0 if args.quiet else 1,
        progress_bar=not args.no_progress,
        peft_config=make_peft_config(args),
    )
    small = sum(p.numel() for p in ppo.policy.parameters()) < SMALL_MODEL_PARAMETERS
    if args.threads is None and ppo.device.type == "cpu" and small:
        torch.set_num_threads(1)
    prompts = sample_prompts(ppo, args.num_samples)
    before = ppo.generate(prompts, seed=config.seed)
    main_process = ppo.dist.is_main  # under accelerate launch / torchrun only process 0 prints and writes
    where = f"{ppo.device}" + (f" ({torch.get_num_threads()} threads)" if ppo.device.type == "cpu" else "")
    where += f" x {ppo.dist.world_size} processes" if ppo.dist.enabled else ""
    if main_process:
        print(
            f"training {args.policy} on {args.env} for {args.episodes} episodes on {where}; writing to {args.out}"
        )
        for prompt, text in zip(prompts, before):
            print(f"  before | {prompt} -> {text}")
    start = time.perf_counter()
    ppo.learn(args.episodes, resume=args.resume)
    elapsed = time.perf_counter() - start
    after = ppo.generate(prompts, seed=config.seed)
    final_dir = ppo.save(os.path.join(args.out, "final"))  # every process (a collective), one writer
    if not main_process:
        ppo.close()
        return {"out": args.out}
    if getattr(args, "export_merged", False):
        print(f"merged model: {ppo.save(os.path.join(args.out, 'merged'), merged=True)}")

    threshold = _reward_threshold(args.env)
    history = ppo.history
    first = history[0]["score"] if history else float("nan")
    last = sum(r["score"] for r in history[-3:]) / max(len(history[-3:]), 1)
    kl = [r["kl"] for r in history[-3:] if "kl" in r]
    curve = os.path.join(args.out, "learning_curve.png")
    if history:
        plot_learning_curve(history, curve, title=f"PPO {args.policy} on {args.env}", threshold=threshold)
    summary = (
        f"{args.env}: mean episode reward {first:.3f} (first iteration) -> {last:.3f} (last 3 iterations)"
        + (f", KL {sum(kl) / len(kl):.2f}" if kl else "")
        + (f", threshold {threshold:g}" if threshold is not None else "")
        + f"; {ppo.num_episodes} episodes in {elapsed:.0f} s"
    )
    text = write_samples(os.path.join(args.out, "samples.txt"), prompts, before, after, summary)
    print(text)
    print(f"learning curve: {curve}\nmetrics: {os.path.join(args.out, 'progress.csv')}\nagent: {final_dir}")
    ppo.close()
    return {
        "first_score": first,
        "last_score": last,
        "threshold": threshold,
        "seconds": elapsed,
        "out": args.out,
    }


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m agents.train`` and ``textenv-train``."""
    args = build_parser().parse_args(argv)
    try:
        run(args)
    except (ValueError, TypeError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
