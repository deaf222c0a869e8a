"""``python -m tools.build_assets``: rebuilds every built-in asset of :mod:`textenv.assets`."""

from __future__ import annotations

import argparse
import json
import os
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from transformers import GPT2ForSequenceClassification, GPT2LMHeadModel

from tools.build_assets import corpus, episodes, models, puzzles, training, transcripts
from tools.build_assets import protocols as P
from tools.build_assets.grammar import Review, ReviewGrammar
from tools.build_assets.lexicon import MIXED, NEG, NEUTRAL, POS
from tools.build_assets.tokenizer import save_tokenizer, train_tokenizer

ASSETS_DIR = Path(__file__).resolve().parents[2] / "textenv" / "assets"


# tiny-solver trains until its sampled (temperature 1) accuracy on the arithmetic prompts first
# reaches SOLVER_TARGET, checked every 50 steps: the useful range of an untrained policy is "right
# sometimes, wrong often" (20% to 60%); SOLVER_STEPS only bounds the run (and sets the LR schedule).
SOLVER_STEPS = 3000
SOLVER_TARGET = 0.35
# Reversal is learned much sooner and much more abruptly (sampled similarity 0.3 to 0.99 within a few
# hundred steps), so the reverse task starts from a snapshot of the same run, saved at the first
# check where the similarity reaches EARLY_TARGET.
EARLY_TARGET = 0.5
CHECK_EVERY = 50
# tiny-agent trains for a fixed number of steps: its untrained behaviour (how often it calls the
# tool, how well it copies, how much it heeds the game's replies) is set by the mix of its training
# transcripts (tools/build_assets/transcripts.py), which it has learned by then.
AGENT_STEPS = 1200


@dataclass(frozen=True)
class Settings:
    """Corpus sizes and training lengths; ``--quick`` shrinks everything to a few seconds."""

    lm_reviews: int
    copy_examples: int
    cls_reviews: int
    heldout_reviews: int
    lm_steps: int
    cls_steps: int
    keyword_examples: int
    chat_examples: int
    solver_texts: int
    solver_steps: int
    agent_texts: int
    agent_steps: int
    batch_size: int = 64
    eval_samples: int = 100  # LM continuations scored for the summary's baseline P(positive)
    # Copy examples are seen this many times per epoch: copying (an induction mechanism) is the
    # slowest skill for the LM to pick up, and repeating keeps the tokenizer corpus unchanged.
    copy_repeat: int = 2


FULL = Settings(
    lm_reviews=60_000,
    copy_examples=12_000,
    cls_reviews=30_000,
    heldout_reviews=2_000,
    lm_steps=1000,
    cls_steps=400,
    keyword_examples=10_000,
    chat_examples=3_000,
    solver_texts=20_000,
    solver_steps=SOLVER_STEPS,
    agent_texts=20_000,
    agent_steps=AGENT_STEPS,
)
QUICK = Settings(
    lm_reviews=1_000,
    copy_examples=200,
    cls_reviews=1_000,
    heldout_reviews=200,
    lm_steps=4,
    cls_steps=4,
    keyword_examples=100,
    chat_examples=50,
    solver_texts=200,
    solver_steps=4,
    agent_texts=200,
    agent_steps=4,
    batch_size=32,
    eval_samples=10,
)


@dataclass
class Corpus:
    """Every text of one build."""

    lm_reviews: list[Review]
    copy_texts: list[str]
    keyword_texts: list[str]
    chat_texts: list[str]
    solver_texts: list[tuple[str, str]]
    agent_texts: list[list[transcripts.Segment]]
    cls_reviews: list[Review]
    heldout: list[Review]
    data: dict[str, list]


def make_corpus(seed: int, st: Settings) -> Corpus:
    """The seeded corpus. Separate string seeds keep each part stable when another part's size changes."""
    data = corpus.make_data(seed)
    cg = ReviewGrammar(random.Random(f"lm-copy-{seed}"))
    return Corpus(
        lm_reviews=ReviewGrammar(random.Random(f"lm-{seed}")).reviews(st.lm_reviews, corpus.BALANCE),
        copy_texts=[
            f"{corpus.copy_prompt(s)} {s}" for s in (cg.copy_sentence() for _ in range(st.copy_examples))
        ],
        keyword_texts=corpus.keyword_examples(seed, st.keyword_examples),
        chat_texts=corpus.chat_examples(seed, st.chat_examples),
        solver_texts=puzzles.solver_texts(seed, st.solver_texts, held_out=_prompts(data)),
        agent_texts=transcripts.agent_texts(
            seed, st.agent_texts, held_out={row["prompt"] for row in data["calculator_prompts"]}
        ),
        cls_reviews=ReviewGrammar(random.Random(f"cls-{seed}")).reviews(
            st.cls_reviews, {POS: 0.38, NEG: 0.38, MIXED: 0.12, NEUTRAL: 0.12}
        ),
        # Held-out reviews come from a different seed than any training text.
        heldout=ReviewGrammar(random.Random(f"heldout-{seed + 1}")).reviews(
            st.heldout_reviews, {POS: 0.5, NEG: 0.5}
        ),
        data=data,
    )


