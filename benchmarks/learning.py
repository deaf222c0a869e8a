"""Learning benchmark: the project's algorithms on every built-in task, each with its documented recipe, over seeds.

For each task, algorithm and seed, trains ``Algo(task.model, task.id, config(**task.recipes[algo]))`` until
the mean episode reward of the last ``--window`` iterations reaches the task's ``reward_threshold`` (or the
recipe's episode budget or the CPU budget runs out), and records the episodes and the CPU seconds (the
run's own process CPU time, so other jobs on the machine do not distort it) at which it got there, the
final reward and the KL to the starting model (tasks with a KL term). Then, per task and algorithm: how
many seeds reached the threshold, the median episodes and CPU seconds to it (over the seeds that did), and
the final reward's mean with a 95% bootstrap interval over seeds.

Every run is written to ``--out/<task>/<algo>/seed-<n>.json`` as it finishes, so an interrupted sweep
resumes without re-running finished runs (with the same settings; other settings are refused). Runs go
to ``--jobs`` processes of ``--threads`` threads each.

usage: python benchmarks/learning.py [--tasks all | ID ...] [--algos ppo grpo] [--seeds 0 1 2 3 4]
       [--minutes 10] [--jobs 2] [--threads 1] [--window 5] [--set field=value ...] [--out runs/learning]

The recipes live in ``textenv.tasks`` (``Task.recipes``) and the README's task table;
``python -m agents.train`` runs the same recipe with the flags printed for each task.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import statistics
import sys
import time
import warnings
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def command(task: Any, algo: str, seed: int = 0) -> str:
    """The ``python -m agents.train`` command line of a task's recipe (each field's shortest flag)."""
    from agents.train import config_flags

    parts = [f"python -m agents.train --algo {algo} --env {task.id} --policy {task.model}"]
    for key, value in task.recipes[algo].items():
        flag = "--episodes" if key == "episodes" else min(config_flags(key), key=len)
        parts.append(f"{flag} {value}")
    if seed:
        parts.append(f"--seed {seed}")
    return " ".join(parts)


def parse_overrides(items: list[str]) -> dict[str, object]:
    """``["learning_rate=3e-4", "kl_controller=adaptive"]`` -> config fields."""
    out: dict[str, object] = {}
    for item in items:
        key, _, value = item.partition("=")
        try:
            out[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            out[key] = value
    return out


def run(task_id: str, algo: str, seed: int, settings: dict[str, Any]) -> dict[str, Any]:
    """Trains one (task, algorithm, seed) with the task's recipe; returns its figures."""
    import torch

    from agents import registry
    from textenv.tasks import TASKS

    warnings.filterwarnings("ignore")
    torch.set_num_threads(settings["threads"])
    task = next(t for t in TASKS if t.id == task_id)
    entry = registry.get(algo)
    recipe = {k: v for k, v in task.recipes[algo].items() if k != "episodes"}
    config = entry.make_config(**{"device": "cpu", **recipe, "seed": seed, **settings["overrides"]})
    cpu0 = time.process_time()
    agent = entry.load()(task.model, task_id, config, verbose=0, progress_bar=False)
    window, threshold = settings["window"], task.reward_threshold
    reached: dict[str, float] = {}

    def recent(key: str) -> float:
        rows = agent.history[-window:]
        return sum(r.get(key, float("nan")) for r in rows) / len(rows)

    def callback(_: dict) -> bool:
        cpu = time.process_time() - cpu0
        if not reached and len(agent.history) >= window and recent("score") >= threshold:
            reached.update(episodes=agent.num_episodes, cpu_s=cpu)
        return cpu < settings["minutes"] * 60 and (settings["keep_going"] or not reached)

    agent.learn(settings["episodes"] or task.recipes[algo]["episodes"], callback=callback)
    first = agent.history[:window]
    return {
        "task": task_id,
        "algo": algo,
        "seed": seed,
        "threshold": threshold,
        "start": sum(r["score"] for r in first) / len(first),
        "episodes": reached.get("episodes"),
        "cpu_s": reached.get("cpu_s"),
        "final": recent("score"),
        "kl": recent("kl"),
        "trained_episodes": agent.num_episodes,
        "total_cpu_s": time.process_time() - cpu0,
        "settings": settings,
        "recipe": dict(task.recipes[algo]),
    }


def summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """One (task, algorithm)'s seeds: reached k/n, medians to the threshold, final mean with an interval."""
    from agents.aggregate import mean_interval

    hit = [r for r in runs if r["episodes"] is not None]
    finals = [r["final"] for r in runs]
    interval = mean_interval(finals) if len(finals) > 1 else None
    return {
        "task": runs[0]["task"],
        "algo": runs[0]["algo"],
        "threshold": runs[0]["threshold"],
        "reached": len(hit),
        "seeds": len(runs),
        "episodes": statistics.median(r["episodes"] for r in hit) if hit else None,
        "episodes_range": (min(r["episodes"] for r in hit), max(r["episodes"] for r in hit)) if hit else None,
        "cpu_s": statistics.median(r["cpu_s"] for r in hit) if hit else None,
        "final": interval.point if interval else finals[0],
        "final_interval": (interval.low, interval.high) if interval else None,
        "start": statistics.mean(r["start"] for r in runs),
        "kl": statistics.mean(r["kl"] for r in runs),
    }


