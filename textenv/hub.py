"""Loading datasets, tokenizers and models by Hub name or local path, with clear errors offline.

Every loader here is the call a user with a network makes (``datasets.load_dataset(name)``,
``AutoModel*.from_pretrained(name)``), with remote code never trusted. A local directory works
where a name does: a ``save_to_disk`` directory is read with ``datasets.load_from_disk``, any
other directory with ``datasets.load_dataset`` (data files, or a copy of a Hub dataset repo).

Offline, huggingface_hub retries each request for about 25 s before failing. So before a
download the Hub is probed once (one HEAD request, 5 s timeout); when it cannot be reached, or
``HF_HUB_OFFLINE=1`` is set, the load runs in offline mode: what is in the local cache still
loads, anything else fails at once with a ``ValueError`` that names the dataset or model and
says that it could not be downloaded.

Example:
    >>> ds = load_dataset_split("openai/gsm8k", config="main", split="test")  # doctest: +SKIP
    >>> tok = load_pretrained(AutoTokenizer, "gpt2", what="tokenizer")  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any

HUB_PROBE_TIMEOUT_S = 5.0


def hub_offline() -> bool:
    """Whether offline mode is set (``HF_HUB_OFFLINE`` / ``TRANSFORMERS_OFFLINE``)."""
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


def hub_reachable(timeout: float = HUB_PROBE_TIMEOUT_S) -> bool:
    """One HEAD request to the Hub endpoint (through huggingface_hub's session, so its proxies apply)."""
    from huggingface_hub import constants
    from huggingface_hub.utils import get_session

    try:
        get_session().head(constants.ENDPOINT, timeout=timeout)
    except Exception:  # any transport failure means "cannot download"; HTTP statuses do not raise
        return False
    return True


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


def _offline_reason() -> str | None:
    """Why a download cannot happen now (``None`` when it can)."""
    if hub_offline():
        return "offline mode is set (HF_HUB_OFFLINE)"
    if not hub_reachable():
        return "the Hugging Face Hub cannot be reached"
    return None


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
            offline it says that the dataset could not be downloaded).
    """
    import datasets

    where = f"dataset {str(path)!r} (config {config!r}, split {split!r})"
    if os.path.isdir(path):
        try:
            if _is_saved_to_disk(str(path)):
                loaded = datasets.load_from_disk(str(path))
                if isinstance(loaded, datasets.DatasetDict):
                    if split not in loaded:
                        raise ValueError(f"no split {split!r}; the splits are {sorted(loaded)}")
                    return loaded[split]
                return loaded
            return datasets.load_dataset(str(path), config, split=split, trust_remote_code=False)
        except (OSError, ValueError, KeyError) as err:
            raise ValueError(f"{where} could not be loaded from its local directory: {err}") from err
    reason = _offline_reason()
    try:
        with _datasets_offline() if reason else contextlib.nullcontext():
            return datasets.load_dataset(str(path), config, split=split, trust_remote_code=False)
    except (OSError, ConnectionError) as err:  # DatasetNotFoundError is a FileNotFoundError
        because = f"{reason}, and it is not in the local cache" if reason else str(err)
        raise ValueError(
            f"{where} could not be downloaded: {because}. Pass a local path instead (a dataset "
            f"directory or a save_to_disk directory), or run where the Hub is reachable. ({type(err).__name__}: {err})"
        ) from err
    except ValueError as err:  # unknown configuration or split
        raise ValueError(f"{where} could not be loaded: {err}") from err


def _is_saved_to_disk(path: str) -> bool:
    return any(os.path.isfile(os.path.join(path, f)) for f in ("dataset_dict.json", "state.json"))


def load_pretrained(cls: Any, name: str | os.PathLike[str], *, what: str, **kwargs: Any) -> Any:
    """``cls.from_pretrained(name, trust_remote_code=False, **kwargs)`` with a clear error offline.

    Args:
        cls: A transformers auto class, e.g. ``AutoTokenizer`` or ``AutoModelForCausalLM``.
        name: A Hub name or a local directory written by ``save_pretrained``.
        what: What it is, for messages (``"tokenizer"``, ``"reward model"``).
        kwargs: More ``from_pretrained`` options (``use_safetensors=True`` for weights).

    Raises:
        ValueError: It cannot be loaded; offline, the message says that it could not be downloaded.
    """
    name = str(name)
    if os.path.isdir(name):
        try:
            return cls.from_pretrained(name, trust_remote_code=False, **kwargs)
        except (OSError, ValueError) as err:
            raise ValueError(f"{what} {name!r} could not be loaded from its local directory: {err}") from err
    reason = _offline_reason()
    try:
        return cls.from_pretrained(name, trust_remote_code=False, local_files_only=bool(reason), **kwargs)
    except (OSError, ValueError) as err:
        because = f"{reason}, and it is not in the local cache" if reason else str(err)
        raise ValueError(
            f"{what} {name!r} could not be downloaded: {because}. Pass a local directory written by "
            f"save_pretrained instead, or run where the Hub is reachable."
        ) from err
