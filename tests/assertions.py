"""Assertions shared by the tests of the vector envs and their adapters."""

from __future__ import annotations

from typing import Any

import numpy as np


def assert_same(a: Any, b: Any, path: str = "") -> None:
    """Recursive equality of env outputs: the same types, dict keys (``_`` masks included), array shapes and
    dtypes, and values; object arrays, lists and tuples compared element by element.

    Example:
        >>> assert_same({"x": np.zeros(2), "_x": np.ones(2, bool)}, {"x": np.zeros(2), "_x": np.ones(2, bool)})
        >>> assert_same([1, 2], (1, 2))  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        AssertionError: : [1, 2] vs (1, 2)...
    """
    if isinstance(a, (list, tuple)) or isinstance(b, (list, tuple)):
        assert type(a) is type(b) and len(a) == len(b), f"{path}: {a!r} vs {b!r}"
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same(x, y, f"{path}[{i}]")
    elif isinstance(a, dict) or isinstance(b, dict):
        assert isinstance(a, dict) and isinstance(b, dict), f"{path}: {type(a)} vs {type(b)}"
        assert sorted(a) == sorted(b), f"{path}: keys {sorted(a)} vs {sorted(b)}"
        for key in a:
            assert_same(a[key], b[key], f"{path}[{key!r}]")
    elif isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        assert isinstance(a, np.ndarray) and isinstance(b, np.ndarray), f"{path}: {type(a)} vs {type(b)}"
        assert a.shape == b.shape and a.dtype == b.dtype, (
            f"{path}: {a.shape} {a.dtype} vs {b.shape} {b.dtype}"
        )
        if a.dtype == object:
            for i, (x, y) in enumerate(zip(a, b)):
                assert_same(x, y, f"{path}[{i}]")
        else:
            np.testing.assert_array_equal(a, b, err_msg=path)
    else:
        assert type(a) is type(b) and a == b, f"{path}: {a!r} vs {b!r}"
