"""Ready-made responders for multi-turn envs: tools from plain Python functions, and a scripted user.

:class:`Tools` runs the function the policy calls. The policy writes a call as
``<call>name(arguments)</call>`` (end its turn there with ``stop_strings=["</call>"]``); the env inserts
``<result>value</result>``, or ``<error>message</error>`` when the call does not parse, names no known
tool or raises: a policy's mistake is part of the episode, never an exception out of ``step``.

Arguments are Python literals (``add(2, 3)``, ``lookup("Paris", year=1900)``), parsed with :mod:`ast`
and never evaluated as code; a tool that takes the raw text between the parentheses (a calculator's
expression) is registered with ``raw=True``.

Example (a complete tool env)::

    import gymnasium as gym
    from textenv.responders import Tools, calculator

    env = gym.make(
        "TextGen-v0",
        prompts=[{"prompt": "Q: 37*48= A:", "answer": 1776}],
        reward="answer",
        responder=Tools(calc=calculator),
        end_of_turn=[],                # EOS ends the episode; a call ends a turn
        stop_strings=["</call>"],
        max_new_tokens=32,
    )
"""

from __future__ import annotations

import ast
import inspect
import operator
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from textenv.multiturn import Episode, Reply

CALL = re.compile(r"<call>(?P<name>[A-Za-z_]\w*)\((?P<args>.*?)\)</call>", re.DOTALL)
"""A call in the policy's turn: ``<call>name(arguments)</call>`` (the last one counts)."""

