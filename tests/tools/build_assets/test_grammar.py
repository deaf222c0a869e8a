"""The review grammar (tools/build_assets/grammar.py) that writes the sentiment corpus."""

from __future__ import annotations

from random import Random

from tools.build_assets import corpus, grammar


def test_grammar_is_seeded():
    a = grammar.ReviewGrammar(Random(3)).reviews(50, corpus.BALANCE)
    b = grammar.ReviewGrammar(Random(3)).reviews(50, corpus.BALANCE)
    assert a == b
    assert all(6 <= len(r.text.split()) <= 25 for r in a)
    assert {r.label for r in grammar.ReviewGrammar(Random(0)).reviews(200, corpus.BALANCE)} == {
        "pos", "neg", "mixed", "neutral",
    }  # fmt: skip
