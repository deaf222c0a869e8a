"""Composition, string specs, reward swapping on TextGen-v0, length terms and scorer errors."""

from __future__ import annotations

import math

import gymnasium as gym
import numpy as np
import pytest
import sacrebleu

import textenv  # noqa: F401  (registers the env ids)
from tests.builders import tiny_gpt2
from tests.textenv.scorers.forced import force_episode, forced_env
from textenv.scorers import (
    BLEU,
    ROUGE,
    SPECS,
    Answer,
    Callable,
    CompositeScorer,
    Format,
    Keyword,
    KLPenalty,
    Length,
    MissingEOSPenalty,
    RewardModel,
    Scorer,
    ScorerError,
    Similarity,
    as_scorer,
    parse_spec,
)

PROMPTS = [
    {
        "prompt": "The movie was",
        "references": ["great fun", "a great film"],
        "keywords": ["great", "fun"],
        "answer": "10",
    },
    {"prompt": "The plot was", "references": ["dull"], "keywords": ["dull"], "answer": "2"},
]


def test_composition_reports_each_term_and_the_return_is_their_sum(tokenizer, tiny_lm):
    policy = tiny_gpt2(tiny_lm.config.vocab_size, width=64, positions=128, eos_token_id=0)
    kl = KLPenalty(tiny_lm, coef=0.2, estimator="k3", policy=policy)
    reward = 1.0 * ROUGE("rougeL") + 0.5 * Keyword(["great"]) + kl + MissingEOSPenalty(0.3) + 0.1 * Length()
    assert isinstance(reward, CompositeScorer) and reward.dense
    assert [(n, w) for n, w, _ in reward.terms()] == [
        ("rouge_rougeL", 1.0),
        ("keyword", 0.5),
        ("kl", 1.0),
        ("missing_eos", 1.0),
        ("length", 0.1),
    ]
    env = forced_env(tokenizer, [" great fun"], prompts=PROMPTS, reward=reward)
    total, info = force_episode(env, " great fun")
    terms = info["reward_terms"]
    assert set(terms) == {"rouge_rougeL", "keyword", "kl", "missing_eos", "length"}
    assert terms["rouge_rougeL"] == 1.0 and terms["keyword"] == 0.5 and terms["missing_eos"] == 0.0
    assert terms["length"] == pytest.approx(0.1 * len(tokenizer(" great fun")["input_ids"]))
    assert terms["kl"] < 0
    assert total == pytest.approx(sum(terms.values()), abs=1e-9)
    # Without EOS the episode hits the length cap: the penalty shows up.
    _, info = force_episode(env, " great fun a", eos=False)
    assert info["finish_reason"] == "length" and info["reward_terms"]["missing_eos"] == -0.3


def test_same_name_terms_get_unique_names_and_find_locates_them():
    reward = ROUGE("rouge1") + ROUGE("rouge1") + 2 * Keyword(["a"])
    assert [n for n, _, _ in reward.terms()] == ["rouge_rouge1", "rouge_rouge1_2", "keyword"]
    assert (
        len(reward.find(ROUGE)) == 2 and reward.find(Keyword)[0].words == ("a",) and reward.find(BLEU) == []
    )


@pytest.mark.parametrize("weight", ["0.5", None, True, float("nan"), math.inf, [1.0]])
def test_a_weight_that_is_not_a_number_is_a_type_error(weight):
    with pytest.raises(TypeError, match="weight"):
        weight * ROUGE()
    with pytest.raises(TypeError):
        ROUGE() * weight


def test_adding_a_non_scorer_is_a_type_error():
    with pytest.raises(TypeError, match="can only add a Scorer"):
        ROUGE() + 1.0
    assert sum([ROUGE(), BLEU()]).terms()[1][0] == "bleu"


# --- string specs ---------------------------------------------------------------------------

