"""TextGen-TextArena-v0 with the real textarena package: the game is the responder (its observations are
the replies, its reward and end the episode's), checked against the same games played directly through
TextArena's API; invalid moves by the game's own rules; a two-player game against a fixed opponent;
seeded games that leave the global random state alone; a vector env of rows in different games; retried
steps; and the errors of bad arguments and of a missing package."""

from __future__ import annotations

import random
import re
import sys
from collections import deque

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import textenv  # noqa: F401  (registers the ids)
from textenv.scorers import Callable, ScorerError
from textenv.textarena import GAME_KEY, SEED_KEY, GameResponder

ID = "TextGen-TextArena-v0"
HANOI = ["[A C]", "[A B]", "[C B]", "[A C]", "[B A]", "[B C]", "[A C]"]  # the 7-move solution of 3 disks
MOVES = {(-1, 0): "[up]", (1, 0): "[down]", (0, -1): "[left]", (0, 1): "[right]"}


@pytest.fixture(scope="module")
def ta():
    return pytest.importorskip("textarena")


def direct(ta, game: str, seed: int, moves, *, opponent=None, player: int = 0):
    """The game played through TextArena's own API (``make``, ``reset``, ``get_observation``, ``step``,
    ``close``): the policy's ``moves`` as ``player``, the opponent's otherwise, until the moves run out or
    the game ends. Returns ``(done, rewards, game_state, observation)``: the rewards of ``close()`` once the
    game ended, and the player's observation (TextArena's LLM observation text) when it did not."""
    saved = random.getstate()
    env = ta.make(game)
    env.reset(num_players=1 if opponent is None else 2, seed=seed)
    moves, done, observation = list(moves), False, None
    while not done:
        current, observation = env.get_observation()
        if current == player and not moves:
            break
        done, _ = env.step(action=moves.pop(0) if current == player else opponent(observation))
    rewards = env.close()[0] if done else None
    random.setstate(saved)
    return done, rewards, env.state.game_state, None if done else observation


def first_free_cell(observation: str) -> str:
    """A fixed Tic Tac Toe opponent: the lowest free cell of the last board it was shown."""
    return re.findall(r"'(\[\d\])'", observation.split("Available Moves:")[-1])[0]


def tokens_of(env, text: str) -> list[int]:
    tok = env.unwrapped.tokenizer
    ids = tok(text, add_special_tokens=False)["input_ids"]
    assert tok.decode(ids) == text  # the actions spell exactly this text
    return ids


def play(env, moves, *, prompt_index: int | None = None, seed: int = 0):
    """An episode whose policy turns are ``moves`` (each spelled, then EOS), until it ends; returns the
    rewards of every step and the last step's info."""
    env.reset(seed=seed, options=None if prompt_index is None else {"prompt_index": prompt_index})
    eos = env.unwrapped.text_spec.eos_token_ids[0]
    rewards = []
    for move in moves:
        for action in [*tokens_of(env, move), eos]:
            _, reward, terminated, truncated, info = env.step(action)
            rewards.append(reward)
            assert not truncated
        if terminated:
            return rewards, info
    raise AssertionError(f"the episode did not end after {len(moves)} moves")


def lake_path(grid, start=(0, 0)) -> list[str]:
    """The moves of a shortest path from ``start`` to the goal ``G`` that avoids every hole ``H`` (BFS)."""
    size = len(grid)
    came = {start: None}
    queue = deque([start])
    while queue:
        r, c = cell = queue.popleft()
        if grid[r][c] == "G":
            path = []
            while came[cell] is not None:
                prev = came[cell]
                path.append(MOVES[(cell[0] - prev[0], cell[1] - prev[1])])
                cell = prev
            return path[::-1]
        for dr, dc in MOVES:
            nxt = (r + dr, c + dc)
            if 0 <= nxt[0] < size and 0 <= nxt[1] < size and nxt not in came and grid[nxt[0]][nxt[1]] != "H":
                came[nxt] = cell
                queue.append(nxt)
    raise AssertionError("no path to the goal")


