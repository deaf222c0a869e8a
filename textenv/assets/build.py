"""Build the built-in offline assets: tokenizer, ``tiny-lm``, ``tiny-sentiment`` and prompt files.

Everything is generated from a seeded grammar of short English movie reviews, so the assets can be
rebuilt bit-for-bit without network access::

    python -m textenv.assets.build                  # full build into textenv/assets/
    python -m textenv.assets.build --quick --out /tmp/assets   # seconds; for testing this script
    python -m textenv.assets.build --reuse-lm       # keep tiny-lm, rebuild the rest

The full build takes about 2 minutes on 2 idle cores (tiny-lm ~1 min, tiny-sentiment ~15 s) and
far longer on a busy machine, where two OpenMP threads per process contend badly.

Layout written under ``--out``::

    tiny-lm/           GPT2LMHeadModel + tokenizer (also the "tiny-tokenizer" asset), build_info.json
    tiny-sentiment/    GPT2ForSequenceClassification (0=negative, 1=positive) + tokenizer, build_info.json
    data/review_prompts.txt     one review opening per line
    data/keyword_prompts.jsonl  {"prompt": ..., "keywords": [...]}
    data/copy_prompts.jsonl     {"prompt": "Repeat: <sentence> =>", "references": [<sentence>, ...]}

The same seed gives the same corpus, tokenizer, data files and (on the same torch build and thread
count) the same weights: rebuilding with seed 0 reproduces the committed files byte for byte.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

# Polarity labels of generated reviews; the sentiment model's soft target for each.
POS, NEG, MIXED, NEUTRAL = "pos", "neg", "mixed", "neutral"
TARGET = {POS: 1.0, NEG: 0.0, MIXED: 0.5, NEUTRAL: 0.5}

EOS_TOKEN = "<|endoftext|>"
PAD_TOKEN = "<pad>"
COPY_PREFIX = "Repeat:"
COPY_SUFFIX = "=>"

# ----------------------------------------------------------------------------------------------
# Lexicon
# ----------------------------------------------------------------------------------------------
# The lexicon tables are laid out by hand for reading; the formatter would put one word per line.
# fmt: off
# Film nouns are repeated so that "movie"/"film" dominate, as in real reviews.
FILMS = ("movie", "film", "movie", "film", "movie", "film", "comedy", "drama", "thriller", "sequel")
SUBJECTS_SG = (
    "plot", "story", "acting", "cast", "director", "soundtrack", "music", "ending", "dialogue", "script",
    "cinematography", "pacing", "lead actor", "lead actress", "villain", "humor", "editing", "score",
    "camera work", "final scene", "opening scene", "main character", "writing", "direction", "premise",
    "twist", "hero", "romance", "animation", "sound design",
)
SUBJECTS_PL = (
    "characters", "visuals", "special effects", "performances", "actors", "jokes", "songs",
    "action scenes", "costumes", "fight scenes", "sets", "dialogues",
)
# Nouns usable without an article after "with": "a charming film with great music".
MASS_NOUNS = (
    "acting", "music", "dialogue", "visuals", "performances", "characters", "humor", "writing",
    "direction", "action", "songs", "jokes", "special effects", "editing", "pacing",
)
ADJ = {
    POS: (
        "wonderful", "brilliant", "excellent", "amazing", "beautiful", "delightful", "superb", "charming",
        "gripping", "fantastic", "great", "moving", "stunning", "clever", "fresh", "powerful", "touching",
        "hilarious", "memorable", "impressive", "outstanding", "lovely", "funny", "smart", "thrilling",
        "perfect", "good", "enjoyable", "magnificent", "heartwarming", "terrific", "inspiring", "solid",
        "marvelous", "sharp", "witty", "engaging", "captivating", "excellent", "wonderful", "great",
    ),
    NEG: (
        "awful", "terrible", "dull", "boring", "bad", "weak", "poor", "predictable", "horrible", "clumsy",
        "flat", "lifeless", "messy", "forgettable", "painful", "tedious", "bland", "silly", "disappointing",
        "confusing", "stupid", "lazy", "annoying", "ugly", "dreadful", "pointless", "awkward", "cheap",
        "mediocre", "ridiculous", "lame", "shallow", "uninspired", "sloppy", "tiresome", "awful", "terrible",
        "boring", "bad",
    ),
    NEUTRAL: (
        "okay", "fine", "average", "decent", "ordinary", "passable", "acceptable", "typical", "standard",
        "fair", "alright", "watchable",
    ),
}
# Intensifiers carry no sentiment on their own, so the classifier has to read the adjective.
ADVERBS = ("really", "truly", "very", "quite", "so", "absolutely", "incredibly", "extremely", "genuinely",
           "remarkably", "simply", "especially", "surprisingly")
NEUTRAL_ADVERBS = ("pretty", "fairly", "mostly", "somewhat", "rather", "just")
# Verb phrases in the past tense never use "was", so they agree with singular and plural subjects.
VP = {
    POS: (
        "kept me hooked", "made me smile", "made me laugh", "moved me to tears", "held my attention",
        "blew me away", "won me over", "left me wanting more", "worked perfectly", "felt fresh",
        "stayed with me", "exceeded my expectations", "made my day", "lifted my spirits",
        "kept me on the edge of my seat", "deserved every award", "surprised me in the best way",
        "gave me chills", "stole the show", "brought the story to life",
    ),
    NEG: (
        "put me to sleep", "made no sense", "dragged on forever", "fell flat", "wasted my time",
        "bored me to tears", "left me cold", "felt cheap", "ruined the film", "went nowhere",
        "annoyed me", "made me cringe", "tested my patience", "fell apart", "felt forced", "missed the mark",
        "made me want to leave", "insulted my intelligence", "let me down", "ruined the movie",
    ),
    NEUTRAL: (
        "did its job", "got the job done", "passed the time", "felt familiar", "followed the usual formula",
        "did what it needed to do", "left no strong impression", "had its moments",
    ),
}
FILM_VERBS = {
    POS: ("loved", "enjoyed", "adored", "liked", "really liked", "absolutely loved", "admired",
          "was impressed by", "fell in love with", "had a great time watching", "really enjoyed"),
    NEG: ("hated", "disliked", "regretted watching", "could not stand", "was disappointed by",
          "was bored by", "gave up on", "could not finish", "really hated", "did not enjoy"),
    NEUTRAL: ("had mixed feelings about", "did not mind", "was fine with", "have no strong feelings about"),
}
FEELINGS = {
    POS: ("I smiled", "I laughed", "I was hooked", "I was grinning", "I was glued to the screen",
          "I was entertained", "I had fun", "I was captivated"),
    NEG: ("I was bored", "I was checking my watch", "I was annoyed", "I kept yawning", "I was cringing",
          "I was falling asleep", "I was frustrated", "I wanted to leave"),
}
DURATIONS = ("the whole time", "from start to finish", "all the way through", "for two hours", "throughout")
RECOMMEND = {
    POS: ("I would recommend this {film}{to}.", "I would highly recommend this {film}{to}.",
          "I will definitely watch it again.", "I would happily watch it again.", "Do not miss this {film}.",
          "Go see it.", "I cannot wait to watch it again.", "It is worth every minute."),
    NEG: ("I would not recommend this {film}{to}.", "I will never watch it again.",
          "Do not waste your money on this {film}.", "Skip this one.", "I want those two hours back.",
          "It is not worth your time.", "I walked out halfway through."),
}
TO_WHOM = ("", " to anyone", " to my friends", " to everyone", " to all my friends", " to families")
WHEN = ("last night", "yesterday", "last weekend", "with my family", "on a plane", "at the cinema", "twice",
        "on Friday", "this weekend", "with friends")
COMPANIONS = ("my friends", "my family", "my wife", "my husband", "my kids", "my brother", "my sister",
              "my parents", "a friend", "my girlfriend", "my boyfriend")
INTROS = ("I watched this {film} {when}", "I saw this {film} {when}", "I went to see this {film} with {comp}",
          "We watched this {film} {when}", "I rented this {film} {when}", "I finally watched this {film}")
OPINIONS = ("I think ", "I thought ", "In my opinion, ", "Honestly, ", "To be honest, ", "I have to say ",
            "I must say ", "Overall, ")
CONNECTORS = {
    POS: ("Also, ", "Plus, ", "On top of that, ", "Overall, ", "In the end, ", "Best of all, ", ""),
    NEG: ("Also, ", "Worse, ", "Sadly, ", "On top of that, ", "Overall, ", "In the end, ", ""),
    MIXED: ("However, ", "But ", "Still, ", "On the other hand, ", "Sadly, ", "Luckily, "),
    NEUTRAL: ("Overall, ", "In the end, ", "Also, ", ""),
}
EVER = ("", " in years", " this year", " in a long time", " lately", " in my life")

# Word-level synonyms for paraphrased references of the copy task.
SYNONYMS = {
    "movie": "film", "film": "movie", "wonderful": "great", "great": "excellent", "excellent": "superb",
    "brilliant": "excellent", "amazing": "fantastic", "fantastic": "amazing", "funny": "hilarious",
    "beautiful": "lovely", "awful": "terrible", "terrible": "awful", "boring": "dull", "dull": "boring",
    "bad": "poor", "stupid": "silly", "really": "truly", "truly": "really", "very": "extremely",
    "loved": "adored", "hated": "disliked", "enjoyed": "liked", "music": "soundtrack", "story": "plot",
    "plot": "story", "horrible": "dreadful", "clever": "smart",
}
# fmt: on


# ----------------------------------------------------------------------------------------------
# Grammar
# ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Review:
    """One generated review.

    Attributes:
        text: The review, 1-2 sentences.
        label: One of ``"pos"``, ``"neg"``, ``"mixed"``, ``"neutral"``.
    """

    text: str
    label: str


def _cap(text: str) -> str:
    return text[:1].upper() + text[1:]


def _article(word: str) -> str:
    return "an" if word[:1] in "aeiou" else "a"


class ReviewGrammar:
    """Seeded generator of short movie reviews with known sentiment.

    Example:
        >>> g = ReviewGrammar(random.Random(0))
        >>> r = g.review("pos")
        >>> r.label
        'pos'
    """

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng

    # -- phrases -------------------------------------------------------------------------------
    def film(self) -> str:
        return self.rng.choice(FILMS)

    def subject(self, allow_film: bool = True) -> tuple[str, bool]:
        """Returns ``(noun phrase in lower case, is_plural)``."""
        r = self.rng
        if allow_film and r.random() < 0.3:
            return f"{r.choice(('the', 'this', 'the', 'this'))} {self.film()}", False
        plural = r.random() < 0.22
        noun = r.choice(SUBJECTS_PL if plural else SUBJECTS_SG)
        phrase = f"the {noun}"
        if r.random() < 0.15:
            phrase += f" in this {self.film()}"
        return phrase, plural

    def be(self, plural: bool) -> str:
        past = self.rng.random() < 0.75
        return ("were" if plural else "was") if past else ("are" if plural else "is")

    def adj(self, pol: str) -> str:
        r = self.rng
        word = r.choice(ADJ[pol])
        if pol == NEUTRAL:
            return f"{r.choice(NEUTRAL_ADVERBS)} {word}" if r.random() < 0.4 else word
        return f"{r.choice(ADVERBS)} {word}" if r.random() < 0.35 else word

    def adjs(self, pol: str) -> str:
        """One adjective, or a list of two or three for variety."""
        r = self.rng
        x = r.random()
        if x < 0.7:
            return self.adj(pol)
        a = r.sample(sorted(set(ADJ[pol])), 3)
        if x < 0.88:
            return f"{a[0]} and {a[1]}"
        return f"{a[0]}, {a[1]} and {a[2]}"

    # -- clauses (lower case, no final punctuation) ----------------------------------------------
    def clause_be(self, pol: str) -> str:
        s, pl = self.subject()
        tail = ""
        if s.endswith(FILMS) and self.rng.random() < 0.3:
            tail = self.rng.choice((" from start to finish", " from beginning to end", " overall"))
        return f"{s} {self.be(pl)} {self.adjs(pol)}{tail}"

    def clause_vp(self, pol: str) -> str:
        s, _ = self.subject()
        return f"{s} {self.rng.choice(VP[pol]).replace('the film', 'the ' + self.film())}"

    def clause_simple(self, pol: str) -> str:
        return self.clause_be(pol) if self.rng.random() < 0.6 else self.clause_vp(pol)

    # -- sentences -----------------------------------------------------------------------------
    def sentence(self, pol: str) -> str:
        """One sentence of polarity ``pol`` (pos, neg or neutral), capitalised and punctuated."""
        r = self.rng
        f = self.film
        if pol == NEUTRAL:
            return self._neutral_sentence()
        other = NEG if pol == POS else POS
        kind = r.random()
        if kind < 0.22:
            text = self.clause_be(pol)
            if r.random() < 0.25:
                text = r.choice(OPINIONS) + text
            return _cap(text) + "."
        if kind < 0.36:
            text = self.clause_vp(pol)
            if r.random() < 0.2:
                text = r.choice(OPINIONS) + text
            return _cap(text) + "."
        if kind < 0.46:
            return _cap(f"{self.clause_be(pol)} and {self.clause_simple(pol)}") + "."
        if kind < 0.55:
            tail = f" and {self.clause_simple(pol)}" if r.random() < 0.4 else ""
            return f"I {r.choice(FILM_VERBS[pol])} this {f()}{tail}."
        if kind < 0.64:
            intro = r.choice(INTROS).format(film=f(), when=r.choice(WHEN), comp=r.choice(COMPANIONS))
            return f"{intro} and {self.clause_simple(pol)}."
        if kind < 0.70:
            which = "best" if pol == POS else "worst"
            if r.random() < 0.5:
                return f"This is one of the {which} {f()}s I have seen{r.choice(EVER)}."
            return f"This is the {which} {f()} I have seen{r.choice(EVER)}."
        if kind < 0.76:
            return r.choice(RECOMMEND[pol]).format(film=f(), to=r.choice(TO_WHOM))
        if kind < 0.81:
            a = r.choice(ADJ[pol])
            return f"What {_article(a)} {a} {f()}!"
        if kind < 0.87:
            a, b = r.choice(ADJ[pol]), r.choice(ADJ[pol])
            return f"It is {_article(a)} {a} {f()} with {b} {r.choice(MASS_NOUNS)}."
        if kind < 0.92:
            return f"{r.choice(FEELINGS[pol])} {r.choice(DURATIONS)}."
        if kind < 0.96:
            # Negation of the opposite polarity: "not boring at all" is positive.
            s, pl = self.subject()
            neg_be = "were not" if pl else "was not"
            return _cap(f"{s} {neg_be} {r.choice(ADJ[other])} at all") + "."
        if pol == POS:
            s, pl = self.subject(allow_film=False)
            return f"Even {s} {self.be(pl)} {self.adj(POS)}."
        s, _ = self.subject(allow_film=False)
        return f"Even {s} could not save this {f()}."

    def _neutral_sentence(self) -> str:
        r = self.rng
        kind = r.random()
        if kind < 0.45:
            return _cap(self.clause_be(NEUTRAL)) + "."
        if kind < 0.7:
            s, _ = self.subject()
            return _cap(f"{s} {r.choice(VP[NEUTRAL])}") + "."
        if kind < 0.85:
            a, b = r.choice(ADJ[NEUTRAL]), r.choice(ADJ[NEUTRAL])
            return f"It is {_article(a)} {a} {self.film()} with {b} {r.choice(MASS_NOUNS)}."
        return f"I {r.choice(FILM_VERBS[NEUTRAL])} this {self.film()}."

    def _mixed_sentence(self) -> str:
        r = self.rng
        first, second = (POS, NEG) if r.random() < 0.5 else (NEG, POS)
        return _cap(f"{self.clause_simple(first)} but {self.clause_simple(second)}") + "."

    def _second(self, pol: str, first_pol: str) -> str:
        conn = self.rng.choice(CONNECTORS[MIXED if pol != first_pol else pol])
        s = self.sentence(pol)
        # Connectors only before plain statements: "Sadly, to be honest, ..." or "Overall, what a
        # ..." read badly.
        if not conn or not s.startswith(("The ", "This ", "It is ")) or s.startswith("This is "):
            return s
        return conn + s[:1].lower() + s[1:]

    def review(self, label: str) -> Review:
        """A review of 1-2 sentences with about 8-25 words and the given label."""
        r = self.rng
        for _ in range(100):
            if label == MIXED:
                if r.random() < 0.5:
                    text = self._mixed_sentence()
                    if r.random() < 0.3:
                        text += " " + self._second(NEUTRAL, NEUTRAL)
                else:
                    a, b = (POS, NEG) if r.random() < 0.5 else (NEG, POS)
                    text = self.sentence(a) + " " + self._second(b, a)
            else:
                text = self.sentence(label)
                if len(text.split()) < 8 or r.random() < 0.4:
                    text += " " + self._second(label, label)
            if 6 <= len(text.split()) <= 25:
                return Review(text, label)
        return Review(text, label)

    def reviews(self, n: int, weights: dict[str, float]) -> list[Review]:
        labels, w = zip(*weights.items())
        return [self.review(self.rng.choices(labels, w)[0]) for _ in range(n)]

    def copy_sentence(self) -> str:
        """A single short sentence (5-14 words) for the copy task."""
        for _ in range(100):
            s = self.sentence(self.rng.choice((POS, NEG, POS, NEG, NEUTRAL)))
            if 5 <= len(s.split()) <= 14:
                return s
        return s

    # -- prompts -------------------------------------------------------------------------------
    def opening(self) -> str:
        """A sentiment-neutral review opening that is a prefix of grammar sentences."""
        r = self.rng
        f = self.film
        kind = r.random()
        if kind < 0.45:
            s, pl = self.subject()
            s = _cap(s)
            x = r.random()
            return s if x < 0.25 else f"{s} {self.be(pl)}"
        if kind < 0.6:
            s, pl = self.subject()
            op = r.choice(OPINIONS)
            return f"{op}{s}" if r.random() < 0.5 else f"{op}{s} {self.be(pl)}"
        if kind < 0.78:
            intro = r.choice(INTROS).format(film=f(), when=r.choice(WHEN), comp=r.choice(COMPANIONS))
            return intro + " and" if r.random() < 0.7 else intro
        return r.choice(
            (
                "What a",
                "It is a",
                "It is an",
                "This is one of the",
                "This is the",
                "I would",
                f"I watched this {f()}",
                "Even the",
                f"This {f()}",
                f"This {f()} was",
                f"The {f()} was",
                f"The {f()} is",
                "I",
                f"I thought this {f()} was",
            )
        )


# ----------------------------------------------------------------------------------------------
# Data files
# ----------------------------------------------------------------------------------------------
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


# ----------------------------------------------------------------------------------------------
# Tokenizer
# ----------------------------------------------------------------------------------------------
def train_tokenizer(texts: Sequence[str], vocab_size: int, model_max_length: int):
    """Byte-level BPE on ``texts`` wrapped in a ``PreTrainedTokenizerFast``."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    # No prefix space: "The movie" and " movie" stay distinct tokens and decode() round-trips exactly.
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        special_tokens=[EOS_TOKEN, PAD_TOKEN],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=EOS_TOKEN,
        eos_token=EOS_TOKEN,
        pad_token=PAD_TOKEN,
        padding_side="left",
        model_max_length=model_max_length,
        clean_up_tokenization_spaces=False,
    )


