"""Pure tensor functions of PPO for causal LMs: masked statistics, GAE, sampling log-probs, losses.

Shape letters: ``B`` episodes (rows), ``T`` generated-token steps, ``V`` vocabulary. A ``mask (B, T)``
marks the valid generated tokens of each row (1/True) and is a prefix of the row: rows of different
lengths are right-padded with mask 0. Values outside the mask may be anything (even NaN or -inf); every
function here ignores them and returns 0 there.

Nothing here calls ``.item()`` except where a Python number is the documented result
(:func:`explained_variance`) or a validity check needs one (:func:`masked_var`, :func:`compute_gae`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

# Variance floor of masked_whiten, as in TRL and stable-baselines3.
WHITEN_EPS = 1e-8


def _as_bool_mask(mask: torch.Tensor, like: torch.Tensor, name: str = "mask") -> torch.Tensor:
    if not isinstance(mask, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(mask).__name__}")
    if mask.shape != like.shape:
        raise ValueError(
            f"{name} must have the shape of the data {tuple(like.shape)}, got {tuple(mask.shape)}"
        )
    return mask if mask.dtype == torch.bool else mask != 0


# --- masked statistics ------------------------------------------------------------------------------
def masked_sum(x: torch.Tensor, mask: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    """Sum of the entries of ``x`` where ``mask`` is set.

    Args:
        x: Data, any shape.
        mask: Same shape as ``x``; bool or 0/1 numbers.
        dim: Reduce over this dimension only; ``None`` reduces over all entries.

    Returns:
        A 0-d tensor, or ``x`` reduced over ``dim``.
    """
    m = _as_bool_mask(mask, x)
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
    m = _as_bool_mask(mask, x)
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
    m = _as_bool_mask(mask, x)
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
    m = _as_bool_mask(mask, x)
    n = int(m.sum().item())
    mean = masked_mean(x, m)
    var = masked_var(x, m, unbiased=True) if n >= 2 else torch.zeros((), dtype=x.dtype, device=x.device)
    whitened = (x - mean) * torch.rsqrt(var + WHITEN_EPS)
    if not shift_mean:
        whitened = whitened + mean
    return torch.where(m, whitened, torch.zeros((), dtype=x.dtype, device=x.device))


# --- advantages ---------------------------------------------------------------------------------------
def compute_gae(
    rewards: torch.Tensor,
    values: torch.Tensor,
    mask: torch.Tensor,
    gamma: float,
    lam: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimation over the generated tokens of finished episodes.

    Every row is one complete episode: its last valid token ended it (EOS or the length cap, both true
    terminations), so the value after the last valid token is 0 and nothing is bootstrapped::

        delta_t = r_t + gamma * V_{t+1} * m_{t+1} - V_t
        A_t     = delta_t + gamma * lam * m_{t+1} * A_{t+1}        (A_T = 0, m_T = 0)
        R_t     = A_t + V_t

    Args:
        rewards: ``(B, T)`` per-token rewards (terminal reward on the last valid token, dense and
            KL-penalty terms on every token).
        values: ``(B, T)`` value estimates of the state in which token ``t`` was chosen.
        mask: ``(B, T)`` valid generated tokens, a prefix of each row.
        gamma: Discount factor in ``(0, 1]``.
        lam: GAE lambda in ``[0, 1]``.

    Returns:
        ``(advantages, returns)``, both ``(B, T)`` in the promoted float dtype of rewards and values
        (float32 for float32 inputs), 0 outside the mask.

    Raises:
        ValueError: On mismatched shapes, a non-2-D input, a mask that is not a prefix of each row, or
            ``gamma``/``lam`` out of range.
    """
    if rewards.dim() != 2 or values.shape != rewards.shape:
        raise ValueError(
            f"rewards and values must both be (B, T), got {tuple(rewards.shape)} and {tuple(values.shape)}"
        )
    if not 0 < gamma <= 1:
        raise ValueError(f"gamma must be in (0, 1], got {gamma!r}")
    if not 0 <= lam <= 1:
        raise ValueError(f"lam must be in [0, 1], got {lam!r}")
    m = _as_bool_mask(mask, rewards)
    if bool((m[:, 1:] & ~m[:, :-1]).any()):
        raise ValueError("mask must be a prefix of each row (valid tokens first, then padding)")

    dtype = torch.promote_types(torch.promote_types(rewards.dtype, values.dtype), torch.float32)
    zero = torch.zeros((), dtype=dtype, device=rewards.device)
    r = torch.where(m, rewards.to(dtype), zero)  # (B, T)
    v = torch.where(m, values.to(dtype), zero)  # (B, T)
    mf = m.to(dtype)  # (B, T)
    B, T = r.shape
    advantages = torch.zeros_like(r)  # (B, T)
    last_gae = torch.zeros(B, dtype=dtype, device=r.device)  # (B,) A_{t+1}
    next_value = torch.zeros(B, dtype=dtype, device=r.device)  # (B,) V_{t+1} * m_{t+1}
    next_mask = torch.zeros(B, dtype=dtype, device=r.device)  # (B,) m_{t+1}
    for t in reversed(range(T)):
        delta = r[:, t] + gamma * next_value - v[:, t]  # (B,)
        last_gae = delta + gamma * lam * next_mask * last_gae  # (B,)
        advantages[:, t] = last_gae
        next_value = v[:, t]  # already 0 outside the mask
        next_mask = mf[:, t]
    advantages = advantages * mf
    returns = (advantages + v) * mf
    return advantages, returns