# -- without the package ---------------------------------------------------------------------------


def test_the_id_is_registered_and_says_how_to_install_without_the_package(monkeypatch):
    spec = gym.spec(ID)
    assert spec.entry_point == "textenv.textarena:make"
    assert spec.vector_entry_point == "textenv.textarena:make_vector"
    monkeypatch.setitem(sys.modules, "textarena", None)  # `import textarena` now fails
    with pytest.raises(ImportError, match=re.escape("pip install 'textenv[textarena]'")):
        gym.make(ID, game="GuessTheNumber-v0")
    with pytest.raises(ImportError, match="needs the textarena package"):
        gym.make_vec(ID, num_envs=2, game="GuessTheNumber-v0")


# -- prompts: the games' first observations ------------------------------------------------------------


def test_prompts_are_the_seeded_games_first_observations_with_game_and_seed(ta):
    env = gym.make(ID, game=["TowerOfHanoi-v0", "Minesweeper-v0"], size=2, seed=5, chat_template=False)
    prompts = env.unwrapped.text_spec.prompts
    assert [(p.metadata[GAME_KEY], p.metadata[SEED_KEY]) for p in prompts] == [
        ("TowerOfHanoi-v0", 5),
        ("Minesweeper-v0", 5),
        ("TowerOfHanoi-v0", 6),
        ("Minesweeper-v0", 6),
    ]
    raw = ta.make("TowerOfHanoi-v0")
    raw.reset(num_players=1, seed=5)
    _, observation = raw.get_observation()  # TextArena's LLM observation: "\n[GAME] message" per message
    assert prompts[0].text == observation.lstrip("\n")
    assert prompts[0].text.startswith("[GAME] You are playing Tower of Hanoi with 3 disks.")
    assert prompts[0].text.endswith("[GAME] Current Board: \nA: [3, 2, 1]\nB: []\nC: []\n.")
    # The observation holds the prompt's own tokens (P defaults to 2048: every prompt fits).
    obs, info = env.reset(options={"prompt_index": 1})
    assert info["prompt"] == prompts[1].text
    P = env.unwrapped.text_spec.max_prompt_tokens
    ids = obs["input_ids"][:P][obs["attention_mask"][:P] == 1].tolist()
    assert ids == tokens_of(env, prompts[1].text)
    check_env(env.unwrapped, skip_render_check=True)


# The built-in template renders a turn without its EOS (not prefix-preserving): the env says so once.
@pytest.mark.filterwarnings("ignore:the chat template does not render")
def test_with_a_chat_template_a_prompt_is_a_user_message_and_replies_are_user_turns(ta):
    env = gym.make(ID, game="TowerOfHanoi-v0", size=1)  # the built-in tokenizer has a chat template
    prompt = env.unwrapped.text_spec.prompts[0]
    assert prompt.messages == ({"role": "user", "content": prompt.text},)
    rewards, info = play(env, HANOI)
    assert sum(rewards) == 1.0
    assert [t["role"] for t in info["turns"]] == ["assistant", "user"] * 7
    assert info["turns"][1]["text"].startswith("[GAME] You moved disk 1 from A to C.")  # no leading newline


# -- the game's reward and end are the episode's ---------------------------------------------------


def test_tower_of_hanoi_solved_gets_the_games_reward_and_ends_with_the_game(ta):
    env = gym.make(ID, game="TowerOfHanoi-v0", size=1, chat_template=False)
    rewards, info = play(env, HANOI)
    done, game_rewards, *_ = direct(ta, "TowerOfHanoi-v0", 0, HANOI)
    assert done and game_rewards == {0: 1}
    assert sum(rewards) == rewards[-1] == 1.0  # the reward comes with the game's last move
    assert info["finish_reason"] == "responder"
    assert info["reward_terms"] == {"responder": 1.0}
    turns = info["turns"]
    assert [t["text"] for t in turns[::2]] == HANOI
    assert (
        turns[1]["text"]
        == "\n[GAME] You moved disk 1 from A to C.\n[GAME] Current Board: \nA: [3, 2]\nB: []\nC: [1]\n."
    )
    assert turns[-1]["text"].endswith(
        "C: [3, 2, 1]\n.\n[GAME] Congratulations! You solved the Tower of Hanoi puzzle."
    )
    assert [t["reward"] for t in turns[1::2]] == [0.0] * 6 + [1.0]


