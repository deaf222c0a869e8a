"""TextArena's games as multi-turn envs: ``TextGen-TextArena-v0``.

`TextArena <https://github.com/LeonGuertler/TextArena>`_ is a collection of text games (Guess The
Number, Tower of Hanoi, Frozen Lake, Sudoku, Minesweeper, Tic Tac Toe, Connect Four, ...). Any of its
games is a multi-turn env here: the game is the env's responder (:mod:`textenv.multiturn`). The policy's
turn (its text up to the end-of-turn token, by default EOS) is the move the game receives, the game's
next observation is the reply the env appends, and the game's reward and end are the episode's::

    env = gym.make("TextGen-TextArena-v0", game="GuessTheNumber-v0")
    envs = gym.make_vec("TextGen-TextArena-v0", num_envs=8, game=["TowerOfHanoi-v0", "FrozenLake-v0"])
    env = gym.make("TextGen-TextArena-v0", game="TicTacToe-v0", opponent=first_free_cell)

Needs ``pip install 'textenv[textarena]'``; without it the id is still registered and ``gym.make`` says
how to install it.

**Prompts.** ``size`` games of each game id are started when the env is built, from the game seeds
``seed, seed + 1, ..., seed + size - 1``; each game's first observation (its rules and board, as the
policy's player sees them when it first has to move) is a prompt record, with the game id and its seed
in the metadata (``"game"``, ``"game_seed"``). When an episode starts from a record, the responder
starts that game again from the same seed, so the observation the policy sees is the game's own. With
several game ids the records alternate between them (record ``i`` is game ``i % len(game)``). Some
games are the same for every seed (Tower of Hanoi, Frozen Lake's fixed map) or hide what the seed draws
(Guess The Number's number): their prompts repeat, their games do not. With a tokenizer that has a chat
template (the built-in one has a small one) a record is a chat of one user message; replies are then
rendered by the template as ``"user"`` messages. Without one (or with ``chat_template=False``) the text
is plain and each reply starts on a new line.

**Observations.** A game's messages are rendered as TextArena's ``LLMObservationWrapper`` renders them,
one ``[GAME] message`` (or ``[Player 1] message``) per line, but each reply holds only what is new since
the policy's last move (the conversation already holds the rest), without the echo of the policy's own
move. Moves go through the game's registered action wrappers (most add the square brackets a move
lacks: ``3`` is played as ``[3]``).

**Rewards and ends.** The episode ends when the game does (``finish_reason="responder"``); the game's
reward for the policy's player (``env.close()``'s rewards in TextArena) is the reward of that last
turn, and every other turn gets 0, so the return is the game's reward, reported in
``info["reward_terms"]["responder"]``. An episode the env ends first (``max_turns``, or the token budget
``max_new_tokens``: ``finish_reason`` ``"max_turns"`` / ``"length"``) gets no game reward. ``reward=``
adds terms of its own (a scorer, callable or spec on the policy's last turn; default: none, as in every
multi-turn env).

**Invalid moves** follow the game's own rules: TextArena's single- and two-player games let a player
retry once (the reply is the game's "You attempted an invalid move. Reason: ..." and the turn does not
count) and end the game at the second invalid move in a row, with the game's reward (-1 for the player
who made it, or a game-defined partial score such as Guess The Number's closeness).

**Two-player games** need ``opponent=``: a function of the opponent's observation text that returns
its move (``opponent(observation: str) -> str``, the signature of a TextArena agent, so any
``textarena.Agent`` works). Its observation is what TextArena gives an agent: the whole game so far as
the game's registered observation wrapper renders it. The policy plays ``player`` (0, the first to
move, by default; with 1 the opponent moves first and its move is part of the prompt). The opponent
must be deterministic (a function of the observation): a game is replayed from its seed and the
policy's moves whenever a row starts or a step is retried, and the env checks that a restarted game
shows its prompt again. The opponent is called ``size`` times when the env is built if it moves first.

**Randomness.** TextArena's games draw from Python's global ``random`` (and some from NumPy's) and
seed it in every ``reset``. Here each game draws from a generator of its own (the global states are
swapped in around each call to the game and restored after it), so the rows of a vector env do not
disturb each other or the rest of the program, and a game depends only on its seed and its moves.

**Games that run offline.** Started from a seed, restarted to the same first observation, and played a
move with no network, with textarena 0.7.4 (Python 3.11): the single-player games
GuessTheNumber, TowerOfHanoi, FrozenLake, Sudoku (``Sudoku-v0-hard`` takes over 10 s to generate),
Minesweeper, 2048, Bandit, Blackjack, Countdown, Crosswords, Cryptarithm, FifteenPuzzle, LightsOut,
LogicPuzzle, Mastermind, PegJump, RushHour, Secretary, Set, Slitherlink, Sokoban and ThreeCardMonte,
and two-player games such as TicTacToe, ConnectFour, Nim, Othello, Breakthrough, Battleship, KuhnPoker,
IteratedPrisonersDilemma and Snake (with an opponent). Wordle, Hangman, SpellingBee, WordLadder,
WordSearch, Codenames and other word games need NLTK's ``words`` corpus (``nltk.download("words")``,
a download); GuessWho, TwentyQuestions and Debate need an OpenRouter API key; a few games (Chess,
Checkers, ReverseTicTacToe) do not import on Python < 3.12 in textarena 0.7.4. A game that cannot start
is a ``ValueError`` naming it and the game's own error. Countdown, Cryptarithm and Slitherlink (0.7.4)
give the text of the reason as the reward of a second invalid move in a row; the step that ends such a
game fails with a ``ResponderError`` that names the game and that reward.

**Lengths.** ``max_prompt_tokens`` defaults to 2048 and ``max_new_tokens`` to 4096. With the built-in
tokenizer (about 1.5 characters a token on these texts) the first observations are 210 tokens (Tower of
Hanoi), 256 (Guess The Number), 333 (Tic Tac Toe), 589 (Frozen Lake), 616 (Minesweeper) and 1,361
(Sudoku). A reply is about 20 tokens in Guess The Number, 65 in Tower of Hanoi, 300 to 360 where the
game shows its board again (Frozen Lake, Minesweeper, Tic Tac Toe, Connect Four) and 430 in Sudoku. A
solved game takes (moves, replies and EOS tokens, for seeds 0-4) at most 81 positions in Guess The
Number (bisection), 422 in Tower of Hanoi (7 moves), 1,698 in Frozen Lake (6 moves) and 8,748 in Sudoku
(21 cells): raise ``max_new_tokens`` for board games with many moves. A large-vocabulary tokenizer needs
two to three times fewer tokens.
"""

