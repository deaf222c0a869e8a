"""Long run: 10,000 episodes through the envs with memory sampled along the way (flat, not growing).

Two workloads, both with the production reward path:

* ``vector``: ``gymnasium.make_vec("TextGen-v0", num_envs=B)`` with the README's composed reward
  ``"sentiment + kl:tiny-lm:0.05 + 0.1*missing_eos"`` (reward model on every finished batch, the KL
  reference stepped with its KV cache); random actions, the policy's log-probs handed over each step
  (uniform log-probs, so the KL term is live). Every 50th step a scorer error is injected and
  retried, so the failed-step path runs all along too.
* ``single``: ``gymnasium.make("TextGen-v0", reward="length + missing_eos")``, one episode at a time.

Python heap (``tracemalloc``, current bytes) and the process RSS (``/proc/self/statm``) are sampled
every ``--every`` episodes after a warm-up of ``--warmup`` episodes; the script prints each sample,
then the first and last sample after warm-up, the growth between them, and the least-squares slope
per 1,000 episodes. tracemalloc slows Python down; the figures are about memory, not speed.

usage::

    PYTHONPATH=$PWD python benchmarks/longrun.py [--episodes 10000] [--which vector,single] [--threads 1]
"""

from __future__ import annotations

import argparse
import gc
import math
import os
import resource
import time
import tracemalloc

import gymnasium as gym
import numpy as np
import torch

import textenv  # noqa: F401  (registers TextGen-v0)
from textenv.scorers import KLPenalty, Scorer, ScorerError

MiB = 2**20


def rss_bytes() -> int:
    """Resident set size of this process now (Linux /proc; falls back to the peak from getrusage)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


class Sampler:
    """Collects (episodes, heap bytes, RSS bytes) every ``every`` episodes after ``warmup``."""

    def __init__(self, name: str, every: int, warmup: int):
        self.name, self.every, self.warmup = name, every, warmup
        self.rows: list[tuple[int, int, int]] = []
        self._next = warmup

    def maybe(self, episodes: int) -> None:
        if episodes >= self._next:
            gc.collect()
            heap, _ = tracemalloc.get_traced_memory()
            self.rows.append((episodes, heap, rss_bytes()))
            print(
                f"  [{self.name}] episodes {episodes:6d}  heap {heap / MiB:8.2f} MiB  rss {self.rows[-1][2] / MiB:8.1f} MiB"
            )
            self._next = (episodes // self.every + 1) * self.every

    def report(self, seconds: float) -> None:
        eps = np.array([r[0] for r in self.rows], dtype=np.float64)
        for k, label in ((1, "heap (tracemalloc)"), (2, "RSS")):
            mem = np.array([r[k] for r in self.rows], dtype=np.float64) / MiB
            slope = np.polyfit(eps, mem, 1)[0] * 1000 if len(eps) > 1 else math.nan
            print(
                f"{self.name:7s} {label:19s} first {mem[0]:8.2f} MiB  last {mem[-1]:8.2f} MiB  "
                f"growth {mem[-1] - mem[0]:+7.2f} MiB  max {mem.max():8.2f} MiB  slope {slope:+.3f} MiB/1k episodes"
            )
        print(f"{self.name:7s} {int(eps[-1])} episodes in {seconds:.0f} s")


class FlakyEvery(Scorer):
    """A terminal scorer (value 0) that raises on every ``n``-th call, to exercise the failed-step path."""

    name = "flaky"

    def __init__(self, n: int):
        self.n, self.calls, self.failures = n, 0, 0

    def score(self, batch):
        self.calls += 1
        if self.calls % self.n == 0:
            self.failures += 1
            raise RuntimeError("injected failure")
        return [0.0] * len(batch)


def run_vector(episodes: int, num_envs: int, max_new_tokens: int, sampler: Sampler) -> None:
    from textenv.scorers import parse_spec

    flaky = FlakyEvery(50)
    reward = parse_spec("sentiment + kl:tiny-lm:0.05 + 0.1*missing_eos") + flaky
    envs = gym.make_vec("TextGen-v0", num_envs=num_envs, reward=reward, max_new_tokens=max_new_tokens)
    (kl,) = envs.unwrapped.reward.find(KLPenalty)
    vocab = envs.single_action_space.n
    rng = np.random.default_rng(0)
    envs.reset(seed=0)
    done, retried = 0, 0
    uniform = torch.full((num_envs,), -math.log(vocab))
    while done < episodes:
        actions = rng.integers(0, vocab, size=num_envs)
        kl.set_policy_logprobs(uniform)
        try:
            _, _, terminated, truncated, _ = envs.step(actions)
        except ScorerError:
            retried += 1  # nothing changed; the same step again succeeds (flaky fails once)
            _, _, terminated, truncated, _ = envs.step(actions)
        done += int((terminated | truncated).sum())
        sampler.maybe(done)
    print(f"vector  failed steps retried: {retried}")
    envs.close()


def run_single(episodes: int, max_new_tokens: int, sampler: Sampler) -> None:
    env = gym.make("TextGen-v0", reward="length + missing_eos", max_new_tokens=max_new_tokens)
    env.action_space.seed(0)
    env.reset(seed=0)
    done = 0
    while done < episodes:
        _, _, terminated, truncated, _ = env.step(env.action_space.sample())
        if terminated or truncated:
            done += 1
            env.reset()
            sampler.maybe(done)
    env.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--episodes", type=int, default=10_000)
    parser.add_argument("--which", default="vector,single", help="comma-separated: vector, single")
    parser.add_argument("--num-envs", type=int, default=64)
    parser.add_argument("--max-new-tokens", type=int, default=20)
    parser.add_argument("--every", type=int, default=1000, help="sample memory every N episodes")
    parser.add_argument("--warmup", type=int, default=500, help="episodes before the first sample")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(
        f"torch {torch.__version__}, {args.threads} thread(s), {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}"
    )
    tracemalloc.start()
    for which in args.which.split(","):
        sampler = Sampler(which, args.every, args.warmup)
        start = time.perf_counter()
        if which == "vector":
            run_vector(args.episodes, args.num_envs, args.max_new_tokens, sampler)
        elif which == "single":
            run_single(args.episodes, args.max_new_tokens, sampler)
        else:
            raise SystemExit(f"--which: unknown workload {which!r}; expected vector or single")
        sampler.report(time.perf_counter() - start)


if __name__ == "__main__":
    main()
