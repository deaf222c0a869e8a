"""The clipped surrogate every algorithm trains with (PPO too), and how token losses are aggregated.

PPO is this surrogate with token-level aggregation (``loss_type="dapo"``) on GAE advantages; GRPO, RLOO and
REINFORCE use it on their own advantages, with sequence-level (``"grpo"``) or token-level aggregation,
token or sequence ratios (GSPO) and an optional k3 KL to a reference (GRPO's ``beta``).
"""

from __future__ import annotations

import torch

from agents.common.stats import as_bool_mask, masked_mean

LOSS_TYPES = ("grpo", "dr_grpo", "dapo")
IMPORTANCE_SAMPLING_LEVELS = ("token", "sequence")


def aggregate_loss(
    per_token: torch.Tensor, mask: torch.Tensor, loss_type: str, max_tokens: int
) -> torch.Tensor:
    """Reduces ``(B, T)`` token losses to one number as ``loss_type`` says (see :class:`~agents.common.policy_gradient.PolicyGradientConfig`).

    Args:
        per_token: ``(B, T)`` token losses.
        mask: ``(B, T)`` valid tokens.
        loss_type: ``"grpo"``, ``"dr_grpo"`` or ``"dapo"``.
        max_tokens: The constant of ``"dr_grpo"`` (the env's ``max_new_tokens``).

    Returns:
        A 0-d tensor.
    """
    m = as_bool_mask(mask, per_token)
    total = torch.where(m, per_token, torch.zeros((), dtype=per_token.dtype, device=per_token.device))
    if loss_type == "grpo":
        return (total.sum(1) / m.sum(1).clamp(min=1)).mean()  # each sequence's mean, then the mean
    if loss_type == "dr_grpo":
        return total.sum() / (per_token.shape[0] * max_tokens)
    if loss_type == "dapo":
        return total.sum() / m.sum().clamp(min=1)
    raise ValueError(f"loss_type must be one of {LOSS_TYPES}, got {loss_type!r}")


def policy_gradient_loss(
    new_logprobs: torch.Tensor,
    old_logprobs: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    *,
    clip_range: float,
    clip_range_high: float | None = None,
    loss_type: str = "grpo",
    importance_sampling_level: str = "token",
    max_tokens: int = 1,
    ref_logprobs: torch.Tensor | None = None,
    beta: float = 0.0,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Clipped surrogate on given advantages, with token or sequence ratios and a k3 KL to a reference.

    ``r = exp(new - old)`` per token, or ``exp(mean_t(new - old))`` per sequence (GSPO);
    ``l_t = -min(r A_t, clip(r, 1 - c_low, 1 + c_high) A_t) + beta * k3_t`` with
    ``k3_t = exp(ref_t - new_t) - (ref_t - new_t) - 1``; then :func:`aggregate_loss`.

    Args:
        new_logprobs: ``(B, T)`` current log-probs of the taken tokens (with grad).
        old_logprobs: ``(B, T)`` their log-probs at rollout time.
        advantages: ``(B, T)`` advantages.
        mask: ``(B, T)`` valid tokens.
        clip_range: ``c_low`` > 0.
        clip_range_high: ``c_high``; ``None``: ``clip_range``.
        loss_type: See :func:`aggregate_loss`.
        importance_sampling_level: ``"token"`` or ``"sequence"``.
        max_tokens: See :func:`aggregate_loss`.
        ref_logprobs: ``(B, T)`` a frozen reference's log-probs (needed when ``beta > 0``).
        beta: Weight of the k3 KL.

    Returns:
        ``(loss, stats)``; detached 0-d stats ``clipfrac`` (tokens whose ratio lies outside the clip range),
        ``approx_kl`` (k3 estimate of KL(old || new), >= 0), ``approx_kl_k1`` (``mean(-log ratio)``),
        ``ratio_mean`` and, with a reference, ``kl_ref`` (mean k3 to it).
    """
    if importance_sampling_level not in IMPORTANCE_SAMPLING_LEVELS:
        raise ValueError(
            f"importance_sampling_level must be one of {IMPORTANCE_SAMPLING_LEVELS}, got {importance_sampling_level!r}"
        )
    high = clip_range if clip_range_high is None else clip_range_high
    m = as_bool_mask(mask, new_logprobs)
    zero = torch.zeros((), dtype=new_logprobs.dtype, device=new_logprobs.device)
    token_log_ratio = torch.where(m, new_logprobs - old_logprobs.detach(), zero)  # (B, T)
    log_ratio = token_log_ratio
    if importance_sampling_level == "sequence":
        log_ratio = masked_mean(token_log_ratio, m, dim=1).unsqueeze(1)  # (B, 1)
    ratio = torch.exp(log_ratio)  # (B, T) or (B, 1)
    adv = torch.where(m, advantages.detach().to(new_logprobs.dtype), zero)  # (B, T)
    clipped = torch.clamp(ratio, 1.0 - clip_range, 1.0 + high)
    per_token = -torch.minimum(ratio * adv, clipped * adv)  # (B, T)
    kl_ref = None
    if beta > 0:
        if ref_logprobs is None:
            raise ValueError("beta > 0 needs ref_logprobs, the reference's log-probs of the tokens")
        delta = torch.where(m, ref_logprobs.detach() - new_logprobs, zero)  # (B, T)
        kl_ref = torch.exp(delta) - delta - 1.0  # (B, T) k3 >= 0
        per_token = per_token + beta * kl_ref
    loss = aggregate_loss(per_token, m, loss_type, max_tokens)
    with torch.no_grad():
        r = ratio.expand_as(adv)
        stats = {
            "clipfrac": masked_mean(((r < 1.0 - clip_range) | (r > 1.0 + high)).to(r.dtype), m),
            "approx_kl": masked_mean(torch.expm1(token_log_ratio) - token_log_ratio, m),
            "approx_kl_k1": masked_mean(-token_log_ratio, m),
            "ratio_mean": masked_mean(r, m),
        }
        if kl_ref is not None:
            stats["kl_ref"] = masked_mean(kl_ref, m)
    return loss, stats


__all__ = ["IMPORTANCE_SAMPLING_LEVELS", "LOSS_TYPES", "aggregate_loss", "policy_gradient_loss"]
