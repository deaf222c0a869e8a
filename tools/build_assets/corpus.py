"""The corpora: prompt files of the tasks and the training texts of the models.

Every function takes its randomness from string-seeded ``random.Random`` instances, so each part of
the corpus stays the same when another part's size changes.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from pathlib import Path

from tools.build_assets.grammar import ReviewGrammar
from tools.build_assets.lexicon import ADJ, MIXED, NEG, NEUTRAL, POS, SUBJECTS_PL, SUBJECTS_SG, SYNONYMS

COPY_PREFIX = "Repeat:"
COPY_SUFFIX = "=>"
# Label mix of the LM's reviews.
BALANCE = {POS: 0.4, NEG: 0.4, MIXED: 0.1, NEUTRAL: 0.1}


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
    """The three prompt files' contents (lists of lines / dicts)."""
    g = ReviewGrammar(random.Random(f"prompts-{seed}"))
    openings = _distinct(g.opening, n)

    rng = random.Random(f"keywords-{seed}")
    kg = ReviewGrammar(rng)
    nouns = [w for w in keyword_pool() if w not in ADJ[POS] and w not in ADJ[NEG]]
    adjs = [w for w in keyword_pool() if w in ADJ[POS] or w in ADJ[NEG]]
    keyword_rows: dict[tuple[str, tuple[str, ...]], None] = {}
    while len(keyword_rows) < n:
        prompt = kg.opening()
        lowered = prompt.lower().split()
        kws = [rng.choice(nouns)]
        if rng.random() < 0.5:
            kws.append(rng.choice(adjs))
        kws = [k for k in kws if k not in lowered]
        if kws:
            keyword_rows.setdefault((prompt, tuple(kws)), None)

    cg = ReviewGrammar(random.Random(f"copy-{seed}"))
    prng = random.Random(f"paraphrase-{seed}")
    copy_rows = []
    for s in _distinct(cg.copy_sentence, n):
        refs = [s]
        if prng.random() < 0.5:
            refs += [p for p in _paraphrases(s, prng) if p != s]
        copy_rows.append({"prompt": copy_prompt(s), "references": refs})

    return {
        "review_prompts": openings,
        "keyword_prompts": [{"prompt": p, "keywords": list(k)} for p, k in keyword_rows],
        "copy_prompts": copy_rows,
    }


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
    for name in ("keyword_prompts", "copy_prompts"):
        lines = [json.dumps(row, ensure_ascii=False) for row in data[name]]
        (d / f"{name}.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
