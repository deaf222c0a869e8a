"""REINFORCE's advantages: returns-to-go, normalised over the batch (REINFORCE++) or minus a greedy baseline."""

from __future__ import annotations

import torch

from agents.common.stats import as_bool_mask, masked_whiten


def returns_to_go(rewards: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``G_t = sum_{t' >= t} r_t'`` over each row's valid tokens (undiscounted: episodes are short texts).

    Args:
        rewards: ``(B, T)`` per-token rewards (the env's: dense KL penalty and terminal score).
        mask: ``(B, T)`` valid tokens, a prefix of each row.

    Returns:
        ``(B, T)`` float64 returns (rewards of any size a float64 holds stay exact until normalised), 0
        outside the mask.

    Example:
        >>> returns_to_go(torch.tensor([[0.0, -0.5, 2.0]]), torch.ones(1, 3, dtype=torch.bool))
        tensor([[1.5000, 1.5000, 2.0000]], dtype=torch.float64)
    """
    m = as_bool_mask(mask, rewards)
    r = torch.where(m, rewards.double(), 0.0)  # (B, T)
    return r.flip(1).cumsum(1).flip(1) * m


def batch_normalized_advantages(returns: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """REINFORCE++: returns whitened (zero mean, unit variance) over all valid tokens of the batch.

    Args:
        returns: ``(B, T)`` returns-to-go.
        mask: ``(B, T)`` valid tokens.

    Returns:
        ``(B, T)`` advantages, 0 outside the mask.
    """
    return masked_whiten(returns, mask)


def greedy_baseline_advantages(
    returns: torch.Tensor, greedy_scores: torch.Tensor, mask: torch.Tensor
) -> torch.Tensor:
    """SCST / ReMax: each token's return minus the return of its prompt's greedy completion.

    Args:
        returns: ``(B, T)`` returns-to-go of the sampled completions.
        greedy_scores: ``(B,)`` return of the greedy completion of each row's prompt.
        mask: ``(B, T)`` valid tokens.

    Returns:
        ``(B, T)`` advantages, 0 outside the mask.
    """
    m = as_bool_mask(mask, returns)
    return torch.where(m, returns - greedy_scores.to(returns.dtype)[:, None], 0.0)
