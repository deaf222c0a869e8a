"""GRPO's advantage: each completion's reward against the other completions of its prompt."""

from __future__ import annotations

import torch

STD_EPS = 1e-4
"""Added to the group standard deviation (as TRL): a group whose rewards are all equal gets advantage 0."""


def group_advantages(scores: torch.Tensor, group_size: int, scale_rewards: bool = True) -> torch.Tensor:
    """``(r_i - mean(group)) / (std(group) + eps)`` per completion; without ``scale_rewards`` only centred.

    Args:
        scores: ``(N,)`` episode returns, groups of ``group_size`` consecutive episodes sharing a prompt.
        group_size: G >= 1, dividing N.
        scale_rewards: Divide by the group's (unbiased) standard deviation plus :data:`STD_EPS`.

    Returns:
        ``(N,)`` float64 advantages; 0 for every member of a group whose rewards are all equal (never NaN).

    Raises:
        ValueError: If ``scores`` is not 1-D or G does not divide its length.

    Example:
        >>> group_advantages(torch.tensor([1.0, 0.0, 2.0, 2.0]), 2, scale_rewards=False)
        tensor([ 0.5000, -0.5000,  0.0000,  0.0000], dtype=torch.float64)
    """
    if scores.ndim != 1 or group_size < 1 or scores.shape[0] % group_size:
        raise ValueError(
            f"scores must be (N,) with N a multiple of group_size={group_size}, got {tuple(scores.shape)}"
        )
    groups = scores.double().view(-1, group_size)  # (N / G, G)
    centred = groups - groups.mean(1, keepdim=True)
    if scale_rewards and group_size > 1:
        centred = centred / (groups.std(1, keepdim=True) + STD_EPS)
    return centred.view(-1)