# ----------------------------------------------------------------------------------------------
# Training helpers
# ----------------------------------------------------------------------------------------------
def _lr_at(step: int, total: int, peak: float, warmup: int) -> float:
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return peak * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


def _batches(lengths: Sequence[int], batch_size: int, steps: int, gen) -> Iterator[list[int]]:
    """``steps`` batches of indices, epoch after epoch of seeded permutations.

    Within windows of 32 batches the indices are sorted by length, so a batch holds sequences of
    similar length and little compute goes to padding; the batch order is then shuffled again.
    """
    import torch

    n = len(lengths)
    window = batch_size * 32
    done = 0
    while True:
        perm = torch.randperm(n, generator=gen).tolist()
        batches: list[list[int]] = []
        for w in range(0, n, window):
            chunk = sorted(perm[w : w + window], key=lambda i: lengths[i])
            batches += [chunk[i : i + batch_size] for i in range(0, len(chunk) - batch_size + 1, batch_size)]
        for b in torch.randperm(len(batches), generator=gen).tolist():
            yield batches[b]
            done += 1
            if done == steps:
                return


def _lm_batch(seqs: list[list[int]], pad_id: int):
    import torch

    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, : len(s)] = torch.tensor(s)
        mask[i, : len(s)] = 1
    labels = ids.masked_fill(mask == 0, -100)
    return ids, mask, labels