SPEC_TABLE = [
    ("rouge", ROUGE, {"kind": "rougeL", "measure": "fmeasure"}),
    ("rouge:rouge1", ROUGE, {"kind": "rouge1"}),
    ("rouge:rouge2:recall", ROUGE, {"kind": "rouge2", "measure": "recall"}),
    ("bleu", BLEU, {}),
    ("keyword:great, awesome", Keyword, {"words": ("great", "awesome"), "mode": "any"}),
    ("keyword:great:count", Keyword, {"words": ("great",), "mode": "count"}),
    ("keyword", Keyword, {"words": None}),
    ("sentiment", RewardModel, {"label": 1, "output": "probability", "name": "sentiment"}),
    ("sentiment:negative", RewardModel, {"label": 0}),
    ("reward_model:tiny-sentiment", RewardModel, {"label": 1, "output": "logit"}),
    ("reward_model:tiny-sentiment:negative", RewardModel, {"label": 0}),
    ("kl", KLPenalty, {"coef": 0.1, "estimator": "k1"}),
    ("kl:tiny-lm:0.05", KLPenalty, {"coef": 0.05}),
    ("length", Length, {"target": None}),
    ("length:12", Length, {"target": 12}),
    ("missing_eos", MissingEOSPenalty, {"value": 1.0}),
    ("missing_eos:0.25", MissingEOSPenalty, {"value": 0.25}),
    ("answer", Answer, {"compare": "numeric", "key": "answer", "correct": 1.0, "format": 0.1}),
    ("answer:exact:0", Answer, {"compare": "exact", "format": 0.0}),
    ("format:^#### \\d+$", Format, {"mode": "search", "value": 1.0}),
    ("similarity", Similarity, {"key": "answer"}),
    ("similarity:target", Similarity, {"key": "target"}),
]


@pytest.mark.parametrize(("spec", "kind", "attrs"), SPEC_TABLE)
def test_spec_table(spec, kind, attrs):
    scorer = parse_spec(spec)
    assert type(scorer) is kind
    for key, value in attrs.items():
        assert getattr(scorer, key) == value, key
    assert parse_spec(spec) is not parse_spec(spec)  # fresh objects every time


def test_every_spec_name_is_in_the_table():
    assert {spec.split(":")[0] for spec, _, _ in SPEC_TABLE} == set(SPECS)


def test_weighted_sum_spec():
    reward = parse_spec("sentiment + kl:tiny-lm:0.05 + 0.1*missing_eos + -0.01 * length")
    assert [(n, w) for n, w, _ in reward.terms()] == [
        ("sentiment", 1.0),
        ("kl", 1.0),
        ("missing_eos", 0.1),
        ("length", -0.01),
    ]


@pytest.mark.parametrize(
    ("spec", "match"),
    [
        ("roug", r"names no scorer \('roug'\); valid specs: sentiment\[:LABEL\], reward_model:PATH_OR_NAME"),
        ("", "empty term"),
        ("rouge + ", "empty term"),
        ("reward_model", "needs a model"),
        ("kl:tiny-lm:lots", "'lots' is not a number"),
        ("length:long", "'long' is not an integer"),
        ("rouge:rouge1:recall:extra", "at most 2"),
        ("keyword:a:most", "mode"),
    ],
)
def test_bad_specs_are_value_errors(spec, match):
    with pytest.raises(ValueError, match=match):
        parse_spec(spec)


def test_as_scorer():
    default = as_scorer(None)
    assert isinstance(default, RewardModel) and default.name == "sentiment" and default.label == 1
    rouge = ROUGE()
    assert as_scorer(rouge) is rouge
    assert isinstance(as_scorer(lambda p, t, r, m: 0.0), Callable)
    with pytest.raises(TypeError, match="reward must be"):
        as_scorer(3)


ALL_REWARDS = [
    *(spec for spec, _, _ in SPEC_TABLE),
    "rouge + 0.5*keyword:great + kl + 0.1*missing_eos",
    "sentiment + -0.02*length:4",
    "bleu + rouge:rouge2",
]


@pytest.mark.parametrize("reward", ALL_REWARDS)
def test_swapping_reward_on_textgen_v0(reward, tiny_lm):
    env = gym.make("TextGen-v0", reward=reward, prompts=PROMPTS, max_new_tokens=4)
    for kl in env.unwrapped.reward.find(KLPenalty):
        kl.bind(tiny_lm)  # policy == reference: KL 0, but the term runs
    _, info = env.reset(seed=0)
    rng = np.random.default_rng(0)
    terminated = False
    total = 0.0
    while not terminated:
        _, r, terminated, _, info = env.step(int(rng.integers(env.action_space.n)))
        total += r
    assert set(info["reward_terms"]) == {n for n, _, _ in env.unwrapped.reward.terms()}
    assert total == pytest.approx(sum(info["reward_terms"].values()), abs=1e-9)
    env.close()