# --- sampling distribution ------------------------------------------------------------------------------
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
    finite = torch.where(torch.isneginf(logprobs), torch.zeros_like(logprobs), logprobs)
    return -(logprobs.exp() * finite).sum(dim=-1)


# --- losses -------------------------------------------------------------------------------------------
def policy_loss(
    new_logprobs: torch.Tensor,
    old_logprobs: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    clip_range: float,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """PPO clipped surrogate loss, a masked mean over tokens.

    ``ratio = exp(new - old)``; ``loss = mean(max(-A * ratio, -A * clip(ratio, 1 - c, 1 + c)))``.

    Args:
        new_logprobs: ``(B, T)`` log-probs of the taken tokens under the current policy (with grad).
        old_logprobs: ``(B, T)`` log-probs of the same tokens at rollout time.
        advantages: ``(B, T)`` advantages (already whitened if wanted).
        mask: ``(B, T)`` valid tokens.
        clip_range: Epsilon ``c`` > 0.

    Returns:
        ``(loss, stats)``: the 0-d loss, and detached 0-d stats: ``clipfrac`` (fraction of tokens whose
        ratio lies outside ``[1 - c, 1 + c]``), ``approx_kl`` (k3 estimator ``mean((ratio - 1) - log
        ratio)`` of KL(old || new), >= 0), ``approx_kl_k1`` (``mean(-log ratio)``), ``ratio_mean``.
    """
    if not clip_range > 0:
        raise ValueError(f"clip_range must be > 0, got {clip_range!r}")
    m = _as_bool_mask(mask, new_logprobs)
    zero = torch.zeros((), dtype=new_logprobs.dtype, device=new_logprobs.device)
    log_ratio = torch.where(m, new_logprobs - old_logprobs.detach(), zero)  # (B, T)
    ratio = torch.exp(log_ratio)  # (B, T)
    adv = torch.where(m, advantages.detach().to(ratio.dtype), zero)  # (B, T)
    pg_losses1 = -adv * ratio
    pg_losses2 = -adv * torch.clamp(ratio, 1.0 - clip_range, 1.0 + clip_range)
    loss = masked_mean(torch.maximum(pg_losses1, pg_losses2), m)
    with torch.no_grad():
        stats = {
            "clipfrac": masked_mean(((ratio - 1.0).abs() > clip_range).to(ratio.dtype), m),
            "approx_kl": masked_mean((ratio - 1.0) - log_ratio, m),
            "approx_kl_k1": masked_mean(-log_ratio, m),
            "ratio_mean": masked_mean(ratio, m),
        }
    return loss, stats


def value_loss(
    new_values: torch.Tensor,
    old_values: torch.Tensor,
    returns: torch.Tensor,
    mask: torch.Tensor,
    clip_range_value: float | None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Clipped value loss ``0.5 * mean(max((v - R)^2, (clip(v, v_old - c, v_old + c) - R)^2))``.

    Args:
        new_values: ``(B, T)`` current value estimates (with grad).
        old_values: ``(B, T)`` values at rollout time.
        returns: ``(B, T)`` GAE returns.
        mask: ``(B, T)`` valid tokens.
        clip_range_value: ``c`` > 0, or ``None`` for the plain loss ``0.5 * mean((v - R)^2)``.

    Returns:
        ``(loss, stats)``: the 0-d loss and detached 0-d stats: ``clipfrac`` (fraction of tokens with
        ``|v - v_old| > c``; 0 without clipping).
    """
    if clip_range_value is not None and not clip_range_value > 0:
        raise ValueError(f"clip_range_value must be > 0 or None, got {clip_range_value!r}")
    m = _as_bool_mask(mask, new_values)
    zero = torch.zeros((), dtype=new_values.dtype, device=new_values.device)
    old = old_values.detach().to(new_values.dtype)
    ret = torch.where(m, returns.detach().to(new_values.dtype), zero)  # (B, T)
    v = torch.where(m, new_values, zero)  # (B, T)
    vf_losses1 = (v - ret) ** 2
    if clip_range_value is None:
        loss = 0.5 * masked_mean(vf_losses1, m)
        return loss, {"clipfrac": torch.zeros((), dtype=new_values.dtype, device=new_values.device)}
    old = torch.where(m, old, zero)
    v_clipped = old + torch.clamp(v - old, -clip_range_value, clip_range_value)
    vf_losses2 = (v_clipped - ret) ** 2
    loss = 0.5 * masked_mean(torch.maximum(vf_losses1, vf_losses2), m)
    with torch.no_grad():
        stats = {"clipfrac": masked_mean(((v - old).abs() > clip_range_value).to(v.dtype), m)}
    return loss, stats


def explained_variance(values: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor) -> float:
    """``1 - Var(R - V) / Var(R)`` over the masked entries (1: perfect, 0: as good as a constant).

    Args:
        values: ``(B, T)`` predicted values.
        returns: ``(B, T)`` returns.
        mask: ``(B, T)`` valid tokens.

    Returns:
        A Python float; NaN if the returns have zero variance or fewer than 2 entries are masked.
    """
    m = _as_bool_mask(mask, values)
    if int(m.sum().item()) < 2:
        return float("nan")
    v = values.detach().to(torch.float64)
    r = returns.detach().to(torch.float64)
    var_r = masked_var(r, m, unbiased=False)
    if var_r.item() == 0:
        return float("nan")
    return float(1.0 - masked_var(r - v, m, unbiased=False) / var_r)