def train_lm(
    model,
    seqs: list[list[int]],
    pad_id: int,
    steps: int,
    batch_size: int,
    lr: float,
    seed: int,
    log: Callable[[str], None],
) -> None:
    """Causal-LM training on right-padded sequences (each already ends with EOS)."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, betas=(0.9, 0.98), weight_decay=0.01)
    model.train()
    warmup = max(1, steps // 20)
    t0 = time.time()
    for step, idx in enumerate(_batches([len(x) for x in seqs], batch_size, steps, gen)):
        for group in opt.param_groups:
            group["lr"] = _lr_at(step, steps, lr, warmup)
        ids, mask, labels = _lm_batch([seqs[i] for i in idx], pad_id)
        loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if step % max(1, steps // 10) == 0 or step == steps - 1:
            log(f"  lm step {step + 1}/{steps} loss {loss.item():.3f} ({time.time() - t0:.0f}s)")
    model.eval()


def _cls_batch(seqs: list[list[int]], pad_id: int, extra_pad: int):
    """Left-padded batch with ``extra_pad`` more pad columns, like the env's left-padded prompts."""
    import torch

    width = max(len(s) for s in seqs) + extra_pad
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, width - len(s) :] = torch.tensor(s)
        mask[i, width - len(s) :] = 1
    return ids, mask


