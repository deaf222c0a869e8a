"""``python -m agents.train``: train a causal LM with PPO, GRPO, RLOO, REINFORCE++ or SCST on a textenv task.

With no arguments it trains the built-in LM (``tiny-lm``) with PPO on ``TextGen-Sentiment-v0`` for a few
minutes on a CPU, showing a progress bar and one line per iteration, and writes to ``--out`` (default
``runs/<algo>``)::

    progress.csv            one row of metrics per iteration (TensorBoard events too, if installed)
    learning_curve.png      mean episode reward (and KL to the reference) against episodes
    samples.txt             generations for the same prompts before and after training
    checkpoints/            atomic checkpoints; --resume continues from the newest
    final/                  the trained agent (PPO.load("runs/ppo/final"), GRPO.load(...), ...)

``--algo`` picks the algorithm; every field of its config dataclass is a flag (``--group-size``,
``--loss-type``, ...), with the field's docstring as its help: ``python -m agents.train --algo grpo --help``.

Examples:
    python -m agents.train --out runs/quickstart
    python -m agents.train --algo grpo --group-size 8 --loss-type dapo --clip-range-high 0.28
    python -m agents.train --env TextGen-Keyword-v0 --episodes 2048 --lr 3e-4
    python -m agents.train --out runs/quickstart --episodes 1024 --resume
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time
from collections.abc import Sequence
from typing import Any

from agents import registry
from agents.cli import env_id, float_above, int_at_least, json_object, output_dir
from agents.common.config import field_docs

DEFAULT_ENV = "TextGen-Sentiment-v0"
DEFAULT_POLICY = "tiny-lm"
DEFAULT_EPISODES = 4096
SMALL_MODEL_PARAMETERS = 20_000_000

FLAG_ALIASES = {
    "learning_rate": ["--lr"],
    "gradient_accumulation_steps": ["--grad-accum"],
    "target_approx_kl": ["--target-kl"],
    "init_kl_coef": ["--kl-coef"],
}
"""Short spellings kept for the flags of earlier versions (the long flag is the field name)."""

CLI_DEFAULTS = {"checkpoint_interval": 5}
"""Config fields whose command-line default differs from the config's: ``--resume`` needs periodic
checkpoints."""


def algorithm(name: str) -> tuple[type, type, dict[str, Any]]:
    """The class, config class and preset fields of an ``--algo`` name (from :mod:`agents.registry`)."""
    algo = registry.get(name)
    return algo.load(), algo.config_class, dict(algo.presets)


def config_flags(name: str) -> list[str]:
    """The flags of a config field: ``--field-name`` and its short spellings (:data:`FLAG_ALIASES`)."""
    return [f"--{name.replace('_', '-')}", *FLAG_ALIASES.get(name, [])]


def _field_type(annotation: str) -> tuple[Any, bool]:
    """``(argparse type, is bool)`` of a config field annotation such as ``"float | None"``."""
    optional = annotation.endswith("| None")
    base = {"float": float, "int": int, "str": str, "bool": bool}[annotation.removesuffix("| None").strip()]
    if base is bool:
        return None, True
    if not optional:
        return base, False

    def parse(text: str) -> Any:
        return None if text.lower() == "none" else base(text)

    parse.__name__ = base.__name__
    return parse, False


def add_config_flags(group: argparse._ArgumentGroup, config_cls: type, skip: Sequence[str] = ()) -> None:
    """One flag per field of ``config_cls`` (``--field-name``), typed from its annotation, with the
    field's docstring as help and its default (``None`` where the type allows: write ``none``)."""
    docs = field_docs(config_cls)
    for f in dataclasses.fields(config_cls):
        if f.name in skip or f.name == "log_dir":
            continue
        kind, is_bool = _field_type(str(f.type))
        default = CLI_DEFAULTS.get(f.name, f.default)
        flags = config_flags(f.name)
        help_text = docs.get(f.name, "").replace("%", "%%")
        if f.name in CLI_DEFAULTS:
            help_text += f" (command-line default {default}; the config's is {f.default})"
        if is_bool:
            group.add_argument(
                *flags, dest=f.name, action=argparse.BooleanOptionalAction, default=default, help=help_text
            )
        else:
            group.add_argument(
                *flags, dest=f.name, type=kind, default=default, help=help_text, metavar=f.name.upper()
            )