def test_a_reply_is_appended_after_the_policys_turn_token_for_token(ta):
    env = gym.make(ID, game="TowerOfHanoi-v0", size=1, chat_template=False)
    env.reset(seed=0)
    eos = env.unwrapped.text_spec.eos_token_ids[0]
    move = tokens_of(env, "[A C]")
    for action in [*move, eos]:
        obs, reward, terminated, _, _ = env.step(action)
    assert not terminated and reward == 0.0
    reply = "\n[GAME] You moved disk 1 from A to C.\n[GAME] Current Board: \nA: [3, 2]\nB: []\nC: [1]\n."
    P = env.unwrapped.text_spec.max_prompt_tokens
    n = int(obs["attention_mask"][P:].sum())
    assert obs["input_ids"][P : P + n].tolist() == [*move, eos, *tokens_of(env, reply)]
    assert obs["policy_mask"][P : P + n].tolist() == [1] * (len(move) + 1) + [0] * (n - len(move) - 1)


def last_reply(env, obs) -> str:
    """The text of the env's reply at the end of the observation (the trailing tokens the policy did not choose)."""
    P = env.unwrapped.text_spec.max_prompt_tokens
    n = int(obs["attention_mask"][P:].sum())
    chosen = obs["policy_mask"][P : P + n]
    start = int(np.flatnonzero(chosen)[-1]) + 1
    return env.unwrapped.tokenizer.decode(obs["input_ids"][P + start : P + n])


