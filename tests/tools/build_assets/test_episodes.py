"""Text-level multi-turn episodes (tools/build_assets/episodes.py), played by the built-in tiny-agent."""

from __future__ import annotations

import json
from pathlib import Path

from textenv import assets
from tools.build_assets import corpus, episodes
from tools.build_assets import protocols as P

PROMPTS = ["Q: 37*48= A:", "Q: 12*90= A:", "Q: 55*55= A:", "Q: 10*99= A:"] * 4


def _calculator(model, tokenizer, seed: int, budget: int = P.CALCULATOR_MAX_NEW_TOKENS, prompts=PROMPTS):
    return episodes.play(
        model,
        tokenizer,
        prompts,
        [episodes.calculator_responder] * len(prompts),
        stop=[P.CALL_END],
        max_new_tokens=budget,
        seed=seed,
    )


def test_episode_tokens_are_the_prompt_then_turns_and_replies_in_order(tiny_agent, tokenizer):
    eps = _calculator(tiny_agent, tokenizer, seed=0)
    for prompt, ep in zip(PROMPTS, eps):
        prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        assert ep.ids[: ep.prompt_tokens] == prompt_ids and ep.tokens == len(ep.policy) <= 48
        # Cut the tokens after the prompt into runs of policy tokens and reply tokens.
        runs: list[tuple[bool, list[int]]] = []
        for token, mine in zip(ep.ids[ep.prompt_tokens :], ep.policy):
            if runs and runs[-1][0] == mine:
                runs[-1][1].append(token)
            else:
                runs.append((mine, [token]))
        policy_runs = [ids for mine, ids in runs if mine]
        reply_runs = [ids for mine, ids in runs if not mine]
        reply_ids = [tokenizer(r, add_special_tokens=False)["input_ids"] for r in ep.replies]
        if ep.tokens < 48:
            assert reply_ids == reply_runs
        else:  # the last reply may be cut (or left out) at the budget
            assert len(reply_runs) in (len(reply_ids), len(reply_ids) - 1)
            assert reply_runs[:-1] == reply_ids[: len(reply_runs) - 1]
            assert all(run == ids[: len(run)] for run, ids in zip(reply_runs, reply_ids))
        assert [tokenizer.decode(ids, skip_special_tokens=True) for ids in policy_runs] == ep.turns
        for turn, ended_by, ids, reply in zip(ep.turns, ep.ended_by, policy_runs, [*ep.replies, None]):
            if ended_by == "eos":
                assert ids[-1] == tokenizer.eos_token_id and reply is None
            else:
                assert ended_by == P.CALL_END and turn.endswith(P.CALL_END) and P.CALL_END not in turn[:-1]
                assert reply == P.calculator_reply(turn)
        assert ep.ended_by[-1] in ("eos", "length")


def test_play_is_seeded(tiny_agent, tokenizer):
    a = _calculator(tiny_agent, tokenizer, seed=3)
    b = _calculator(tiny_agent, tokenizer, seed=3)
    c = _calculator(tiny_agent, tokenizer, seed=4)
    assert [e.ids for e in a] == [e.ids for e in b]
    assert [e.ids for e in a] != [e.ids for e in c]
    # Calls and direct answers both occur: the untrained policy is a mix.
    assert {e.ended_by[0] for e in a} == {"eos", P.CALL_END}


def test_the_budget_ends_episodes_and_cuts_replies(tiny_agent, tokenizer):
    for budget in (1, 5, 25):
        for ep in _calculator(tiny_agent, tokenizer, seed=0, budget=budget):
            assert ep.tokens <= budget
            if ep.tokens == budget and ep.ended_by[-1] != "eos":
                # Either the policy ran out mid-turn or the last reply was cut at the budget.
                assert ep.ended_by[-1] == "length" or not ep.policy[-1]
    one = _calculator(tiny_agent, tokenizer, seed=0, budget=1)
    assert all(e.tokens == 1 and e.ended_by == ["length"] for e in one)


def test_guess_episodes_follow_the_game(tiny_agent, tokenizer):
    games = [P.GuessGame(s) for s in (1, 2, 3, 4, 5, 6, 7, 8) * 2]
    eps = episodes.play(
        tiny_agent,
        tokenizer,
        [P.GUESS_PROMPT] * len(games),
        [episodes.guess_responder(g) for g in games],
        max_new_tokens=P.GUESS_MAX_NEW_TOKENS,
        seed=0,
    )
    for ep, game in zip(eps, games):
        assert len(ep.turns) == len(game.guesses) <= P.MAX_GUESSES
        assert len(ep.replies) == len(ep.turns) - 1 and set(ep.replies) <= {P.HIGHER, P.LOWER, P.INVALID}
        assert (game.solved_at is not None) == (ep.turns[-1].strip() == str(game.secret))


def test_evaluation_reproduces_tiny_agents_recorded_figures(tiny_agent, tokenizer):
    """Seeded: playing the prompts of seed 0 again gives the figures that the build recorded, exactly."""
    info = json.loads((Path(assets.path("tiny-agent")) / "build_info.json").read_text())
    data = corpus.make_data(0)
    calculator = episodes.evaluate_calculator(tiny_agent, tokenizer, data["calculator_prompts"], seed=0)
    assert calculator == info["calculator"]
    assert (
        episodes.evaluate_guess(tiny_agent, tokenizer, data["guess_prompts"], seed=0) == info["guess_number"]
    )
