"""A seeded grammar of short English movie reviews with known sentiment."""

from __future__ import annotations

import random
from dataclasses import dataclass

from tools.build_assets.lexicon import (
    ADJ,
    ADVERBS,
    COMPANIONS,
    CONNECTORS,
    DURATIONS,
    EVER,
    FEELINGS,
    FILM_VERBS,
    FILMS,
    INTROS,
    MASS_NOUNS,
    MIXED,
    NEG,
    NEUTRAL,
    NEUTRAL_ADVERBS,
    OPINIONS,
    POS,
    RECOMMEND,
    SUBJECTS_PL,
    SUBJECTS_SG,
    TO_WHOM,
    VP,
    WHEN,
)


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
