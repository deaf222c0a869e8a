"""Training log-probs of generated tokens without the ``(B, T, V)`` logits: the LM head in chunks of positions.

The plain training forward runs the whole causal LM, keeps the ``(B, T, V)`` logits, and builds their float32
copy, the sampling transform, the log-softmax and, in the backward, their gradients: at a vocabulary of
150k tokens these are what runs out of memory first. :func:`token_logprobs` runs the LM's trunk once (the
final hidden states, no logits), then applies the LM head and the sampling transform to ``chunk_size``
positions at a time; each chunk's logits are freed as soon as its log-probs are gathered and recomputed,
chunk by chunk, in the backward. An ``nn.Linear`` head goes through one autograd function that accumulates
the head's weight gradient in a single buffer (as Liger Kernel's fused linear cross-entropy, with the loss
left to the caller); any other head module (a LoRA-wrapped ``lm_head``) runs each chunk under
``torch.utils.checkpoint``. No ``(B, T, V)`` tensor is ever alive, forward or backward, and the values
and gradients are those of the plain computation (the same operations on fewer rows).

Models whose logits are not ``lm_head(last_hidden_state)`` (logit soft-capping, ``logit_scale``,
``logits_scaling``, PEFT prompt learning, ...) cannot be split: :func:`token_logprobs` warns and runs the
plain computation for them (:func:`split_lm_head` says why).

Example:
    >>> scores = token_logprobs(lm, input_ids, attention_mask, position_ids, tokens,
    ...                         sampling=SamplingParams(temperature=0.7), with_entropy=True)
    >>> scores.logprobs.shape, scores.entropy.shape        # (B, T), (B, T)
"""

from __future__ import annotations

import dataclasses
import functools
import warnings
import weakref
from typing import Any, Literal, NamedTuple, TypeGuard

import torch
import torch.nn.functional as F
from torch import nn
from torch.autograd.function import once_differentiable
from torch.utils.checkpoint import checkpoint

from agents.common.sampling import SamplingParams, entropy_from_logprobs
from textenv.lm import accepts_kwarg, logits_width

AUTO_CHUNK_LOGITS = 2**24
"""``chunk_size="auto"``: the fewest positions per chunk that give one chunk's logits at least this many
elements (32 MiB in bf16, 64 MiB per float32 copy); e.g. 14 positions at B=8 and V=151,936. Large enough
to keep the matmuls efficient, and for glibc to map and unmap each chunk's tensors directly instead of
fragmenting its heap across chunks."""

# Config attributes (of the text config) that put something between the LM head and the logits in
# transformers' causal LMs, with the value at which they do nothing.
_HEAD_TRANSFORMS: dict[str, tuple[Any, ...]] = {
    "final_logit_softcapping": (None, 0, 0.0),  # Gemma 2/3: cap * tanh(logits / cap)
    "logit_softcapping": (None, 0, 0.0),
    "logit_scale": (None, 1, 1.0),  # Cohere: logits * logit_scale
    "logits_scaling": (None, 1, 1.0),  # Granite: logits / logits_scaling
    "output_multiplier_scale": (None, 1, 1.0),
    "lm_head_multiplier": (None, 1, 1.0),  # Falcon-H1
    "unpadded_vocab_size": (None,),  # logits cut to the unpadded vocabulary
}

# Models already checked by _check_head_is_linear (the check runs one tiny forward): model -> reason or None.
_HEAD_CHECKS: weakref.WeakKeyDictionary[nn.Module, str | None] = weakref.WeakKeyDictionary()


class TokenScores(NamedTuple):
    """Output of :func:`token_logprobs`.

    Attributes:
        logprobs: ``(B, T)`` float32 log-probs of the generated tokens (``-inf`` outside the filtered support).
        entropy: ``(B, T)`` float32 entropy of each position's distribution, or ``None``.
        hidden: ``(B, P + T, H)`` final hidden states of every column (what a value head reads), or ``None``.
    """

    logprobs: torch.Tensor
    entropy: torch.Tensor | None
    hidden: torch.Tensor | None


class UnsupportedHeadError(ValueError):
    """The model's logits are not its LM head applied to its trunk's final hidden states."""