def train_classifier(
    model,
    seqs: list[list[int]],
    targets: list[float],
    pad_id: int,
    steps: int,
    batch_size: int,
    lr: float,
    seed: int,
    log: Callable[[str], None],
) -> None:
    """Soft-target cross-entropy (target = P(positive)) so mixed/neutral texts land near 0.5."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    rng = random.Random(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, betas=(0.9, 0.98), weight_decay=0.01)
    model.train()
    warmup = max(1, steps // 20)
    t0 = time.time()
    for step, idx in enumerate(_batches([len(x) for x in seqs], batch_size, steps, gen)):
        for group in opt.param_groups:
            group["lr"] = _lr_at(step, steps, lr, warmup)
        # Random left padding: GPT-2 positions count pads, so the model must not depend on the offset.
        extra = rng.choice((0, 0, rng.randint(1, 48)))
        ids, mask = _cls_batch([seqs[i] for i in idx], pad_id, extra)
        target = torch.tensor([targets[i] for i in idx])
        logp = torch.log_softmax(model(input_ids=ids, attention_mask=mask).logits, dim=-1)
        loss = -(target * logp[:, 1] + (1 - target) * logp[:, 0]).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if step % max(1, steps // 10) == 0 or step == steps - 1:
            log(f"  cls step {step + 1}/{steps} loss {loss.item():.3f} ({time.time() - t0:.0f}s)")
    model.eval()


def positive_probs(model, tokenizer, texts: Sequence[str], batch_size: int = 128) -> list[float]:
    """P(positive) for each text, batched with the tokenizer's left padding."""
    import torch

    out: list[float] = []
    with torch.no_grad():
        for i in range(0, len(texts), batch_size):
            enc = tokenizer(list(texts[i : i + batch_size]), return_tensors="pt", padding=True)
            probs = torch.softmax(model(**enc).logits, dim=-1)[:, 1]
            out.extend(probs.tolist())
    return out


