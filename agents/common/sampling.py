"""The sampling distribution of a policy's logits (temperature, top-k, top-p) and draws from it.

Rollouts, training forwards, ``predict`` and ``generate`` all go through :class:`SamplingParams`, so the
log-probs an algorithm trains on are those of the distribution the tokens were drawn from.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F


def sampling_logprobs(
    logits: torch.Tensor, temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0
) -> torch.Tensor:
    """Log-probabilities of the distribution actually sampled from.

    Order as in transformers' generate: temperature scaling, then top-k, then top-p (on the distribution
    left by top-k). Filtered-out tokens get ``-inf``.

    Args:
        logits: ``(..., V)`` raw logits; computed in float32 (or float64 if given).
        temperature: > 0; logits are divided by it.
        top_k: Keep exactly the ``top_k`` largest logits (ties broken by ``torch.topk``); 0 or >= V: off.
        top_p: Keep the smallest set of most likely tokens whose probability sum reaches ``top_p``
            (always at least one token); 1.0: off.

    Returns:
        ``(..., V)`` log-probabilities (``-inf`` for filtered tokens), float32 or float64.

    Raises:
        ValueError: If ``temperature <= 0``, ``top_k < 0`` or ``top_p`` is not in ``(0, 1]``.
    """
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature!r}")
    if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 0:
        raise ValueError(f"top_k must be an int >= 0, got {top_k!r}")
    if not 0 < top_p <= 1:
        raise ValueError(f"top_p must be in (0, 1], got {top_p!r}")
    dtype = torch.float64 if logits.dtype == torch.float64 else torch.float32
    scores = logits.to(dtype)
    if temperature != 1.0:
        scores = scores / temperature  # (..., V)
    V = scores.shape[-1]
    if 0 < top_k < V:
        top_values, top_indices = torch.topk(scores, top_k, dim=-1)  # (..., k)
        scores = torch.full_like(scores, float("-inf")).scatter(-1, top_indices, top_values)
    if top_p < 1.0:
        sorted_scores, sorted_indices = torch.sort(scores, dim=-1, descending=True)  # (..., V)
        sorted_probs = sorted_scores.softmax(dim=-1)
        # Probability mass of the strictly more likely tokens; a token is dropped when that mass alone
        # already reaches top_p. The most likely token (mass 0 before it) is always kept.
        mass_before = sorted_probs.cumsum(dim=-1) - sorted_probs  # (..., V)
        drop_sorted = mass_before >= top_p
        drop = torch.zeros_like(drop_sorted).scatter(-1, sorted_indices, drop_sorted)
        scores = scores.masked_fill(drop, float("-inf"))
    return F.log_softmax(scores, dim=-1)


def logprobs_of(
    logits: torch.Tensor,
    tokens: torch.Tensor,
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
) -> torch.Tensor:
    """Log-probability of ``tokens`` under :func:`sampling_logprobs` of ``logits``.

    Args:
        logits: ``(..., V)``.
        tokens: ``(...)`` int64 token ids.
        temperature: See :func:`sampling_logprobs`.
        top_k: See :func:`sampling_logprobs`.
        top_p: See :func:`sampling_logprobs`.

    Returns:
        ``(...)`` log-probs (``-inf`` for tokens outside the filtered support).
    """
    if tokens.shape != logits.shape[:-1]:
        raise ValueError(
            f"tokens must have the shape of logits without the vocab dim {tuple(logits.shape[:-1])}, "
            f"got {tuple(tokens.shape)}"
        )
    logp = sampling_logprobs(logits, temperature, top_k, top_p)  # (..., V)
    return logp.gather(-1, tokens.unsqueeze(-1).long()).squeeze(-1)  # (...)


@torch.no_grad()
def sample(
    logits: torch.Tensor,
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Samples one token per row from the filtered distribution of :func:`sampling_logprobs`.

    Args:
        logits: ``(..., V)``.
        temperature: See :func:`sampling_logprobs`.
        top_k: See :func:`sampling_logprobs`.
        top_p: See :func:`sampling_logprobs`.
        generator: Optional torch generator (on the logits' device) for reproducible draws.

    Returns:
        ``(tokens, logprobs)``: ``(...)`` int64 sampled ids and their ``(...)`` log-probabilities under
        the sampling distribution (the "old" log-probs of PPO when the same filtering is used in training).
    """
    logp = sampling_logprobs(logits, temperature, top_k, top_p)  # (..., V)
    flat = logp.reshape(-1, logp.shape[-1])  # (N, V)
    tokens = torch.multinomial(flat.exp(), num_samples=1, generator=generator)  # (N, 1)
    token_logp = flat.gather(-1, tokens)  # (N, 1)
    return tokens.reshape(logp.shape[:-1]), token_logp.reshape(logp.shape[:-1])


