"""Loading datasets by Hub name or local path, with clear errors offline (models: textenv.loading).

Every loader here is the call a user with a network makes (``datasets.load_dataset(name)``,
``AutoModel*.from_pretrained(name)``), with remote code never trusted. A local path works where a
name does: a ``save_to_disk`` directory is read with ``datasets.load_from_disk``, any other
directory with ``datasets.load_dataset`` (data files, or a copy of a Hub dataset repo), and a data
file (``.json``, ``.jsonl``, ``.csv``, ``.parquet``, ``.arrow``, ``.txt``) with the builder of its
format. A string that looks like a path (see :func:`local_dataset_path`) but names nothing is
reported as a missing path, not as a failed download.

Offline, huggingface_hub retries each request for about 25 s before failing. So before a
download the Hub is probed once (one HEAD request, 5 s timeout); when it cannot be reached, or
``HF_HUB_OFFLINE=1`` is set, the load runs in offline mode: what is in the local cache still
loads, anything else fails at once with a ``ValueError`` that names the dataset or model and
says that it could not be downloaded.

Example:
    >>> ds = load_dataset_split("openai/gsm8k", config="main", split="test")  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any

from textenv.loading import offline_reason

DATA_FILE_BUILDERS = {
    ".json": "json",
    ".jsonl": "json",
    ".csv": "csv",
    ".parquet": "parquet",
    ".arrow": "arrow",
    ".txt": "text",
}
"""Data-file extensions a local path may end with, and the ``datasets`` builder that reads each."""


@contextlib.contextmanager
def _datasets_offline() -> Iterator[None]:
    # datasets and huggingface_hub read these flags at call time; setting them is what
    # HF_HUB_OFFLINE=1 does at import time, and it skips the ~25 s of retries.
    import datasets
    from huggingface_hub import constants

    # datasets < 2.19 names its flag HF_DATASETS_OFFLINE; newer versions keep it as an alias.
    flags = [(constants, "HF_HUB_OFFLINE")] + [
        (datasets.config, name)
        for name in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")
        if hasattr(datasets.config, name)
    ]
    saved = [getattr(module, name) for module, name in flags]
    for module, name in flags:
        setattr(module, name, True)
    try:
        yield
    finally:
        for (module, name), value in zip(flags, saved):
            setattr(module, name, value)


def load_dataset_split(
    path: str | os.PathLike[str], *, config: str | None = None, split: str = "train"
) -> Any:
    """One split of a dataset, by Hub name or local path, as a ``datasets.Dataset``.

    Args:
        path: A Hub dataset name (``"openai/gsm8k"``), a local dataset directory (data files or a
            copy of the Hub repo, read with ``load_dataset``) or a ``save_to_disk`` directory.
        config: The configuration (``"main"`` for GSM8K); ``None`` for the default.
        split: The split, e.g. ``"train"`` or ``"test[:100]"``.

    Raises:
        ValueError: The dataset, configuration or split cannot be loaded (the message names them;
            offline it says that the dataset could not be downloaded), or ``path`` looks like a
            local path but nothing is there.
    """
    where = f"dataset {str(path)!r} (config {config!r}, split {split!r})"
    local = local_dataset_path(path)
    if local is not None:
        try:
            loaded = _load_local(local, config, split)
            # Older `datasets` load an empty save_to_disk folder as a dataset without rows; newer ones
            # raise IndexError. Either way the user hears the same thing.
            if len(loaded) == 0:
                raise ValueError("it has no rows")
            return loaded
        except (OSError, ValueError, KeyError, IndexError) as err:  # IndexError: an empty save_to_disk folder
            raise ValueError(f"{where} could not be loaded from its local path: {err}") from err
    import datasets

    reason = offline_reason()
    try:
        with _datasets_offline() if reason else contextlib.nullcontext():
            return datasets.load_dataset(str(path), config, split=split, trust_remote_code=False)
    except (OSError, ConnectionError) as err:  # DatasetNotFoundError is a FileNotFoundError
        because = f"{reason}, and it is not in the local cache" if reason else str(err)
        raise ValueError(
            f"{where} could not be downloaded: {because}; nor is there a local file or directory of that "
            "name. Pass a local path instead (a dataset directory, a save_to_disk directory or a data file), "
            f"or run where the Hub is reachable. ({type(err).__name__}: {err})"
        ) from err
    except ValueError as err:  # unknown configuration or split
        raise ValueError(f"{where} could not be loaded: {err}") from err


def local_dataset_path(path: str | os.PathLike[str]) -> str | None:
    """The local file or directory ``path`` names (``~`` expanded), or ``None`` for a Hub name.

    An existing file or directory is always local. Otherwise ``path`` is a Hub name (``"name"`` or
    ``"owner/name"``) unless it looks like a path: an ``os.PathLike``, or a string that starts with
    ``.``, ``~`` or a separator, holds a backslash (Windows) or more than one ``/``, or ends with a
    data-file extension (:data:`DATA_FILE_BUILDERS`). Such a path must exist.

    Raises:
        ValueError: ``path`` looks like a path, but no file or directory is there.

    Example:
        >>> local_dataset_path("openai/gsm8k") is None  # doctest: +SKIP
        True
    """
    text = os.fspath(path)
    expanded = os.path.expanduser(text)
    if os.path.exists(expanded):
        return expanded
    looks_like_path = (
        isinstance(path, os.PathLike)
        or text.startswith((".", "~", "/", os.sep))
        or os.path.isabs(text)
        or "\\" in text
        or text.count("/") > 1
        or os.path.splitext(text)[1].lower() in DATA_FILE_BUILDERS
    )
    if looks_like_path:
        raise ValueError(
            f"dataset path {text!r} does not exist (no file or directory at {os.path.abspath(expanded)!r}); "
            "expected a local dataset directory, a save_to_disk directory or a data file "
            f"({', '.join(DATA_FILE_BUILDERS)}), or a Hub name such as 'openai/gsm8k'"
        )
    return None


def _load_local(path: str, config: str | None, split: str) -> Any:
    import datasets

    if os.path.isfile(path):
        extension = os.path.splitext(path)[1].lower()
        if extension not in DATA_FILE_BUILDERS:
            raise ValueError(
                f"a data file must end with one of {', '.join(DATA_FILE_BUILDERS)}, got {path!r}"
            )
        if config is not None:
            raise ValueError(f"a data file has no configurations; pass config=None, got {config!r}")
        return datasets.load_dataset(DATA_FILE_BUILDERS[extension], data_files=path, split=split)
    if _is_saved_to_disk(path):
        loaded = datasets.load_from_disk(path)
        if isinstance(loaded, datasets.DatasetDict):
            if split not in loaded:
                raise ValueError(f"no split {split!r}; the splits are {sorted(loaded)}")
            return loaded[split]
        return loaded
    return datasets.load_dataset(path, config, split=split, trust_remote_code=False)


def _is_saved_to_disk(path: str) -> bool:
    return any(os.path.isfile(os.path.join(path, f)) for f in ("dataset_dict.json", "state.json"))
