"""Atomic training checkpoints: everything a training run needs to resume bit for bit.

Layout of one checkpoint directory::

    <dir>/model/                 the policy's save_pretrained (safetensors; PPO: LM + value_head.safetensors)
                                 + tokenizer files
    <dir>/<name>/                further frozen models an algorithm keeps (e.g. reference/, GRPO with beta > 0)
    <dir>/trainer_state.json     iteration, episodes, config, KL controller, Python/NumPy/env RNG states
    <dir>/trainer_state.pt       optimizer state and torch RNG states (tensors only; read with
                                 ``torch.load(..., weights_only=True)``, never unsafe pickle)

A checkpoint is written into a hidden temporary directory next to its final place, every file is
fsync'ed, and only then the directory is renamed into place, so a crash mid-write never leaves a
half-written checkpoint and the previous one stays intact until the new one is complete. Periodic
checkpoints of a run go to ``<log_dir>/checkpoints/checkpoint-<iteration>``; :func:`latest_checkpoint`
finds the newest complete one.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import re
import shutil
import tempfile
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

MODEL_DIR = "model"
STATE_JSON = "trainer_state.json"
STATE_PT = "trainer_state.pt"
CHECKPOINTS_DIR = "checkpoints"
CHECKPOINT_PREFIX = "checkpoint-"
FORMAT_VERSION = 1
_CHECKPOINT_RE = re.compile(rf"^{CHECKPOINT_PREFIX}(\d+)$")
_OLD_SUFFIX = ".old"


def _fsync_path(path: str) -> None:
    """fsyncs a file or a directory (directories where the OS allows it)."""
    flags = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) if os.path.isdir(path) else os.O_RDONLY
    try:
        fd = os.open(path, flags)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _fsync_tree(root: str) -> None:
    for dirpath, _, filenames in os.walk(root):
        for name in filenames:
            _fsync_path(os.path.join(dirpath, name))
        _fsync_path(dirpath)


@contextlib.contextmanager
def atomic_directory(path: str | os.PathLike[str]) -> Iterator[str]:
    """Yields a temporary directory that becomes ``path`` only once the block finishes without error.

    The temporary directory lives in ``path``'s parent (same filesystem, so the final rename is atomic).
    An existing ``path`` is first renamed to ``<path>.old`` and removed after the new directory is in
    place; if the process dies between the two renames, :func:`resolve_checkpoint` finds ``<path>.old``.
    On an exception the temporary directory is removed and ``path`` is left as it was.

    Args:
        path: The final directory.

    Yields:
        The temporary directory to write into.
    """
    final = os.path.abspath(os.fspath(path))
    parent = os.path.dirname(final)
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=f".tmp-{os.path.basename(final)}-", dir=parent)
    try:
        yield tmp
        _fsync_tree(tmp)
        if os.path.exists(final):
            old = final + _OLD_SUFFIX
            if os.path.exists(old):
                shutil.rmtree(old)
            os.rename(final, old)
            os.rename(tmp, final)
            _fsync_path(parent)
            shutil.rmtree(old)
        else:
            os.rename(tmp, final)
        _fsync_path(parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


@contextlib.contextmanager
def quiet_transformers() -> Iterator[None]:
    """Hides transformers' per-file progress bars ("Writing model shards", "Loading weights")."""
    from transformers.utils import logging as hf_logging

    enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if enabled:
            hf_logging.enable_progress_bar()


def _jsonable_numpy_state() -> dict[str, Any]:
    name, keys, pos, has_gauss, cached = np.random.get_state()
    return {
        "name": name,
        "keys": np.asarray(keys).tolist(),
        "pos": int(pos),
        "has_gauss": int(has_gauss),
        "cached": cached,
    }


def capture_rng_state(
    generator: torch.Generator | None = None,
) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """The global RNG states (Python, NumPy, torch CPU and CUDA) and ``generator``'s state.

    Args:
        generator: The trainer's sampling generator, if any.

    Returns:
        ``(json_part, tensor_part)``: Python and NumPy states as JSON-able data, torch states as tensors.
    """
    version, internal, gauss = random.getstate()
    json_part = {"python": [version, list(internal), gauss], "numpy": _jsonable_numpy_state()}
    tensors = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        for i, state in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"cuda_{i}"] = state
    if generator is not None:
        tensors["generator"] = generator.get_state()
    return json_part, tensors


