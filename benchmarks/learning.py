"""Learning benchmark: the project's PPO on every built-in task, each with its documented recipe.

For each task, trains ``agents.PPO(task.model, task.id, PPOConfig(**task.recipe))`` until the mean
episode reward of the last ``--window`` iterations reaches the task's ``reward_threshold`` (or the CPU
budget runs out), and prints the episodes and the CPU seconds (this process's CPU time, so other jobs
on the machine do not distort it) at which it got there, the final reward and the KL to the starting
model (for tasks with a KL term in their reward; PPO adds none of its own). The recipes live in ``textenv.tasks`` (``Task.recipe``) and the README's task table;
``python -m agents.train`` runs the same recipe with the flags printed for each task.

usage: python benchmarks/learning.py [--tasks all | ID ...] [--minutes 10] [--threads 1] [--window 5]
       [--set field=value ...] [--keep-going]

Uses only the agents package's public API (``agents.registry``'s ``ppo``: ``agents.PPO`` and its config).
"""

from __future__ import annotations

import argparse
import ast
import os
import sys
import time
import warnings
from typing import Any

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def command(task) -> str:
    """The ``python -m agents.train`` command line of a task's recipe (each field's shortest flag)."""
    from agents.train import config_flags

    parts = [f"python -m agents.train --env {task.id} --policy {task.model}"]
    for key, value in task.recipe.items():
        flag = "--episodes" if key == "episodes" else min(config_flags(key), key=len)
        parts.append(f"{flag} {value}")
    return " ".join(parts)


def parse_overrides(items: list[str]) -> dict[str, object]:
    """``["learning_rate=3e-4", "kl_controller=adaptive"]`` -> PPOConfig fields."""
    out: dict[str, object] = {}
    for item in items:
        key, _, value = item.partition("=")
        try:
            out[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            out[key] = value
    return out


def run(task, args: argparse.Namespace) -> dict[str, Any]:
    """Trains one task with its recipe; returns the figures of its row."""
    from agents import registry

    ppo_entry = registry.get("ppo")
    task_id, threshold = task.id, task.reward_threshold
    recipe = {k: v for k, v in task.recipe.items() if k != "episodes"}
    config = ppo_entry.make_config(**{"device": "cpu", **recipe, **parse_overrides(args.set)})
    cpu0 = time.process_time()
    ppo = ppo_entry.load()(task.model, task_id, config, verbose=int(args.verbose), progress_bar=False)
    reached: dict[str, float] = {}

    def recent(key: str) -> float:
        rows = ppo.history[-args.window :]
        return sum(r.get(key, float("nan")) for r in rows) / len(rows)

    def callback(_: dict) -> bool:
        cpu = time.process_time() - cpu0
        if not reached and len(ppo.history) >= args.window and recent("score") >= threshold:
            reached.update(episodes=ppo.num_episodes, cpu_s=cpu)
        return cpu < args.minutes * 60 and (args.keep_going or not reached)

    ppo.learn(args.episodes or task.recipe.get("episodes", 4096), callback=callback)
    return {
        "task": task_id,
        "threshold": threshold,
        "start": sum(r["score"] for r in ppo.history[: args.window]) / min(args.window, len(ppo.history)),
        "episodes": reached.get("episodes"),
        "cpu_s": reached.get("cpu_s"),
        "final": recent("score"),
        "kl": recent("kl"),
        "trained_episodes": ppo.num_episodes,
        "total_cpu_s": time.process_time() - cpu0,
        "command": command(task),
    }


def print_table(rows: list[dict[str, Any]]) -> None:
    print(
        "| task | threshold | first iterations | episodes to threshold | CPU s to threshold | final reward | KL |"
    )
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        episodes = (
            f"{r['episodes']:,}" if r["episodes"] is not None else f"not reached in {r['trained_episodes']:,}"
        )
        cpu = f"{r['cpu_s']:.0f}" if r["cpu_s"] is not None else f"> {r['total_cpu_s']:.0f}"
        kl = "no KL term" if r["kl"] != r["kl"] else f"{r['kl']:.2f}"  # NaN: the task has no KL term
        print(
            f"| {r['task']} | {r['threshold']:g} | {r['start']:.3f} | {episodes} | {cpu} | "
            f"{r['final']:.3f} | {kl} |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", nargs="*", default=["all"], help="task ids, or 'all'")
    parser.add_argument("--minutes", type=float, default=10.0, help="CPU-minute budget per task")
    parser.add_argument("--episodes", type=int, default=None, help="episode budget (default: the recipe's)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--window", type=int, default=5, help="iterations averaged against the threshold")
    parser.add_argument("--keep-going", action="store_true", help="train the whole budget")
    parser.add_argument("--verbose", action="store_true", help="PPO's per-iteration lines")
    parser.add_argument(
        "--set", nargs="*", default=[], help="PPOConfig overrides for every task, field=value"
    )
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    torch.set_num_threads(args.threads)
    from textenv.tasks import TASKS

    by_id = {t.id: t for t in TASKS}
    task_ids = list(by_id) if args.tasks == ["all"] else args.tasks
    unknown = [t for t in task_ids if t not in by_id]
    if unknown:
        parser.error(f"unknown task(s) {unknown}; choose from {list(by_id)}")
    rows = []
    for task_id in task_ids:
        row = run(by_id[task_id], args)
        print(f"{task_id}: {row}", flush=True)
        rows.append(row)
    print(
        f"\nPPO on the built-in tasks; CPU seconds of this process, {args.threads} thread(s); window {args.window}"
    )
    print_table(rows)
    print()
    for r in rows:
        print(f"  {r['command']}")


if __name__ == "__main__":
    main()