def build_parser(algo: str = "ppo") -> argparse.ArgumentParser:
    """The command-line parser of ``--algo algo``: the run's flags, then one flag per config field."""
    _, config_cls, presets = algorithm(algo)
    p = argparse.ArgumentParser(
        prog="python -m agents.train",
        description="Train a causal LM with an on-policy RL algorithm on a textenv task; writes metrics, a "
        "learning curve, checkpoints and before/after samples to --out. Flags after the run's own are the "
        "chosen algorithm's config fields (python -m agents.train --algo grpo --help lists GRPO's).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--algo", choices=registry.AGENTS, default="ppo", help="the algorithm")
    p.add_argument("--env", type=env_id, default=DEFAULT_ENV, help="textenv id")
    p.add_argument("--policy", default=DEFAULT_POLICY, help="built-in asset name, local path or hub name")
    p.add_argument(
        "--episodes",
        type=int_at_least(1),
        default=DEFAULT_EPISODES,
        help="episodes to train (in all, with --resume)",
    )
    p.add_argument(
        "--out", type=output_dir, default=None, help="output directory (log_dir); default runs/<algo>"
    )
    p.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in --out")
    p.add_argument(
        "--max-new-tokens", type=int_at_least(1), default=None, help="override the task's episode length"
    )
    p.add_argument("--env-kwargs", type=json_object, default=None, help="JSON object of extra env arguments")
    p.add_argument(
        "--num-samples",
        type=int_at_least(0),
        default=6,
        help="prompts generated before/after training (0: none)",
    )
    p.add_argument(
        "--threads",
        type=int_at_least(1),
        default=None,
        help="torch CPU threads (default: 1 for models under 20M parameters, which run fastest on one "
        "thread and do not slow down when other processes share the cores; else torch's default)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--quiet", action="store_true", help="no per-iteration lines")
    group = p.add_argument_group(f"{config_cls.__name__} fields (defaults: the config's)")
    add_config_flags(group, config_cls, skip=list(presets))
    add_lora_arguments(p)
    return p


def add_lora_arguments(p: argparse.ArgumentParser) -> None:
    """``--lora-r/--lora-alpha/--lora-target-modules/--export-merged`` (LoRA through PEFT)."""
    group = p.add_argument_group("LoRA (needs peft: pip install 'textenv[peft]')")
    group.add_argument(
        "--lora-r",
        type=int_at_least(1),
        default=None,
        help="train LoRA adapters of this rank instead of every weight",
    )
    group.add_argument("--lora-alpha", type=float_above(0), default=None, help="LoRA alpha (default: 2 * r)")
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
    if args.lora_target_modules is not None and not all(m.strip() for m in args.lora_target_modules):
        raise ValueError(f"--lora-target-modules holds a blank module name: {args.lora_target_modules}")
    from agents.common.lora import lora_config

    return lora_config(args.lora_r, args.lora_alpha, args.lora_target_modules)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parses ``--algo`` first, then the full command line with that algorithm's config flags.

    Every mistake the flags can hold is found here, before anything is written: a bad value, a config the
    algorithm refuses (named by its flag), a blank or misspelled ``--policy``, an unavailable ``--device``,
    LoRA flags without ``--lora-r``, ``--resume`` without a checkpoint. Each is argparse's one-line error
    (``SystemExit(2)``).
    """
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--algo", choices=registry.AGENTS, default="ppo")
    known, _ = pre.parse_known_args(argv)
    parser = build_parser(known.algo)
    args = parser.parse_args(argv)
    if args.out is None:
        args.out = os.path.join("runs", args.algo.replace("+", "p"))
    check_args(parser, args)
    return args


def check_args(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """The checks of :func:`parse_args` that span flags; each failure is ``parser.error`` (exit code 2)."""
    from textenv.lm import resolve_device
    from textenv.loading import resolve_pretrained

    try:
        config = make_config(args)
    except (TypeError, ValueError) as err:
        # The config names the field first ("minibatch_size must be ..."): name its flag too.
        field = str(err).split(" ", 1)[0]
        flags = config_flags(field) if hasattr(args, field) else []
        parser.error(f"argument {'/'.join(flags)}: {err}" if flags else str(err))
    try:
        resolve_device(config.device)
    except ValueError as err:
        parser.error(f"argument --device: {err}")
    try:
        resolve_pretrained(args.policy, argument="policy")
    except ValueError as err:
        parser.error(f"argument --policy: {err}")
    try:
        make_peft_config(args)
    except ValueError as err:  # its messages name the flags
        parser.error(str(err))
    except ImportError as err:
        parser.error(f"argument --lora-r: {err}")
    if args.resume:
        from agents.common import checkpoint as ckpt

        if ckpt.latest_checkpoint(args.out) is None:
            parser.error(
                f"--resume: no checkpoint in {args.out!r} (expected {args.out}/checkpoints/checkpoint-*)"
            )


def make_config(args: argparse.Namespace) -> Any:
    """The algorithm's config from the parsed flags (and its presets)."""
    _, config_cls, presets = algorithm(getattr(args, "algo", "ppo"))
    fields = {f.name: getattr(args, f.name) for f in dataclasses.fields(config_cls) if hasattr(args, f.name)}
    return config_cls(**{**fields, **presets, "log_dir": args.out})