def test_swapping_reward_objects_and_callables(tokenizer):
    for reward in (
        ROUGE("rouge1"),
        BLEU(),
        lambda p, t, refs, m: float(len(t)),
        Callable(len_all, batched=True),
    ):
        env = forced_env(tokenizer, [" great fun"], prompts=PROMPTS, reward=reward)
        total, _ = force_episode(env, " great fun")
        expected = {
            ROUGE: 1.0,
            BLEU: sacrebleu.sentence_bleu("great fun", PROMPTS[0]["references"]).score / 100,
        }.get(type(reward), 10.0)
        assert total == pytest.approx(expected)


def len_all(prompts, texts, refs, metas):
    return [float(len(t)) for t in texts]


# --- length terms ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("scorer", "text", "eos", "expected"),
    [
        (Length(), " a b c", True, 3.0),  # tokens, EOS not counted
        (Length(), " a b c", False, 3.0),
        (Length(unit="words"), " a b c", True, 3.0),
        (Length(unit="chars"), " a b c", True, 6.0),
        (Length(target=5), " a b c", True, -2.0),
        (Length(target=3), " a b c", True, 0.0),
        (MissingEOSPenalty(0.5), " a b c", True, 0.0),
        (MissingEOSPenalty(0.5), " a b c", False, -0.5),
    ],
)
def test_length_terms(tokenizer, scorer, text, eos, expected):
    env = forced_env(tokenizer, [text], prompts=PROMPTS, reward=scorer, max_new_tokens=3 + eos)
    assert force_episode(env, text, eos=eos)[0] == expected


def test_length_term_arguments():
    with pytest.raises(ValueError, match="target"):
        Length(target=-1)
    with pytest.raises(ValueError, match="unit"):
        Length(unit="bytes")
    with pytest.raises(ValueError, match=">= 0"):
        MissingEOSPenalty(-1.0)
    with pytest.raises(TypeError, match="finite real"):
        MissingEOSPenalty("1")


# --- scorer errors --------------------------------------------------------------------------


class Bad(Scorer):
    """A terminal scorer that misbehaves on demand."""

    name = "bad"

    def __init__(self, kind):
        self.kind = kind

    def score(self, batch):
        if self.kind == "raise":
            raise KeyError("boom")
        if self.kind == "count":
            return [1.0] * (len(batch) + 1)
        if self.kind == "text":
            return ["high"]
        if self.kind == "ok":
            return [2.0] * len(batch)
        return [
            {"nan": math.nan, "inf": math.inf, "str": "0.5", "none": None, "huge": 10**400}[self.kind]
        ] * len(batch)


@pytest.mark.parametrize(
    ("kind", "match"),
    [
        ("nan", r"scorer Bad\(name='bad'\) \(term 'bad'\) returned nan for prompt 'The movie was'"),
        ("inf", r"\(term 'bad'\) returned inf for prompt 'The movie was'"),
        (
            "count",
            r"\(term 'bad'\) returned \[1.0, 1.0\] of shape \(2,\); expected 1 finite float .* \['The movie was'\]",
        ),
        (
            "text",
            r"\(term 'bad'\) returned str 'high' at index 0 for prompt 'The movie was'; expected 1 finite",
        ),
        ("str", r"\(term 'bad'\) returned str '0.5' at index 0 for prompt 'The movie was'"),
        ("none", r"\(term 'bad'\) returned NoneType None at index 0 for prompt 'The movie was'"),
        (
            "huge",
            r"\(term 'bad'\) returned 1000000000.* at index 0 for prompt 'The movie was', too large for a float",
        ),
        ("raise", r"\(term 'bad'\) raised KeyError: 'boom' while scoring prompts \['The movie was'\]"),
    ],
)
def test_scorer_errors_name_scorer_term_value_and_prompt(tokenizer, kind, match):
    env = forced_env(tokenizer, [" a", " great fun"], prompts=PROMPTS, reward=ROUGE() + Bad(kind))
    with pytest.raises(ScorerError, match=match):
        force_episode(env, " a")
    bad = env.unwrapped.reward.find(Bad)[0]
    bad.kind = "ok"
    _, info = force_episode(env, " great fun")  # the next reset works
    assert info["reward_terms"]["bad"] == 2.0
