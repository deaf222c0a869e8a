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
import math
import statistics
import time
from collections.abc import Callable

import numpy as np
import sacrebleu
import torch
from rouge_score.rouge_scorer import RougeScorer
from transformers import AutoModelForSequenceClassification, AutoTokenizer, GPT2Config, GPT2LMHeadModel

from textenv import assets
from textenv.lm import left_padded_positions
from textenv.scorers import BLEU, ROUGE, EpisodeBatch, Keyword, KLPenalty, RewardModel, ScorerContext


def best_of(*fns: Callable[[], object], repeat: int = 7) -> list[float]:
    """Best wall time, in seconds, of each function over ``repeat`` rounds.

    The functions run in turn within each round, so a burst of load from other processes hits
    them alike; the minimum is the least disturbed run.
    """
    for fn in fns:
        fn()  # warm up
    best = [math.inf] * len(fns)
    for _ in range(repeat):
        for i, fn in enumerate(fns):
            start = time.perf_counter()
            fn()
            best[i] = min(best[i], time.perf_counter() - start)
    return best


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
    # BLEU is sacrebleu's score / 100; the direct call does that division too, so the work is equal.
    assert list(bleu.score(batch)) == [
        sacrebleu.sentence_bleu(t, r).score / 100 for t, r in zip(batch.texts, batch.references)
    ]
    direct, ours = best_of(
        lambda: [sacrebleu.sentence_bleu(t, r).score / 100 for t, r in zip(batch.texts, batch.references)],
        lambda: bleu.score(batch),
    )
    rows.append(
        {
            "scorer": "BLEU",
            "direct": direct,
            "scorer_s": ours,
            "direct_call": "sacrebleu.sentence_bleu(...).score / 100 per episode",
        }
    )

    rouge, library = ROUGE("rougeL"), RougeScorer(["rougeL"])
    direct, ours = best_of(
        lambda: [library.score_multi(r, t)["rougeL"].fmeasure for t, r in zip(batch.texts, batch.references)],
        lambda: rouge.score(batch),
    )
    rows.append(
        {
            "scorer": "ROUGE-L",
            "direct": direct,
            "scorer_s": ours,
            "direct_call": "RougeScorer.score_multi per episode",
        }
    )

    path = assets.path("tiny-sentiment")
    model = AutoModelForSequenceClassification.from_pretrained(path, use_safetensors=True).eval()
    tok = AutoTokenizer.from_pretrained(path)
    tok.padding_side = "right"
    texts = [p + t for p, t in zip(batch.prompts, batch.texts)]

    @torch.no_grad()
    def forward() -> list[float]:
        enc = tok(texts, padding=True, return_tensors="pt")
        return torch.softmax(model(**enc).logits, -1)[:, 1].tolist()

    rm = RewardModel(model, tokenizer=tok, label="positive", output="probability", batch_size=batch_size)
    np.testing.assert_allclose(rm.score(batch), forward(), atol=1e-5)
    direct, ours = best_of(forward, lambda: rm.score(batch), repeat=15)
    rows.append(
        {
            "scorer": "RewardModel",
            "direct": direct,
            "scorer_s": ours,
            "direct_call": "tokenizer(texts, padding=True) + forward + softmax",
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
        # Generate up to T - steps tokens (untimed), then time the last `steps` steps one by one.
        for t in range(T - steps):
            kl.set_policy_logprobs(torch.zeros(rows))
            kl.step_rows(ids[:, prompt + t], active)
        cached_times, full_times = [], []
        for t in range(T - steps, T):
            start = time.perf_counter()
            kl.set_policy_logprobs(torch.zeros(rows))
            kl.step_rows(ids[:, prompt + t], active)
            cached_times.append(time.perf_counter() - start)
        naive_step(model, ids, prompt + T - steps)  # warm up
        for t in range(T - steps, T):
            start = time.perf_counter()
            naive_step(model, ids, prompt + t)
            full_times.append(time.perf_counter() - start)
        # Medians: robust to bursts of load from other processes.
        cached, full = statistics.median(cached_times), statistics.median(full_times)
        out.append(
            {"T": T, "cached_ms": 1e3 * cached, "full_prefix_ms": 1e3 * full, "speedup": full / cached}
        )
    return out


# ---------------------------------------------------------------------------------------------
# Task returns (the numbers behind each reward_threshold)
# ---------------------------------------------------------------------------------------------


def word_tokens(tok, words: list[str]) -> list[int]:
    """First token of each word as it appears inside a sentence (" word", " Word")."""
    ids = set()
    for w in words:
        for variant in (" " + w, " " + w.capitalize()):
            ids.update(tok(variant, add_special_tokens=False)["input_ids"][:1])
    return sorted(ids)


def run_task(
    task_id: str, policy_fn, *, episodes: int, seed: int = 0
) -> tuple[list[float], dict[str, float]]:
    """Episode returns and mean reward terms of a sampling policy; its log-probs go to the KL term.

    ``policy_fn(env)`` is called at each reset and returns ``policy(env) -> (V,) log-probs``.
    """
    import gymnasium as gym

    import textenv  # noqa: F401

    env = gym.make(task_id).unwrapped
    g = torch.Generator().manual_seed(seed)
    returns, terms = [], []
    for i in range(episodes):
        env.reset(seed=seed + i)
        policy = policy_fn(env)
        done, total, info = False, 0.0, {}
        while not done:
            logp = policy(env)
            action = int(torch.multinomial(logp.exp(), 1, generator=g))
            for kl in env.reward.find(KLPenalty):
                kl.set_policy_logprobs(logp[action])
            _, r, done, _, info = env.step(action)
            total += r
        returns.append(total)
        terms.append(info["reward_terms"])
    return returns, {k: float(np.mean([t[k] for t in terms])) for k in terms[0]}


def task_returns(episodes: int, only: list[str] | None = None) -> list[dict[str, object]]:
    """Mean returns of the untrained tiny-lm and of stronger reference policies on every task."""
    from transformers import AutoModelForCausalLM

    from textenv.tasks import SENTIMENT
    from tools.build_assets.lexicon import ADJ, NEG, NEUTRAL

    lm = AutoModelForCausalLM.from_pretrained(assets.path("tiny-lm"), use_safetensors=True).eval()
    loaded: dict[str, torch.nn.Module] = {}

    def model_of(name: str) -> torch.nn.Module:
        if name not in loaded:  # loaded on first use, so that --task-ids needs only its own models
            loaded[name] = AutoModelForCausalLM.from_pretrained(
                assets.path(name), use_safetensors=True
            ).eval()
        return loaded[name]

    tok = AutoTokenizer.from_pretrained(assets.path("tiny-tokenizer"))
    V = len(tok)

    @torch.no_grad()
    def lm_logp(env, bias: torch.Tensor | None = None, model=lm) -> torch.Tensor:
        # The model's next-token log-probs (one full forward; the env's own KL term runs the cache).
        prompt_ids, prompt_mask = env.text_spec.encode_prompts([env.prompt_of(0)])  # (1, P)
        generated = torch.tensor([env.generated_ids(0)], dtype=torch.long)  # (1, t)
        ids = torch.cat([prompt_ids, generated], 1)
        mask = torch.cat([prompt_mask, torch.ones_like(generated)], 1)
        logits = model(input_ids=ids, attention_mask=mask, position_ids=left_padded_positions(mask)).logits[
            0, -1
        ]
        return torch.log_softmax(logits if bias is None else logits + bias, -1)

    def solver_logp(env):
        return lm_logp(env, model=model_of("tiny-solver"))

    def early_logp(env):
        return lm_logp(env, model=model_of("tiny-solver-early"))

    def greedy(logp_of):
        def policy(env):
            logp = logp_of(env)
            out = torch.full_like(logp, -1e4)
            out[int(logp.argmax())] = 0.0
            return out

        return policy

    # Sentiment: tiny-lm with negative and neutral adjectives banned.
    banned = torch.zeros(V)
    banned[word_tokens(tok, sorted(set(ADJ[NEG]) | set(ADJ[NEUTRAL])))] = -20.0

    def keyword_steered(env):
        # +8 on the first token of every keyword not yet written; EOS held back until all are.
        words = env.prompt_of(0).metadata["keywords"]
        kw = Keyword(words)

        def policy(e):
            text = tok.decode(e.generated_ids(0), skip_special_tokens=True)
            bias = torch.zeros(V)
            missing = [w for w in words if kw.score_text(text, [w]) == 0]
            bias[word_tokens(tok, missing)] = 8.0
            if missing:
                bias[tok.eos_token_id] = -5.0
            return lm_logp(e, bias)

        return policy

    def copier(drop: int):
        return writer(lambda p: p.references[0], drop=drop)

    def writer(target_of, drop: int = 0, lead: str = ""):
        # Writes lead + target_of(prompt) (minus `drop` random words) and then EOS.
        def make(env):
            words = target_of(env.prompt_of(0)).split()
            for _ in range(drop):
                words.pop(int(torch.randint(len(words), (1,))))
            target = [*tok(lead + " ".join(words), add_special_tokens=False)["input_ids"], tok.eos_token_id]

            def policy(e):
                n = len(e.generated_ids(0))
                logp = torch.full((V,), -1e4)
                logp[target[min(n, len(target) - 1)]] = 0.0
                return logp

            return policy

        return make

    plans = [
        ("TextGen-Sentiment-v0", "tiny-lm (untrained)", lambda env: lm_logp),
        (
            "TextGen-Sentiment-v0",
            "tiny-lm, neg./neutral adjectives banned",
            lambda env: lambda e: lm_logp(e, banned),
        ),
        ("TextGen-Keyword-v0", "tiny-lm (untrained)", lambda env: lm_logp),
        ("TextGen-Keyword-v0", "tiny-lm, +8 on missing keywords", keyword_steered),
        ("TextGen-Copy-v0", "tiny-lm (untrained)", lambda env: lm_logp),
        ("TextGen-Copy-v0", "copy, one word dropped", copier(1)),
        ("TextGen-Copy-v0", "copy exactly", copier(0)),
        ("TextGen-Arithmetic-v0", "tiny-solver (untrained)", lambda env: solver_logp),
        ("TextGen-Arithmetic-v0", "tiny-solver, greedy", lambda env: greedy(solver_logp)),
        ("TextGen-Arithmetic-v0", "right answer", writer(lambda p: p.metadata["answer"], lead=" ")),
        ("TextGen-Reverse-v0", "tiny-solver-early (untrained)", lambda env: early_logp),
        ("TextGen-Reverse-v0", "tiny-solver-early, greedy", lambda env: greedy(early_logp)),
        (
            "TextGen-Reverse-v0",
            "reversal, one word dropped",
            writer(lambda p: p.references[0], drop=1, lead=" "),
        ),
        ("TextGen-Reverse-v0", "reversal, exactly", writer(lambda p: p.references[0], lead=" ")),
    ]
    rows: list[dict[str, object]] = []
    for task_id, name, policy_fn in plans:
        if only and task_id not in only:
            continue
        returns, terms = run_task(task_id, policy_fn, episodes=episodes)
        rows.append({"task": task_id, "policy": name, "mean_return": float(np.mean(returns)), "terms": terms})
        if task_id == SENTIMENT.id and name.startswith("tiny-lm (untrained)"):
            rows.extend(
                _kl_regularised_optimum(np.array(returns), beta=SENTIMENT.reward().find(KLPenalty)[0].coef)
            )
        if name.startswith("tiny-solver") and name.endswith("(untrained)"):
            rows.extend(_best_of(task_id, name.split()[0], np.array(returns)))
    return rows


def _best_of(task_id: str, model: str, returns: np.ndarray) -> list[dict[str, object]]:
    """Best of n untrained samples (no KL term on these tasks): what sharpening the policy can reach."""
    rows: list[dict[str, object]] = []
    for n in (2, 4):
        best = returns[: len(returns) // n * n].reshape(-1, n).max(1).mean()
        rows.append(
            {
                "task": task_id,
                "policy": f"best-of-{n} {model} samples",
                "mean_return": float(best),
                "terms": {},
            }
        )
    return rows


def _kl_regularised_optimum(returns: np.ndarray, beta: float) -> list[dict[str, object]]:
    """What policies better than tiny-lm reach on a "reward - beta * KL(policy || tiny-lm)" task.

    From the untrained returns r_i (samples of tiny-lm, whose KL is 0): best-of-n picks the best of n
    samples, with KL at most log(n) - (n - 1) / n; the optimal policy pi* ~ tiny-lm * exp(r / beta)
    reaches beta * log E[exp(r / beta)] (estimated from the samples, which underestimates it).
    """
    rows: list[dict[str, object]] = []
    for n in (4, 8):
        best = returns[: len(returns) // n * n].reshape(-1, n).max(1).mean()
        kl = math.log(n) - (n - 1) / n
        rows.append(
            {
                "task": "TextGen-Sentiment-v0",
                "policy": f"best-of-{n} tiny-lm samples",
                "mean_return": float(best - beta * kl),
                "terms": {"reward": float(best), "kl_bound": -beta * kl},
            }
        )
    optimum = beta * math.log(np.mean(np.exp(returns / beta)))
    rows.append(
        {"task": "TextGen-Sentiment-v0", "policy": "optimum (estimate)", "mean_return": optimum, "terms": {}}
    )
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
    parser.add_argument("--task-ids", nargs="*", default=None, help="with --tasks: only these task ids")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    if args.tasks:
        print(f"Mean episode return, {args.episodes} episodes per policy (seed 0)")
        print(f"{'task':22} {'policy':40} {'mean return':>11}  terms")
        for row in task_returns(args.episodes, args.task_ids):
            terms = ", ".join(f"{k}={v:.3f}" for k, v in row["terms"].items())  # type: ignore[union-attr]
            print(f"{row['task']:22} {row['policy']:40} {row['mean_return']:11.3f}  {terms}")
        return

    print(f"Scorer overhead, batch of {args.batch} episodes (best of 7 or 15 interleaved runs)")
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
        print(
            f"\nKL penalty per step, GPT-2 {name} {shape}, {rows} rows, median of {steps} steps at length T"
        )
        print(f"{'T':>5} {'cached ms':>10} {'full prefix ms':>15} {'speedup':>8}")
        for row in kl_cost(model, lengths=[32, 128, 512], rows=rows, steps=steps):
            print(
                f"{row['T']:5d} {row['cached_ms']:10.2f} {row['full_prefix_ms']:15.2f} {row['speedup']:8.1f}"
            )
    print(f"\n(torch {torch.__version__}, {torch.get_num_threads()} threads)")


if __name__ == "__main__":
    main()