def restore_rng_state(
    json_part: dict[str, Any], tensors: dict[str, torch.Tensor], generator: torch.Generator | None = None
) -> None:
    """Inverse of :func:`capture_rng_state`.

    Args:
        json_part: The JSON part.
        tensors: The tensor part.
        generator: The trainer's sampling generator, restored from ``tensors["generator"]`` if present.
    """
    version, internal, gauss = json_part["python"]
    random.setstate((version, tuple(internal), gauss))
    st = json_part["numpy"]
    np.random.set_state(
        (st["name"], np.asarray(st["keys"], dtype=np.uint32), st["pos"], st["has_gauss"], st["cached"])
    )
    torch.set_rng_state(tensors["torch"])
    if torch.cuda.is_available():
        states = [tensors[f"cuda_{i}"] for i in range(torch.cuda.device_count()) if f"cuda_{i}" in tensors]
        if len(states) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(states)
    if generator is not None and "generator" in tensors:
        generator.set_state(tensors["generator"])


def write_checkpoint(
    path: str | os.PathLike[str],
    *,
    model: Any,
    tokenizer: Any = None,
    state: dict[str, Any],
    tensors: dict[str, Any],
    extra_models: dict[str, Any] | None = None,
) -> str:
    """Writes one checkpoint atomically (see the module docstring for the layout).

    Args:
        path: Final checkpoint directory.
        model: A ``CausalLMWithValueHead`` (its ``save_pretrained`` writes safetensors).
        tokenizer: Saved next to the weights when given, so ``Algo.load`` can decode without the env.
        state: JSON-able trainer state.
        tensors: Tensor state (optimizer state dict, RNG tensors); nested dicts/lists of tensors and numbers.
        extra_models: Further models (``save_pretrained``), each into ``<path>/<name>/`` (e.g. the frozen
            reference of a KL term in the loss).

    Returns:
        The absolute checkpoint path.
    """
    final = os.path.abspath(os.fspath(path))
    with atomic_directory(final) as tmp:
        model_dir = os.path.join(tmp, MODEL_DIR)
        with quiet_transformers():
            model.save_pretrained(model_dir)
        if tokenizer is not None:
            tokenizer.save_pretrained(model_dir)
        for name, extra in (extra_models or {}).items():
            with quiet_transformers():
                extra.save_pretrained(os.path.join(tmp, name))
        torch.save(tensors, os.path.join(tmp, STATE_PT))
        with open(os.path.join(tmp, STATE_JSON), "w") as f:
            json.dump({"format_version": FORMAT_VERSION, **state}, f, indent=1)
    return final


def resolve_checkpoint(path: str | os.PathLike[str]) -> str:
    """The checkpoint directory to read for ``path``.

    ``path`` may be a checkpoint directory, a run's ``log_dir`` or its ``checkpoints`` directory (the
    newest complete checkpoint is taken), or a checkpoint whose replacement was interrupted between two
    renames (``<path>.old`` is taken).

    Args:
        path: Where to look.

    Returns:
        A directory holding ``trainer_state.json``, ``trainer_state.pt`` and ``model/``.

    Raises:
        FileNotFoundError: If no complete checkpoint is there.
    """
    path = os.path.abspath(os.fspath(path))
    if is_checkpoint(path):
        return path
    if is_checkpoint(path + _OLD_SUFFIX):
        return path + _OLD_SUFFIX
    latest = latest_checkpoint(path)
    if latest is not None:
        return latest
    raise FileNotFoundError(
        f"no complete checkpoint at {path!r} (expected {STATE_JSON}, {STATE_PT} and {MODEL_DIR}/)"
    )


def is_checkpoint(path: str) -> bool:
    """Whether ``path`` is a complete checkpoint directory."""
    return (
        os.path.isfile(os.path.join(path, STATE_JSON))
        and os.path.isfile(os.path.join(path, STATE_PT))
        and os.path.isdir(os.path.join(path, MODEL_DIR))
    )


def list_checkpoints(log_dir: str | os.PathLike[str]) -> list[tuple[int, str]]:
    """Complete periodic checkpoints under ``log_dir`` (or its ``checkpoints`` dir), oldest first.

    Args:
        log_dir: A run directory or its ``checkpoints`` directory.

    Returns:
        ``[(iteration, path)]`` sorted by iteration.
    """
    root = os.fspath(log_dir)
    if os.path.isdir(os.path.join(root, CHECKPOINTS_DIR)):
        root = os.path.join(root, CHECKPOINTS_DIR)
    if not os.path.isdir(root):
        return []
    found = []
    for name in os.listdir(root):
        for candidate in (name, name.removesuffix(_OLD_SUFFIX)):
            match = _CHECKPOINT_RE.match(candidate)
            full = os.path.join(root, name)
            if match and is_checkpoint(full):
                found.append((int(match.group(1)), os.path.abspath(full)))
                break
    # A "<name>" and a leftover "<name>.old" of the same iteration: prefer the completed one.
    best: dict[int, str] = {}
    for it, p in sorted(found, key=lambda x: (x[0], x[1].endswith(_OLD_SUFFIX))):
        best.setdefault(it, p)
    return sorted(best.items())