def sample_continuations(
    model, tokenizer, prompts: Sequence[str], max_new_tokens: int, seed: int, batch_size: int = 50
) -> list[str]:
    """Sampled continuations (text after the prompt, special tokens dropped)."""
    import torch

    torch.manual_seed(seed)
    out: list[str] = []
    with torch.no_grad():
        for i in range(0, len(prompts), batch_size):
            enc = tokenizer(list(prompts[i : i + batch_size]), return_tensors="pt", padding=True)
            gen = model.generate(
                **enc,
                do_sample=True,
                top_k=0,
                top_p=1.0,
                max_new_tokens=max_new_tokens,
                pad_token_id=tokenizer.pad_token_id,
                eos_token_id=tokenizer.eos_token_id,
            )
            new = gen[:, enc["input_ids"].shape[1] :]
            out.extend(tokenizer.batch_decode(new, skip_special_tokens=True))
    return out


def _size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


# ----------------------------------------------------------------------------------------------
# Main
# ----------------------------------------------------------------------------------------------
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
LM_CONFIG = {"n_layer": 4, "n_embd": 160, "n_head": 4, "n_positions": 128}
CLS_CONFIG = {"n_layer": 2, "n_embd": 96, "n_head": 4, "n_positions": 256}
BALANCE = {POS: 0.4, NEG: 0.4, MIXED: 0.1, NEUTRAL: 0.1}