def split_lm_head(model: nn.Module) -> tuple[nn.Module, nn.Module]:
    """The trunk (hidden states without logits) and the LM head of a causal LM, when logits = head(trunk).

    A PEFT model is seen through (``get_base_model()``: the adapters stay in its layers). The trunk is
    transformers' documented ``get_decoder()`` (the base model for decoder-only LMs, the language model of
    a multimodal one), the head is ``get_output_embeddings()``. Known config attributes that transform the
    logits (soft-capping, scales, a cut vocabulary) are refused, and so is any model whose logits on a
    4-token probe differ from ``head(trunk(x).last_hidden_state)`` (checked once per model, in eval mode).

    Args:
        model: A transformers causal LM, possibly PEFT-wrapped.

    Returns:
        ``(trunk, head)``.

    Raises:
        UnsupportedHeadError: The logits are not ``head(trunk(...).last_hidden_state)``; the message says why.
    """
    lm = _unwrap_peft(model)
    get_decoder = getattr(lm, "get_decoder", None)
    get_head = getattr(lm, "get_output_embeddings", None)
    if not (callable(get_decoder) and callable(get_head)):
        raise UnsupportedHeadError(
            f"{type(model).__name__} has no get_decoder()/get_output_embeddings(); expected a transformers "
            "causal LM"
        )
    trunk, head = get_decoder(), get_head()
    if not isinstance(head, nn.Module) or trunk is lm:
        raise UnsupportedHeadError(
            f"{type(lm).__name__}: get_decoder() returned the model itself or get_output_embeddings() "
            f"returned {type(head).__name__}, so its trunk and head cannot be run apart"
        )
    config: Any = lm.config
    text_config = config.get_text_config() if hasattr(config, "get_text_config") else config
    for name, neutral in _HEAD_TRANSFORMS.items():
        value = getattr(text_config, name, None)
        if value not in neutral:
            raise UnsupportedHeadError(f"{type(lm).__name__} transforms its logits: config.{name}={value!r}")
    if lm not in _HEAD_CHECKS:
        _HEAD_CHECKS[lm] = _check_head_is_linear(model, trunk, head)
    reason = _HEAD_CHECKS[lm]
    if reason is not None:
        raise UnsupportedHeadError(reason)
    return trunk, head


def _unwrap_peft(model: nn.Module) -> nn.Module:
    """The transformers model inside a PEFT model (with the adapters in its layers); refuses prompt learning,
    whose virtual tokens only the PEFT forward adds."""
    get_base = getattr(model, "get_base_model", None)
    if not callable(get_base):
        return model
    peft_config = getattr(model, "active_peft_config", None)
    if getattr(peft_config, "is_prompt_learning", False):
        raise UnsupportedHeadError(
            f"{type(model).__name__} uses PEFT prompt learning ({type(peft_config).__name__}): its forward "
            "adds virtual tokens that the trunk alone does not"
        )
    base = get_base()
    return base if isinstance(base, nn.Module) else model


@torch.no_grad()
def _check_head_is_linear(model: nn.Module, trunk: nn.Module, head: nn.Module) -> str | None:
    """Runs ``model`` and ``head(trunk(.))`` on a 4-token probe; None when they agree, else the reason.

    Eval mode (no dropout) for the probe; every module's training flag is restored afterwards.
    """
    param = next(model.parameters(), None)
    if param is None:
        return f"{type(model).__name__} has no parameters"
    ids = torch.arange(4, device=param.device).unsqueeze(0) % logits_width(_unwrap_peft(model))  # (1, 4)
    mask = torch.ones_like(ids)
    modes = {m: m.training for m in model.modules()}
    model.eval()
    try:
        with torch.autocast(param.device.type, enabled=False):
            logits = model(ids).logits  # (1, 4, V)
            try:  # the call _chunked makes
                out = trunk(
                    input_ids=ids, attention_mask=mask, position_ids=mask.cumsum(1) - 1, use_cache=False
                )
            except TypeError as err:
                return f"{type(trunk).__name__}'s forward does not take the trunk's arguments: {err}"
            split = head(out.last_hidden_state)  # (1, 4, V)
    finally:
        for module, training in modes.items():
            module.training = training
    if split.shape != logits.shape or not torch.allclose(split.float(), logits.float(), rtol=1e-5, atol=1e-6):
        return (
            f"{type(model).__name__}'s logits are not get_output_embeddings()(get_decoder()(x).last_hidden_state) "
            f"(checked on a 4-token probe: max difference "
            f"{(split.float() - logits.float()).abs().max().item() if split.shape == logits.shape else 'shape'})"
        )
    return None