from __future__ import annotations

import difflib
import numbers
import random
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import numpy as np

from textenv import assets
from textenv.env import TextGenEnv
from textenv.multiturn import POLICY_ROLE, Episode, Reply
from textenv.prompts import Prompt
from textenv.tokenization import load_tokenizer

ENV_ID = "TextGen-TextArena-v0"
INSTALL_HINT = "pip install 'textenv[textarena]' (or pip install textarena)"
GAME_KEY = "game"
"""The prompt metadata key of a record's TextArena game id."""
SEED_KEY = "game_seed"
"""The prompt metadata key of a record's game seed."""
DEFAULT_SIZE = 100
DEFAULT_SEED = 0
DEFAULT_MAX_PROMPT_TOKENS = 2048
DEFAULT_MAX_NEW_TOKENS = 4096
GAME_SENDER = "GAME"
Opponent = Callable[[str], str]


def import_textarena() -> ModuleType:
    """The ``textarena`` package.

    Raises:
        ImportError: It is not installed; the message says how to install it.
    """
    try:
        import textarena
    except ImportError as err:
        raise ImportError(f"{ENV_ID} needs the textarena package: {INSTALL_HINT}") from err
    return textarena


def game_ids() -> list[str]:
    """Every game id TextArena registers (not every one runs offline: see the module docstring), sorted."""
    import_textarena()
    from textarena.envs.registration import ENV_REGISTRY

    return sorted(ENV_REGISTRY)