def _save_tokenizer(tokenizer, directory: Path) -> None:
    """Saves ``tokenizer`` with the same serialized padding state wherever and whenever it is saved.

    transformers leaves the backend's padding as set by the last call (on after ``padding=True``,
    off after an unpadded call), and tokenizer.json records it; fixing it here keeps the two saved
    copies identical and the build reproducible. Left padding also suits direct ``tokenizers`` use.
    """
    tokenizer.backend_tokenizer.enable_padding(
        direction="left", pad_id=tokenizer.pad_token_id, pad_token=tokenizer.pad_token
    )
    tokenizer.save_pretrained(directory)


def _load_lm(lm_dir: Path, tokenizer):
    """The saved tiny-lm, after checking it was built with the same tokenizer."""
    from transformers import AutoTokenizer, GPT2LMHeadModel

    if not (lm_dir / "model.safetensors").is_file():
        raise FileNotFoundError(f"--reuse-lm: no built tiny-lm in {lm_dir}")
    if AutoTokenizer.from_pretrained(lm_dir).get_vocab() != tokenizer.get_vocab():
        raise ValueError(f"--reuse-lm: {lm_dir} was built with another tokenizer (other seed or corpus)")
    return GPT2LMHeadModel.from_pretrained(lm_dir).eval()


def _log(message: str) -> None:
    # Flushed so progress shows up when the output goes to a file or a pipe.
    print(message, flush=True)


