"""Scorer overhead against the libraries, KL penalty cost per token, and the task suite's returns.

Usage::

    python benchmarks/scorers.py              # overhead (batch 64) + KL per-token cost (tiny GPT-2)
    python benchmarks/scorers.py --small      # also the KL cost with a GPT-2-small-shaped model
    python benchmarks/scorers.py --tasks      # mean return of reference policies on each task

1. Overhead: each scorer's ``score(batch)`` against calling its library directly on the same 64
   episodes (sacrebleu ``sentence_bleu``, rouge-score ``RougeScorer.score_multi``, a transformers
   forward of the sentiment classifier). Ratio = scorer time / direct time (best of N runs).
2. KL penalty: cost of one step (B rows, one token each) at episode length T, with the KV cache
   (``KLPenalty.step_rows``) and without it (a forward of the whole prefix for each step, as a
   naive implementation would do). With the cache the cost must stay flat in T.
3. Tasks: mean episode return over 200 episodes of the untrained ``tiny-lm`` and of a steered
   policy on each registered task: the numbers behind each ``reward_threshold``.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable

import numpy as np
import sacrebleu
import torch
from rouge_score.rouge_scorer import RougeScorer
from transformers import AutoModelForSequenceClassification, AutoTokenizer, GPT2Config, GPT2LMHeadModel

from textenv import assets
from textenv.lm import left_padded_positions
from textenv.scorers import BLEU, ROUGE, EpisodeBatch, KLPenalty, RewardModel, ScorerContext


def best_of(fn: Callable[[], object], *, repeat: int = 5, number: int = 1) -> float:
    """Best wall time of ``repeat`` runs of ``number`` calls, per call, in seconds."""
    fn()  # warm up
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        for _ in range(number):
            fn()
        times.append((time.perf_counter() - start) / number)
    return min(times)


def copy_batch(n: int) -> EpisodeBatch:
    """n episodes from the built-in copy prompts; each generation is a perturbed reference."""
    with open(assets.path("copy-prompts"), encoding="utf-8") as f:
        records = [json.loads(line) for line in f][:n]
    rng = np.random.default_rng(0)
    texts = []
    for r in records:
        words = r["references"][0].split()
        keep = [w for w in words if rng.random() > 0.2]
        texts.append(" ".join(keep))
    return EpisodeBatch(
        prompts=[r["prompt"] for r in records],
        prompt_ids=[[1]] * n,
        texts=texts,
        token_ids=[[1]] * n,
        references=[r["references"] for r in records],
        metadata=[{}] * n,
        finish_reasons=["eos"] * n,
    )


def overhead(batch_size: int) -> list[dict[str, object]]:
    batch = copy_batch(batch_size)
    rows = []

    bleu = BLEU()
    assert list(bleu.score(batch)) == [
        sacrebleu.sentence_bleu(t, r).score for t, r in zip(batch.texts, batch.references)
    ]
    rows.append(
        {
            "scorer": "BLEU",
            "direct": best_of(
                lambda: [sacrebleu.sentence_bleu(t, r).score for t, r in zip(batch.texts, batch.references)]
            ),
            "scorer_s": best_of(lambda: bleu.score(batch)),
            "direct_call": "sacrebleu.sentence_bleu(text, refs).score per episode",
        }
    )

    rouge, library = ROUGE("rougeL"), RougeScorer(["rougeL"])
    rows.append(
        {
            "scorer": "ROUGE-L",
            "direct": best_of(
                lambda: [
                    library.score_multi(r, t)["rougeL"].fmeasure
                    for t, r in zip(batch.texts, batch.references)
                ]
            ),
            "scorer_s": best_of(lambda: rouge.score(batch)),
            "direct_call": "RougeScorer(['rougeL']).score_multi(refs, text) per episode",
        }
    )

    path = assets.path("tiny-sentiment")
    model = AutoModelForSequenceClassification.from_pretrained(path, use_safetensors=True).eval()
    tok = AutoTokenizer.from_pretrained(path)
    tok.padding_side = "right"
    texts = [p + t for p, t in zip(batch.prompts, batch.texts)]

    @torch.no_grad()
    def direct() -> list[float]:
        enc = tok(texts, padding=True, return_tensors="pt")
        return torch.softmax(model(**enc).logits, -1)[:, 1].tolist()

    rm = RewardModel(model, tokenizer=tok, label="positive", output="probability", batch_size=batch_size)
    np.testing.assert_allclose(rm.score(batch), direct(), atol=1e-5)
    rows.append(
        {
            "scorer": "RewardModel",
            "direct": best_of(direct, repeat=10),
            "scorer_s": best_of(lambda: rm.score(batch), repeat=10),
            "direct_call": "tokenizer(texts, padding=True) + one forward + softmax",
        }
    )
    for row in rows:
        row["ratio"] = row["scorer_s"] / row["direct"]  # type: ignore[operator]
    return rows


def random_lm(*, layers: int, width: int, heads: int, vocab: int, positions: int) -> GPT2LMHeadModel:
    torch.manual_seed(0)
    config = GPT2Config(
        n_layer=layers,
        n_embd=width,
        n_head=heads,
        vocab_size=vocab,
        n_positions=positions,
        bos_token_id=0,
        eos_token_id=0,
    )
    return GPT2LMHeadModel(config).eval()


@torch.no_grad()
def naive_step(model: torch.nn.Module, ids: torch.Tensor, n: int) -> torch.Tensor:
    """What a KL penalty without a cache does each step: the whole prefix ``ids[:, :n]`` again."""
    prefix = ids[:, :n]
    mask = torch.ones_like(prefix)
    logits = model(input_ids=prefix, attention_mask=mask, position_ids=left_padded_positions(mask)).logits
    return torch.log_softmax(logits[:, -1].float(), -1).gather(1, ids[:, n].view(-1, 1))


def kl_cost(
    model: GPT2LMHeadModel, *, lengths: list[int], rows: int, steps: int, prompt: int = 16
) -> list[dict[str, object]]:
    """Seconds per step (all rows, one token each) at each episode length T, cached and uncached."""
    vocab = model.config.vocab_size
    tok = AutoTokenizer.from_pretrained(assets.path("tiny-tokenizer"))  # only named in error messages
    out = []
    for T in lengths:
        kl = KLPenalty(model, coef=0.1, estimator="k1")
        ctx = ScorerContext(
            tokenizer=tok,
            prompts=[],
            num_rows=rows,
            max_prompt_tokens=prompt,
            max_new_tokens=T,
            vocab_size=vocab,
        )
        kl.attach(ctx)
        g = torch.Generator().manual_seed(0)
        ids = torch.randint(1, vocab, (rows, prompt + T), generator=g)
        mask = torch.ones(rows, prompt)
        active = torch.ones(rows, dtype=torch.bool)
        kl.reset_rows(torch.arange(rows), ids[:, :prompt], mask)
        # Generate up to T - steps tokens (untimed), then time the last `steps` steps.
        for t in range(T - steps):
            kl.set_policy_logprobs(torch.zeros(rows))
            kl.step_rows(ids[:, prompt + t], active)
        start = time.perf_counter()
        for t in range(T - steps, T):
            kl.set_policy_logprobs(torch.zeros(rows))
            kl.step_rows(ids[:, prompt + t], active)
        cached = (time.perf_counter() - start) / steps

        naive_step(model, ids, prompt + T - steps)
        start = time.perf_counter()
        for n in range(T - steps, T):
            naive_step(model, ids, prompt + n)
        full = (time.perf_counter() - start) / steps
        out.append(
            {"T": T, "cached_ms": 1e3 * cached, "full_prefix_ms": 1e3 * full, "speedup": full / cached}
        )
    return out


# ---------------------------------------------------------------------------------------------
# Task returns (the numbers behind each reward_threshold)
# ---------------------------------------------------------------------------------------------


def word_tokens(tok, words: list[str]) -> list[int]:
    """First token of each word with and without a leading space / capital."""
    ids = set()
    for w in words:
        for variant in (w, " " + w, w.capitalize(), " " + w.capitalize()):
            ids.update(tok(variant, add_special_tokens=False)["input_ids"][:1])
    return sorted(ids)


def run_task(task_id: str, policy_fn, *, episodes: int, seed: int = 0) -> tuple[float, dict[str, float]]:
    """Mean return and mean reward terms over ``episodes`` episodes of a sampling policy."""
    import gymnasium as gym

    import textenv  # noqa: F401

    env = gym.make(task_id).unwrapped
    torch.manual_seed(seed)
    returns, terms = [], []
    for i in range(episodes):
        env.reset(seed=seed + i)
        policy = policy_fn(env)
        done, total, info = False, 0.0, {}
        while not done:
            logp = policy(env)
            action = int(torch.multinomial(logp.exp(), 1))
            for kl in env.reward.find(KLPenalty):
                kl.set_policy_logprobs(logp[action])
            _, r, done, _, info = env.step(action)
            total += r
        returns.append(total)
        terms.append(info["reward_terms"])
    mean_terms = {k: float(np.mean([t[k] for t in terms])) for k in terms[0]}
    return float(np.mean(returns)), mean_terms


def task_returns(episodes: int) -> list[dict[str, object]]:
    from transformers import AutoModelForCausalLM

    lm = AutoModelForCausalLM.from_pretrained(assets.path("tiny-lm"), use_safetensors=True).eval()
    tok = AutoTokenizer.from_pretrained(assets.path("tiny-tokenizer"))

    @torch.no_grad()
    def next_logp(env, bias=None) -> torch.Tensor:
        core = env.core
        ids, mask = core.input_ids[:1], core.attention_mask[:1]
        n = core.max_prompt_tokens + int(core.num_generated[0])
        logits = lm(
            input_ids=ids[:, :n], attention_mask=mask[:, :n], position_ids=left_padded_positions(mask[:, :n])
        )
        logits = logits.logits[0, -1]
        return torch.log_softmax(logits if bias is None else logits + bias, -1)

    from textenv.assets.build import ADJ, NEG

    neg_bias = torch.zeros(len(tok))
    neg_bias[word_tokens(tok, list(set(ADJ[NEG])))] = -20.0

    def keyword_bias(env) -> Callable:
        bias = torch.zeros(len(tok))
        bias[word_tokens(tok, env.core.row_prompts[0].metadata["keywords"])] = 4.0
        return lambda e: next_logp(e, bias)

    def copier(env) -> Callable:
        target = tok(env.core.row_prompts[0].references[0], add_special_tokens=False)["input_ids"]
        target = [*target, tok.eos_token_id]

        def policy(e) -> torch.Tensor:
            n = int(e.core.num_generated[0])
            logp = torch.full((len(tok),), -30.0)
            logp[target[n] if n < len(target) else tok.eos_token_id] = 0.0
            return torch.log_softmax(logp, -1)

        return policy

    rows = []
    plans = [
        ("TextGen-Sentiment-v0", "tiny-lm", lambda env: next_logp),
        (
            "TextGen-Sentiment-v0",
            "tiny-lm, negative words banned",
            lambda env: lambda e: next_logp(e, neg_bias),
        ),
        ("TextGen-Keyword-v0", "tiny-lm", lambda env: next_logp),
        ("TextGen-Keyword-v0", "tiny-lm, +4 on keyword tokens", keyword_bias),
        ("TextGen-Copy-v0", "tiny-lm", lambda env: next_logp),
        ("TextGen-Copy-v0", "copy the first reference", copier),
    ]
    for task_id, name, policy_fn in plans:
        mean, terms = run_task(task_id, policy_fn, episodes=episodes)
        rows.append({"task": task_id, "policy": name, "mean_return": mean, "terms": terms})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--batch", type=int, default=64, help="episodes per scoring call")
    parser.add_argument("--rows", type=int, default=16, help="rows stepped together in the KL benchmark")
    parser.add_argument(
        "--small", action="store_true", help="also time a GPT-2-small-shaped model (slow on CPU)"
    )
    parser.add_argument("--tasks", action="store_true", help="only measure the tasks' returns")
    parser.add_argument("--episodes", type=int, default=200)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    if args.tasks:
        print(f"{'task':22} {'policy':34} {'mean return':>11}  terms")
        for row in task_returns(args.episodes):
            terms = ", ".join(f"{k}={v:.3f}" for k, v in row["terms"].items())  # type: ignore[union-attr]
            print(f"{row['task']:22} {row['policy']:34} {row['mean_return']:11.3f}  {terms}")
        return

    print(f"Scorer overhead, batch of {args.batch} episodes (best of runs)")
    print(f"{'scorer':12} {'direct ms':>10} {'scorer ms':>10} {'ratio':>6}  direct call")
    for row in overhead(args.batch):
        print(
            f"{row['scorer']:12} {1e3 * row['direct']:10.3f} {1e3 * row['scorer_s']:10.3f} "  # type: ignore[operator]
            f"{row['ratio']:6.2f}  {row['direct_call']}"
        )

    shapes = [("tiny", {"layers": 2, "width": 128, "heads": 4, "vocab": 1024}, args.rows, 16)]
    if args.small:
        shapes.append(("small", {"layers": 12, "width": 768, "heads": 12, "vocab": 50257}, 1, 4))
    for name, shape, rows, steps in shapes:
        model = random_lm(positions=1024, **shape)
        print(f"\nKL penalty per step, GPT-2 {name} {shape}, {rows} rows, mean of {steps} steps at length T")
        print(f"{'T':>5} {'cached ms':>10} {'full prefix ms':>15} {'speedup':>8}")
        for row in kl_cost(model, lengths=[32, 128, 512], rows=rows, steps=steps):
            print(
                f"{row['T']:5d} {row['cached_ms']:10.2f} {row['full_prefix_ms']:15.2f} {row['speedup']:8.1f}"
            )
    print(f"\n(torch {torch.__version__}, {torch.get_num_threads()} threads)")


if __name__ == "__main__":
    main()
