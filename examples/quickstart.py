"""Quick start: play episodes of a textenv task with the built-in LM or with random tokens.

    python examples/quickstart.py                       # the built-in tiny LM writes movie reviews
    python examples/quickstart.py --policy random       # uniformly random tokens instead
    python examples/quickstart.py --env TextGen-Keyword-v0 --episodes 3 --max-new-tokens 12

Every episode prints the prompt, the generated text, the total reward and each reward term.
"""

from __future__ import annotations

import argparse

import gymnasium as gym
import numpy as np
import torch

import textenv  # registers TextGen-v0 and the task suite
from textenv.lm import load_causal_lm


def lm_action(model: torch.nn.Module, obs: dict[str, np.ndarray], generator: torch.Generator) -> int:
    """Samples the next token from the LM's distribution given the observation's real tokens."""
    prefix = torch.as_tensor(obs["input_ids"][obs["attention_mask"] == 1])[None]  # drop the padding
    with torch.no_grad():
        logits = model(prefix).logits[0, -1]
    return int(torch.multinomial(torch.softmax(logits, -1), 1, generator=generator))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--env", default="TextGen-v0", help="a registered textenv id (default: %(default)s)")
    parser.add_argument("--policy", choices=["lm", "random"], default="lm", help="who picks the tokens")
    parser.add_argument("--episodes", type=int, default=2, help="episodes to play (default: %(default)s)")
    parser.add_argument("--max-new-tokens", type=int, default=None, help="override the task's length cap")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    kwargs = {} if args.max_new_tokens is None else {"max_new_tokens": args.max_new_tokens}
    env = gym.make(args.env, **kwargs)
    model = load_causal_lm(textenv.assets.path("tiny-lm")).eval() if args.policy == "lm" else None
    generator = torch.Generator().manual_seed(args.seed)
    env.action_space.seed(args.seed)

    for episode in range(args.episodes):
        obs, info = env.reset(seed=args.seed + episode)
        total, terminated, truncated = 0.0, False, False
        while not (terminated or truncated):
            action = env.action_space.sample() if model is None else lm_action(model, obs, generator)
            obs, reward, terminated, truncated, info = env.step(action)
            total += float(reward)
        print(f"episode {episode}: {info['prompt']!r} -> {info['text']!r}")
        print(
            f"  reward {total:.3f}  terms {info['reward_terms']}  ({info['num_tokens']} tokens, {info['finish_reason']})"
        )
    env.close()


if __name__ == "__main__":
    main()