def test_guess_the_number_by_bisection_on_the_games_hints(ta):
    env = gym.make(ID, game="GuessTheNumber-v0", size=3, chat_template=False)
    eos = env.unwrapped.text_spec.eos_token_ids[0]
    for index in range(3):
        secret = direct(ta, "GuessTheNumber-v0", index, [])[2]["game_number"]
        env.reset(seed=0, options={"prompt_index": index})
        low, high, guesses, terminated = 1, 20, [], False
        while not terminated:
            guesses.append((low + high) // 2)
            for action in [*tokens_of(env, f"[{guesses[-1]}]"), eos]:
                obs, reward, terminated, _, info = env.step(action)
            if not terminated:
                hint = last_reply(env, obs)
                assert hint in (
                    "\n[GAME] The target number is higher.",
                    "\n[GAME] The target number is lower.",
                )
                low, high = (guesses[-1] + 1, high) if hint.endswith("higher.") else (low, guesses[-1] - 1)
        assert guesses[-1] == secret and reward == 1.0 and info["finish_reason"] == "responder"
        assert info["turns"][-1]["text"] == "\n[GAME] Congratulations! You guessed the correct number."
    assert len({direct(ta, "GuessTheNumber-v0", i, [])[2]["game_number"] for i in range(3)}) > 1


def test_frozen_lake_walked_around_the_holes_reaches_the_goal(ta):
    env = gym.make(ID, game="FrozenLake-v0", size=2, chat_template=False)
    paths = [lake_path(direct(ta, "FrozenLake-v0", seed, [])[2]["grid"]) for seed in (0, 1)]
    assert paths[0] != paths[1]  # the seeds place the holes differently
    for index, path in enumerate(paths):
        rewards, info = play(env, path, prompt_index=index)
        assert sum(rewards) == 1.0 and info["finish_reason"] == "responder"
        assert info["turns"][-1]["text"].endswith("[GAME] Congratulations! You reached the goal!")
        assert len(info["turns"]) == 2 * len(path)
    # Into a hole: the game ends with its own partial reward.
    into_hole = ["[right]", "[right]", "[right]", "[down]"]  # seed 0 has a hole at (1, 3)
    assert direct(ta, "FrozenLake-v0", 0, [])[2]["grid"][1][3] == "H"
    rewards, info = play(env, into_hole, prompt_index=0)
    done, game_rewards, *_ = direct(ta, "FrozenLake-v0", 0, into_hole)
    assert done and sum(rewards) == game_rewards[0] == pytest.approx(4 / 6)
    assert "You fell into a hole!" in info["turns"][-1]["text"]


# -- invalid moves follow the game's rules -----------------------------------------------------------


def test_an_invalid_move_gets_one_retry_then_ends_the_game_with_the_games_reward(ta):
    env = gym.make(ID, game="GuessTheNumber-v0", size=1, chat_template=False)
    secret = direct(ta, "GuessTheNumber-v0", 0, [])[2]["game_number"]
    wrong = 1 if secret != 1 else 2
    moves = [f"[{wrong}]", "[25]", "no number"]  # a wrong guess, out of range, no guess at all
    rewards, info = play(env, moves)
    done, game_rewards, *_ = direct(ta, "GuessTheNumber-v0", 0, moves)
    assert done and sum(rewards) == rewards[-1] == game_rewards[0] == pytest.approx(
        1 - abs(wrong - secret) / 19
    )
    replies = [t["text"] for t in info["turns"][1::2]]
    assert replies[1].startswith(
        "\n[GAME] You attempted an invalid move. Reason: Invalid move. Player 0 guessed"
    )
    assert replies[2].startswith("\n[GAME] Invalid Move: Invalid move format.")
    assert info["finish_reason"] == "responder"


def test_a_retried_invalid_move_does_not_count_and_the_game_goes_on(ta):
    env = gym.make(ID, game="TowerOfHanoi-v0", size=1, chat_template=False)
    moves = ["[B C]", *HANOI]  # B is empty: invalid, then the whole solution
    rewards, info = play(env, moves)
    assert sum(rewards) == 1.0 and len(info["turns"]) == 2 * len(moves)
    assert info["turns"][1]["text"] == (
        "\n[GAME] You attempted an invalid move. Reason: You tried to move a disk from an empty tower. Please "
        "resubmit a valid move and remember to follow the game rules to avoid penalties."
    )


# -- two players: a fixed opponent -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("moves", "expected"),
    [(["[4]", "[3]", "[5]"], 1.0), (["[4]", "[8]", "[5]"], -1.0), (["[4]", "[4]", "[4]"], -1.0)],
    ids=["win", "lose", "invalid-twice"],
)
def test_tic_tac_toe_against_a_fixed_opponent(ta, moves, expected):
    env = gym.make(ID, game="TicTacToe-v0", opponent=first_free_cell, size=1, chat_template=False)
    rewards, info = play(env, moves)
    done, game_rewards, *_ = direct(ta, "TicTacToe-v0", 0, moves, opponent=first_free_cell)
    assert done and sum(rewards) == game_rewards[0] == expected
    first = info["turns"][1]["text"]
    assert "[GAME] Player 0 placed their symbol (O) in cell 4." in first
    assert "\n[Player 1] [0]\n[GAME] Player 1 placed their symbol (X) in cell 0." in first  # its move


def test_the_policy_can_play_second_and_the_opponents_first_move_is_in_the_prompt(ta):
    env = gym.make(ID, game="TicTacToe-v0", opponent=first_free_cell, player=1, size=1, chat_template=False)
    prompt = env.unwrapped.text_spec.prompts[0].text
    assert prompt.startswith("[GAME] You are Player 1 in Tic Tac Toe.")
    assert "[Player 0] [0]\n[GAME] Player 0 placed their symbol (O) in cell 0." in prompt
    moves = ["[4]", "[3]", "[5]"]  # the opponent takes 0, 1, 2 and wins first
    rewards, _ = play(env, moves)
    done, game_rewards, *_ = direct(ta, "TicTacToe-v0", 0, moves, opponent=first_free_cell, player=1)
    assert done and sum(rewards) == game_rewards[1] == -1.0


# -- seeds ------------------------------------------------------------------------------------------


