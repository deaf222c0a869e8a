"""Keyword: modes, word boundaries, case, phrases, forbidden words and per-prompt keywords."""

from __future__ import annotations

import pytest

from tests.textenv.scorers.forced import force_episode, forced_env
from textenv.scorers import Keyword

# (text, words, options, expected score)
CASES = [
    # mode "any": one hit is enough
    ("a great movie", ["great", "awesome"], {}, 1.0),
    ("a fine movie", ["great", "awesome"], {}, 0.0),
    # mode "all": every word must appear
    ("great and awesome", ["great", "awesome"], {"mode": "all"}, 1.0),
    ("great and great", ["great", "awesome"], {"mode": "all"}, 0.0),
    # mode "count": distinct words found; repeating a word earns nothing more
    ("great great great", ["great", "awesome"], {"mode": "count"}, 1.0),
    ("awesome, truly great!", ["great", "awesome"], {"mode": "count"}, 2.0),
    # mode "fraction": share of the distinct words found
    ("great, great and fun", ["great", "awesome", "fun", "great"], {"mode": "fraction"}, 2 / 3),
    ("nothing", ["great", "awesome"], {"mode": "fraction"}, 0.0),
    # whole words: "great" is not in "greatest" or "ungreat"; punctuation is a boundary
    ("the greatest film", ["great"], {}, 0.0),
    ("the greatest film", ["great"], {"whole_word": False}, 1.0),
    ("(great)", ["great"], {}, 1.0),
    ("great.", ["great"], {}, 1.0),
    ("great_film", ["great"], {}, 0.0),  # "_" is a word character
    # case: insensitive by default
    ("GREAT film", ["great"], {}, 1.0),
    ("GREAT film", ["great"], {"case_sensitive": True}, 0.0),
    # phrases match across any whitespace, still as whole words
    ("the special   effects were", ["special effects"], {}, 1.0),
    ("the special effectsx", ["special effects"], {}, 0.0),
    # words with punctuation at their edge, where \b would fail
    ("I code in C++ daily", ["C++"], {}, 1.0),
    ("I code in C++x", ["C++"], {}, 0.0),
    # unicode words and case folding
    ("ein schönes Café", ["café"], {}, 1.0),
    ("ein schönes Cafés", ["café"], {}, 0.0),
    # forbidden words cost 1.0 each (distinct), on top of the mode's score
    ("great but boring", ["great"], {"forbidden": ["boring"]}, 0.0),
    ("boring, dull, boring", ["great"], {"forbidden": ["boring", "dull"], "mode": "count"}, -2.0),
    ("great and fun", ["great"], {"forbidden": ["boring"]}, 1.0),
    # empty text
    ("", ["great"], {"mode": "count"}, 0.0),
]


@pytest.mark.parametrize(("text", "words", "options", "expected"), CASES)
def test_keyword_table(text, words, options, expected):
    assert Keyword(words, **options).score_text(text) == expected


def test_metadata_keywords_per_prompt_in_episodes(tokenizer):
    prompts = [
        {"prompt": "The film was", "keywords": ["great", "fun"]},
        {"prompt": "The plot was", "keywords": ["dull"]},
    ]
    env = forced_env(tokenizer, ["great fun and dull"], prompts=prompts, reward=Keyword(None, mode="count"))
    assert force_episode(env, " great fun and dull", prompt_index=0)[0] == 2.0
    assert force_episode(env, " great fun and dull", prompt_index=1)[0] == 1.0
    assert force_episode(env, " nothing", prompt_index=1)[0] == 0.0


def test_metadata_keywords_missing_is_refused_at_attach(tokenizer):
    with pytest.raises(ValueError, match=r"prompt 1 \('The plot was'\) has none"):
        forced_env(
            tokenizer, ["x"], prompts=[{"prompt": "A", "keywords": ["a"]}, "The plot was"], reward=Keyword()
        )


@pytest.mark.parametrize(
    ("args", "error"),
    [
        ((["great"],), None),
        (([],), ValueError),
        ((["great", " "],), ValueError),
        (("great",), TypeError),  # a string is not a list of words
        ((["great"], "most"), ValueError),
    ],
)
def test_bad_arguments(args, error):
    words, *mode = args
    make = lambda: Keyword(words, mode=mode[0]) if mode else Keyword(words)  # noqa: E731
    if error is None:
        make()
    else:
        with pytest.raises(error):
            make()
