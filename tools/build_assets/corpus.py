"""The corpora: prompt files of the tasks and the training texts of the models.

Every function takes its randomness from string-seeded ``random.Random`` instances, so each part of
the corpus stays the same when another part's size changes.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from tools.build_assets import puzzles, transcripts
from tools.build_assets.grammar import ReviewGrammar
from tools.build_assets.lexicon import ADJ, MIXED, NEG, NEUTRAL, POS, SUBJECTS_PL, SUBJECTS_SG, SYNONYMS

KEYWORD_PREFIX = "Use:"
COPY_PREFIX = "Repeat:"
COPY_SUFFIX = "=>"
# Label mix of the LM's reviews.
BALANCE = {POS: 0.4, NEG: 0.4, MIXED: 0.1, NEUTRAL: 0.1}
# The built-in tokenizer's chat template: "user: <content> assistant: <content> ... assistant:".
CHAT_TEMPLATE = (
    "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }} {% endfor %}"
    "{% if add_generation_prompt %}assistant:{% endif %}"
)
CHAT_REQUESTS = ("Write a movie review.", "Review this movie.", "What did you think of the film?")


def _distinct(make: Callable[[], str], n: int) -> list[str]:
    seen: dict[str, None] = {}
    for _ in range(n * 200):
        seen.setdefault(make(), None)
        if len(seen) == n:
            break
    return list(seen)


def _paraphrases(sentence: str, rng: random.Random) -> list[str]:
    words = sentence.split(" ")

    def swap(w: str) -> str:
        core = w.rstrip(".,!;")
        return SYNONYMS[core] + w[len(core) :] if core in SYNONYMS else w

    idx = [i for i, w in enumerate(words) if w.rstrip(".,!;") in SYNONYMS]
    if not idx:
        return []
    full = " ".join(swap(w) for w in words)
    out = [full]
    if len(idx) > 1 and rng.random() < 0.5:
        one = list(words)
        one[idx[0]] = swap(one[idx[0]])
        out.append(" ".join(one))
    return out


def keyword_pool() -> list[str]:
    """Single lexicon words usable as keywords (nouns and adjectives the tiny LM knows)."""
    nouns = [w for w in (*SUBJECTS_SG, *SUBJECTS_PL, "movie", "film") if " " not in w]
    return sorted(set(nouns) | set(ADJ[POS]) | set(ADJ[NEG]))


def make_data(seed: int, n: int = 200) -> dict[str, list]:
    """The prompt files' contents (lists of lines / dicts), ``n`` distinct prompts each."""
    return {
        "review_prompts": _distinct(ReviewGrammar(random.Random(f"prompts-{seed}")).opening, n),
        "keyword_prompts": keyword_rows(seed, n),
        "copy_prompts": copy_rows(seed, n),
        "arithmetic_prompts": puzzles.arithmetic_rows(seed, n),
        "reverse_prompts": puzzles.reverse_rows(seed, n),
        "calculator_prompts": transcripts.calculator_rows(seed, n),
        "guess_prompts": transcripts.guess_rows(seed, n),
    }


def keyword_rows(seed: int, n: int) -> list[dict[str, Any]]:
    """``n`` keyword prompts: an instruction naming the keywords, then a review opening.

    Each prompt names its one keyword set ("Use: villain, boring. The soundtrack was"); keywords
    already in the opening are left out, so every keyword is still to be written.
    """
    rng = random.Random(f"keywords-{seed}")
    kg = ReviewGrammar(rng)
    nouns, adjs = keyword_nouns(), keyword_adjectives()
    rows: dict[str, list[str]] = {}
    while len(rows) < n:
        opening = kg.opening()
        lowered = opening.lower().split()
        kws = [rng.choice(nouns)]
        if rng.random() < 0.5:
            kws.append(rng.choice(adjs))
        kws = [k for k in kws if k not in lowered]
        if kws:
            rows.setdefault(keyword_prompt(kws, opening), kws)
    return [{"prompt": p, "keywords": k} for p, k in rows.items()]


def keyword_instruction(keywords: Sequence[str]) -> str:
    """``"Use: villain, boring."``: the line that names a keyword prompt's keywords."""
    return f"{KEYWORD_PREFIX} {', '.join(keywords)}."