def table(rows: list[dict[str, Any]]) -> str:
    """The markdown table of :func:`summarize` rows."""
    lines = [
        "| task | algorithm | threshold | seeds reaching it | episodes to threshold: median (range) "
        "| CPU s to threshold: median | final reward: mean [95% CI] | first iterations | KL |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        if r["episodes"] is None:
            episodes, cpu = "not reached", "-"
        else:
            low, high = r["episodes_range"]
            episodes, cpu = f"{r['episodes']:,.0f} ({low:,}-{high:,})", f"{r['cpu_s']:.0f}"
        final = f"{r['final']:.3f}"
        if r["final_interval"] is not None:
            final += f" [{r['final_interval'][0]:.3f}, {r['final_interval'][1]:.3f}]"
        kl = "no KL term" if r["kl"] != r["kl"] else f"{r['kl']:.2f}"  # NaN: the task has no KL term
        lines.append(
            f"| {r['task']} | {r['algo']} | {r['threshold']:g} | {r['reached']}/{r['seeds']} | {episodes} | {cpu} "
            f"| {final} | {r['start']:.3f} | {kl} |"
        )
    return "\n".join(lines)


def run_path(out: str, task_id: str, algo: str, seed: int) -> str:
    return os.path.join(out, task_id, algo, f"seed-{seed}.json")


def load_finished(path: str, settings: dict[str, Any], recipe: dict[str, Any]) -> dict[str, Any] | None:
    """A finished run's figures, or ``None``; a run made with other settings or another recipe is refused."""
    if not os.path.isfile(path):
        return None
    with open(path) as f:
        saved = json.load(f)
    if saved.get("settings") != settings:
        raise SystemExit(
            f"{path} was run with settings {saved.get('settings')}, not {settings}; use another --out or the "
            "same settings"
        )
    # Runs written before the record held its recipe have none to compare.
    if "recipe" in saved and saved["recipe"] != json.loads(json.dumps(recipe)):
        raise SystemExit(
            f"{path} was run with the recipe {saved['recipe']}, not the task's recipe now, {recipe}; "
            "remove it to run it again, or use another --out"
        )
    return saved


def main() -> None:
    from textenv.tasks import TASKS

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", nargs="*", default=["all"], help="task ids, or 'all'")
    parser.add_argument("--algos", nargs="+", default=["ppo"], help="algorithms with a recipe (ppo, grpo)")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="CPU-minute budget per run")
    parser.add_argument("--episodes", type=int, default=None, help="episode budget (default: the recipe's)")
    parser.add_argument("--jobs", type=int, default=1, help="runs in parallel (processes)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per run")
    parser.add_argument("--window", type=int, default=5, help="iterations averaged against the threshold")
    parser.add_argument("--keep-going", action="store_true", help="train the whole budget")
    parser.add_argument("--set", nargs="*", default=[], help="config overrides for every run, field=value")
    parser.add_argument("--out", default="runs/learning", help="where each run's figures go (resumable)")
    args = parser.parse_args()
    by_id = {t.id: t for t in TASKS}
    task_ids = list(by_id) if args.tasks == ["all"] else args.tasks
    unknown = [t for t in task_ids if t not in by_id]
    if unknown:
        parser.error(f"unknown task(s) {unknown}; choose from {list(by_id)}")
    missing = [(t, a) for t in task_ids for a in args.algos if a not in by_id[t].recipes]
    if missing:
        parser.error(
            f"no recipe for {missing}; the recipes are {[(t, sorted(by_id[t].recipes)) for t in task_ids]}"
        )
    settings = {
        "minutes": args.minutes,
        "episodes": args.episodes,
        "threads": args.threads,
        "window": args.window,
        "keep_going": args.keep_going,
        "overrides": parse_overrides(args.set),
    }
    jobs = [(t, a, s) for t in task_ids for a in args.algos for s in args.seeds]
    results: dict[tuple[str, str, int], dict[str, Any]] = {}
    todo = []
    for job in jobs:
        task_id, algo, _ = job
        saved = load_finished(run_path(args.out, *job), settings, dict(by_id[task_id].recipes[algo]))
        if saved is None:
            todo.append(job)
        else:
            results[job] = saved
    print(f"{len(jobs)} runs, {len(jobs) - len(todo)} already in {args.out}", flush=True)
    with ProcessPoolExecutor(max_workers=args.jobs, mp_context=get_context("spawn")) as pool:
        futures = {pool.submit(run, *job, settings): job for job in todo}
        for future, job in futures.items():
            row = future.result()
            path = run_path(args.out, *job)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "w") as f:
                json.dump(row, f, indent=1)
            results[job] = row
            print(
                f"{job}: episodes {row['episodes']}, cpu {row['cpu_s']}, final {row['final']:.3f}", flush=True
            )
    rows = [summarize([results[(t, a, s)] for s in args.seeds]) for t in task_ids for a in args.algos]
    print(
        f"\nSeeds {', '.join(map(str, args.seeds))}; CPU seconds of each run's process, {args.threads} thread(s), "
        f"{args.jobs} run(s) at a time; window {args.window}"
    )
    print(table(rows))
    print()
    for t in task_ids:
        for a in args.algos:
            print(f"  {command(by_id[t], a)}")


if __name__ == "__main__":
    main()