def test_seeded_games_are_reproducible_and_leave_the_global_random_state_alone(ta):
    def episode(global_seed: int):
        env = gym.make(ID, game="Minesweeper-v0", size=2, seed=3, chat_template=False)
        random.seed(global_seed)  # Minesweeper places its mines at the first move, with `random`
        np.random.seed(global_seed)
        before = random.getstate(), np.random.get_state()[1].copy()
        _, info = play(env, ["[3 3]", "[3 3]", "[3 3]"], prompt_index=1)  # the cell again: invalid twice
        assert random.getstate() == before[0] and (np.random.get_state()[1] == before[1]).all()
        return [t["text"] for t in info["turns"]], env.unwrapped.text_spec.prompts

    turns, prompts = episode(0)
    assert episode(1) == (turns, prompts)
    assert prompts[1].metadata == {GAME_KEY: "Minesweeper-v0", SEED_KEY: 4}
    # The reply is what TextArena shows after the same move in the game of the same seed (its LLM
    # observation ends with it, after the echo of the move), so the same mines were placed.
    *_, observation = direct(ta, "Minesweeper-v0", 4, ["[3 3]"])
    assert observation.endswith("\n[Player] [3 3]" + turns[1])
    other = gym.make(ID, game="Minesweeper-v0", size=1, seed=9, chat_template=False)
    _, info = play(other, ["[3 3]", "[3 3]", "[3 3]"])
    assert info["turns"][1]["text"] != turns[1]  # another seed, other mines


def test_rows_that_draw_from_random_do_not_disturb_each_other(ta):
    """Minesweeper draws its mines at the first move: rows stepped in lockstep draw as single envs do."""
    envs = gym.make_vec(ID, num_envs=2, game="Minesweeper-v0", size=2, chat_template=False)
    eos = envs.unwrapped.text_spec.eos_token_ids[0]
    envs.reset(seed=0, options={"prompt_index": [0, 1]})
    for action in [*tokens_of(envs, "[3 3]"), eos]:
        obs, *_ = envs.step(np.array([action, action]))
    replies = [last_reply(envs, {k: v[r] for k, v in obs.items()}) for r in range(2)]
    single = gym.make(ID, game="Minesweeper-v0", size=2, chat_template=False)
    for index in range(2):
        *_, observation = direct(ta, "Minesweeper-v0", index, ["[3 3]"])
        assert observation.endswith("\n[Player] [3 3]" + replies[index])
        single.reset(options={"prompt_index": index})
        for action in [*tokens_of(single, "[3 3]"), eos]:
            obs, *_ = single.step(action)
        assert last_reply(single, obs) == replies[index]
    assert replies[0] != replies[1]


# -- vector env: rows in different games and states ------------------------------------------------


def test_a_vector_env_plays_rows_in_different_games_as_single_envs_do(ta):
    games = ["GuessTheNumber-v0", "TowerOfHanoi-v0", "FrozenLake-v0"]
    secret = direct(ta, "GuessTheNumber-v0", 1, [])[2]["game_number"]
    path = lake_path(direct(ta, "FrozenLake-v0", 0, [])[2]["grid"])
    # prompt index = seed offset * 3 + game: GuessTheNumber seed 1, Hanoi seed 0, FrozenLake seed 0, Hanoi seed 1
    plan = {3: [f"[{secret}]"], 1: HANOI, 2: path, 4: ["[A B]", "[B A]", "[C A]", "[C A]"]}
    envs = gym.make_vec(ID, num_envs=4, game=games, size=2, chat_template=False)
    eos = envs.unwrapped.text_spec.eos_token_ids[0]
    envs.reset(seed=0, options={"prompt_index": list(plan)})
    queues = [deque(a for m in moves for a in [*tokens_of(envs, m), eos]) for moves in plan.values()]
    results: dict[int, tuple[float, list[str]]] = {}
    returns = np.zeros(4)
    while len(results) < 4:
        actions = np.array([q.popleft() if r not in results else eos for r, q in enumerate(queues)])
        _, rewards, terminated, _, infos = envs.step(actions)
        returns += rewards
        for r in np.flatnonzero(terminated):
            if r not in results:
                results[int(r)] = (returns[r], [t["text"] for t in infos["turns"][r]])
    assert [results[r][0] for r in range(4)] == [1.0, 1.0, 1.0, pytest.approx(0.0)]
    # The last row's moves end with two invalid moves in a row: the game ends with its reward (0 disks on C).
    assert results[3][1][-1].startswith(
        "\n[GAME] Invalid Move: You tried to move a disk from an empty tower."
    )
    for r, (index, moves) in enumerate(plan.items()):
        single = gym.make(ID, game=games, size=2, chat_template=False)
        rewards, info = play(single, moves, prompt_index=index)
        assert results[r] == (sum(rewards), [t["text"] for t in info["turns"]])