def check_game_id(game: object) -> str:
    """``game`` if it is a TextArena game id.

    Raises:
        TypeError: Not a string.
        ValueError: Not a registered id (the message suggests near ids).
    """
    if not isinstance(game, str):
        raise TypeError(f"game must be a TextArena game id such as 'GuessTheNumber-v0', got {game!r}")
    ids = game_ids()
    if game not in ids:
        close = difflib.get_close_matches(game, ids, n=3)
        hint = f"did you mean {' or '.join(map(repr, close))}? " if close else ""
        raise ValueError(
            f"game={game!r} is not a TextArena game; {hint}its ids include GuessTheNumber-v0, "
            "TowerOfHanoi-v0, FrozenLake-v0 and TicTacToe-v0 (textenv.textarena.game_ids() lists all)"
        )
    return game


@contextmanager
def _global_rng(state: dict[str, Any]) -> Iterator[None]:
    """Runs the block with Python's and NumPy's global random states set to ``state``'s, which is then
    updated; the program's own global states are restored after it."""
    saved = random.getstate(), np.random.get_state()
    random.setstate(state["random"])
    np.random.set_state(state["numpy"])
    try:
        yield
    finally:
        state["random"], state["numpy"] = random.getstate(), np.random.get_state()
        random.setstate(saved[0])
        np.random.set_state(saved[1])


@dataclass(frozen=True)
class GameReply:
    """What a game answers to a move: the new observation text, whether it ended and the player's reward."""

    text: str
    done: bool
    reward: float


