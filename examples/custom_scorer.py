"""A custom reward in five lines: any Python function ``fn(prompt, text, references, meta) -> float``.

    python examples/custom_scorer.py                 # play random episodes with the custom reward
    python examples/custom_scorer.py --episodes 5

The function is called once per finished episode with the prompt text, the generated text (EOS
removed), the prompt's reference texts and its metadata. Functions compose with the built-in
scorers (``+`` and ``*``), and ``Callable(fn, batched=True)`` scores a whole batch in one call.
"""

from __future__ import annotations

import argparse

import gymnasium as gym

import textenv  # noqa: F401  (registers the env ids)
from textenv.scorers import Callable, Length


# --- the reward: five lines ----------------------------------------------------------------------
def enthusiasm(prompt: str, text: str, references: list[str], meta: dict) -> float:
    """+1 per exclamation mark and per 'great', -1 for an empty generation."""
    if not text.strip():
        return -1.0
    return float(text.count("!") + text.lower().count("great"))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--episodes", type=int, default=3)
    parser.add_argument("--max-new-tokens", type=int, default=12)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    # A plain function is a reward; so is a weighted sum with built-in terms.
    reward = Callable(enthusiasm) + 0.05 * Length(target=8, unit="words")
    env = gym.make("TextGen-v0", reward=reward, max_new_tokens=args.max_new_tokens)
    env.action_space.seed(args.seed)
    for episode in range(args.episodes):
        env.reset(seed=args.seed + episode)
        total, done, info = 0.0, False, {}
        while not done:
            _, r, terminated, truncated, info = env.step(env.action_space.sample())
            total, done = total + r, terminated or truncated
        print(f"{info['prompt']!r} -> {info['text']!r}: reward {total:.3f} {info['reward_terms']}")
    env.close()


if __name__ == "__main__":
    main()
