"""BLEU and ROUGE give exactly the values of sacrebleu and rouge-score, in batches and in real episodes."""

from __future__ import annotations

import pytest
import sacrebleu
from rouge_score.rouge_scorer import RougeScorer

from tests.textenv.scorers.forced import force_episode, forced_env
from textenv.scorers import BLEU, ROUGE, EpisodeBatch, ScorerError

# (generation, references): several references, empty generation, unicode, punctuation, case.
CASES = [
    ("the movie was great", ["the movie was great"]),
    ("the movie was great", ["the film was great", "a great movie", "the movie was really great"]),
    ("", ["the movie was great"]),
    ("great great great", ["great acting and a great plot"]),
    ("The Movie WAS great.", ["the movie was great"]),
    ("héllo wörld, ça va? 映画は最高", ["héllo wörld ça va", "映画は最高だった"]),
    ("a completely different sentence", ["nothing in common here", "zero overlap"]),
    ("the plot was dull but the acting was superb", ["the acting was superb", "the plot was dull"]),
]

BLEU_OPTIONS = [
    {},
    {"smooth_method": "floor", "smooth_value": 0.1},
    {"lowercase": True},
    {"tokenize": "char", "use_effective_order": False},
]

ROUGE_OPTIONS = [
    ("rouge1", "fmeasure", False),
    ("rouge2", "recall", False),
    ("rougeL", "fmeasure", False),
    ("rougeL", "precision", True),
    ("rougeLsum", "fmeasure", False),
]


def batch_of(cases):
    n = len(cases)
    return EpisodeBatch(
        prompts=[f"p{i}" for i in range(n)],
        prompt_ids=[[1]] * n,
        texts=[text for text, _ in cases],
        token_ids=[[1]] * n,
        references=[list(refs) for _, refs in cases],
        metadata=[{}] * n,
        finish_reasons=["eos"] * n,
    )


@pytest.mark.parametrize("options", BLEU_OPTIONS)
def test_bleu_equals_sacrebleu_sentence_bleu_over_100(options):
    library = [sacrebleu.sentence_bleu(text, refs, **options).score for text, refs in CASES]
    assert list(BLEU(**options).score(batch_of(CASES))) == [s / 100 for s in library]  # exact
    assert list(BLEU(scale=100.0, **options).score(batch_of(CASES))) == library  # sacrebleu's own scale
    assert library[0] == pytest.approx(100.0) and library[2] == 0.0  # the table covers both ends


def test_bleu_scale():
    text, refs = CASES[1]
    library = sacrebleu.sentence_bleu(text, refs).score
    assert 0 < library < 100
    assert BLEU(scale=10.0).score(batch_of([CASES[1]])) == [library / 10]
    assert BLEU().score(batch_of([CASES[0]]))[0] == pytest.approx(1.0)  # a perfect copy: 1, not 100
    for bad in (0.0, -1.0, float("inf"), float("nan")):
        with pytest.raises(ValueError, match="scale must be a positive finite number"):
            BLEU(scale=bad)
    for bad in (True, "100"):
        with pytest.raises(TypeError, match="scale must be a positive finite number"):
            BLEU(scale=bad)  # type: ignore[arg-type]


@pytest.mark.parametrize(("kind", "measure", "stem"), ROUGE_OPTIONS)
def test_rouge_equals_rouge_score(kind, measure, stem):
    library = RougeScorer([kind], use_stemmer=stem)
    expected = [getattr(library.score_multi(refs, text)[kind], measure) for text, refs in CASES]
    assert list(ROUGE(kind, measure=measure, use_stemmer=stem).score(batch_of(CASES))) == expected


def test_rouge_several_references_is_the_best_fmeasure_reference():
    text, refs = CASES[1]
    single = [RougeScorer(["rougeL"]).score(r, text)["rougeL"].fmeasure for r in refs]
    assert ROUGE("rougeL").score(batch_of([CASES[1]]))[0] == max(single) > min(single)


@pytest.mark.parametrize("scorer", [BLEU(), ROUGE("rougeL")], ids=["bleu", "rouge"])
def test_attach_refuses_prompts_without_references(tokenizer, scorer):
    prompts = [{"prompt": "Repeat: a =>", "references": ["a"]}, {"prompt": "Say something"}]
    with pytest.raises(ValueError, match=r"prompt 1 \('Say something'\) has none"):
        forced_env(tokenizer, ["a"], prompts=prompts, reward=scorer)


def test_ad_hoc_prompt_without_references_is_a_scorer_error(tokenizer):
    env = forced_env(
        tokenizer, ["a b"], prompts=[{"prompt": "Repeat: a =>", "references": ["a"]}], reward="rouge"
    )
    env.reset(options={"prompt": "Free prompt"})
    with pytest.raises(ScorerError, match="Free prompt"):
        env.step(tokenizer.eos_token_id)
    force_episode(env, "a")  # the next episode works


@pytest.mark.parametrize(("text", "refs"), [c for c in CASES if c[0]])
def test_episode_reward_terms_equal_the_libraries(tokenizer, text, refs):
    # The decoded text of the forced tokens is exactly the text (byte-level BPE round trip).
    reward = ROUGE("rougeL") + BLEU() + ROUGE("rouge2", measure="recall")
    env = forced_env(tokenizer, [text], prompts=[{"prompt": "Repeat: =>", "references": refs}], reward=reward)
    total, info = force_episode(env, text)
    terms = info["reward_terms"]
    assert terms["rouge_rougeL"] == RougeScorer(["rougeL"]).score_multi(refs, text)["rougeL"].fmeasure
    assert terms["bleu"] == sacrebleu.sentence_bleu(text, refs).score / 100
    assert terms["rouge_rouge2_recall"] == RougeScorer(["rouge2"]).score_multi(refs, text)["rouge2"].recall
    assert total == pytest.approx(sum(terms.values()), abs=1e-12)


def test_empty_generation_episode(tokenizer):
    env = forced_env(
        tokenizer, ["x"], prompts=[{"prompt": "Repeat: a b =>", "references": ["a b"]}], reward="bleu"
    )
    env.reset()
    _, reward, terminated, _, info = env.step(tokenizer.eos_token_id)
    assert terminated and info["text"] == "" and reward == sacrebleu.sentence_bleu("", ["a b"]).score == 0.0


def test_bad_options_are_rejected():
    with pytest.raises(ValueError, match="rouge7x"):
        ROUGE("rouge7x")
    with pytest.raises(ValueError, match="f1"):
        ROUGE("rougeL", measure="f1")