def build(
    out: Path,
    seed: int = 0,
    quick: bool = False,
    reuse_lm: bool = False,
    log: Callable[[str], None] = _log,
) -> dict:
    """Builds every asset into ``out`` and returns a summary dict.

    Each model is saved as soon as it is trained, so an interrupted build keeps what it finished.

    Args:
        out: Target directory (created if missing); gets ``tiny-lm/``, ``tiny-sentiment/``, ``data/``.
        seed: Seed of the corpus, the data files and the weight initialisation.
        quick: Tiny corpus and a handful of steps, for testing this script only.
        reuse_lm: Load ``out/tiny-lm`` (from an earlier build with the same seed and settings) instead of
            training it again; everything else is rebuilt. For iterating on the sentiment model.
        log: Progress printer.

    Returns:
        Sizes, parameter counts, held-out accuracy, samples and the baseline positive probability.

    Example:
        >>> build(Path("/tmp/assets"), seed=0, quick=True, log=lambda s: None)["quick"]
        True
    """
    import torch
    from transformers import GPT2Config, GPT2ForSequenceClassification, GPT2LMHeadModel

    # One thread for --quick: it runs inside test suites next to other workers, where two spinning
    # OpenMP threads per process slow everything down; the real build uses both cores.
    torch.set_num_threads(1 if quick else 2)
    st = QUICK if quick else FULL
    out = out.resolve()
    t_start = time.time()

    # Corpus. Separate string seeds keep each part stable when another part's size changes.
    lm_reviews = ReviewGrammar(random.Random(f"lm-{seed}")).reviews(st.lm_reviews, BALANCE)
    cg = ReviewGrammar(random.Random(f"lm-copy-{seed}"))
    copy_texts = [f"{copy_prompt(s)} {s}" for s in (cg.copy_sentence() for _ in range(st.copy_examples))]
    cls_reviews = ReviewGrammar(random.Random(f"cls-{seed}")).reviews(
        st.cls_reviews, {POS: 0.38, NEG: 0.38, MIXED: 0.12, NEUTRAL: 0.12}
    )
    # Held-out reviews come from a different seed than any training text.
    heldout = ReviewGrammar(random.Random(f"heldout-{seed + 1}")).reviews(
        st.heldout_reviews, {POS: 0.5, NEG: 0.5}
    )
    data = make_data(seed)
    write_data(out, data)
    log(
        f"corpus: {len(lm_reviews)} lm reviews, {len(copy_texts)} copy examples, "
        f"{len(cls_reviews)} classifier reviews, {len(heldout)} held-out"
    )

    # Tokenizer: trained on everything the models will see, including prompt and keyword files.
    tok_texts = [r.text for r in lm_reviews] + copy_texts + [r.text for r in cls_reviews]
    tok_texts += data["review_prompts"] + [row["prompt"] for row in data["keyword_prompts"]]
    tokenizer = train_tokenizer(tok_texts, vocab_size=2048, model_max_length=LM_CONFIG["n_positions"])
    eos_id, pad_id = tokenizer.eos_token_id, tokenizer.pad_token_id
    log(f"tokenizer: {len(tokenizer)} tokens")

    # ---- tiny-lm ----
    torch.manual_seed(seed)
    lm_cfg = GPT2Config(
        vocab_size=len(tokenizer),
        **LM_CONFIG,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        bos_token_id=eos_id,
        eos_token_id=eos_id,
        pad_token_id=pad_id,
    )
    lm = GPT2LMHeadModel(lm_cfg)
    lm_texts = [r.text for r in lm_reviews] + copy_texts * st.copy_repeat
    enc = tokenizer(lm_texts, add_special_tokens=False)["input_ids"]
    srng = random.Random(f"bos-{seed}")
    # A few sequences start with BOS so that unconditional generate() (which starts from BOS) works.
    lm_seqs = [([eos_id] if srng.random() < 0.05 else []) + ids + [eos_id] for ids in enc]
    lm_seqs = [s[: LM_CONFIG["n_positions"]] for s in lm_seqs]
    lm_dir, cls_dir = out / "tiny-lm", out / "tiny-sentiment"
    t0 = time.time()
    if reuse_lm:
        lm = _load_lm(lm_dir, tokenizer)
        log(f"tiny-lm: reusing {lm_dir}")
    else:
        train_lm(lm, lm_seqs, pad_id, st.lm_steps, st.batch_size, lr=2e-3, seed=seed, log=log)
        lm.save_pretrained(lm_dir, safe_serialization=True)
        _save_tokenizer(tokenizer, lm_dir)
    lm_time = time.time() - t0

    # ---- tiny-sentiment ----
    torch.manual_seed(seed + 1)
    cls_cfg = GPT2Config(
        vocab_size=len(tokenizer),
        **CLS_CONFIG,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        bos_token_id=eos_id,
        eos_token_id=eos_id,
        pad_token_id=pad_id,
        num_labels=2,
        id2label={0: "negative", 1: "positive"},
        label2id={"negative": 0, "positive": 1},
    )
    cls = GPT2ForSequenceClassification(cls_cfg)
    crng = random.Random(f"prefix-{seed}")
    cls_seqs: list[list[int]] = []
    cls_targets: list[float] = []
    for r, ids in zip(cls_reviews, tokenizer([r.text for r in cls_reviews])["input_ids"]):
        cls_seqs.append(ids + ([eos_id] if crng.random() < 0.15 else []))
        cls_targets.append(TARGET[r.label])
        # Prefixes teach the model to score partial generations: an uninformative prefix of a
        # balanced corpus averages to 0.5, a prefix with a sentiment word leans its way.
        if crng.random() < 0.5 and len(ids) > 3:
            cls_seqs.append(ids[: crng.randint(2, len(ids) - 1)])
            cls_targets.append(TARGET[r.label])
    t0 = time.time()
    train_classifier(
        cls, cls_seqs, cls_targets, pad_id, st.cls_steps, st.batch_size, lr=2e-3, seed=seed, log=log
    )
    cls_time = time.time() - t0
    probs = positive_probs(cls, tokenizer, [r.text for r in heldout])
    acc = sum((p > 0.5) == (r.label == POS) for p, r in zip(probs, heldout)) / len(heldout)
    log(f"tiny-sentiment held-out accuracy: {acc:.4f} on {len(heldout)} fresh reviews")

    # ---- evaluation of the LM for the summary ----
    prompts = data["review_prompts"]
    brng = random.Random(f"baseline-{seed}")
    base_prompts = [brng.choice(prompts) for _ in range(st.eval_samples)]
    conts = sample_continuations(lm, tokenizer, base_prompts, max_new_tokens=20, seed=seed)
    base_probs = positive_probs(cls, tokenizer, [p + c for p, c in zip(base_prompts, conts)])
    baseline = sum(base_probs) / len(base_probs)
    samples = [p + c for p, c in zip(base_prompts[:5], conts[:5])]
    copy_rows = data["copy_prompts"][: st.eval_samples // 2]
    copy_out = sample_continuations(
        lm, tokenizer, [row["prompt"] for row in copy_rows], max_new_tokens=32, seed=seed
    )
    copy_exact = sum(c.strip() == row["references"][0] for c, row in zip(copy_out, copy_rows)) / len(
        copy_rows
    )

    # ---- save ----
    lm_params = sum(p.numel() for p in lm.parameters())
    cls_params = sum(p.numel() for p in cls.parameters())
    cls.save_pretrained(cls_dir, safe_serialization=True)
    _save_tokenizer(tokenizer, cls_dir)
    common = {"seed": seed, "quick": quick, "vocab_size": len(tokenizer)}
    lm_info = {
        **common,
        "parameters": lm_params,
        "config": LM_CONFIG,
        "train_sequences": len(lm_seqs),
        "reviews": len(lm_reviews),
        "copy_examples": len(copy_texts),
        "steps": st.lm_steps,
        # Sampled (temperature 1) continuations of 20 tokens of random review prompts, scored by
        # tiny-sentiment: the untrained baseline of the sentiment task.
        "baseline_positive_prob": round(baseline, 4),
        "baseline_samples": len(base_prompts),
        # Sampled continuations of copy prompts that equal the first reference exactly.
        "copy_exact_match": round(copy_exact, 4),
        "copy_samples": len(copy_rows),
    }
    cls_info = {
        **common,
        "parameters": cls_params,
        "config": CLS_CONFIG,
        "train_reviews": len(cls_reviews),
        "train_sequences": len(cls_seqs),
        "steps": st.cls_steps,
        "heldout_reviews": len(heldout),
        "heldout_seed": f"heldout-{seed + 1}",
        "heldout_accuracy": round(acc, 4),
    }
    for d, info in ((lm_dir, lm_info), (cls_dir, cls_info)):
        (d / "build_info.json").write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")

    summary = {
        "quick": quick,
        "out": str(out),
        "vocab_size": len(tokenizer),
        "lm_params": lm_params,
        "cls_params": cls_params,
        "heldout_accuracy": acc,
        "baseline_positive_prob": baseline,
        "copy_exact_match": copy_exact,
        "lm_train_s": lm_time,
        "cls_train_s": cls_time,
        "total_s": time.time() - t_start,
        "samples": samples,
        "sizes": {name: _size(out / name) for name in ("tiny-lm", "tiny-sentiment", "data")},
    }
    log("")
    log(f"== textenv assets built in {summary['total_s']:.0f}s -> {out}")
    for name, size in summary["sizes"].items():
        log(f"  {name:15s} {size / 1e6:6.2f} MB")
    log(
        f"  tokenizer vocab {len(tokenizer)}; tiny-lm {lm_params:,} params (trained {lm_time:.0f}s); "
        f"tiny-sentiment {cls_params:,} params (trained {cls_time:.0f}s)"
    )
    log(
        f"  held-out accuracy {acc:.4f}; baseline P(positive) of {len(base_prompts)} LM continuations {baseline:.3f}; "
        f"copy exact match {copy_exact:.2f}"
    )
    log("  samples:")
    for s in samples:
        log(f"    {s!r}")
    return summary


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit status."""
    parser = argparse.ArgumentParser(
        prog="python -m textenv.assets.build", description=__doc__.split("\n")[0]
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=Path(__file__).resolve().parent,
        help="output directory (default: the textenv/assets package)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="seconds-long build for testing the script")
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


if __name__ == "__main__":
    raise SystemExit(main())
