"""Ready-made responders (textenv/responders.py): Tools, the calculator, ScriptedUser; alone and in an env."""

from __future__ import annotations

import pytest

from textenv import Episode, Prompt, Reply, TextGenEnv, Turn
from textenv.responders import MAX_EXPRESSION, ScriptedUser, Tools, calculator, parse_arguments
from textenv.scorers import Callable


def episode(*texts: str) -> Episode:
    """An episode whose policy said ``texts`` (its turns), with the tool's answers in between."""
    turns: list[Turn] = []
    for text in texts:
        turns += [Turn("assistant", text), Turn("tool", " <result>x</result>")]
    return Episode(row=0, prompt=Prompt(text="Q"), turns=tuple(turns[:-1]))


# --- the calculator ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("expression", "value"),
    [
        ("37*48", 1776),
        ("(1 + 2) / 4", 0.75),
        (" -3 + +2 ", -1),
        ("2.5*2-1", 4.0),
        ("((7))", 7),
        ("10/4*2", 5.0),
    ],
)
def test_calculator_evaluates_arithmetic(expression, value):
    out = calculator(expression)
    assert out == value and type(out) is type(value)


@pytest.mark.parametrize(
    ("expression", "match"),
    [
        ("__import__('os')", "not an arithmetic expression"),
        ("__import__('os').system('echo hi')", "not an arithmetic expression"),
        ("(1).__class__", "not an arithmetic expression"),
        ("2**10", "not an arithmetic expression"),  # no powers: no huge numbers from a short text
        ("x + 1", "not an arithmetic expression"),
        ("'a' * 3", "not an arithmetic expression"),
        ("True + 1", "not an arithmetic expression"),
        ("[1, 2]", "not an arithmetic expression"),
        ("1 if 1 else 2", "not an arithmetic expression"),
        ("1 +", "not an arithmetic expression"),
        ("", "not an arithmetic expression"),
        ("1/0", "division by zero"),
        ("1/(2-2)", "division by zero"),
        ("1+" * 100 + "1", f"longer than {MAX_EXPRESSION} characters"),
    ],
)
def test_calculator_refuses_anything_else(expression, match):
    with pytest.raises(ValueError, match=match):
        calculator(expression)


def test_calculator_never_evaluates_code(monkeypatch):
    # ast is used to read the text, never eval/exec: make them fail loudly if anything calls them.
    import builtins

    def refuse(*args, **kwargs):
        raise AssertionError("eval/exec called")

    monkeypatch.setattr(builtins, "eval", refuse)
    monkeypatch.setattr(builtins, "exec", refuse)
    assert calculator("6*7") == 42
    with pytest.raises(ValueError):
        calculator("__import__('os').system('false')")


# --- argument parsing -------------------------------------------------------------------------------------
def test_parse_arguments_reads_literals_only():
    assert parse_arguments('2, "a", key=[1, 2]') == ([2, "a"], {"key": [1, 2]})
    assert parse_arguments("") == ([], {})
    assert parse_arguments("-1.5, (1, 'b'), x={'k': None}") == ([-1.5, (1, "b")], {"x": {"k": None}})
    for text, match in [
        ("x", "arguments must be literals"),
        ("open('f')", "arguments must be literals"),
        ("*[1]", "arguments must be literals"),
        ("**{'a': 1}", r"\*\*kwargs are not literal arguments"),
        ("1,,", "cannot parse the arguments"),
        ("1), (2", "cannot parse the arguments"),
        (") or __import__('os') or (", "cannot parse the arguments"),
    ]:
        with pytest.raises(ValueError, match=match):
            parse_arguments(text)


# --- Tools ------------------------------------------------------------------------------------------------
def add(a: int, b: int = 0) -> int:
    return a + b


def lookup(city: str, *, year: int = 2000) -> str:
    if city == "Atlantis":
        raise KeyError(city)
    return f"{city}@{year}"


def test_tools_run_the_called_function_and_insert_its_result():
    tools = Tools([add, lookup], calc=calculator)
    assert repr(tools) == "Tools(add, calc, lookup)" and tools.raw == {"calc"}
    for text, reply in [
        (" <call>add(2, 3)</call>", " <result>5</result>"),
        ("I will <call>add(2)</call>", " <result>2</result>"),
        (' <call>lookup("Paris", year=1900)</call>', " <result>Paris@1900</result>"),
        (" <call>calc((1 + 2) * 3)</call>", " <result>9</result>"),  # raw: the text between the parentheses
        (
            " <call>add(1, 2)</call> or rather <call>add(3, 4)</call>",
            " <result>7</result>",
        ),  # the last counts
        (" <call>add(\n1,\n2)</call>", " <result>3</result>"),
    ]:
        assert tools.respond(episode(text)) == Reply(reply, role="tool"), text


@pytest.mark.parametrize(
    ("text", "error"),
    [
        (" <call>mul(2, 3)</call>", "unknown tool 'mul'; tools are add, calc, lookup"),
        (" <call>add(x)</call>", "arguments must be literals (numbers, strings, lists...), got 'x'"),
        (" <call>add(1, 2, 3)</call>", "TypeError: too many positional arguments"),
        (" <call>add(c=1)</call>", "TypeError: missing a required argument: 'a'"),
        (" <call>lookup('Atlantis')</call>", "KeyError: 'Atlantis'"),
        (" <call>add('a', 1)</call>", 'TypeError: can only concatenate str (not "int") to str'),
        (" <call>calc(__import__('os'))</call>", "not an arithmetic expression: \"__import__('os')\""),
        (" <call>calc(1/0)</call>", "division by zero"),
    ],
)
def test_a_bad_call_is_answered_with_an_error_not_raised(text, error):
    tools = Tools([add, lookup], calc=calculator)
    assert tools.respond(episode(text)) == Reply(f" <error>{error}</error>", role="tool")