class Game:
    """One TextArena game played by the policy as ``player`` (the other player, if any, by ``opponent``).

    Args:
        game: A TextArena game id.
        seed: The game's seed (TextArena's ``reset(seed=...)``).
        opponent: ``opponent(observation) -> move`` for a two-player game; ``None`` for a single-player one.
        player: The policy's player id.

    Raises:
        ValueError: The game does not start (the message names the game and its error).

    Example:
        >>> game = Game("GuessTheNumber-v0", seed=0)  # doctest: +SKIP
        >>> game.play("[10]").text  # doctest: +SKIP
        '[GAME] The target number is higher.'
    """

    def __init__(self, game: str, *, seed: int, opponent: Opponent | None = None, player: int = 0):
        ta = import_textarena()
        self.game_id = game
        self.seed = seed
        self.opponent = opponent
        self.player = player
        self.moves: list[str] = []
        self.done = False
        # The game's own generators, seeded as TextArena seeds the global one (its reset seeds it again).
        self._rng = {
            "random": random.Random(seed).getstate(),
            "numpy": np.random.RandomState(seed).get_state(),
        }
        num_players = 1 if opponent is None else 2
        try:
            with _global_rng(self._rng):
                self.env = ta.make(game)
                self.env.reset(num_players=num_players, seed=seed)
        except Exception as err:
            kind = "single-player" if opponent is None else "two-player"
            raise ValueError(
                f"TextArena game {game!r} did not start as a {kind} game with seed {seed}: "
                f"{type(err).__name__}: {err}"
                + (
                    "; a two-player game needs opponent="
                    if opponent is None
                    else "; a single-player game takes no opponent="
                )
            ) from err
        # The game itself, under its wrappers: its state holds each player's pending messages.
        self.state = self._unwrapped(ta).state
        self._player_action = ta.ObservationType.PLAYER_ACTION
        self.observation = self._advance()

    def _unwrapped(self, ta: ModuleType) -> Any:
        env = self.env
        while isinstance(env, ta.Wrapper):
            env = env.env
        return env

    def _advance(self) -> str:
        """Lets the opponent move until the policy's player is to move or the game ends; returns the
        policy's new observation text."""
        while not self.done and self.state.current_player_id != self.player:
            if self.opponent is None:
                raise ValueError(
                    f"TextArena game {self.game_id!r} asks player {self.state.current_player_id} to move, "
                    f"not the policy's player {self.player}; a game of several players needs opponent="
                )
            with _global_rng(self._rng):
                _, observation = self.env.get_observation()
            if not isinstance(observation, str):  # a game registered without an observation wrapper
                observation = self._render(observation, skip=None)
            move = self.opponent(observation)
            if not isinstance(move, str):
                raise TypeError(
                    f"opponent must return its move as a str, got {type(move).__name__}: {move!r} "
                    f"(game {self.game_id!r})"
                )
            with _global_rng(self._rng):
                self.done, _ = self.env.step(action=move)
        return self._take_messages()

    def _drop_echo(self) -> None:
        """Drops the echo of the policy's move from its pending messages (the move is in the conversation):
        the messages of the kind TextArena calls a player action that the policy's step added (the game
        sends some as its own, some as the player's)."""
        pending = self.state.observations.get(self.player, [])
        self.state.observations[self.player] = [
            m for m in pending if not (len(m) > 2 and m[2] == self._player_action)
        ]

    def _take_messages(self) -> str:
        """The policy's player's pending messages as text (they are then no longer pending)."""
        messages = self.state.observations.get(self.player, [])
        self.state.observations[self.player] = []
        return self._render(messages, skip=self.player)

    def _render(self, messages: Sequence[Sequence[Any]], *, skip: int | None) -> str:
        """Messages as TextArena's LLMObservationWrapper renders them, one ``[sender] message`` a line,
        without those of player ``skip`` (the policy's own moves, already in the conversation)."""
        names = getattr(self.state, "role_mapping", {}) or {}
        lines = []
        for message in messages:
            sender, text = message[0], message[1]
            if sender == skip:
                continue
            name = GAME_SENDER if sender == -1 else names.get(sender, f"Player {sender}")
            lines.append(f"[{name}] {text}")
        return "\n".join(lines)

    def play(self, move: str) -> GameReply:
        """Plays the policy's ``move``, then the opponent's moves until the policy's turn or the end.

        Raises:
            ValueError: The game has already ended.
        """
        if self.done:
            raise ValueError(
                f"TextArena game {self.game_id!r} (seed {self.seed}) has ended; no move is played"
            )
        with _global_rng(self._rng):
            self.done, _ = self.env.step(action=move)
        self.moves.append(move)
        self._drop_echo()
        text = self._advance()
        if not self.done:
            return GameReply(text=text, done=False, reward=0.0)
        with _global_rng(self._rng):
            rewards, game_info = self.env.close()
        reward = (rewards or {}).get(self.player, 0.0)
        if isinstance(reward, bool) or not isinstance(reward, numbers.Real):
            raise ValueError(
                f"TextArena game {self.game_id!r} (seed {self.seed}) ended with the reward {reward!r} for player "
                f"{self.player} after the moves {self.moves}; expected a number"
            )
        reason = (game_info or {}).get(self.player, {}).get("reason")
        if reason:
            text = "\n".join(t for t in (text, f"[{GAME_SENDER}] {reason}") if t)
        return GameReply(text=text, done=True, reward=float(reward))


def _check_player(player: object, opponent: object) -> int:
    if isinstance(player, bool) or not isinstance(player, numbers.Integral):
        raise TypeError(f"player must be an int (0 or 1), got {type(player).__name__}: {player!r}")
    allowed = (0,) if opponent is None else (0, 1)
    if player not in allowed:
        raise ValueError(
            f"player must be {' or '.join(map(str, allowed))}"
            + (" in a single-player game (no opponent=)" if opponent is None else "")
            + f", got {player!r}"
        )
    return int(player)


def _check_opponent(opponent: object) -> Opponent | None:
    if opponent is not None and not callable(opponent):
        raise TypeError(
            "opponent must be a function of the observation text that returns a move, opponent(observation) "
            f"-> str (or a textarena.Agent), got {type(opponent).__name__}: {opponent!r}"
        )
    return opponent  # type: ignore[return-value]