def _prompts(data: dict[str, list]) -> set[str]:
    return {row["prompt"] for name in ("arithmetic_prompts", "reverse_prompts") for row in data[name]}


def build_tokenizer(c: Corpus):
    """The tokenizer, trained on the review texts and prompt files, with the chat template.

    The solver's texts stay out: without digits in the training texts, every digit stays one token,
    which suits arithmetic.
    """
    texts = [r.text for r in c.lm_reviews] + c.copy_texts + c.keyword_texts + c.chat_texts
    texts += [r.text for r in c.cls_reviews]
    texts += c.data["review_prompts"] + [row["prompt"] for row in c.data["keyword_prompts"]]
    tokenizer = train_tokenizer(texts, vocab_size=2048, model_max_length=models.LM_CONFIG["n_positions"])
    tokenizer.chat_template = corpus.CHAT_TEMPLATE
    return tokenizer


def build_lm(c: Corpus, tokenizer, st: Settings, seed: int, lm_dir: Path, reuse: bool, log) -> tuple:
    """Trains (or with ``reuse`` loads) tiny-lm and saves it; returns ``(model, sequences, seconds)``."""
    torch.manual_seed(seed)
    lm = GPT2LMHeadModel(models.gpt2_config(tokenizer, models.LM_CONFIG))
    texts = [r.text for r in c.lm_reviews] + c.copy_texts * st.copy_repeat + c.keyword_texts + c.chat_texts
    seqs = models.lm_sequences(tokenizer, texts, seed, models.LM_CONFIG["n_positions"])
    t0 = time.time()
    if reuse:
        lm = models.load_lm(lm_dir, tokenizer)
        log(f"tiny-lm: reusing {lm_dir}")
    else:
        training.train_lm(
            lm,
            seqs,
            tokenizer.pad_token_id,
            steps=st.lm_steps,
            batch_size=st.batch_size,
            lr=2e-3,
            seed=seed,
            log=log,
        )
        lm.save_pretrained(lm_dir, safe_serialization=True)
        save_tokenizer(tokenizer, lm_dir)
    return lm, seqs, time.time() - t0


def build_classifier(c: Corpus, tokenizer, st: Settings, seed: int, log) -> tuple:
    """Trains tiny-sentiment; returns ``(model, sequences, held-out accuracy, seconds)``."""
    torch.manual_seed(seed + 1)
    labels = {"id2label": {0: "negative", 1: "positive"}, "label2id": {"negative": 0, "positive": 1}}
    cls = GPT2ForSequenceClassification(
        models.gpt2_config(tokenizer, models.CLS_CONFIG, num_labels=2, **labels)
    )
    seqs, targets = models.classifier_sequences(tokenizer, c.cls_reviews, seed)
    t0 = time.time()
    training.train_classifier(
        cls,
        seqs,
        targets,
        tokenizer.pad_token_id,
        steps=st.cls_steps,
        batch_size=st.batch_size,
        lr=2e-3,
        seed=seed,
        log=log,
    )
    seconds = time.time() - t0
    probs = training.positive_probs(cls, tokenizer, [r.text for r in c.heldout])
    acc = sum((p > 0.5) == (r.label == POS) for p, r in zip(probs, c.heldout)) / len(c.heldout)
    log(f"tiny-sentiment held-out accuracy: {acc:.4f} on {len(c.heldout)} fresh reviews")
    return cls, seqs, acc, seconds