def keyword_prompt(keywords: Sequence[str], opening: str) -> str:
    return f"{keyword_instruction(keywords)} {opening}"


def keyword_nouns() -> list[str]:
    return [w for w in keyword_pool() if w not in ADJ[POS] and w not in ADJ[NEG]]


def keyword_adjectives() -> list[str]:
    return [w for w in keyword_pool() if w in ADJ[POS] or w in ADJ[NEG]]


def keyword_examples(seed: int, n: int) -> list[str]:
    """LM training texts that follow a keyword instruction: "Use: plot, dull. <review with both>".

    Like the prompt file, a noun comes first and an adjective half of the time; here they are
    picked from the review, so the review shows how to use them.
    """
    rng = random.Random(f"lm-keywords-{seed}")
    g = ReviewGrammar(rng)
    nouns, adjs = set(keyword_nouns()), set(keyword_adjectives())
    out: list[str] = []
    while len(out) < n:
        review = g.review(rng.choice((POS, NEG, POS, NEG, MIXED)))
        words = sorted({w.strip(".,!;").lower() for w in review.text.split()})
        present_nouns = [w for w in words if w in nouns]
        present_adjs = [w for w in words if w in adjs]
        if not present_nouns:
            continue
        kws = [rng.choice(present_nouns)]
        if present_adjs and rng.random() < 0.5:
            kws.append(rng.choice(present_adjs))
        out.append(f"{keyword_instruction(kws)} {review.text}")
    return out


def copy_rows(seed: int, n: int) -> list[dict[str, Any]]:
    """``n`` copy prompts; half of them with paraphrased extra references."""
    cg = ReviewGrammar(random.Random(f"copy-{seed}"))
    prng = random.Random(f"paraphrase-{seed}")
    rows = []
    for s in _distinct(cg.copy_sentence, n):
        refs = [s]
        if prng.random() < 0.5:
            refs += [p for p in _paraphrases(s, prng) if p != s]
        rows.append({"prompt": copy_prompt(s), "references": refs})
    return rows


def chat_examples(seed: int, n: int) -> list[str]:
    """LM training texts in the chat template's format, so chat-templated prompts run sensibly.

    The user asks for a review, a review with keywords or a copy; the assistant answers as the
    plain tasks' continuations do.
    """
    rng = random.Random(f"lm-chat-{seed}")
    g = ReviewGrammar(rng)
    keyworded = keyword_examples(seed + 1000, n)
    out: list[str] = []
    for i in range(n):
        kind = rng.random()
        if kind < 0.4:
            user, reply = rng.choice(CHAT_REQUESTS), g.review(rng.choice((POS, NEG))).text
        elif kind < 0.7:
            instruction, _, reply = keyworded[i].partition(". ")
            user = instruction + "."
        else:
            reply = g.copy_sentence()
            user = copy_prompt(reply)
        out.append(render_chat([{"role": "user", "content": user}, {"role": "assistant", "content": reply}]))
    return out


def render_chat(messages: Sequence[dict[str, str]], add_generation_prompt: bool = False) -> str:
    """What :data:`CHAT_TEMPLATE` renders, for the training texts (tested against the template)."""
    text = "".join(f"{m['role']}: {m['content']} " for m in messages)
    return text + ("assistant:" if add_generation_prompt else "")


def copy_prompt(sentence: str) -> str:
    """The copy-task prompt for ``sentence``; the expected continuation is ``" " + sentence``.

    The instruction comes first so the LM knows from the first token that it is copying and never
    drifts into copy mode when writing a plain review.
    """
    return f"{COPY_PREFIX} {sentence} {COPY_SUFFIX}"


def write_data(out: Path, data: dict[str, list]) -> None:
    d = out / "data"
    d.mkdir(parents=True, exist_ok=True)
    (d / "review_prompts.txt").write_text("\n".join(data["review_prompts"]) + "\n", encoding="utf-8")
    for name in (
        "keyword_prompts",
        "copy_prompts",
        "arithmetic_prompts",
        "reverse_prompts",
        "calculator_prompts",
        "guess_prompts",
    ):
        lines = [json.dumps(row, ensure_ascii=False) for row in data[name]]
        (d / f"{name}.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
