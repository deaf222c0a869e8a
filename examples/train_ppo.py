"""Train a Hugging Face causal LM (default: GPT-2) with PPO to write positive movie reviews.

    python examples/train_ppo.py                              # downloads gpt2 (~550 MB) from the hub
    python examples/train_ppo.py --model path/to/local/model  # any local causal LM, no download
    python examples/train_ppo.py --model tiny-lm --lr 1e-4    # the built-in tiny LM, offline

The reward is the sentiment task's: the built-in classifier's P(positive) of prompt + generation,
minus a KL penalty to the starting model (a frozen copy, so the policy keeps writing English),
minus 0.1 when the text does not end with EOS. The env uses the model's own tokenizer, so any causal
LM works. For every option of the trainer see ``python -m agents.train --help``.
"""

from __future__ import annotations

import argparse

from agents import PPO, PPOConfig
from textenv.lm import load_causal_lm
from textenv.scorers import KLPenalty, MissingEOSPenalty, RewardModel

PROMPTS = ["The movie was", "I watched this film and", "The acting in this movie"]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--model",
        default="gpt2",
        help="hub name (downloaded on first use), local path or built-in asset name (default: %(default)s)",
    )
    parser.add_argument("--episodes", type=int, default=256, help="training episodes (default: %(default)s)")
    parser.add_argument("--episodes-per-iteration", type=int, default=16, help="PPO batch, in episodes")
    parser.add_argument("--max-new-tokens", type=int, default=20, help="length cap of a generation")
    parser.add_argument("--lr", type=float, default=1.41e-5, help="learning rate (GPT-2 sized: ~1.41e-5)")
    parser.add_argument("--kl-coef", type=float, default=0.05, help="KL penalty coefficient")
    parser.add_argument("--device", default="auto", help="'auto', 'cpu', 'cuda', ... (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None, help="save the trained agent here (PPO.load(out) reloads it)")
    args = parser.parse_args(argv)

    from textenv import assets

    name = assets.path(args.model) if args.model in assets.NAMES else args.model
    model = load_causal_lm(name)  # a hub name downloads the weights (and needs network access) once
    logits_width = model.get_output_embeddings().weight.shape[0]

    reward = (
        RewardModel("tiny-sentiment", label="positive", output="probability", name="sentiment")
        + KLPenalty(name, coef=args.kl_coef)  # reference: a second, frozen copy of the starting model
        + MissingEOSPenalty(0.1)
    )
    env_kwargs = {
        "tokenizer": name,  # the model's own tokenizer
        "reward": reward,
        "vocab_size": logits_width,  # models that pad their embedding matrix act over the padded width
        "max_new_tokens": args.max_new_tokens,
    }
    config = PPOConfig(
        learning_rate=args.lr,
        episodes_per_iteration=args.episodes_per_iteration,
        minibatch_size=max(args.episodes_per_iteration // 2, 1),
        init_kl_coef=args.kl_coef,
        seed=args.seed,
        device=args.device,
    )
    agent = PPO(model, "TextGen-Sentiment-v0", config, env_kwargs=env_kwargs, progress_bar=False)

    print("before:", agent.generate(PROMPTS, seed=args.seed))
    agent.learn(args.episodes)
    print("after: ", agent.generate(PROMPTS, seed=args.seed))
    last = agent.history[-1]
    print(f"last iteration: mean episode reward {last['score']:.3f}, KL {last.get('kl', float('nan')):.3f}")
    if args.out:
        print("saved to", agent.save(args.out))
    agent.close()


if __name__ == "__main__":
    main()