def latest_checkpoint(log_dir: str | os.PathLike[str]) -> str | None:
    """The newest complete periodic checkpoint under ``log_dir``, or ``None``."""
    found = list_checkpoints(log_dir)
    return found[-1][1] if found else None


def checkpoint_path(log_dir: str | os.PathLike[str], iteration: int) -> str:
    """``<log_dir>/checkpoints/checkpoint-<iteration:06d>``."""
    return os.path.join(os.fspath(log_dir), CHECKPOINTS_DIR, f"{CHECKPOINT_PREFIX}{iteration:06d}")


def prune_checkpoints(log_dir: str | os.PathLike[str], keep: int) -> None:
    """Removes all but the ``keep`` newest complete checkpoints and stale temporary directories.

    Args:
        log_dir: The run directory.
        keep: How many checkpoints to keep (>= 1).
    """
    found = list_checkpoints(log_dir)
    for _, path in found[: max(len(found) - max(keep, 1), 0)]:
        shutil.rmtree(path, ignore_errors=True)
    root = os.path.join(os.fspath(log_dir), CHECKPOINTS_DIR)
    if os.path.isdir(root):
        for name in os.listdir(root):
            if name.startswith(".tmp-"):
                shutil.rmtree(os.path.join(root, name), ignore_errors=True)


def read_checkpoint(
    path: str | os.PathLike[str], device: torch.device | str = "cpu"
) -> tuple[str, dict, dict]:
    """Reads a checkpoint's trainer state (the weights are loaded by the caller from ``<dir>/model``).

    Args:
        path: Anything :func:`resolve_checkpoint` accepts.
        device: Where tensors are mapped.

    Returns:
        ``(directory, state, tensors)``.

    Raises:
        FileNotFoundError: If there is no complete checkpoint.
        ValueError: If the checkpoint was written by an unknown format version, or a state file is
            damaged, lacks a field or holds one of the wrong type (the message names the file and field).
    """
    directory = resolve_checkpoint(path)
    json_path = os.path.join(directory, STATE_JSON)
    try:
        with open(json_path) as f:
            state = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"checkpoint file {json_path!r} is not valid JSON: {err}") from err
    if not isinstance(state, dict):
        raise ValueError(
            f"checkpoint file {json_path!r} holds {type(state).__name__}, expected a JSON object"
        )
    version = state.get("format_version")
    if version != FORMAT_VERSION:
        raise ValueError(
            f"checkpoint {directory!r} has format_version={version!r}, expected {FORMAT_VERSION}"
        )
    _check_fields(json_path, state, REQUIRED_STATE)
    pt_path = os.path.join(directory, STATE_PT)
    try:
        tensors = torch.load(pt_path, map_location=device, weights_only=True)
    except Exception as err:  # torch raises several types for a damaged or unsafe file
        raise ValueError(
            f"checkpoint file {pt_path!r} cannot be read safely: {type(err).__name__}: {err}"
        ) from err
    if not isinstance(tensors, dict):
        raise ValueError(f"checkpoint file {pt_path!r} holds {type(tensors).__name__}, expected a dict")
    _check_fields(pt_path, tensors, REQUIRED_TENSORS)
    return directory, state, tensors


REQUIRED_STATE: dict[str, tuple[type, ...]] = {
    "iteration": (int,),
    "num_episodes": (int,),
    "config": (dict,),
    "kl_controller": (dict,),
    "rng": (dict,),
}
"""Fields every ``trainer_state.json`` holds, with their types (counts must also be >= 0)."""
REQUIRED_TENSORS: dict[str, tuple[type, ...]] = {"optimizer": (dict,), "rng": (dict,)}
"""Entries every ``trainer_state.pt`` holds."""


def _check_fields(path: str, data: dict[str, Any], required: dict[str, tuple[type, ...]]) -> None:
    """Raises a ValueError naming ``path`` and the field when one is missing, of the wrong type or negative."""
    for name, types in required.items():
        if name not in data:
            raise ValueError(f"checkpoint file {path!r} has no {name!r} field")
        value = data[name]
        if isinstance(value, bool) or not isinstance(value, types):
            expected = " or ".join(t.__name__ for t in types)
            raise ValueError(f"checkpoint file {path!r}: {name!r} is {value!r}, expected {expected}")
        if isinstance(value, int) and value < 0:
            raise ValueError(f"checkpoint file {path!r}: {name!r} is {value}, expected an int >= 0")