class GameResponder:
    """The responder of ``TextGen-TextArena-v0``: one TextArena game per env row.

    ``reset`` starts the game of the episode's prompt record (its ``game`` and ``game_seed`` metadata)
    and checks that it shows the prompt; ``respond`` plays the policy's turn as a move and replies with
    the game's new observation, its end and its reward. The game of a row is always the record's game
    after the episode's earlier moves: if it is not (a step retried after an error), it is replayed.

    Args:
        opponent: ``opponent(observation) -> move`` for two-player games.
        player: The policy's player id.
        reply_prefix: Text put before each reply (``"\\n"`` for plain text, ``""`` for chats).

    Example:
        >>> env = gym.make("TextGen-v0", prompts=textarena_prompts(["TowerOfHanoi-v0"], size=1),
        ...                responder=GameResponder(), reward=lambda *a: 0.0)  # doctest: +SKIP
    """

    def __init__(self, *, opponent: Opponent | None = None, player: int = 0, reply_prefix: str = "\n"):
        self.opponent = _check_opponent(opponent)
        self.player = _check_player(player, opponent)
        self.reply_prefix = reply_prefix
        self.games: dict[int, Game] = {}

    def __repr__(self) -> str:
        return f"GameResponder(player={self.player}, opponent={self.opponent!r})"

    def _game_of(self, prompt: Prompt) -> tuple[str, int]:
        game, seed = prompt.metadata.get(GAME_KEY), prompt.metadata.get(SEED_KEY)
        if not isinstance(game, str) or isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
            raise ValueError(
                f"the prompt {prompt.text[:60]!r}... names no TextArena game: its record needs "
                f"{GAME_KEY!r} (a game id) and {SEED_KEY!r} (an int); start episodes from the env's own prompts"
            )
        return game, int(seed)

    def _new_game(self, prompt: Prompt) -> Game:
        game, seed = self._game_of(prompt)
        return Game(game, seed=seed, opponent=self.opponent, player=self.player)

    def reset(self, episode: Episode) -> None:
        """Starts the game of ``episode``'s prompt in its row.

        Raises:
            ValueError: The prompt names no game, or the game does not show the prompt (a game or opponent
                that is not a function of the seed).
        """
        game = self._new_game(episode.prompt)
        if game.observation != episode.prompt.text:
            raise ValueError(
                f"TextArena game {game.game_id!r} with seed {game.seed} did not show its prompt again "
                "(the game, or the opponent, is not a function of the seed and the moves)"
            )
        self.games[episode.row] = game

    def respond(self, episode: Episode) -> Reply:
        """Plays the policy's last turn in the row's game; the reply is the game's answer."""
        moves = [t.text for t in episode.turns if t.role == POLICY_ROLE]
        game = self.games.get(episode.row)
        if (
            game is None
            or (game.game_id, game.seed) != self._game_of(episode.prompt)
            or game.moves != moves[:-1]
        ):
            game = self._new_game(episode.prompt)
            for move in moves[:-1]:
                game.play(move)
            self.games[episode.row] = game
        try:
            reply = game.play(moves[-1])
        except Exception:
            del self.games[episode.row]  # the game may be half-way through the move: a retry replays it
            raise
        return Reply(text=self.reply_prefix + reply.text, reward=reply.reward, done=reply.done)


def textarena_prompts(
    games: Sequence[str],
    *,
    size: int = DEFAULT_SIZE,
    seed: int = DEFAULT_SEED,
    opponent: Opponent | None = None,
    player: int = 0,
    chat: bool = False,
) -> list[dict[str, Any]]:
    """The first observations of ``size`` seeded games of each id, as prompt records.

    Record ``i * len(games) + k`` is game ``games[k]`` with seed ``seed + i``: ``{"prompt": text, "game":
    id, "game_seed": seed + i}``, or ``{"messages": [{"role": "user", "content": text}], ...}`` with
    ``chat=True``.

    Raises:
        ValueError: A game does not start (named).
    """
    records = []
    for i in range(size):
        for game in games:
            text = Game(game, seed=seed + i, opponent=opponent, player=player).observation
            record: dict[str, Any] = (
                {"messages": [{"role": "user", "content": text}]} if chat else {"prompt": text}
            )
            records.append({**record, GAME_KEY: game, SEED_KEY: seed + i})
    return records