def entropy_from_logprobs(logprobs: torch.Tensor) -> torch.Tensor:
    """Entropy ``-sum p log p`` over the last dimension of a log-probability tensor.

    ``-inf`` entries (filtered tokens) contribute 0, and their gradient is 0 (no NaN from ``0 * -inf``).

    Args:
        logprobs: ``(..., V)`` normalised log-probabilities.

    Returns:
        ``(...)`` entropies in nats.
    """
    if not (torch.is_grad_enabled() and logprobs.requires_grad):
        # A statistic: p * log p is NaN (0 * -inf) exactly at the filtered tokens, which nansum skips; three
        # passes over (..., V) instead of six.
        return -(logprobs.exp() * logprobs).nansum(dim=-1)
    finite = torch.where(torch.isneginf(logprobs), torch.zeros_like(logprobs), logprobs)
    return -(logprobs.exp() * finite).sum(dim=-1)


@dataclass(frozen=True)
class SamplingParams:
    """How the policy's logits become the sampling distribution (the same transform in training).

    Attributes:
        temperature: Logits are divided by it.
        top_k: Keep the ``top_k`` most likely tokens (0: all).
        top_p: Nucleus filtering (1.0: off).
        eos_token_ids: The env's EOS ids.
        min_new_tokens: EOS is masked out (probability 0) for the first ``min_new_tokens`` tokens.
    """

    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    eos_token_ids: tuple[int, ...] = ()
    min_new_tokens: int = 0

    def logprobs(self, logits: torch.Tensor, step: int | torch.Tensor | None = None) -> torch.Tensor:
        """Log-probs of the sampling distribution.

        Args:
            logits: ``(B, V)`` logits of one step (then ``step`` is its column after the prompt) or
                ``(B, T, V)`` logits of columns ``0 .. T-1`` (``step=None``).
            step: The column after the prompt of 2-D logits: one int, or ``(B,)`` per row (a multi-turn
                env's rows stand at different columns).

        Returns:
            Log-probs, same shape as ``logits``, float32 or wider.
        """
        if self.min_new_tokens > 0 and self.eos_token_ids:
            logits = _mask_eos(logits, self.eos_token_ids, self.min_new_tokens, step)
        return sampling_logprobs(logits, self.temperature, self.top_k, self.top_p)


def _mask_eos(
    logits: torch.Tensor, eos: Sequence[int], min_new: int, step: int | torch.Tensor | None
) -> torch.Tensor:
    """``logits`` plus a bias of -inf at EOS where fewer than ``min_new`` tokens precede (0 elsewhere).

    One out-of-place add, which also casts to float32 (float64 stays float64), the dtype
    :func:`sampling_logprobs` computes in; its backward passes the gradient through unchanged (the masked
    entries' probability is 0), where masking in place would copy the gradient of the whole (B, T, V) logits.
    """
    dtype = torch.float64 if logits.dtype == torch.float64 else torch.float32
    V = logits.shape[-1]
    blocked = torch.zeros(V, dtype=dtype, device=logits.device)
    blocked[list(eos)] = float("-inf")  # (V,)
    if isinstance(step, torch.Tensor):
        early = step.to(logits.device) < min_new  # (B,)
        if not bool(early.any()):
            return logits
        bias = torch.where(early[:, None], blocked, 0.0)  # (B, V)
    elif step is not None:
        if step >= min_new:
            return logits
        bias = blocked  # (V,)
    else:
        T = logits.shape[1]
        rows = torch.arange(T, device=logits.device) < min_new  # (T,)
        bias = torch.where(rows[:, None], blocked, 0.0)  # (T, V), the same for every row
    return torch.add(logits, bias)  # float32 (or float64) without a separate cast


def sample_tokens(logprobs: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Draws one token per row from ``exp(logprobs)`` (B, V) by inverse-CDF sampling.

    The same distribution as ``torch.multinomial`` at a tenth of its cost for large vocabularies: one
    cumulative sum and a binary search per row. Tokens of probability 0 are never drawn.

    Returns:
        (B,) int64 token ids.
    """
    cdf = logprobs.exp().cumsum(-1)  # (B, V)
    u = torch.rand(cdf.shape[0], 1, generator=generator, device=cdf.device, dtype=cdf.dtype) * cdf[:, -1:]
    return torch.searchsorted(cdf, u, right=True).clamp_(max=cdf.shape[-1] - 1).squeeze(1)