# -- errors ------------------------------------------------------------------------------------------


def test_a_failed_step_changes_nothing_and_the_retry_plays_the_same_game(ta):
    calls = []

    def flaky(prompt, text, references, meta):
        calls.append(text)
        if len(calls) == 1:
            raise RuntimeError("scorer down")
        return 0.0

    env = gym.make(ID, game="TowerOfHanoi-v0", size=1, reward=Callable(flaky), chat_template=False)
    env.reset(seed=0)
    eos = env.unwrapped.text_spec.eos_token_ids[0]
    for move in HANOI[:-1]:
        for action in [*tokens_of(env, move), eos]:
            env.step(action)
    for action in tokens_of(env, HANOI[-1]):
        env.step(action)
    with pytest.raises(ScorerError, match="scorer down"):
        env.step(eos)  # the game ended inside the responder, then the scorer failed: nothing happened
    _, reward, terminated, _, info = env.step(eos)
    assert terminated and reward == 1.0 and info["reward_terms"]["responder"] == 1.0
    assert info["turns"][-1]["text"].endswith("[GAME] Congratulations! You solved the Tower of Hanoi puzzle.")


def test_bad_arguments_are_named(ta):
    with pytest.raises(
        ValueError, match=r"'GuessTheNumbr-v0' is not a TextArena game; did you mean 'GuessTheNumber-v0'"
    ):
        gym.make(ID, game="GuessTheNumbr-v0")
    with pytest.raises(TypeError, match="needs game="):
        gym.make(ID)
    with pytest.raises(ValueError, match=r"TicTacToe-v0.*a two-player game needs opponent="):
        gym.make(ID, game="TicTacToe-v0", size=1)
    with pytest.raises(ValueError, match=r"GuessTheNumber-v0.*a single-player game takes no opponent="):
        gym.make(ID, game="GuessTheNumber-v0", opponent=first_free_cell, size=1)
    with pytest.raises(ValueError, match="player must be 0 in a single-player game"):
        gym.make(ID, game="GuessTheNumber-v0", player=1)
    with pytest.raises(TypeError, match="opponent must be a function"):
        gym.make(ID, game="TicTacToe-v0", opponent="first")
    with pytest.raises(TypeError, match="opponent must return its move as a str"):
        gym.make(ID, game="TicTacToe-v0", opponent=lambda obs: 4, player=1, size=1)
    with pytest.raises(TypeError, match="makes its responder from game="):
        gym.make(ID, game="GuessTheNumber-v0", responder=GameResponder())
    with pytest.raises(ValueError, match="size must be >= 1"):
        gym.make(ID, game="GuessTheNumber-v0", size=0)
    moves = iter(["[0]", "[1]", "[2]"])
    changing = gym.make(ID, game="TicTacToe-v0", opponent=lambda obs: next(moves), player=1, size=1)
    with pytest.raises(ValueError, match="did not show its prompt again"):
        changing.reset()  # the opponent moved elsewhere than when the prompt was made
    env = gym.make(ID, game="GuessTheNumber-v0", size=1, chat_template=False)
    with pytest.raises(ValueError, match="names no TextArena game"):
        env.reset(options={"prompt": "Guess a number."})  # a prompt that is not one of the games
    rewards, _ = play(env, ["[1]", "[x]", "[y]"])  # the env still works
    assert len(rewards) > 0
