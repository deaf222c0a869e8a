"""RLOO's advantage: each completion's return minus the mean return of the other completions of its prompt."""

from __future__ import annotations

import torch


def leave_one_out_advantages(scores: torch.Tensor, group_size: int) -> torch.Tensor:
    """``r_i - (sum(group) - r_i) / (G - 1)`` per completion.

    Args:
        scores: ``(N,)`` episode returns, groups of ``group_size`` consecutive episodes sharing a prompt.
        group_size: G >= 2, dividing N.

    Returns:
        ``(N,)`` float64 advantages.

    Raises:
        ValueError: If ``scores`` is not 1-D, G < 2 or G does not divide its length.

    Example:
        >>> leave_one_out_advantages(torch.tensor([3.0, 0.0, 0.0]), 3)
        tensor([ 3.0000, -1.5000, -1.5000], dtype=torch.float64)
    """
    if scores.ndim != 1 or group_size < 2 or scores.shape[0] % group_size:
        raise ValueError(
            f"scores must be (N,) with N a multiple of group_size={group_size} >= 2, got {tuple(scores.shape)}"
        )
    groups = scores.double().view(-1, group_size)  # (N / G, G)
    baseline = (groups.sum(1, keepdim=True) - groups) / (group_size - 1)  # (N / G, G)
    return (groups - baseline).view(-1)
