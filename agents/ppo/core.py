"""PPO's own tensor math for causal LMs: GAE, the clipped surrogate and the clipped value loss.

Shape letters: ``B`` episodes (rows), ``T`` generated-token steps, ``V`` vocabulary. A ``mask (B, T)``
marks the valid generated tokens of each row (1/True) and is a prefix of the row: rows of different
lengths are right-padded with mask 0. Values outside the mask may be anything (even NaN or -inf); every
function here ignores them and returns 0 there.

Masked statistics and the sampling distribution are shared by every algorithm: ``agents.common.stats``
and ``agents.common.sampling``.
"""

from __future__ import annotations

import torch

from agents.common.losses import policy_gradient_loss
from agents.common.stats import as_bool_mask, masked_mean


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
        mask: ``(B, T)`` the policy's tokens; a prefix of each row in a single-turn episode. Where it is not
            (a multi-turn episode), GAE runs over the masked tokens in order, as if the others were absent:
            ``V_{t+1}`` is the value at the next policy token.
        gamma: Discount factor in ``(0, 1]``.
        lam: GAE lambda in ``[0, 1]``.

    Returns:
        ``(advantages, returns)``, both ``(B, T)`` in the promoted float dtype of rewards and values
        (float32 for float32 inputs), 0 outside the mask.

    Raises:
        ValueError: On mismatched shapes, a non-2-D input, or ``gamma``/``lam`` out of range.
    """
    if rewards.dim() != 2 or values.shape != rewards.shape:
        raise ValueError(
            f"rewards and values must both be (B, T), got {tuple(rewards.shape)} and {tuple(values.shape)}"
        )
    if not 0 < gamma <= 1:
        raise ValueError(f"gamma must be in (0, 1], got {gamma!r}")
    if not 0 <= lam <= 1:
        raise ValueError(f"lam must be in [0, 1], got {lam!r}")
    m = as_bool_mask(mask, rewards)
    if bool((m[:, 1:] & ~m[:, :-1]).any()):
        # A multi-turn episode's policy tokens are not a prefix (the env's replies lie between them): GAE
        # steps from policy token to policy token, so it runs on them packed to the left, in order.
        order = torch.sort(m.to(torch.int8), dim=1, descending=True, stable=True).indices  # (B, T)
        packed = compute_gae(
            rewards.gather(1, order), values.gather(1, order), m.gather(1, order), gamma, lam
        )
        return tuple(torch.zeros_like(x).scatter(1, order, x) for x in packed)  # type: ignore[return-value]

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


# --- losses -------------------------------------------------------------------------------------------
def policy_loss(
    new_logprobs: torch.Tensor,
    old_logprobs: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    clip_range: float,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """PPO's clipped surrogate: the shared one (:func:`agents.common.losses.policy_gradient_loss`) with
    symmetric clipping and token-level aggregation, a masked mean over tokens.

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
    return policy_gradient_loss(
        new_logprobs, old_logprobs, advantages, mask, clip_range=clip_range, loss_type="dapo"
    )


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
    m = as_bool_mask(mask, new_values)
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
