"""Prompt lengths and generation times of ``TextGen-ReasoningGym-v0`` over every reasoning-gym dataset.

The figures behind ``textenv.reasoning_gym``'s default ``max_prompt_tokens`` (512): for each dataset,
``--items`` questions (seed 0) rendered as the env renders them with the built-in tokenizer's chat
template (reasoning-gym's ``"default"`` instruction as the system message, the question as the user
message), and how many datasets' median and longest prompts fit each limit. ``--time`` also times
the generation of 500 questions (reasoning-gym's default size) of a few datasets.

Usage::

    python benchmarks/reasoning_gym_prompts.py
    python benchmarks/reasoning_gym_prompts.py --time
"""

from __future__ import annotations

import argparse
import statistics
import time

from textenv import assets
from textenv.reasoning_gym import create_dataset, dataset_names, reasoning_gym_prompts, system_prompt_text
from textenv.tokenization import load_tokenizer

LIMITS = (256, 512, 1024, 2048)
TIMED = ("chain_sum", "basic_arithmetic", "leg_counting", "countdown")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--items", type=int, default=20, help="questions per dataset")
    parser.add_argument("--time", action="store_true", help="also time the generation of 500 questions")
    args = parser.parse_args()
    tokenizer = load_tokenizer(assets.path("tiny-tokenizer"))
    instruction = system_prompt_text("auto")
    medians, longest, chars = [], [], []
    names = [n for n in dataset_names() if n != "composite"]
    for name in names:
        records = reasoning_gym_prompts(
            create_dataset(name, size=args.items, seed=0), system_prompt=instruction, chat=True
        )
        lengths = [
            len(
                tokenizer.apply_chat_template(
                    r["messages"], tokenize=True, add_generation_prompt=True, return_dict=False
                )
            )
            for r in records
        ]
        medians.append(statistics.median(lengths))
        longest.append(max(lengths))
        chars += [len(r["entry"]["question"]) for r in records]
    n = len(names)
    print(
        f"{n} datasets, {args.items} questions each (seed 0), built-in tokenizer, chat with the default instruction"
    )
    print(
        f"median dataset's median prompt: {statistics.median(medians):.0f} tokens; median question {statistics.median(chars):.0f} characters"
    )
    for limit in LIMITS:
        print(
            f"max_prompt_tokens={limit}: median prompt fits for {sum(m <= limit for m in medians)}/{n} datasets, "
            f"longest for {sum(m <= limit for m in longest)}/{n}"
        )
    if args.time:
        for name in TIMED:
            start = time.perf_counter()
            dataset = create_dataset(name, size=500, seed=0)
            [dataset[i] for i in range(len(dataset))]
            print(f"{name}: 500 questions in {time.perf_counter() - start:.2f} s")


if __name__ == "__main__":
    main()