def token_logprobs(
    model: nn.Module,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    position_ids: torch.Tensor,
    tokens: torch.Tensor,
    *,
    sampling: SamplingParams | None = None,
    with_entropy: bool = False,
    entropy_grad: bool = False,
    return_hidden: bool = False,
    chunk_size: int | Literal["auto"] | None = "auto",
) -> TokenScores:
    """Log-probs (entropy, final hidden states) of the generated ``tokens``, the LM head run chunk by chunk.

    The last ``T`` columns of ``input_ids`` are the generated ``tokens``; the token at column ``P + t`` is
    scored by the logits of column ``P + t - 1``. Run it under the caller's autocast (bf16 mixed precision):
    the trunk and the head follow it, and the log-probs are always computed in float32 outside it, as in
    the plain computation. Under ``torch.no_grad`` the chunks are simply evaluated one after the other.

    Args:
        model: A transformers causal LM, possibly PEFT-wrapped (a distributed wrapper must wrap the module
            whose forward calls this function, not the LM given here).
        input_ids: ``(B, P + T)`` token ids (left-padded prompts, then the generated tokens).
        attention_mask: ``(B, P + T)``; 0 on padding.
        position_ids: ``(B, P + T)``.
        tokens: ``(B, T)`` generated tokens (``input_ids[:, P:]``).
        sampling: The sampling distribution (temperature, top-k, top-p, EOS masked for the first
            ``min_new_tokens``); ``None``: the model's own ``log_softmax`` (a KL reference).
        with_entropy: Also return each position's entropy.
        entropy_grad: Keep the entropy in the autograd graph (an entropy bonus); else it is a statistic.
        return_hidden: Also return the final hidden states ``(B, P + T, H)`` (for a value head).
        chunk_size: Positions per chunk; ``"auto"``: the fewest that give a chunk's logits at least
            :data:`AUTO_CHUNK_LOGITS` elements, and the plain computation when one such chunk would hold
            every position (small vocabularies: the same values, cheaper); ``None``: no chunking, exactly the
            plain computation (the whole model, ``logits_to_keep=T + 1``, the ``(B, T, V)`` logits).

    Returns:
        :class:`TokenScores` ``(logprobs (B, T), entropy (B, T) or None, hidden or None)``.

    Raises:
        TypeError: ``chunk_size`` is not an int, ``"auto"`` or ``None``.
        ValueError: ``chunk_size`` is an int below 1, or the tensors' shapes do not fit together.

    Example:
        >>> with torch.autocast("cpu", dtype=torch.bfloat16):
        ...     logp, ent, _ = token_logprobs(lm, ids, mask, pos, ids[:, P:], with_entropy=True)
    """
    _check_inputs(input_ids, attention_mask, position_ids, tokens)
    if not (chunk_size is None or chunk_size == "auto" or _is_int(chunk_size)):
        raise TypeError(f"chunk_size must be a positive int, 'auto' or None, got {chunk_size!r}")
    if _is_int(chunk_size) and chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive int, 'auto' or None, got {chunk_size!r}")
    chunk = None
    if chunk_size is not None:
        chunk = _chunk_positions(chunk_size, tokens.shape[0], logits_width(_unwrap_peft(model)))
        if chunk_size == "auto" and chunk >= tokens.shape[1]:
            chunk = None  # one chunk would hold every position: the plain forward is the same, and cheaper
    if chunk is not None:
        try:
            trunk, head = split_lm_head(model)
        except UnsupportedHeadError as err:
            warnings.warn(f"token_logprobs: computing the full logits ({err})", stacklevel=2)
        else:
            return _chunked(
                trunk,
                head,
                input_ids,
                attention_mask,
                position_ids,
                tokens,
                sampling=sampling,
                with_entropy=with_entropy,
                entropy_grad=entropy_grad,
                return_hidden=return_hidden,
                chunk=chunk,
            )
    return _plain(
        model,
        input_ids,
        attention_mask,
        position_ids,
        tokens,
        sampling=sampling,
        with_entropy=with_entropy,
        entropy_grad=entropy_grad,
        return_hidden=return_hidden,
    )


