"""Masked statistics over ragged token batches, shared by every algorithm.

Shape letters: ``B`` episodes (rows), ``T`` generated-token steps. A ``mask (B, T)`` marks the valid
generated tokens of each row (1/True) and is a prefix of the row: rows of different lengths are
right-padded with mask 0. Values outside the mask may be anything (even NaN or -inf); every function
here ignores them and returns 0 there.
"""

from __future__ import annotations

import torch

# Variance floor of masked_whiten, as in TRL and stable-baselines3.
WHITEN_EPS = 1e-8


def as_bool_mask(mask: torch.Tensor, like: torch.Tensor, name: str = "mask") -> torch.Tensor:
    """``mask`` as a bool tensor, checked to have the shape of ``like``."""
    if not isinstance(mask, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(mask).__name__}")
    if mask.shape != like.shape:
        raise ValueError(
            f"{name} must have the shape of the data {tuple(like.shape)}, got {tuple(mask.shape)}"
        )
    return mask if mask.dtype == torch.bool else mask != 0


def masked_sum(x: torch.Tensor, mask: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    """Sum of the entries of ``x`` where ``mask`` is set.

    Args:
        x: Data, any shape.
        mask: Same shape as ``x``; bool or 0/1 numbers.
        dim: Reduce over this dimension only; ``None`` reduces over all entries.

    Returns:
        A 0-d tensor, or ``x`` reduced over ``dim``.
    """
    m = as_bool_mask(mask, x)
    zeroed = torch.where(m, x, torch.zeros((), dtype=x.dtype, device=x.device))
    return zeroed.sum() if dim is None else zeroed.sum(dim)


def masked_mean(x: torch.Tensor, mask: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    """Mean of the entries of ``x`` where ``mask`` is set.

    An empty selection gives 0 (not NaN), so a loss over an all-padding micro-batch is harmless.

    Args:
        x: Data, any shape, floating dtype.
        mask: Same shape as ``x``; bool or 0/1 numbers.
        dim: Reduce over this dimension only; ``None`` reduces over all entries.

    Returns:
        A 0-d tensor, or ``x`` reduced over ``dim``.
    """
    m = as_bool_mask(mask, x)
    count = m.sum() if dim is None else m.sum(dim)
    return masked_sum(x, m, dim) / count.clamp(min=1).to(x.dtype)


def masked_var(x: torch.Tensor, mask: torch.Tensor, unbiased: bool = True) -> torch.Tensor:
    """Variance of the entries of ``x`` where ``mask`` is set (over all dimensions).

    Args:
        x: Data, any shape, floating dtype.
        mask: Same shape as ``x``; bool or 0/1 numbers.
        unbiased: Bessel's correction (divide by ``n - 1``), as ``torch.var``'s default.

    Returns:
        A 0-d tensor.

    Raises:
        ValueError: If the mask selects no entry, or a single entry with ``unbiased=True``.
    """
    m = as_bool_mask(mask, x)
    n = int(m.sum().item())
    if n == 0 or (unbiased and n == 1):
        raise ValueError(f"masked_var needs at least {2 if unbiased else 1} masked entries, got {n}")
    mean = masked_mean(x, m)
    var = masked_mean((x - mean) ** 2, m)
    return var * (n / (n - 1)) if unbiased else var


def masked_whiten(x: torch.Tensor, mask: torch.Tensor, shift_mean: bool = True) -> torch.Tensor:
    """Normalises the masked entries of ``x`` to zero mean and unit (unbiased) variance.

    Args:
        x: Data, any shape, floating dtype, e.g. advantages ``(B, T)``.
        mask: Same shape as ``x``; bool or 0/1 numbers.
        shift_mean: If False, only scale: the masked mean is added back after normalising.

    Returns:
        Same shape as ``x``; 0 outside the mask. With fewer than 2 masked entries the variance is taken
        as 0 (only centring happens; an empty mask gives all zeros).
    """
    m = as_bool_mask(mask, x)
    n = int(m.sum().item())
    mean = masked_mean(x, m)
    var = masked_var(x, m, unbiased=True) if n >= 2 else torch.zeros((), dtype=x.dtype, device=x.device)
    whitened = (x - mean) * torch.rsqrt(var + WHITEN_EPS)
    if not shift_mean:
        whitened = whitened + mean
    return torch.where(m, whitened, torch.zeros((), dtype=x.dtype, device=x.device))


def explained_variance(values: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor) -> float:
    """``1 - Var(R - V) / Var(R)`` over the masked entries (1: perfect, 0: as good as a constant).

    Args:
        values: ``(B, T)`` predicted values.
        returns: ``(B, T)`` returns.
        mask: ``(B, T)`` valid tokens.

    Returns:
        A Python float; NaN if the returns have zero variance or fewer than 2 entries are masked.
    """
    m = as_bool_mask(mask, values)
    if int(m.sum().item()) < 2:
        return float("nan")
    v = values.detach().to(torch.float64)
    r = returns.detach().to(torch.float64)
    var_r = masked_var(r, m, unbiased=False)
    if var_r.item() == 0:
        return float("nan")
    return float(1.0 - masked_var(r - v, m, unbiased=False) / var_r)
