"""Loading causal LMs and stepping them one token at a time with a KV cache.

:class:`IncrementalLM` serves every place that follows episodes token by token (the KL penalty's
reference model, a bound policy, the PPO rollout, the benchmarks): one forward per step for all
rows, never the whole prefix again.
"""

from __future__ import annotations

import inspect

import torch
from transformers import AutoModelForCausalLM, DynamicCache


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``"auto"``/``None`` is CUDA when present, else CPU; anything else goes to ``torch.device``."""
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        return torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise ValueError(f"device {device!r} is not a device; expected 'auto', 'cpu', 'cuda' or 'cuda:N'") from err


def load_causal_lm(
    model: str | torch.nn.Module, *, device: str | torch.device | None = None, **kwargs: object
) -> torch.nn.Module:
    """Returns ``model`` itself, or loads a name or local path with ``AutoModelForCausalLM``.

    Weights load from safetensors; remote code is only trusted when ``trust_remote_code=True`` is
    passed explicitly.
    """
    if isinstance(model, str):
        kwargs.setdefault("use_safetensors", True)
        model = AutoModelForCausalLM.from_pretrained(model, **kwargs)
    elif not isinstance(model, torch.nn.Module):
        raise TypeError(f"model must be a name, a local path or a torch module, got {type(model).__name__}")
    if device is not None:
        model = model.to(resolve_device(device))
    return model


def left_padded_positions(attention_mask: torch.Tensor) -> torch.Tensor:
    """Position ids for left-padded rows: 0 at the first real token, pads clamped to 0."""
    return (attention_mask.long().cumsum(-1) - 1).clamp(min=0)


def _accepts(model: torch.nn.Module, arg: str) -> bool:
    try:
        return arg in inspect.signature(model.forward).parameters
    except (TypeError, ValueError):
        return False


class IncrementalLM:
    """Steps a causal LM for ``num_rows`` independent episodes, one token per forward.

    The KV cache is a sequence of slots shared by all rows. Every :meth:`step` appends one slot
    per row; ``slot_mask`` records which slots belong to each row's current episode and
    ``position_ids`` are kept per row, so rows may reset at different times: a reset appends the
    new prompt's slots and masks out the row's old ones. When the cache grows past
    ``2 * max_length`` slots it is compacted (each row's live slots gathered to the front).

    Example:
        >>> lm = IncrementalLM(model, num_rows=2, max_length=40)  # doctest: +SKIP
        >>> logits = lm.reset_rows(torch.arange(2), ids, mask)  # (2, V) next-token logits
        >>> logits = lm.step(next_tokens, active=torch.ones(2, dtype=torch.bool))
    """

    def __init__(self, model: torch.nn.Module, *, num_rows: int, max_length: int):
        self.model = model
        self.num_rows = num_rows
        self.max_length = max_length
        self._keep_last = _accepts(model, "logits_to_keep")
        self.cache: DynamicCache | None = None
        device = next(model.parameters()).device
        self.slot_mask = torch.zeros(num_rows, 0, dtype=torch.long, device=device)  # (B, S)
        self.next_position = torch.zeros(num_rows, dtype=torch.long, device=device)  # (B,)
        self.logits: torch.Tensor | None = None  # (B, V) next-token logits of every row

    @property
    def device(self) -> torch.device:
        return self.slot_mask.device

    def _forward(self, input_ids, attention_mask, position_ids, cache):  # noqa: ANN001, ANN202
        kwargs = {"logits_to_keep": 1} if self._keep_last else {}
        return self.model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            past_key_values=cache,
            use_cache=True,
            **kwargs,
        )

    @torch.no_grad()
    def reset_rows(self, rows: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Starts new episodes in ``rows`` from left-padded prompts.

        Args:
            rows: Row indices (R,).
            input_ids: Prompt ids (R, P), left-padded.
            attention_mask: Prompt mask (R, P).

        Returns:
            Next-token logits of those rows (R, V), float32.
        """
        rows = rows.to(self.device)
        mask = attention_mask.to(self.device).long()
        out = self._forward(input_ids.to(self.device), mask, left_padded_positions(mask), DynamicCache())
        new_logits = out.logits[:, -1].float()  # (R, V)
        if self.logits is None:
            self.logits = torch.zeros(self.num_rows, new_logits.shape[-1], device=self.device)
        self.logits[rows] = new_logits
        self.next_position[rows] = mask.sum(-1)
        if self.cache is None or (rows.numel() == self.num_rows and bool((rows == self._arange()).all())):
            # Every row restarts: the prompt cache is the whole cache.
            self.cache, self.slot_mask = self._full_cache(out.past_key_values, rows, mask)
        else:
            self._append_rows(out.past_key_values, rows, mask)
        return new_logits

    def _arange(self) -> torch.Tensor:
        return torch.arange(self.num_rows, device=self.device)

    def _full_cache(self, prompt_cache: DynamicCache, rows: torch.Tensor, mask: torch.Tensor):  # noqa: ANN202
        if rows.numel() == self.num_rows and bool((rows == self._arange()).all()):
            return prompt_cache, mask.clone()
        # The first reset covers only some rows: the others get zero slots, masked out.
        for layer in prompt_cache.layers:
            for name in ("keys", "values"):
                part = getattr(layer, name)  # (R, H, P, D)
                full = part.new_zeros((self.num_rows, *part.shape[1:]))
                full[rows] = part
                setattr(layer, name, full)
        slot_mask = mask.new_zeros(self.num_rows, mask.shape[1])
        slot_mask[rows] = mask
        return prompt_cache, slot_mask

    def _append_rows(self, prompt_cache: DynamicCache, rows: torch.Tensor, mask: torch.Tensor) -> None:
        if self.cache is None:
            raise RuntimeError("no cache to append to")
        for layer, new in zip(self.cache.layers, prompt_cache.layers):
            for name in ("keys", "values"):
                old, fresh = getattr(layer, name), getattr(new, name)  # (B, H, S, D), (R, H, P, D)
                grown = old.new_zeros((old.shape[0], old.shape[1], old.shape[2] + fresh.shape[2], old.shape[3]))
                grown[:, :, : old.shape[2]] = old
                grown[rows, :, old.shape[2] :] = fresh
                setattr(layer, name, grown)
        self.slot_mask[rows] = 0  # the rows' old episode is over
        tail = mask.new_zeros(self.num_rows, mask.shape[1])
        tail[rows] = mask
        self.slot_mask = torch.cat([self.slot_mask, tail], dim=1)
        self._maybe_compact()

    @torch.no_grad()
    def step(self, tokens: torch.Tensor, active: torch.Tensor | None = None) -> torch.Tensor:
        """Feeds one token per row and returns the next-token logits (B, V), float32.

        Rows where ``active`` is False keep their state and logits (their slot is masked out).
        """
        if self.cache is None or self.logits is None:
            raise RuntimeError("IncrementalLM.step() called before reset_rows()")
        tokens = tokens.to(self.device).long().view(-1, 1)  # (B, 1)
        active = (
            torch.ones(self.num_rows, dtype=torch.bool, device=self.device)
            if active is None
            else active.to(self.device).bool()
        )
        # The new slot is always visible to its own query, so an idle row never attends to nothing.
        mask = torch.cat([self.slot_mask, torch.ones_like(self.slot_mask[:, :1])], dim=1)  # (B, S+1)
        out = self._forward(tokens, mask, self.next_position.view(-1, 1), self.cache)
        self.cache = out.past_key_values
        mask[:, -1] = active.long()
        self.slot_mask = mask
        self.next_position += active.long()
        self.logits = torch.where(active.view(-1, 1), out.logits[:, -1].float(), self.logits)
        self._maybe_compact()
        return self.logits

    def _maybe_compact(self) -> None:
        if self.cache is None or self.slot_mask.shape[1] <= 2 * self.max_length:
            return
        live = self.slot_mask.bool()  # (B, S)
        width = int(live.sum(1).max())
        # Stable sort puts each row's live slots first, in their original order.
        order = torch.sort((~live).to(torch.int8), dim=1, stable=True).indices[:, :width]  # (B, W)
        for layer in self.cache.layers:
            idx = order[:, None, :, None].expand(-1, layer.keys.shape[1], -1, layer.keys.shape[3])
            layer.keys = layer.keys.gather(2, idx)
            layer.values = layer.values.gather(2, idx.expand(-1, -1, -1, layer.values.shape[3]))
        self.slot_mask = self.slot_mask.gather(1, order)
