"""tiny-agent's prompt files and training transcripts (tools/build_assets/transcripts.py) and their encoding."""

from __future__ import annotations

import re
from collections import Counter

import pytest
import torch

from tools.build_assets import models, training, transcripts
from tools.build_assets import protocols as P
from tools.build_assets.transcripts import Segment

CALL = re.compile(r" <call>calc\((\d\d)\*(\d\d)\)</call>")


def _operands(prompt: str) -> tuple[int, int]:
    a, b = prompt.removeprefix("Q: ").removesuffix("= A:").split("*")
    return int(a), int(b)


def test_calculator_rows_are_distinct_two_digit_products():
    rows = transcripts.calculator_rows(0)
    assert len(rows) == len({r["prompt"] for r in rows}) == 200
    for row in rows:
        a, b = _operands(row["prompt"])
        assert 10 <= a <= 99 and 10 <= b <= 99
        assert row == {"prompt": P.calculator_prompt(a, b), "answer": str(a * b)}
    assert transcripts.calculator_rows(1) != rows


def test_guess_rows_hold_every_secret_equally_often():
    rows = transcripts.guess_rows(0)
    assert {r["prompt"] for r in rows} == {"Guess my number from 1 to 8:"}
    assert Counter(r["secret"] for r in rows) == {s: 25 for s in range(1, 9)}
    assert [r["secret"] for r in rows] != sorted(r["secret"] for r in rows)  # shuffled
    with pytest.raises(ValueError, match="multiple of 8"):
        transcripts.guess_rows(0, n=10)


def test_calculator_transcripts_follow_the_protocol_and_skip_held_out_prompts():
    held_out = {r["prompt"] for r in transcripts.calculator_rows(0)}
    texts = transcripts.calculator_texts(0, 4000, held_out)
    calls = direct = right_copies = 0
    for t in texts:
        assert t[0].text not in held_out and not t[0].policy
        a, b = _operands(t[0].text)
        if len(t) == 2:  # a direct answer: a wrong number, then EOS
            direct += 1
            assert t[1].policy and t[1].eos and int(t[1].text) != a * b
            continue
        calls += 1
        call, reply, final = t[1:]
        ca, cb = map(int, CALL.fullmatch(call.text).groups())
        assert call.policy and not call.eos
        assert not reply.policy and reply.text == P.result_text(ca * cb)
        assert final.policy and final.eos and final.text == P.answer_text(ca * cb)
        right_copies += (ca, cb) == (a, b)
    assert calls + direct == 4000
    # Seeded counts near the mix: 40% calls, 0.88**4 = 60% of them copied right.
    assert abs(calls / 4000 - transcripts.CALL_RATE) < 0.03
    assert abs(right_copies / calls - (1 - transcripts.COPY_NOISE) ** 4) < 0.04


def _replay(secret: int, guesses: list[str]) -> list[str | None]:
    game = P.GuessGame(secret)
    return [game.reply(g) for g in guesses]


def test_guess_transcripts_replay_through_the_game():
    inside = total = 0
    for t in transcripts.guess_texts(0, 1000):
        assert t[0] == Segment(P.GUESS_PROMPT, policy=False)
        guesses, replies = t[1::2], t[2::2]
        assert all(g.policy and g.eos and re.fullmatch(r" [1-8]", g.text) for g in guesses)
        assert all(not r.policy for r in replies)
        # Some secret gives exactly these replies, and the game ends exactly where the transcript does.
        expected = [r.text for r in replies] + [None]
        secrets = [s for s in range(1, 9) if _replay(s, [g.text for g in guesses]) == expected]
        assert secrets, [s.text for s in t]
        # How often a guess is one the earlier replies allow, whatever the secret was.
        for k in range(1, len(guesses)):
            lo = max([int(g.text) + 1 for g, r in zip(guesses[:k], replies) if r.text == P.HIGHER], default=1)
            hi = min([int(g.text) - 1 for g, r in zip(guesses[:k], replies) if r.text == P.LOWER], default=8)
            inside += lo <= int(guesses[k].text) <= hi
            total += 1
    # Half the guesses follow the replies, the other half are uniform (and land inside by chance).
    assert 0.6 < inside / total < 0.85


def test_transcripts_are_seeded():
    held_out = {r["prompt"] for r in transcripts.calculator_rows(0)}
    assert transcripts.agent_texts(0, 300, held_out) == transcripts.agent_texts(0, 300, held_out)
    assert transcripts.agent_texts(1, 300, held_out) != transcripts.agent_texts(0, 300, held_out)
    texts = transcripts.agent_texts(0, 300, held_out)
    assert sum(t[0].text == P.GUESS_PROMPT for t in texts) == 150


def test_expected_returns_by_hand():
    # Lower-middle binary search: 4 first; 2 and 6 second; 1, 3, 5, 7 third; 8 fourth.
    assert transcripts.expected_return(transcripts.binary_search) == pytest.approx(
        (1 + 2 * 0.9 + 4 * 0.8 + 0.7) / 8
    )
    # Guesses that ignore the replies hit with probability 1/8 each turn.
    uniform = sum((7 / 8) ** (k - 1) / 8 * (1 - 0.1 * (k - 1)) for k in range(1, 5))
    assert transcripts.expected_return(transcripts.uniform_guess) == pytest.approx(uniform)
    assert transcripts.expected_return(transcripts.feedback_mix(0.0)) == pytest.approx(uniform)
    assert transcripts.expected_return(transcripts.feedback_mix(1.0)) == pytest.approx(
        transcripts.expected_return(transcripts.interval_guess)
    )


def test_transcript_sequences_encode_each_segment_and_mark_the_policy_tokens(tokenizer):
    eos = tokenizer.eos_token_id
    t = [
        Segment("Q: 12*34= A:", policy=False),
        Segment(" <call>calc(12*34)</call>", policy=True),
        Segment(" <result>408</result>", policy=False),
        Segment(" 408", policy=True, eos=True),
    ]
    (ids,), (learned,) = models.transcript_sequences(tokenizer, [t])

    def enc(text: str) -> list[int]:
        return tokenizer(text, add_special_tokens=False)["input_ids"]

    parts = [enc(s.text) for s in t]
    assert ids == parts[0] + parts[1] + parts[2] + parts[3] + [eos]
    assert learned == [False] * len(parts[0]) + [True] * len(parts[1]) + [False] * len(parts[2]) + [True] * (
        len(parts[3]) + 1
    )


def test_lm_batch_masks_unlearned_tokens():
    ids, mask, labels = training.lm_batch(
        [[5, 6, 7, 8], [9, 10]], 1, [], [[False, True, False, True], [True, False]]
    )
    assert ids.tolist() == [[5, 6, 7, 8], [9, 10, 1, 1]]
    assert mask.tolist() == [[1, 1, 1, 1], [1, 1, 0, 0]]
    assert labels.tolist() == [[-100, 6, -100, 8], [9, -100, -100, -100]]
    # Without masks the labels are the ids (padding excluded), as before.
    _, _, plain = training.lm_batch([[5, 6, 7, 8], [9, 10]], 1, [1, 0])
    assert torch.equal(plain, torch.tensor([[-100, 6, 7, 8], [9, 10, -100, -100]]))
