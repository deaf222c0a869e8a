"""Inference with a policy outside training: the next token of observations (``predict``) and KV-cached
generation from prompt texts (``generate``), with their input validation."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from agents.common.sampling import SamplingParams, sample_tokens
from textenv.lm import IncrementalLM, left_padded_positions


def observation_tensors(
    observation: Any, vocab_size: int, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor, bool]:
    """``(N, L)`` ids and mask of a ``predict`` observation ``{"input_ids", "attention_mask"}``, validated,
    and whether it was a single ``(L,)`` observation.

    Raises:
        TypeError: ``observation`` is not a dict, or its arrays are not integer.
        ValueError: A missing key, mismatched shapes, token ids outside ``[0, vocab_size)`` or a row
            without any real token.
    """
    if not isinstance(observation, dict):
        raise TypeError(
            f"observation must be a dict with 'input_ids' and 'attention_mask', got {type(observation).__name__}"
        )
    missing = [k for k in ("input_ids", "attention_mask") if k not in observation]
    if missing:
        raise ValueError(
            f"observation is missing {missing}; expected keys 'input_ids' and 'attention_mask', "
            f"got {sorted(observation)}"
        )
    ids, mask = (_as_long_tensor(k, observation[k], device) for k in ("input_ids", "attention_mask"))
    if ids.shape != mask.shape or ids.ndim not in (1, 2) or ids.shape[-1] == 0:
        raise ValueError(
            f"observation['input_ids'] and ['attention_mask'] must have one shape (L,) or (N, L), got "
            f"{tuple(ids.shape)} and {tuple(mask.shape)}"
        )
    if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= vocab_size):
        bad = ids[(ids < 0) | (ids >= vocab_size)][0]
        raise ValueError(f"observation['input_ids'] holds token id {int(bad)}, outside [0, {vocab_size})")
    single = ids.ndim == 1
    ids, mask = ids.view(-1, ids.shape[-1]), mask.view(-1, mask.shape[-1])
    if not bool(mask.bool().any(1).all()):
        raise ValueError(
            "observation['attention_mask'] has a row without any 1; expected a prompt in every row"
        )
    return ids, mask, single


@torch.no_grad()
def next_tokens(
    lm: nn.Module,
    ids: torch.Tensor,
    mask: torch.Tensor,
    sampling: SamplingParams,
    *,
    prompt_len: int,
    deterministic: bool = False,
) -> torch.Tensor:
    """``(N,)`` next token of each left-padded row (one full forward); EOS is masked for rows that have
    generated fewer than ``sampling.min_new_tokens`` tokens after the ``prompt_len`` prompt slots."""
    out = lm(input_ids=ids, attention_mask=mask, position_ids=left_padded_positions(mask))
    last = mask.shape[1] - 1 - mask.flip(1).argmax(1)  # (N,) index of the last real token
    logits = out.logits[torch.arange(ids.shape[0], device=ids.device), last].float()  # (N, V)
    early = mask[:, prompt_len:].sum(1) < sampling.min_new_tokens  # (N,)
    if early.any() and sampling.eos_token_ids:
        eos = torch.tensor(sampling.eos_token_ids, device=ids.device)
        logits[early.nonzero().squeeze(1)[:, None], eos] = float("-inf")
    logp = sampling.logprobs(logits, step=sampling.min_new_tokens)  # EOS handled above
    return logp.argmax(-1) if deterministic else sample_tokens(logp)


def check_generate_args(prompts: Any, max_new_tokens: Any, default: int) -> tuple[list[str], int]:
    """``(prompt texts, token budget)`` of a ``generate`` call.

    Raises:
        TypeError: ``prompts`` is not a str or a non-empty list of str.
        ValueError: ``max_new_tokens`` is not an int >= 1 or None.
    """
    texts = [prompts] if isinstance(prompts, str) else list(prompts) if isinstance(prompts, Sequence) else []
    if not texts or not all(isinstance(t, str) for t in texts):
        raise TypeError(f"prompts must be a str or a non-empty list of str, got {prompts!r}")
    T = default if max_new_tokens is None else max_new_tokens
    if isinstance(T, bool) or not isinstance(T, int) or T < 1:
        raise ValueError(f"max_new_tokens must be an int >= 1 or None, got {max_new_tokens!r}")
    return texts, T


@torch.no_grad()
def generate_tokens(
    lm: nn.Module,
    ids: torch.Tensor,
    mask: torch.Tensor,
    sampling: SamplingParams,
    max_new_tokens: int,
    *,
    deterministic: bool = False,
    generator: torch.Generator | None = None,
) -> list[list[int]]:
    """KV-cached generation for left-padded prompts ``(N, P)``: each row's tokens up to (without) EOS."""
    N, device = ids.shape[0], ids.device
    cache = IncrementalLM(lm, num_rows=N, max_length=ids.shape[1] + max_new_tokens)
    logits = cache.reset_rows(torch.arange(N, device=device), ids, mask)  # (N, V)
    eos = torch.tensor(sampling.eos_token_ids, device=device)
    out = torch.zeros(N, max_new_tokens, dtype=torch.long, device=device)
    running = torch.ones(N, dtype=torch.bool, device=device)
    lengths = torch.zeros(N, dtype=torch.long, device=device)
    for t in range(max_new_tokens):
        logp = sampling.logprobs(logits, step=t)  # (N, V)
        action = logp.argmax(-1) if deterministic else sample_tokens(logp, generator)
        out[:, t] = action
        lengths += (running & ~torch.isin(action, eos)).long()
        running &= ~torch.isin(action, eos)
        if not bool(running.any()):
            break
        logits = cache.step(action, running)
    return [row[:n].tolist() for row, n in zip(out, lengths.tolist())]


def _as_long_tensor(key: str, value: Any, device: torch.device) -> torch.Tensor:
    if not isinstance(value, torch.Tensor):
        try:
            value = torch.as_tensor(np.asarray(value))
        except (TypeError, ValueError) as err:
            raise TypeError(f"observation[{key!r}] must be an integer array, got {value!r}") from err
    if value.dtype.is_floating_point or value.dtype.is_complex:
        raise TypeError(f"observation[{key!r}] must hold integer token ids, got dtype {value.dtype}")
    return value.to(device).long()