def _is_int(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_inputs(
    input_ids: torch.Tensor, attention_mask: torch.Tensor, position_ids: torch.Tensor, tokens: torch.Tensor
) -> None:
    if input_ids.dim() != 2:
        raise ValueError(f"input_ids must be (B, P + T), got shape {tuple(input_ids.shape)}")
    for name, t in (("attention_mask", attention_mask), ("position_ids", position_ids)):
        if t.shape != input_ids.shape:
            raise ValueError(
                f"{name} must have the shape of input_ids {tuple(input_ids.shape)}, got {tuple(t.shape)}"
            )
    B, L = input_ids.shape
    if tokens.dim() != 2 or tokens.shape[0] != B or not 0 < tokens.shape[1] < L:
        raise ValueError(
            f"tokens must be (B, T) with B={B} and 0 < T < {L} (the generated columns of input_ids), "
            f"got shape {tuple(tokens.shape)}"
        )


def _chunk_positions(chunk_size: int | Literal["auto"], batch: int, vocab: int) -> int:
    if chunk_size == "auto":
        return -(-AUTO_CHUNK_LOGITS // (batch * vocab))  # ceil
    return chunk_size


def _scores(
    logits: torch.Tensor,
    tokens: torch.Tensor,
    sampling: SamplingParams | None,
    with_entropy: bool,
    entropy_grad: bool,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Log-probs (B, c) of ``tokens`` and optionally the entropy (B, c) from logits (B, c, V), in float32."""
    # The plain computation casts and transforms outside autocast; do the same inside an autocast region.
    with torch.autocast(logits.device.type, enabled=False):
        if sampling is None:
            logp_all = torch.log_softmax(logits.float(), -1)  # (B, c, V)
        else:
            # The transform casts to float32 itself, in the same pass as the copy its EOS mask needs.
            logp_all = sampling.logprobs(logits if logits.dtype != torch.float64 else logits.float())
        logprobs = logp_all.gather(-1, tokens.unsqueeze(-1)).squeeze(-1)  # (B, c)
        entropy = None
        if with_entropy:
            with torch.set_grad_enabled(torch.is_grad_enabled() and entropy_grad):
                entropy = entropy_from_logprobs(logp_all)  # (B, c)
    return logprobs, entropy


def _plain(
    model: nn.Module,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    position_ids: torch.Tensor,
    tokens: torch.Tensor,
    *,
    sampling: SamplingParams | None,
    with_entropy: bool,
    entropy_grad: bool,
    return_hidden: bool,
) -> TokenScores:
    """The whole model and its (B, T, V) logits (``chunk_size=None``, and models :func:`split_lm_head` refuses)."""
    T = tokens.shape[1]
    kwargs: dict[str, Any] = {"logits_to_keep": T + 1} if accepts_kwarg(model, "logits_to_keep") else {}
    if return_hidden:
        kwargs["output_hidden_states"] = True
    out = model(input_ids, attention_mask=attention_mask, position_ids=position_ids, **kwargs)
    logits = out.logits[:, -(T + 1) : -1]  # (B, T, V)
    logprobs, entropy = _scores(logits, tokens, sampling, with_entropy, entropy_grad)
    return TokenScores(logprobs, entropy, out.hidden_states[-1] if return_hidden else None)


def _chunk_sampling(sampling: SamplingParams | None, t0: int) -> SamplingParams | None:
    """The sampling transform of the chunk that starts at generated position ``t0``.

    ``min_new_tokens`` counts from the first generated token, so the chunk masks EOS at its first
    ``min_new_tokens - t0`` positions.
    """
    if sampling is None or sampling.min_new_tokens == 0:
        return sampling
    return dataclasses.replace(sampling, min_new_tokens=max(0, sampling.min_new_tokens - t0))


@dataclasses.dataclass(frozen=True)
class _Chunking:
    """How :class:`_LinearHeadScores` scores: the transform, chunk length, entropy, and the head's dtype."""

    sampling: SamplingParams | None
    chunk: int
    with_entropy: bool
    entropy_grad: bool
    dtype: torch.dtype  # the head's matmul dtype: autocast's, else the weight's


def _chunked(
    trunk: nn.Module,
    head: nn.Module,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    position_ids: torch.Tensor,
    tokens: torch.Tensor,
    *,
    sampling: SamplingParams | None,
    with_entropy: bool,
    entropy_grad: bool,
    return_hidden: bool,
    chunk: int,
) -> TokenScores:
    """The trunk once, then the head and :func:`_scores` on ``chunk`` positions at a time."""
    T = tokens.shape[1]
    P = input_ids.shape[1] - T
    hidden = trunk(
        input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids, use_cache=False
    ).last_hidden_state  # (B, P + T, H)
    scored = hidden[:, P - 1 : P + T - 1]  # (B, T, H): column P + t - 1 scores token t
    if _is_plain_linear(head):
        device = hidden.device.type
        weight = head.weight
        dtype = torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else weight.dtype
        spec = _Chunking(sampling, chunk, with_entropy, entropy_grad, dtype)
        logprobs, entropy = _LinearHeadScores.apply(scored, weight, head.bias, tokens, spec)
    else:
        logprobs, entropy = _checkpointed_scores(
            head, scored, tokens, sampling, chunk, with_entropy, entropy_grad
        )
    return TokenScores(logprobs, entropy, hidden if return_hidden else None)


def _is_plain_linear(head: nn.Module) -> TypeGuard[nn.Linear]:
    """An ``nn.Linear`` itself (not a subclass such as a quantized layer) with no hooks on its forward."""
    return type(head) is nn.Linear and not (head._forward_hooks or head._forward_pre_hooks)


CAST_BLOCK = 2**24
"""A float32 head under bf16 autocast is cast to bf16 in blocks of at least this many elements (32 MiB),
never as a whole ``(V, H)`` copy."""


def _linear_logits(
    hidden: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, dtype: torch.dtype
) -> torch.Tensor:
    """``F.linear`` of hidden (B, c, H) in ``dtype`` as autocast runs it: (B, c, V) logits in ``dtype``.

    A weight of another dtype is cast in blocks of rows (:data:`CAST_BLOCK` elements; each logit is a sum
    over ``H`` only, so the blocks give the values of one matmul).
    """
    h = hidden.to(dtype)  # (B, c, H)
    if weight.dtype == dtype and (bias is None or bias.dtype == dtype):
        return F.linear(h, weight, bias)
    V, H = weight.shape
    block = -(-CAST_BLOCK // H)  # rows; at least 32 MiB of bf16, which glibc maps and unmaps directly
    logits = h.new_empty((*h.shape[:-1], V))  # (B, c, V)
    for v0 in range(0, V, block):
        rows = slice(v0, v0 + block)
        b = None if bias is None else bias[rows].to(dtype)
        logits[..., rows] = F.linear(h, weight[rows].to(dtype), b)  # (B, c, block)
    return logits


class _LinearHeadScores(torch.autograd.Function):
    """Log-probs and entropy of ``linear(hidden, weight, bias)`` computed chunk by chunk, forward and backward.

    Like Liger Kernel's fused linear cross-entropy, but the loss is the caller's: the backward recomputes
    each chunk's logits, back-propagates the incoming gradients through the sampling transform with
    autograd, and accumulates the weight gradient of every chunk into one buffer (``addmm_``). Neither the
    logits, nor a ``(V, H)`` product per chunk, nor a cast copy of the weight is ever allocated. The logits
    are computed in ``spec.dtype`` (bf16 under autocast, as ``F.linear`` under autocast); the gradients'
    matmuls run in the weight's dtype (float32 for a float32 head under autocast: a float32 weight gradient,
    more precise than autocast's bf16 one).
    """

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any,
        hidden: torch.Tensor,
        weight: torch.Tensor,
        bias: torch.Tensor | None,
        tokens: torch.Tensor,
        spec: _Chunking,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        B, T, _ = hidden.shape
        # Outputs are written in place: nothing long-lived is allocated between the chunks' large blocks.
        logprobs = hidden.new_empty((B, T), dtype=torch.float32)
        entropy = hidden.new_empty((B, T), dtype=torch.float32) if spec.with_entropy else None
        with torch.autocast(hidden.device.type, enabled=False):
            for t0 in range(0, T, spec.chunk):
                cols = slice(t0, t0 + spec.chunk)
                logits = _linear_logits(hidden[:, cols], weight, bias, spec.dtype)  # (B, c, V)
                sampling = _chunk_sampling(spec.sampling, t0)
                logp, ent = _scores(logits, tokens[:, cols], sampling, spec.with_entropy, False)
                del logits
                logprobs[:, cols] = logp
                if entropy is not None and ent is not None:
                    entropy[:, cols] = ent
        ctx.spec = spec
        ctx.save_for_backward(hidden, weight, bias, tokens)
        if entropy is not None and not spec.entropy_grad:
            ctx.mark_non_differentiable(entropy)
        return logprobs, entropy

    @staticmethod
    @once_differentiable
    def backward(  # type: ignore[override]
        ctx: Any, grad_logprobs: torch.Tensor, grad_entropy: torch.Tensor | None
    ) -> tuple[torch.Tensor | None, ...]:
        hidden, weight, bias, tokens = ctx.saved_tensors
        spec: _Chunking = ctx.spec
        need_hidden, need_weight, need_bias = ctx.needs_input_grad[:3]
        with_entropy = spec.with_entropy and spec.entropy_grad and grad_entropy is not None
        grad_hidden = torch.zeros_like(hidden) if need_hidden else None  # (B, T, H)
        grad_weight = torch.zeros_like(weight) if need_weight else None  # (V, H)
        grad_bias = torch.zeros_like(bias, dtype=torch.float32) if need_bias else None  # (V,)
        with torch.autocast(hidden.device.type, enabled=False):
            for t0 in range(0, hidden.shape[1], spec.chunk):
                cols = slice(t0, t0 + spec.chunk)
                logits = _linear_logits(hidden[:, cols], weight, bias, spec.dtype).requires_grad_()
                sampling = _chunk_sampling(spec.sampling, t0)
                with torch.enable_grad():
                    logp, ent = _scores(logits, tokens[:, cols], sampling, with_entropy, True)
                    outputs, grads = [logp], [grad_logprobs[:, cols]]
                    if with_entropy and ent is not None and grad_entropy is not None:
                        outputs.append(ent)
                        grads.append(grad_entropy[:, cols])
                    (grad_logits,) = torch.autograd.grad(outputs, logits, grads)  # (B, c, V)
                del logits, logp, ent, outputs
                grad_logits = grad_logits.to(weight.dtype)
                if grad_hidden is not None:
                    grad_hidden[:, cols] = grad_logits @ weight  # (B, c, H)
                rows = grad_logits.flatten(0, 1)  # (B * c, V)
                if grad_weight is not None:
                    # One buffer for every chunk: (V, B * c) @ (B * c, H) added in place.
                    h = hidden[:, cols].to(spec.dtype).to(weight.dtype).flatten(0, 1)  # (B * c, H)
                    grad_weight.addmm_(rows.t(), h)
                if grad_bias is not None:
                    grad_bias += rows.sum(0, dtype=torch.float32)
                del grad_logits, rows
        if grad_bias is not None:
            grad_bias = grad_bias.to(bias.dtype)
        return grad_hidden, grad_weight, grad_bias, None, None


def _checkpointed_scores(
    head: nn.Module,
    scored: torch.Tensor,
    tokens: torch.Tensor,
    sampling: SamplingParams | None,
    chunk: int,
    with_entropy: bool,
    entropy_grad: bool,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Any head module (a LoRA-wrapped ``lm_head``, one with hooks): each chunk under ``torch.utils.checkpoint``,
    its logits recomputed in the backward. The head's weight gradient is one ``(V, H)`` product per chunk."""
    logprobs: list[torch.Tensor] = []
    entropies: list[torch.Tensor] = []
    for t0 in range(0, tokens.shape[1], chunk):
        score = functools.partial(
            _head_scores,
            head,
            tokens[:, t0 : t0 + chunk],
            _chunk_sampling(sampling, t0),
            with_entropy,
            entropy_grad,
        )
        h = scored[:, t0 : t0 + chunk]  # (B, c, H)
        logp, ent = checkpoint(score, h, use_reentrant=False) if torch.is_grad_enabled() else score(h)
        logprobs.append(logp)
        if ent is not None:
            entropies.append(ent)
    entropy = torch.cat(entropies, dim=1) if with_entropy else None  # (B, T)
    return torch.cat(logprobs, dim=1), entropy


def _head_scores(
    head: nn.Module,
    tokens: torch.Tensor,
    sampling: SamplingParams | None,
    with_entropy: bool,
    entropy_grad: bool,
    hidden: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """:func:`_scores` of ``head(hidden)``: hidden (B, c, H) -> log-probs (B, c), entropy (B, c) or None."""
    return _scores(head(hidden), tokens, sampling, with_entropy, entropy_grad)


__all__ = ["AUTO_CHUNK_LOGITS", "TokenScores", "UnsupportedHeadError", "split_lm_head", "token_logprobs"]
