"""Learning benchmark: PPO from the built-in LM on a textenv task, against the task's reward threshold.

Trains ``agents.PPO("tiny-lm", ENV)`` until the mean episode reward of the last iterations reaches the
task's ``reward_threshold`` (or the episode/time budget runs out), then prints the episodes, wall time and
KL at which it got there, and saves the learning curve.

usage: python benchmarks/learning.py [--env TextGen-Sentiment-v0] [--episodes 4096] [--minutes 10]
       [--png benchmarks/learning_sentiment.png] [--set field=value ...]
"""

from __future__ import annotations

import argparse
import ast
import os
import sys
import time
import warnings

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", default="TextGen-Sentiment-v0")
    parser.add_argument("--policy", default="tiny-lm")
    parser.add_argument("--episodes", type=int, default=8192)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--window", type=int, default=3, help="iterations averaged against the threshold")
    parser.add_argument(
        "--keep-going", action="store_true", help="train the whole budget, not just to the threshold"
    )
    parser.add_argument("--png", default=None)
    parser.add_argument("--set", nargs="*", default=[], help="PPOConfig overrides, field=value")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    torch.set_num_threads(args.threads)
    import gymnasium as gym

    import textenv  # noqa: F401
    from agents import PPO, PPOConfig
    from agents.common.logger import plot_learning_curve

    threshold = gym.spec(args.env).reward_threshold
    config = PPOConfig(**{"device": "cpu", **parse_overrides(args.set)})
    ppo = PPO(args.policy, args.env, config, verbose=1, progress_bar=False)
    start = time.perf_counter()
    reached: dict[str, float] = {}

    def stop(loc: dict) -> bool:
        recent = [r["score"] for r in ppo.history[-args.window :]]
        mean = sum(recent) / len(recent)
        if not reached and len(recent) == args.window and mean >= threshold:
            reached.update(
                episodes=ppo.num_episodes,
                seconds=time.perf_counter() - start,
                score=mean,
                kl=sum(r.get("kl", 0.0) for r in ppo.history[-args.window :]) / args.window,
            )
        over_time = time.perf_counter() - start > args.minutes * 60
        return not over_time and (args.keep_going or not reached)

    ppo.learn(args.episodes, callback=stop)
    elapsed = time.perf_counter() - start
    if args.png:
        title = f"PPO {args.policy} on {args.env} (CPU, {args.threads} thread)"
        plot_learning_curve(ppo.history, args.png, title=title, threshold=threshold)
    print(f"config {config.to_dict()}")
    print(f"threshold {threshold} window {args.window} iterations")
    if reached:
        print(
            f"reached_threshold episodes {reached['episodes']} seconds {reached['seconds']:.0f} "
            f"score {reached['score']:.3f} kl {reached['kl']:.2f}"
        )
    else:
        last = ppo.history[-1]
        print(f"not_reached episodes {ppo.num_episodes} seconds {elapsed:.0f} last_score {last['score']:.3f}")
    kls = [r.get("kl", float("nan")) for r in ppo.history]
    print(f"final_score {ppo.history[-1]['score']:.3f} max_kl {max(kls):.2f} total_seconds {elapsed:.0f}")


if __name__ == "__main__":
    main()
