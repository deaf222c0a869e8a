"""Loading pretrained models and tokenizers safely: built-in names, no remote code, quiet, clear errors.

Every ``from_pretrained`` of textenv goes through :func:`from_pretrained`, which

* turns a built-in asset name (``"tiny-lm"``) into its local path and answers a near miss
  (``"tiny_lm"``) at once with "did you mean 'tiny-lm'?", before any hub access;
* passes ``trust_remote_code=False`` unless the caller asked for remote code explicitly, so a model
  folder's own Python code never runs and transformers never prompts on standard input;
* hides transformers' "Loading weights" progress bars and info logs for the duration of the load
  only (:func:`quiet_transformers` restores the user's settings afterwards);
* reports a failed load (offline hub, missing folder, custom code refused) as a ``ValueError`` that
  names the argument and the value;
* fails fast offline: huggingface_hub retries each request for about 25 s before failing, so before a
  hub load the Hub is probed once (one HEAD request, 5 s timeout); when it cannot be reached, or
  ``HF_HUB_OFFLINE=1`` is set, the load runs from the local cache only, and a name that is not
  cached fails at once saying that it could not be downloaded.

Example:
    >>> from transformers import AutoTokenizer
    >>> tok = from_pretrained(AutoTokenizer, "tiny-tokenizer", argument="tokenizer")
"""

from __future__ import annotations

import contextlib
import difflib
import os
from collections.abc import Iterator
from typing import Any

from textenv import assets

HUB_PROBE_TIMEOUT_S = 5.0

# Built-in assets that from_pretrained can read (the others are prompt files).
PRETRAINED_ASSETS = assets.PRETRAINED
# A local model or tokenizer folder holds at least one of these.
_MODEL_FILES = ("config.json", "tokenizer_config.json", "tokenizer.json", "adapter_config.json")
# How close a name must be to a built-in one to be called a misspelling of it (difflib ratio).
_CLOSE = 0.8


def resolve_pretrained(name: str, *, argument: str) -> str:
    """The path or hub name to load for ``name``: built-in asset names become their local path.

    Args:
        name: A built-in name (``"tiny-lm"``, ``"tiny-tokenizer"``, ``"tiny-sentiment"``), a local
            path or a hub name.
        argument: How the caller names the argument in errors, e.g. ``"tokenizer"``.

    Raises:
        ValueError: ``name`` is blank, or close to a built-in name without being one or a local path.
        TypeError: ``name`` is not a string.

    Example:
        >>> resolve_pretrained("tiny_lm", argument="tokenizer")
        Traceback (most recent call last):
        ValueError: tokenizer='tiny_lm' is not a built-in name nor a local path; did you mean 'tiny-lm'? ...
    """

    if not isinstance(name, str):
        raise TypeError(f"{argument} must be a name or a path string, got {type(name).__name__}: {name!r}")
    if not name.strip():
        raise ValueError(
            f"{argument}={name!r} is blank; expected a built-in name, a local path or a hub name"
        )
    if name in PRETRAINED_ASSETS:
        return assets.path(name)
    if os.path.exists(name):
        return name
    close = difflib.get_close_matches(name, PRETRAINED_ASSETS, n=1, cutoff=_CLOSE)
    if close:
        raise ValueError(
            f"{argument}={name!r} is not a built-in name nor a local path; did you mean {close[0]!r}? "
            f"(built-in models: {', '.join(PRETRAINED_ASSETS)})"
        )
    return name


@contextlib.contextmanager
def quiet_transformers() -> Iterator[None]:
    """Hides transformers' progress bars and info/warning logs inside the block, then restores them.

    The user's global settings (verbosity, progress bars on or off) are what they were afterwards,
    also when the block raises.
    """
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()


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


def offline_reason() -> str | None:
    """Why a download cannot happen now (``None`` when it can)."""
    if hub_offline():
        return "offline mode is set (HF_HUB_OFFLINE)"
    if not hub_reachable():
        return "the Hugging Face Hub cannot be reached"
    return None


def from_pretrained(auto_class: Any, name: str | os.PathLike[str], *, argument: str, **kwargs: Any) -> Any:
    """``auto_class.from_pretrained(name, **kwargs)`` with the safeguards of this module.

    Args:
        auto_class: E.g. ``AutoTokenizer`` or ``AutoModelForCausalLM``.
        name: Built-in name, local path or hub name (see :func:`resolve_pretrained`).
        argument: The argument's name for error messages, e.g. ``"reward_model"``.
        **kwargs: Passed on; ``trust_remote_code`` defaults to False.

    Raises:
        ValueError: A misspelled built-in name, or a load that failed (the message names ``argument``,
            ``name`` and the cause).
    """
    if isinstance(name, os.PathLike):
        name = os.fspath(name)
    path = resolve_pretrained(name, argument=argument)
    kwargs.setdefault("trust_remote_code", False)
    reason = None if os.path.isdir(path) else offline_reason()
    if reason:
        kwargs["local_files_only"] = True
    try:
        if os.path.isdir(path) and not any(os.path.isfile(os.path.join(path, f)) for f in _MODEL_FILES):
            # Some transformers releases (5.0) answer a folder without model files with a default
            # tokenizer instead of an error.
            raise OSError(f"{path!r} holds none of {', '.join(_MODEL_FILES)}")
        with quiet_transformers():
            return auto_class.from_pretrained(path, **kwargs)
    except (OSError, ValueError) as err:
        if reason:
            raise ValueError(
                f"{argument}={name!r} could not be downloaded: {reason}, and it is not in the local "
                "cache. Pass a built-in name or a local directory written by save_pretrained instead, "
                "or run where the Hub is reachable."
            ) from err
        raise ValueError(
            f"cannot load {argument}={name!r} with {auto_class.__name__}.from_pretrained: {err} "
            "(expected a built-in name, a local model folder or a hub name reachable from here; "
            "remote code is only run with trust_remote_code=True)"
        ) from err