_BINARY: dict[type[ast.operator], Callable[[Any, Any], Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
}
_UNARY: dict[type[ast.unaryop], Callable[[Any], Any]] = {ast.USub: operator.neg, ast.UAdd: operator.pos}
MAX_EXPRESSION = 200
"""The longest expression :func:`calculator` evaluates (characters)."""


def calculator(expression: str) -> int | float:
    """The value of an arithmetic expression of numbers, ``+ - * /`` and parentheses (never ``eval``).

    Raises:
        ValueError: Anything else, an expression longer than ``MAX_EXPRESSION``, or a division by 0.

    Example:
        >>> calculator("37*48")
        1776
        >>> calculator("(1 + 2) / 4")
        0.75
    """
    if len(expression) > MAX_EXPRESSION:
        raise ValueError(f"expression longer than {MAX_EXPRESSION} characters")
    try:
        tree = ast.parse(expression.strip(), mode="eval")
    except SyntaxError:
        raise ValueError(f"not an arithmetic expression: {expression!r}") from None

    def value(node: ast.AST) -> int | float:
        # Numbers only (bool is an int subclass: True + 1 is not arithmetic here).
        if (
            isinstance(node, ast.Constant)
            and isinstance(node.value, (int, float))
            and not isinstance(node.value, bool)
        ):
            return node.value
        if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
            left, right = value(node.left), value(node.right)
            if isinstance(node.op, ast.Div) and right == 0:
                raise ValueError("division by zero")
            return _BINARY[type(node.op)](left, right)
        if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
            return _UNARY[type(node.op)](value(node.operand))
        raise ValueError(f"not an arithmetic expression: {expression!r}")

    return value(tree.body)


class Tools:
    """A responder that runs the Python function the policy calls and inserts its result.

    Args:
        functions: The tools, by name (``Tools(calc=calculator)``), or a list of functions (their names).
        raw: Names of the tools that take the raw text between the parentheses as one string.
        template: How a result is inserted (``{}`` is ``str(value)``).
        error_template: How an error is inserted (``{}`` is the message).
        role: The inserted message's role (what a chat template renders it as).
        max_calls: The episode ends after this many calls (``None``: no limit besides the env's).

    Raises:
        TypeError: A tool that is not callable.
        ValueError: No tools, or a ``raw`` name that is not a tool.
    """

    def __init__(
        self,
        functions: Sequence[Callable[..., Any]] | Mapping[str, Callable[..., Any]] = (),
        *,
        raw: Sequence[str] = (),
        template: str = " <result>{}</result>",
        error_template: str = " <error>{}</error>",
        role: str = "tool",
        max_calls: int | None = None,
        **named: Callable[..., Any],
    ):
        tools = dict(functions) if isinstance(functions, Mapping) else {f.__name__: f for f in functions}
        tools.update(named)
        if not tools:
            raise ValueError("Tools needs at least one function, e.g. Tools(calc=calculator)")
        for name, fn in tools.items():
            if not callable(fn):
                raise TypeError(f"tool {name!r} must be callable, got {type(fn).__name__}: {fn!r}")
        unknown = sorted(set(raw) - set(tools))
        if unknown:
            raise ValueError(f"raw names {unknown} are not tools; tools are {sorted(tools)}")
        # A calculator registered as a tool takes its expression raw unless told otherwise.
        self.raw = set(raw) | {n for n, f in tools.items() if f is calculator}
        self.tools = tools
        self.template = template
        self.error_template = error_template
        self.role = role
        self.max_calls = max_calls

    def __repr__(self) -> str:
        return f"Tools({', '.join(sorted(self.tools))})"

    def respond(self, episode: Episode) -> Reply:
        """Runs the last call of the policy's turn; a turn without one ends the episode."""
        found = list(CALL.finditer(episode.last.text))
        match = found[-1] if found else None
        if match is None:
            return Reply(done=True, role=self.role)
        calls = sum(bool(CALL.search(t.text)) for t in episode.turns if t.role == "assistant")
        done = self.max_calls is not None and calls >= self.max_calls
        try:
            value = self._run(match.group("name"), match.group("args"))
        except Exception as err:  # the policy's mistake, answered in the conversation
            return Reply(self.error_template.format(_message(err)), role=self.role, done=done)
        return Reply(self.template.format(value), role=self.role, done=done)

    def _run(self, name: str, text: str) -> Any:
        fn = self.tools.get(name)
        if fn is None:
            raise ValueError(f"unknown tool {name!r}; tools are {', '.join(sorted(self.tools))}")
        if name in self.raw:
            return fn(text)
        args, kwargs = parse_arguments(text)
        inspect.signature(fn).bind(*args, **kwargs)  # a wrong call is the policy's error, not the tool's
        return fn(*args, **kwargs)


def parse_arguments(text: str) -> tuple[list[Any], dict[str, Any]]:
    """The positional and keyword arguments of ``f(<text>)``, Python literals only (never evaluated).

    Raises:
        ValueError: Text that is not a list of literal arguments.

    Example:
        >>> parse_arguments('2, "a", key=[1, 2]')
        ([2, 'a'], {'key': [1, 2]})
    """
    try:
        call = ast.parse(f"f({text})", mode="eval").body
    except SyntaxError:
        raise ValueError(f"cannot parse the arguments {text!r}") from None
    if not isinstance(call, ast.Call):
        raise ValueError(f"cannot parse the arguments {text!r}")
    try:
        args = [ast.literal_eval(a) for a in call.args]
        kwargs = {k.arg: ast.literal_eval(k.value) for k in call.keywords if k.arg is not None}
    except ValueError:
        raise ValueError(f"arguments must be literals (numbers, strings, lists...), got {text!r}") from None
    if len(kwargs) != len(call.keywords):
        raise ValueError(f"**kwargs are not literal arguments: {text!r}")
    return args, kwargs


def _message(err: Exception) -> str:
    return f"{type(err).__name__}: {err}" if not isinstance(err, ValueError) else str(err)


class ScriptedUser:
    """A simulated user who says ``messages`` in order, one after each policy turn, then ends the episode.

    Args:
        messages: What the user says after the policy's first, second, ... turn.
        role: The messages' role.

    Example:
        >>> user = ScriptedUser([" Why?", " Thanks."])
    """

    def __init__(self, messages: Sequence[str], *, role: str = "user"):
        if isinstance(messages, str) or not all(isinstance(m, str) for m in messages):
            raise TypeError(f"messages must be a list of strings, got {messages!r}")
        self.messages = list(messages)
        self.role = role

    def __repr__(self) -> str:
        return f"ScriptedUser({len(self.messages)} messages)"

    def respond(self, episode: Episode) -> Reply:
        turn = episode.policy_turns - 1
        if turn >= len(self.messages):
            return Reply(done=True, role=self.role)
        return Reply(self.messages[turn], role=self.role)


__all__ = ["CALL", "ScriptedUser", "Tools", "calculator", "parse_arguments"]
