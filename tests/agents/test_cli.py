"""agents.cli: the argparse types of both command lines accept good values and refuse bad ones in one line."""

from __future__ import annotations

import argparse
import re

import pytest

from agents.cli import env_id, float_above, int_at_least, json_object, output_dir


def test_numbers():
    assert int_at_least(0)("0") == 0 and int_at_least(1)("12") == 12
    assert float_above(0)("1e-4") == 1e-4
    for parse, text, message in [
        (int_at_least(1), "0", "expected an int >= 1, got '0'"),
        (int_at_least(0), "1.5", "expected an int >= 0, got '1.5'"),
        (int_at_least(0), "", "expected an int >= 0, got ''"),
        (float_above(0), "0", "expected a finite number > 0, got '0'"),
        (float_above(0), "nan", "expected a finite number > 0, got 'nan'"),
        (float_above(0), "x", "expected a number > 0, got 'x'"),
    ]:
        with pytest.raises(argparse.ArgumentTypeError, match=message):
            parse(text)


def test_json_object():
    assert json_object('{"max_new_tokens": 8}') == {"max_new_tokens": 8}
    for text in ("[1]", "3", "null", '"s"'):
        with pytest.raises(
            argparse.ArgumentTypeError, match=f"expected a JSON object .*, got {re.escape(repr(text))}"
        ):
            json_object(text)
    with pytest.raises(argparse.ArgumentTypeError, match="Expecting"):  # the parser's reason
        json_object("{")


def test_env_id():
    assert env_id("TextGen-Copy-v0") == "TextGen-Copy-v0"
    with pytest.raises(
        argparse.ArgumentTypeError, match="unknown env 'CartPole-v1'; registered textenv ids: "
    ):
        env_id("CartPole-v1")  # a Gymnasium id, but not a textenv one


def test_output_dir(tmp_path):
    assert output_dir(str(tmp_path)) == str(tmp_path)
    assert output_dir(str(tmp_path / "new" / "deeper")) == str(tmp_path / "new" / "deeper")
    file = tmp_path / "f"
    file.write_text("x")
    with pytest.raises(argparse.ArgumentTypeError, match="is a file, not a directory"):
        output_dir(str(file))
    with pytest.raises(argparse.ArgumentTypeError, match=r"cannot be created: .* is a file"):
        output_dir(str(file / "sub" / "dir"))
    with pytest.raises(argparse.ArgumentTypeError, match="blank"):
        output_dir(" ")
