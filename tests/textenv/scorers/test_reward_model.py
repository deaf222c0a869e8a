"""RewardModel on the built-in sentiment classifier: direction, batching, exactness and bad input."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from tests.textenv.scorers.forced import force_episode, forced_env
from textenv import assets
from textenv.scorers import EpisodeBatch, RewardModel, parse_spec

POSITIVE = ["The movie was wonderful, a brilliant and moving story.", "I loved it. The acting was superb."]
NEGATIVE = ["The movie was awful, a dull and boring mess.", "I hated it. The acting was terrible."]
MIXED = ["The plot was okay", "x", "The film was great but the ending was dull and the music was"]


@pytest.fixture(scope="module")
def classifier():
    return AutoModelForSequenceClassification.from_pretrained(
        assets.path("tiny-sentiment"), use_safetensors=True
    ).eval()


@pytest.fixture(scope="module")
def positive(classifier):
    return RewardModel(classifier, label="positive", output="probability", batch_size=3)


def batch_of(prompts, texts):
    n = len(texts)
    return EpisodeBatch(
        prompts=list(prompts),
        prompt_ids=[[1]] * n,
        texts=list(texts),
        token_ids=[[1]] * n,
        references=[[]] * n,
        metadata=[{}] * n,
        finish_reasons=["eos"] * n,
    )


def test_positive_reviews_score_above_negative(positive):
    pos, neg = positive.score_texts(POSITIVE), positive.score_texts(NEGATIVE)
    assert min(pos) > 0.8 > 0.2 > max(neg)
    negative = RewardModel(positive.model, label="negative", output="probability")
    assert negative.score_texts(POSITIVE) == pytest.approx([1 - p for p in pos], abs=1e-6)


def test_batch_equals_one_by_one_and_a_direct_forward(positive, classifier):
    texts = POSITIVE + NEGATIVE + MIXED  # 7 texts of different lengths, batch_size=3: padding and chunks
    batched = positive.score_texts(texts)
    single = [positive.score_texts([t])[0] for t in texts]
    assert batched == pytest.approx(single, abs=1e-5)
    tok = AutoTokenizer.from_pretrained(assets.path("tiny-sentiment"))
    for text, value in zip(texts, batched):
        with torch.no_grad():
            logits = classifier(**tok(text, return_tensors="pt")).logits[0]
        assert value == pytest.approx(torch.softmax(logits, -1)[1].item(), abs=1e-5)
        assert positive.score_texts([text])[0] == pytest.approx(torch.softmax(logits, -1)[1].item(), abs=1e-6)


def test_logit_output_and_label_by_index(positive, classifier):
    text = POSITIVE[0]
    tok = AutoTokenizer.from_pretrained(assets.path("tiny-sentiment"))
    with torch.no_grad():
        logits = classifier(**tok(text, return_tensors="pt")).logits[0]
    for label in (0, 1, "0", "negative", "positive"):
        index = {"0": 0, "negative": 0, "positive": 1}.get(label, label)
        got = RewardModel(classifier, label=label, output="logit").score_texts([text])[0]
        assert got == pytest.approx(logits[index].item(), abs=1e-5)


def test_prompt_plus_generation_and_generation_only(positive, classifier):
    batch = batch_of(["The movie was", "The movie was"], [" wonderful.", " awful."])
    assert positive.inputs(batch) == ["The movie was wonderful.", "The movie was awful."]
    gen_only = RewardModel(classifier, label="positive", output="probability", text="generation")
    assert gen_only.inputs(batch) == [" wonderful.", " awful."]
    assert list(positive.score(batch)) == pytest.approx(
        positive.score_texts(positive.inputs(batch)), abs=1e-6
    )
    # An empty generation is scored (as one BOS token), not an error.
    assert len(gen_only.score(batch_of(["p"], [""]))) == 1


def test_sentiment_spec_in_episodes(tokenizer):
    env = forced_env(tokenizer, [" wonderful and moving."], prompts=["The movie was"], reward="sentiment")
    good, info = force_episode(env, " wonderful and moving.")
    bad, _ = force_episode(env, " awful and boring.")
    assert good > 0.5 > bad and set(info["reward_terms"]) == {"sentiment"}
    assert good == pytest.approx(
        parse_spec("sentiment").score_texts(["The movie was wonderful and moving."])[0]
    )


def test_one_output_model_uses_sigmoid(classifier):
    from transformers import GPT2Config, GPT2ForSequenceClassification

    torch.manual_seed(0)
    model = GPT2ForSequenceClassification(
        GPT2Config(
            vocab_size=classifier.config.vocab_size,
            n_embd=32,
            n_layer=1,
            n_head=2,
            num_labels=1,
            pad_token_id=1,
        )
    ).eval()
    tok = AutoTokenizer.from_pretrained(assets.path("tiny-sentiment"))
    logit = RewardModel(model, tokenizer=tok).score_texts(["fine"])[0]  # default label 0 for one output
    prob = RewardModel(model, tokenizer=tok, output="probability").score_texts(["fine"])[0]
    assert prob == pytest.approx(torch.sigmoid(torch.tensor(logit)).item(), abs=1e-6)


def test_unknown_label_and_options(classifier):
    with pytest.raises(ValueError, match=r"no label 'happy'.*'negative', 'positive'"):
        RewardModel(classifier, label="happy")
    with pytest.raises(ValueError, match="no label 2"):
        RewardModel(classifier, label=2)
    with pytest.raises(ValueError, match="output"):
        RewardModel(classifier, output="score")
    with pytest.raises(ValueError, match="batch_size"):
        RewardModel(classifier, batch_size=0)


def test_tokenizer_that_cannot_encode_is_a_clear_error(classifier):
    class NoTokens:
        """A broken tokenizer: every text becomes zero tokens."""

        def __init__(self, real):
            self.real = real

        def __getattr__(self, name):
            return getattr(self.real, name)

        def __call__(self, texts, **kwargs):
            enc = self.real(texts, **kwargs)
            enc["attention_mask"][:] = 0
            return enc

    scorer = RewardModel(classifier, label="positive")
    scorer.tokenizer = NoTokens(scorer.tokenizer)
    with pytest.raises(ValueError, match="encodes the non-empty text 'great' as no tokens"):
        scorer.score_texts(["great"])

    def raising(texts, **kwargs):
        raise KeyError("no such symbol")

    scorer.tokenizer = raising
    with pytest.raises(ValueError, match="cannot encode"):
        scorer.score_texts(["great"])


def test_device_default_is_the_env_device(tokenizer):
    scorer = RewardModel("tiny-sentiment", label="positive")
    forced_env(tokenizer, ["x"], prompts=["The movie was"], reward=scorer, device="cpu")
    assert next(scorer.model.parameters()).device == torch.device("cpu")