def sample_prompts(agent: Any, n: int) -> list[str]:
    """The first ``n`` distinct prompt texts of the env (none for ``n=0``)."""
    seen: list[str] = []
    if n < 1:
        return seen
    for prompt in agent.spec.prompts:
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
    algo_cls, _, _ = algorithm(args.algo)
    agent = algo_cls(
        args.policy,
        args.env,
        config,
        env_kwargs=env_kwargs,
        verbose=0 if args.quiet else 1,
        progress_bar=not args.no_progress,
        peft_config=make_peft_config(args),
    )
    small = sum(p.numel() for p in agent.policy.parameters()) < SMALL_MODEL_PARAMETERS
    if args.threads is None and agent.device.type == "cpu" and small:
        torch.set_num_threads(1)
    prompts = sample_prompts(agent, args.num_samples)
    before = agent.generate(prompts, seed=config.seed) if prompts else []
    main_process = agent.dist.is_main  # under accelerate launch / torchrun only process 0 prints and writes
    where = f"{agent.device}" + (
        f" ({torch.get_num_threads()} threads)" if agent.device.type == "cpu" else ""
    )
    where += f" x {agent.dist.world_size} processes" if agent.dist.enabled else ""
    if main_process:
        print(
            f"training {args.policy} with {args.algo} on {args.env} for {args.episodes} episodes on {where}; writing to {args.out}"
        )
        for prompt, text in zip(prompts, before):
            print(f"  before | {prompt} -> {text}")
    start = time.perf_counter()
    agent.learn(args.episodes, resume=args.resume)
    elapsed = time.perf_counter() - start
    after = agent.generate(prompts, seed=config.seed) if prompts else []
    final_dir = agent.save(os.path.join(args.out, "final"))  # every process (a collective), one writer
    if not main_process:
        agent.close()
        return {"out": args.out}
    if getattr(args, "export_merged", False):
        print(f"merged model: {agent.save(os.path.join(args.out, 'merged'), merged=True)}")

    threshold = _reward_threshold(args.env)
    history = agent.history
    first = history[0]["score"] if history else float("nan")
    last = sum(r["score"] for r in history[-3:]) / max(len(history[-3:]), 1)
    kl = [r["kl"] for r in history[-3:] if "kl" in r]
    curve = os.path.join(args.out, "learning_curve.png")
    if history:
        plot_learning_curve(
            history, curve, title=f"{args.algo} {args.policy} on {args.env}", threshold=threshold
        )
    summary = (
        f"{args.env}: mean episode reward {first:.3f} (first iteration) -> {last:.3f} (last 3 iterations)"
        + (f", KL {sum(kl) / len(kl):.2f}" if kl else "")
        + (f", threshold {threshold:g}" if threshold is not None else "")
        + f"; {agent.episodes_this_run} episodes in {elapsed:.0f} s"
        + (
            f" ({agent.num_episodes} in all, resumed)"
            if agent.num_episodes != agent.episodes_this_run
            else ""
        )
    )
    text = write_samples(os.path.join(args.out, "samples.txt"), prompts, before, after, summary)
    print(text)
    print(f"learning curve: {curve}\nmetrics: {os.path.join(args.out, 'progress.csv')}\nagent: {final_dir}")
    agent.close()
    return {
        "first_score": first,
        "last_score": last,
        "threshold": threshold,
        "seconds": elapsed,
        "out": args.out,
    }


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m agents.train`` and ``textenv-train``."""
    args = parse_args(argv)
    try:
        run(args)
    except (ValueError, TypeError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