def _check_int(name: str, value: object, *, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}: {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def _check_games(game: object) -> list[str]:
    if game is None:
        raise TypeError(f"{ENV_ID} needs game=, a TextArena game id such as 'GuessTheNumber-v0' (or a list)")
    games = [game] if isinstance(game, str) else game
    if not isinstance(games, Sequence) or not games:
        raise TypeError(f"game must be a TextArena game id or a non-empty list of ids, got {game!r}")
    return [check_game_id(g) for g in games]


def textarena_kwargs(
    *,
    game: object = None,
    size: int = DEFAULT_SIZE,
    seed: int = DEFAULT_SEED,
    opponent: Opponent | None = None,
    player: int = 0,
    **kwargs: Any,
) -> dict[str, Any]:
    """``TextGen-TextArena-v0``'s env arguments (see the module docstring).

    Args:
        game: A TextArena game id (``"GuessTheNumber-v0"``) or a list of ids (the records alternate).
        size: Games (seeds) of each id.
        seed: The first game seed.
        opponent: ``opponent(observation) -> move`` for two-player games.
        player: The policy's player id (0 or, with an opponent, 1).
        kwargs: Env arguments (``tokenizer=``, ``max_new_tokens=``, ``max_turns=``, ``reward=`` for extra
            terms, ...).

    Raises:
        ImportError: textarena is not installed.
        TypeError, ValueError: A bad game, option or argument (the message names it).
    """
    import_textarena()
    games = _check_games(game)
    size = _check_int("size", size, minimum=1)
    seed = _check_int("seed", seed, minimum=0)
    opponent = _check_opponent(opponent)
    player = _check_player(player, opponent)
    for key in ("prompts", "responder"):
        if kwargs.get(key) is not None:
            raise TypeError(f"{ENV_ID} makes its {key} from game=; {key}= is not an option")
    tokenizer = load_tokenizer(
        assets.path("tiny-tokenizer") if kwargs.get("tokenizer") is None else kwargs["tokenizer"]
    )
    # As the env renders them: a chat when the tokenizer has a template and chat_template is not False.
    chat = kwargs.get("chat_template", "auto") is not False and bool(
        getattr(tokenizer, "chat_template", None)
    )
    kwargs["tokenizer"] = tokenizer
    kwargs["prompts"] = textarena_prompts(
        games, size=size, seed=seed, opponent=opponent, player=player, chat=chat
    )
    kwargs["responder"] = GameResponder(opponent=opponent, player=player, reply_prefix="" if chat else "\n")
    kwargs.setdefault("max_prompt_tokens", DEFAULT_MAX_PROMPT_TOKENS)
    kwargs.setdefault("max_new_tokens", DEFAULT_MAX_NEW_TOKENS)
    return kwargs


def make(**kwargs: Any) -> TextGenEnv:
    """``TextGen-TextArena-v0``: a :class:`~textenv.env.TextGenEnv` (see :func:`textarena_kwargs`).

    Example:
        >>> env = gym.make("TextGen-TextArena-v0", game="GuessTheNumber-v0", size=20)  # doctest: +SKIP
    """
    return TextGenEnv(**textarena_kwargs(**kwargs))


def make_vector(num_envs: int = 1, **kwargs: Any):
    """``TextGen-TextArena-v0`` as a :class:`~textenv.vector.TextGenVectorEnv` with ``num_envs`` rows.

    Example:
        >>> envs = gym.make_vec("TextGen-TextArena-v0", num_envs=8, game="FrozenLake-v0")  # doctest: +SKIP
    """
    from textenv.vector import TextGenVectorEnv  # imported late, as in textenv.tasks

    return TextGenVectorEnv(num_envs=num_envs, **textarena_kwargs(**kwargs))


# gymnasium.make reads an entry point's metadata to validate render_mode.
make.metadata = TextGenEnv.metadata  # type: ignore[attr-defined]
