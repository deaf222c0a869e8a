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

from tools.build_assets import corpus, models, training
from tools.build_assets.grammar import Review, ReviewGrammar
from tools.build_assets.lexicon import MIXED, NEG, NEUTRAL, POS
from tools.build_assets.tokenizer import save_tokenizer, train_tokenizer

ASSETS_DIR = Path(__file__).resolve().parents[2] / "textenv" / "assets"


@dataclass(frozen=True)
class Settings:
    """Corpus sizes and training lengths; ``--quick`` shrinks everything to a few seconds."""

    lm_reviews: int
    copy_examples: int
    cls_reviews: int
    heldout_reviews: int
    lm_steps: int
    cls_steps: int
    batch_size: int = 64
    eval_samples: int = 100  # LM continuations scored for the summary's baseline P(positive)
    # Copy examples are seen this many times per epoch: copying (an induction mechanism) is the
    # slowest skill for the LM to pick up, and repeating keeps the tokenizer corpus unchanged.
    copy_repeat: int = 1


FULL = Settings(
    lm_reviews=60_000,
    copy_examples=12_000,
    cls_reviews=30_000,
    heldout_reviews=2_000,
    lm_steps=600,
    cls_steps=400,
)
QUICK = Settings(
    lm_reviews=1_000,
    copy_examples=200,
    cls_reviews=1_000,
    heldout_reviews=200,
    lm_steps=4,
    cls_steps=4,
    batch_size=32,
    eval_samples=10,
)


@dataclass
class Corpus:
    """Every text of one build."""

    lm_reviews: list[Review]
    copy_texts: list[str]
    cls_reviews: list[Review]
    heldout: list[Review]
    data: dict[str, list]


def make_corpus(seed: int, st: Settings) -> Corpus:
    """The seeded corpus. Separate string seeds keep each part stable when another part's size changes."""
    cg = ReviewGrammar(random.Random(f"lm-copy-{seed}"))
    return Corpus(
        lm_reviews=ReviewGrammar(random.Random(f"lm-{seed}")).reviews(st.lm_reviews, corpus.BALANCE),
        copy_texts=[
            f"{corpus.copy_prompt(s)} {s}" for s in (cg.copy_sentence() for _ in range(st.copy_examples))
        ],
        cls_reviews=ReviewGrammar(random.Random(f"cls-{seed}")).reviews(
            st.cls_reviews, {POS: 0.38, NEG: 0.38, MIXED: 0.12, NEUTRAL: 0.12}
        ),
        # Held-out reviews come from a different seed than any training text.
        heldout=ReviewGrammar(random.Random(f"heldout-{seed + 1}")).reviews(
            st.heldout_reviews, {POS: 0.5, NEG: 0.5}
        ),
        data=corpus.make_data(seed),
    )


def build_tokenizer(c: Corpus):
    """The tokenizer, trained on everything the models will see, including the prompt files."""
    texts = [r.text for r in c.lm_reviews] + c.copy_texts + [r.text for r in c.cls_reviews]
    texts += c.data["review_prompts"] + [row["prompt"] for row in c.data["keyword_prompts"]]
    return train_tokenizer(texts, vocab_size=2048, model_max_length=models.LM_CONFIG["n_positions"])


def build_lm(c: Corpus, tokenizer, st: Settings, seed: int, lm_dir: Path, reuse: bool, log) -> tuple:
    """Trains (or with ``reuse`` loads) tiny-lm and saves it; returns ``(model, sequences, seconds)``."""
    torch.manual_seed(seed)
    lm = GPT2LMHeadModel(models.gpt2_config(tokenizer, models.LM_CONFIG))
    texts = [r.text for r in c.lm_reviews] + c.copy_texts * st.copy_repeat
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


def write_info(directory: Path, info: dict[str, Any]) -> None:
    (directory / "build_info.json").write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")


def _log(message: str) -> None:
    # Flushed so progress shows up when the output goes to a file or a pipe.
    print(message, flush=True)


def build(
    out: Path, seed: int = 0, quick: bool = False, reuse_lm: bool = False, log: Callable[[str], None] = _log
) -> dict:
    """Builds every asset into ``out`` and returns a summary dict.

    Each model is saved as soon as it is trained, so an interrupted build keeps what it finished.

    Args:
        out: Target directory (created if missing); gets ``tiny-lm/``, ``tiny-sentiment/``, ``data/``.
        seed: Seed of the corpus, the data files and the weight initialisation.
        quick: Tiny corpus and a handful of steps, for testing this tool only.
        reuse_lm: Load ``out/tiny-lm`` (from an earlier build with the same seed and settings) instead of
            training it again; everything else is rebuilt. For iterating on the sentiment model.
        log: Progress printer.

    Returns:
        Sizes, parameter counts, held-out accuracy, samples and the baseline positive probability.

    Example:
        >>> build(Path("/tmp/assets"), seed=0, quick=True, log=lambda s: None)["quick"]
        True
    """
    # One thread for --quick: it runs inside test suites next to other workers, where two spinning
    # OpenMP threads per process slow everything down; the real build uses both cores.
    torch.set_num_threads(1 if quick else 2)
    st = QUICK if quick else FULL
    out = out.resolve()
    t_start = time.time()
    c = make_corpus(seed, st)
    corpus.write_data(out, c.data)
    log(
        f"corpus: {len(c.lm_reviews)} lm reviews, {len(c.copy_texts)} copy examples, "
        f"{len(c.cls_reviews)} classifier reviews, {len(c.heldout)} held-out"
    )
    tokenizer = build_tokenizer(c)
    log(f"tokenizer: {len(tokenizer)} tokens")
    lm_dir, cls_dir = out / "tiny-lm", out / "tiny-sentiment"
    lm, lm_seqs, lm_time = build_lm(c, tokenizer, st, seed, lm_dir, reuse_lm, log)
    cls, cls_seqs, acc, cls_time = build_classifier(c, tokenizer, st, seed, log)
    ev = evaluate_lm(lm, cls, tokenizer, c.data, st, seed)
    cls.save_pretrained(cls_dir, safe_serialization=True)
    save_tokenizer(tokenizer, cls_dir)
    common = {"seed": seed, "quick": quick, "vocab_size": len(tokenizer)}
    write_info(lm_dir, lm_info(common, lm, lm_seqs, c, st, ev))
    write_info(cls_dir, cls_info(common, cls, cls_seqs, c, st, acc, seed))
    summary = {
        "quick": quick,
        "out": str(out),
        "vocab_size": len(tokenizer),
        "lm_params": models.parameters(lm),
        "cls_params": models.parameters(cls),
        "heldout_accuracy": acc,
        "baseline_positive_prob": ev["baseline"],
        "copy_exact_match": ev["copy_exact"],
        "lm_train_s": lm_time,
        "cls_train_s": cls_time,
        "total_s": time.time() - t_start,
        "samples": ev["samples"],
        "sizes": {name: models.size(out / name) for name in ("tiny-lm", "tiny-sentiment", "data")},
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
    args = parser.parse_args(argv)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    summary = build(args.out, seed=args.seed, quick=args.quick, reuse_lm=args.reuse_lm)
    if not args.quick and summary["heldout_accuracy"] < 0.95:
        print(f"error: held-out accuracy {summary['heldout_accuracy']:.4f} < 0.95")
        return 1
    return 0