def evaluate_lm(lm, cls, tokenizer, data: dict[str, list], st: Settings, seed: int) -> dict[str, Any]:
    """The untrained baselines: P(positive) of sampled continuations and the copy exact match."""
    brng = random.Random(f"baseline-{seed}")
    prompts = [brng.choice(data["review_prompts"]) for _ in range(st.eval_samples)]
    conts = training.sample_continuations(lm, tokenizer, prompts, max_new_tokens=20, seed=seed)
    probs = training.positive_probs(cls, tokenizer, [p + c for p, c in zip(prompts, conts)])
    copy_rows = data["copy_prompts"][: st.eval_samples // 2]
    copied = training.sample_continuations(
        lm, tokenizer, [row["prompt"] for row in copy_rows], max_new_tokens=32, seed=seed
    )
    exact = sum(c.strip() == row["references"][0] for c, row in zip(copied, copy_rows)) / len(copy_rows)
    return {
        "baseline": sum(probs) / len(probs),
        "baseline_samples": len(prompts),
        "samples": [p + c for p, c in zip(prompts[:5], conts[:5])],
        "copy_exact": exact,
        "copy_samples": len(copy_rows),
    }


def build_solver(c: Corpus, tokenizer, st: Settings, seed: int, out: Path, log) -> dict[str, Any]:
    """Trains tiny-solver (arithmetic and reversal) and saves it and its early snapshot.

    One run, two starting models: ``tiny-solver-early`` is saved at the first check where the
    sampled reverse similarity reaches :data:`EARLY_TARGET` (reversal is learned long before
    addition), ``tiny-solver`` when the arithmetic accuracy reaches :data:`SOLVER_TARGET`.

    Returns:
        ``{"model", "steps", "seconds", "early_steps", "early_eval"}``.
    """
    torch.manual_seed(seed + 2)
    solver = GPT2LMHeadModel(models.gpt2_config(tokenizer, models.SOLVER_CONFIG))
    texts = [p + a for p, a in c.solver_texts]
    seqs = models.lm_sequences(tokenizer, texts, seed, models.SOLVER_CONFIG["n_positions"], tag="solver-bos")
    # Only the answers are learned: the prompts' digits and words are random by design.
    prompt_lens = [len(ids) for ids in tokenizer([p for p, _ in c.solver_texts])["input_ids"]]
    starts = [n + (s[0] == tokenizer.eos_token_id) for n, s in zip(prompt_lens, seqs)]
    t0 = time.time()
    early: dict[str, Any] = {"early_steps": None, "early_eval": None}
    checks = [0]

    def save(directory: Path) -> None:
        solver.save_pretrained(directory, safe_serialization=True)
        save_tokenizer(tokenizer, directory)

    def good_enough() -> bool:
        checks[0] += 1
        ev = evaluate_solver(solver, tokenizer, c.data, seed)
        if early["early_steps"] is None and ev["reverse_similarity"] >= EARLY_TARGET:
            save(out / "tiny-solver-early")
            early.update(early_steps=checks[0] * CHECK_EVERY, early_eval=ev)
            log(f"  tiny-solver-early saved at step {checks[0] * CHECK_EVERY}: {ev}")
        return ev["arithmetic_accuracy"] >= SOLVER_TARGET

    steps = training.train_lm(
        solver,
        seqs,
        tokenizer.pad_token_id,
        steps=st.solver_steps,
        batch_size=st.batch_size,
        lr=2e-3,
        seed=seed,
        log=log,
        name="solver",
        loss_starts=starts,
        until=None if st is QUICK else good_enough,
    )
    save(out / "tiny-solver")
    if early["early_steps"] is None:  # --quick: no checks; the early model is the final one
        save(out / "tiny-solver-early")
        early.update(early_steps=steps, early_eval=evaluate_solver(solver, tokenizer, c.data, seed))
    return {"model": solver, "steps": steps, "seconds": time.time() - t0, **early}


def evaluate_solver(solver, tokenizer, data: dict[str, list], seed: int) -> dict[str, Any]:
    """Sampled (temperature 1) accuracy on the arithmetic prompts and similarity on the reverse prompts."""
    arith = data["arithmetic_prompts"]
    answers = training.sample_continuations(solver, tokenizer, [r["prompt"] for r in arith], 6, seed)
    correct = [training.last_number(a) == row["answer"] for a, row in zip(answers, arith)]
    rev = data["reverse_prompts"]
    outs = training.sample_continuations(solver, tokenizer, [r["prompt"] for r in rev], 12, seed)
    sims = [training.similarity(o.strip(), row["references"][0]) for o, row in zip(outs, rev)]
    return {
        "arithmetic_accuracy": round(sum(correct) / len(correct), 4),
        "arithmetic_samples": len(correct),
        "reverse_similarity": round(sum(sims) / len(sims), 4),
        "reverse_samples": len(sims),
    }


def build_agent(c: Corpus, tokenizer, st: Settings, seed: int, out: Path, log) -> dict[str, Any]:
    """Trains tiny-agent on the tool-use and game transcripts, saves it and plays both tasks with it.

    Only the policy's turns are learned (the prompts and the inserted replies are read), and the
    batches are drawn at random rather than by length (see :func:`training.train_lm`).

    Returns:
        ``{"model", "steps", "seconds", "eval"}``; ``eval`` is :func:`evaluate_agent`'s.
    """
    torch.manual_seed(seed + 3)
    agent = GPT2LMHeadModel(models.gpt2_config(tokenizer, models.AGENT_CONFIG))
    seqs, learned = models.transcript_sequences(tokenizer, c.agent_texts)
    t0 = time.time()
    steps = training.train_lm(
        agent,
        seqs,
        tokenizer.pad_token_id,
        steps=st.agent_steps,
        batch_size=st.batch_size,
        lr=2e-3,
        seed=seed,
        log=log,
        name="agent",
        loss_masks=learned,
        group_by_length=False,
    )
    seconds = time.time() - t0
    agent.save_pretrained(out / "tiny-agent", safe_serialization=True)
    save_tokenizer(tokenizer, out / "tiny-agent")
    return {
        "model": agent,
        "steps": steps,
        "seconds": seconds,
        "eval": evaluate_agent(agent, tokenizer, c.data, seed),
    }


def finish_agent(c: Corpus, tokenizer, st: Settings, common: dict, out: Path, log) -> dict[str, Any]:
    """Builds tiny-agent, writes its build_info.json, logs and returns its summary entries."""
    built = build_agent(c, tokenizer, st, common["seed"], out, log)
    write_info(out / "tiny-agent", agent_info(common, built["model"], c, built))
    calc, game = built["eval"]["calculator"], built["eval"]["guess_number"]
    log(
        f"tiny-agent {models.parameters(built['model']):,} params (trained {built['seconds']:.0f}s): "
        f"calculator accuracy {calc['calculator_accuracy']:.3f} (calls {calc['call_rate']:.2f}, "
        f"copied right {calc['correct_call_rate']:.2f}); guess-number return {game['guess_return']:.3f} "
        f"(binary search {game['binary_search_return']:.3f}, uniform random {game['uniform_random_return']:.3f})"
    )
    return {
        "agent_params": models.parameters(built["model"]),
        "agent_train_s": built["seconds"],
        "calculator_accuracy": calc["calculator_accuracy"],
        "guess_return": game["guess_return"],
    }


def evaluate_agent(agent, tokenizer, data: dict[str, list], seed: int) -> dict[str, Any]:
    """Both multi-turn tasks played by sampling (temperature 1) on their prompt files."""
    return {
        "calculator": episodes.evaluate_calculator(agent, tokenizer, data["calculator_prompts"], seed),
        "guess_number": episodes.evaluate_guess(agent, tokenizer, data["guess_prompts"], seed),
    }


def agent_info(common: dict, agent, c: Corpus, built: dict[str, Any]) -> dict[str, Any]:
    """tiny-agent's build_info.json: the protocols' settings, the training mix and the untrained scores."""
    calculator = sum(t[0].text != P.GUESS_PROMPT for t in c.agent_texts)
    return {
        **common,
        "parameters": models.parameters(agent),
        "config": models.AGENT_CONFIG,
        "train_sequences": len(c.agent_texts),
        "calculator_transcripts": calculator,
        "guess_transcripts": len(c.agent_texts) - calculator,
        "steps": built["steps"],
        "training_mix": {
            "call_rate": transcripts.CALL_RATE,
            "copy_noise_per_digit": transcripts.COPY_NOISE,
            "nearby_offset": transcripts.NEARBY,
            "guess_follow_rate": transcripts.FOLLOW_RATE,
        },
        "protocol": {
            "calculator_stop": P.CALL_END,
            "calculator_max_new_tokens": P.CALCULATOR_MAX_NEW_TOKENS,
            "guess_max": P.GUESS_MAX,
            "max_guesses": P.MAX_GUESSES,
            "turn_cost": P.TURN_COST,
            "guess_max_new_tokens": P.GUESS_MAX_NEW_TOKENS,
        },
        # Sampled at temperature 1 through the text protocols (tools/build_assets/episodes.py).
        **built["eval"],
    }


def write_info(directory: Path, info: dict[str, Any]) -> None:
    (directory / "build_info.json").write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")


def _log(message: str) -> None:
    # Flushed so progress shows up when the output goes to a file or a pipe.
    print(message, flush=True)


def build(
    out: Path,
    seed: int = 0,
    quick: bool = False,
    reuse_lm: bool = False,
    agent_only: bool = False,
    log: Callable[[str], None] = _log,
) -> dict:
    """Builds every asset into ``out`` and returns a summary dict.

    Each model is saved as soon as it is trained, so an interrupted build keeps what it finished.

    Args:
        out: Target directory (created if missing); gets ``tiny-lm/``, ``tiny-sentiment/``, ``data/``.
        seed: Seed of the corpus, the data files and the weight initialisation.
        quick: Tiny corpus and a handful of steps, for testing this tool only.
        reuse_lm: Load ``out/tiny-lm`` (from an earlier build with the same seed and settings) instead of
            training it again; everything else is rebuilt. For iterating on the sentiment model.
        agent_only: Write the data files and train ``tiny-agent`` only, leaving the other models in
            ``out`` as they are (its tokenizer must be theirs). For iterating on the agent.
        log: Progress printer.

    Returns:
        Sizes, parameter counts, held-out accuracy, samples and the baseline positive probability.

    Example:
        >>> build(Path("/tmp/assets"), seed=0, quick=True, log=lambda s: None)["quick"]
        True
    """
    # One thread: on a shared machine two spinning OpenMP threads per process slow everything down
    # many times over, and the weights are reproducible byte for byte only at the same thread count.
    torch.set_num_threads(1)
    st = QUICK if quick else FULL
    out = out.resolve()
    t_start = time.time()
    c = make_corpus(seed, st)
    log(
        f"corpus: {len(c.lm_reviews)} lm reviews, {len(c.copy_texts)} copy examples, "
        f"{len(c.cls_reviews)} classifier reviews, {len(c.heldout)} held-out"
    )
    tokenizer = build_tokenizer(c)
    log(f"tokenizer: {len(tokenizer)} tokens")
    if agent_only:  # checked before anything is written
        models.check_tokenizer(out / "tiny-lm", tokenizer, "--agent-only")
    corpus.write_data(out, c.data)
    common = {"seed": seed, "quick": quick, "vocab_size": len(tokenizer)}
    if agent_only:
        summary = {"quick": quick, "out": str(out), **finish_agent(c, tokenizer, st, common, out, log)}
        summary["total_s"] = time.time() - t_start
        log(f"== tiny-agent built in {summary['total_s']:.0f}s -> {out / 'tiny-agent'}")
        return summary
    lm_dir, cls_dir = out / "tiny-lm", out / "tiny-sentiment"
    lm, lm_seqs, lm_time = build_lm(c, tokenizer, st, seed, lm_dir, reuse_lm, log)
    cls, cls_seqs, acc, cls_time = build_classifier(c, tokenizer, st, seed, log)
    ev = evaluate_lm(lm, cls, tokenizer, c.data, st, seed)
    cls.save_pretrained(cls_dir, safe_serialization=True)
    save_tokenizer(tokenizer, cls_dir)
    built = build_solver(c, tokenizer, st, seed, out, log)
    solver, solver_time = built["model"], built["seconds"]
    solver_ev = evaluate_solver(solver, tokenizer, c.data, seed)
    write_info(lm_dir, lm_info(common, lm, lm_seqs, c, st, ev))
    write_info(cls_dir, cls_info(common, cls, cls_seqs, c, st, acc, seed))
    stop = {"stopped_at_arithmetic_accuracy": SOLVER_TARGET}
    write_info(out / "tiny-solver", solver_info(common, solver, c, built["steps"], solver_ev, stop))
    stop = {"stopped_at_reverse_similarity": EARLY_TARGET}
    write_info(
        out / "tiny-solver-early",
        solver_info(common, solver, c, built["early_steps"], built["early_eval"], stop),
    )
    # Built last, from its own seeds, so that adding it changed none of the assets above.
    agent = finish_agent(c, tokenizer, st, common, out, log)
    summary = {
        "quick": quick,
        "out": str(out),
        "vocab_size": len(tokenizer),
        "lm_params": models.parameters(lm),
        "cls_params": models.parameters(cls),
        "heldout_accuracy": acc,
        "baseline_positive_prob": ev["baseline"],
        "copy_exact_match": ev["copy_exact"],
        "solver_params": models.parameters(solver),
        **solver_ev,
        "lm_train_s": lm_time,
        "solver_train_s": solver_time,
        "cls_train_s": cls_time,
        **agent,
        "total_s": time.time() - t_start,
        "samples": ev["samples"],
        "sizes": {
            name: models.size(out / name)
            for name in ("tiny-lm", "tiny-sentiment", "tiny-solver", "tiny-agent", "data")
        },
    }
    print_summary(summary, ev, log)
    return summary


def lm_info(common: dict, lm, seqs: list, c: Corpus, st: Settings, ev: dict) -> dict[str, Any]:
    """tiny-lm's build_info.json."""
    return {
        **common,
        "parameters": models.parameters(lm),
        "config": models.LM_CONFIG,
        "train_sequences": len(seqs),
        "reviews": len(c.lm_reviews),
        "copy_examples": len(c.copy_texts),
        "steps": st.lm_steps,
        # Sampled (temperature 1) continuations of 20 tokens of random review prompts, scored by
        # tiny-sentiment: the untrained baseline of the sentiment task.
        "baseline_positive_prob": round(ev["baseline"], 4),
        "baseline_samples": ev["baseline_samples"],
        # Sampled continuations of copy prompts that equal the first reference exactly.
        "copy_exact_match": round(ev["copy_exact"], 4),
        "copy_samples": ev["copy_samples"],
    }


def solver_info(common: dict, solver, c: Corpus, steps: int, ev: dict, stop: dict) -> dict[str, Any]:
    """tiny-solver's build_info.json: its untrained (sampled, temperature 1) scores on the prompt files."""
    return {
        **common,
        "parameters": models.parameters(solver),
        "config": models.SOLVER_CONFIG,
        "train_sequences": len(c.solver_texts),
        "steps": steps,
        **stop,
        **ev,
    }


def cls_info(common: dict, cls, seqs: list, c: Corpus, st: Settings, acc: float, seed: int) -> dict[str, Any]:
    """tiny-sentiment's build_info.json."""
    return {
        **common,
        "parameters": models.parameters(cls),
        "config": models.CLS_CONFIG,
        "train_reviews": len(c.cls_reviews),
        "train_sequences": len(seqs),
        "steps": st.cls_steps,
        "heldout_reviews": len(c.heldout),
        "heldout_seed": f"heldout-{seed + 1}",
        "heldout_accuracy": round(acc, 4),
    }


def print_summary(summary: dict, ev: dict, log: Callable[[str], None]) -> None:
    log("")
    log(f"== textenv assets built in {summary['total_s']:.0f}s -> {summary['out']}")
    for name, size in summary["sizes"].items():
        log(f"  {name:15s} {size / 1e6:6.2f} MB")
    log(
        f"  tokenizer vocab {summary['vocab_size']}; tiny-lm {summary['lm_params']:,} params "
        f"(trained {summary['lm_train_s']:.0f}s); tiny-sentiment {summary['cls_params']:,} params "
        f"(trained {summary['cls_train_s']:.0f}s)"
    )
    log(
        f"  held-out accuracy {summary['heldout_accuracy']:.4f}; baseline P(positive) of "
        f"{ev['baseline_samples']} LM continuations {ev['baseline']:.3f}; copy exact match {ev['copy_exact']:.2f}"
    )
    log(
        f"  tiny-solver {summary['solver_params']:,} params (trained {summary['solver_train_s']:.0f}s): "
        f"arithmetic accuracy {summary['arithmetic_accuracy']:.3f}, reverse similarity "
        f"{summary['reverse_similarity']:.3f} (sampled, untrained)"
    )
    log("  samples:")
    for s in summary["samples"]:
        log(f"    {s!r}")


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit status."""
    parser = argparse.ArgumentParser(
        prog="python -m tools.build_assets", description="Rebuild every built-in asset of textenv."
    )
    parser.add_argument(
        "--out", type=Path, default=ASSETS_DIR, help="output directory (default: the textenv/assets package)"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="seconds-long build for testing the tool")
    parser.add_argument(
        "--reuse-lm",
        action="store_true",
        help="keep the tiny-lm already in --out (same seed and settings) and rebuild everything else",
    )
    parser.add_argument(
        "--agent-only",
        action="store_true",
        help="write the data files and rebuild tiny-agent only (the other models in --out stay as they are)",
    )
    args = parser.parse_args(argv)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    summary = build(
        args.out, seed=args.seed, quick=args.quick, reuse_lm=args.reuse_lm, agent_only=args.agent_only
    )
    if not args.quick and not args.agent_only and summary["heldout_accuracy"] < 0.95:
        print(f"error: held-out accuracy {summary['heldout_accuracy']:.4f} < 0.95")
        return 1
    return 0