def test_a_turn_without_a_call_ends_the_episode_and_max_calls_counts_calls():
    tools = Tools(add=add, max_calls=2, template="[{}]", error_template="[!{}]", role="ipython")
    assert tools.respond(episode("The answer is 5.")) == Reply(done=True, role="ipython")
    assert tools.respond(episode("<call>add(1)</call>")) == Reply("[1]", role="ipython")
    # The second call is the last one allowed: answered, and the episode ends after it (errors count too).
    assert tools.respond(episode("<call>add(1)</call>", "<call>add(2)</call>")) == Reply(
        "[2]", role="ipython", done=True
    )
    assert tools.respond(episode("no call", "<call>add(y)</call>")) == Reply(
        "[!arguments must be literals (numbers, strings, lists...), got 'y']", role="ipython"
    )


def test_tools_construction_is_checked():
    with pytest.raises(ValueError, match="at least one function"):
        Tools()
    with pytest.raises(TypeError, match="tool 'x' must be callable, got int: 3"):
        Tools(x=3)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"raw names \['nope'\] are not tools; tools are \['add'\]"):
        Tools([add], raw=["nope"])
    # A raw tool gets the text between the parentheses as one string.
    assert Tools([add], raw=["add"]).respond(episode("<call>add(1, 2)</call>")) == Reply(
        ' <error>TypeError: can only concatenate str (not "int") to str</error>', role="tool"
    )
    assert Tools(echo=lambda text: text[::-1], raw=["echo"]).respond(
        episode("<call>echo(a, b)</call>")
    ) == Reply(" <result>b ,a</result>", role="tool")


# --- ScriptedUser -----------------------------------------------------------------------------------------
def test_scripted_user_says_its_lines_in_order_then_ends():
    user = ScriptedUser([" Why?", " Thanks."], role="human")
    assert repr(user) == "ScriptedUser(2 messages)"
    assert user.respond(episode("a")) == Reply(" Why?", role="human")
    assert user.respond(episode("a", "b")) == Reply(" Thanks.", role="human")
    assert user.respond(episode("a", "b", "c")) == Reply(done=True, role="human")
    for bad in ("one string", [" ok", 3]):
        with pytest.raises(TypeError, match="messages must be a list of strings"):
            ScriptedUser(bad)  # type: ignore[arg-type]


# --- in an env --------------------------------------------------------------------------------------------
def ids(tok, text: str) -> list[int]:
    return list(tok(text, add_special_tokens=False)["input_ids"])


def tool_env(tok, responder: object, **options: object) -> TextGenEnv:
    return TextGenEnv(
        tokenizer=tok,
        prompts=[{"prompt": "Q: 37*48= A:", "answer": 1776}],
        reward="answer",
        responder=responder,
        end_of_turn=[],
        stop_strings=["</call>"],
        max_prompt_tokens=16,
        max_new_tokens=128,
        **options,
    )


def test_a_calculator_env_from_call_to_answer(tokenizer):
    tok, eos = tokenizer, tokenizer.eos_token_id
    env = tool_env(tok, Tools(calc=calculator))
    obs, _ = env.reset(seed=0)
    # A call that is not arithmetic is answered in the conversation; the step does not raise.
    *_, (obs, reward, terminated, _, info) = [
        env.step(a) for a in ids(tok, " <call>calc(__import__('os'))</call>")
    ]
    assert info["turn_ended"] and not terminated and reward == 0.0
    assert tok.decode(obs["input_ids"][obs["attention_mask"] == 1][-info["inserted"] :]) == (
        " <error>not an arithmetic expression: \"__import__('os')\"</error>"
    )
    *_, (obs, *_, info) = [env.step(a) for a in ids(tok, " <call>calc(37*48)</call>")]
    assert info["inserted"] == len(ids(tok, " <result>1776</result>"))
    *_, (obs, reward, terminated, _, info) = [env.step(a) for a in [*ids(tok, " 1776"), eos]]
    assert terminated and info["finish_reason"] == "eos" and reward == 1.0  # answer scores the last turn
    assert [t["role"] for t in info["turns"]] == ["assistant", "tool", "assistant", "tool", "assistant"]
    assert info["turns"][3]["text"] == " <result>1776</result>"


def test_a_scripted_user_env(tokenizer):
    tok, eos = tokenizer, tokenizer.eos_token_id
    env = TextGenEnv(
        tokenizer=tok,
        prompts=["Hi"],
        reward=Callable(lambda prompt, text, refs, meta: 0.0),
        responder=ScriptedUser([" Why?", " Thanks."]),
        max_new_tokens=40,
    )
    env.reset(seed=0)
    texts = []
    for turn in (" Fine", " Because", " Bye"):
        *_, (obs, _, terminated, _, info) = [env.step(a) for a in [*ids(tok, turn), eos]]
        texts.append(
            tok.decode(obs["input_ids"][obs["attention_mask"] == 1][-info["inserted"] :])
            if info["inserted"]
            else ""
        )
    assert texts == [" Why?", " Thanks.", ""]
    assert terminated and info["finish_reason"] == "responder"
