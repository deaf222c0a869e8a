"""Loading causal LMs and stepping them one token at a time with a KV cache.

:class:`IncrementalLM` serves every place that follows episodes token by token (the KL penalty's
reference model, a bound policy, the PPO rollout, the benchmarks): one forward per step for all
rows, never the whole prefix again.
"""

from __future__ import annotations

import inspect
from typing import Any

import torch
from transformers import AutoModelForCausalLM, DynamicCache
from transformers.cache_utils import Cache, CacheLayerMixin

from textenv.loading import from_pretrained


def resolve_device(device: str | torch.device | None) -> torch.device:
    """The device a spec names: ``"auto"``/``None`` is CUDA when present, else CPU.

    Args:
        device: ``"auto"``, ``None``, ``"cpu"``, ``"cuda"``, ``"cuda:N"``, ``"mps"`` or a ``torch.device``.

    Raises:
        TypeError: Neither a string nor a ``torch.device``.
        ValueError: A malformed spec, or a CUDA/MPS device that is not available here.

    Example:
        >>> resolve_device("cpu")
        device(type='cpu')
    """
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if not isinstance(device, (str, torch.device)):
        raise TypeError(f"device must be a str or torch.device, got {type(device).__name__}: {device!r}")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise ValueError(
            f"device {device!r} is not a device; expected 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'"
        ) from err
    if resolved.type == "cuda":
        # Without this, the first tensor moved there fails with a bare AssertionError from torch.
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise ValueError(f"device {device!r}: CUDA is not available here; use 'cpu' or 'auto'")
        if resolved.index is not None and resolved.index >= count:
            raise ValueError(
                f"device {device!r}: there are {count} CUDA devices (cuda:0 to cuda:{count - 1})"
            )
    if resolved.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"device {device!r}: MPS is not available here; use 'cpu' or 'auto'")
    return resolved


def causal_lm_of(policy: torch.nn.Module) -> torch.nn.Module:
    """The causal LM inside a policy module: the ``.lm`` of a wrapper that keeps it next to a value head
    (``agents.CausalLMWithValueHead``, ``agents.ActorCriticPolicy``, the SB3 ``LMPolicy``), else the
    module itself. Duck-typed, so textenv does not import agents.
    """
    lm = getattr(policy, "lm", None)
    return lm if isinstance(lm, torch.nn.Module) and lm is not policy else policy


def logits_width(model: torch.nn.Module) -> int:
    """The number of logits a causal LM returns per position: its output embeddings' ``out_features``,
    else its (text) config's ``vocab_size``, else what one probe forward of one token returns.

    Raises:
        TypeError: The model returns no ``.logits``.
    """
    lm = causal_lm_of(model)
    get_out = getattr(lm, "get_output_embeddings", None)
    out = get_out() if callable(get_out) else None
    width = getattr(out, "out_features", None)
    if isinstance(width, int):
        return width
    config: Any = getattr(lm, "config", None)
    if hasattr(config, "get_text_config"):
        config = config.get_text_config()
    width = getattr(config, "vocab_size", None)
    if isinstance(width, int):
        return width
    param = next(model.parameters(), None)
    ids = torch.zeros(1, 1, dtype=torch.long, device=None if param is None else param.device)
    with torch.no_grad():
        logits = getattr(model(input_ids=ids, attention_mask=torch.ones_like(ids)), "logits", None)
    if not isinstance(logits, torch.Tensor):
        raise TypeError(f"{type(model).__name__} returned no .logits; expected a causal LM")
    return int(logits.shape[-1])


def load_causal_lm(
    model: str | torch.nn.Module,
    *,
    device: str | torch.device | None = None,
    argument: str = "model",
    **kwargs: object,
) -> torch.nn.Module:
    """Returns ``model`` itself, or loads a built-in name, local path or hub name with ``AutoModelForCausalLM``.

    Weights load from safetensors; remote code is only trusted when ``trust_remote_code=True`` is
    passed explicitly. See :func:`textenv.loading.from_pretrained` for names and errors (``argument``
    names the value in them).
    """
    if isinstance(model, str):
        kwargs.setdefault("use_safetensors", True)
        module: torch.nn.Module = from_pretrained(AutoModelForCausalLM, model, argument=argument, **kwargs)
    elif isinstance(model, torch.nn.Module):
        module = model
    else:
        raise TypeError(f"model must be a name, a local path or a torch module, got {type(model).__name__}")
    if device is not None:
        module = module.to(resolve_device(device))
    return module


def left_padded_positions(attention_mask: torch.Tensor) -> torch.Tensor:
    """Position ids for left-padded rows: 0 at the first real token, pads clamped to 0."""
    return (attention_mask.long().cumsum(-1) - 1).clamp(min=0)


def used_columns(attention_mask: torch.Tensor, num_tokens: int) -> tuple[int, int]:
    """``(start, t)``: the first column any row uses and how many of the last ``num_tokens`` columns hold a
    real token in some row (at least 1).

    Columns outside ``[start, L - num_tokens + t)`` are padding in every row, so a forward over the rest
    (with the rows' own position ids) computes exactly what the whole width would.
    """
    L = attention_mask.shape[1]
    P = L - num_tokens
    used = attention_mask.bool().any(0)  # (L,)
    start = int(used[:P].long().argmax()) if bool(used[:P].any()) else P
    after = used[P:].nonzero()
    t = int(after[-1]) + 1 if after.numel() else 1
    return start, t


@torch.no_grad()
def token_logprobs(
    model: torch.nn.Module,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    num_tokens: int,
    *,
    batch_size: int = 64,
) -> torch.Tensor:
    """``log_softmax`` log-probs under ``model`` of the tokens in the last ``num_tokens`` columns, float32.

    One full forward per ``batch_size`` rows, outside any autocast (in the weights' own dtype), with
    each row's own position ids (left-padded prompts); the logits at column ``j - 1`` score the token at
    ``j``. Columns that are padding in every row of a forward are left out of it.

    Args:
        model: A causal LM.
        input_ids: ``(N, P + T)`` ids, ``T = num_tokens``.
        attention_mask: ``(N, P + T)``.
        num_tokens: ``T``.
        batch_size: Rows per forward.

    Returns:
        ``(N, T)`` float32 log-probs, 0 where the mask is 0.
    """
    N, L = input_ids.shape
    T = num_tokens
    out = torch.zeros(N, T, dtype=torch.float32, device=input_ids.device)
    keep_last = accepts_kwarg(model, "logits_to_keep")
    device = next(model.parameters()).device
    for rows in torch.arange(N, device=input_ids.device).split(batch_size):
        mask = attention_mask[rows]
        start, t = used_columns(mask, T)
        cols = slice(start, L - T + t)
        ids, mask = input_ids[rows, cols].to(device), mask[:, cols].to(device)
        kwargs = {"logits_to_keep": t + 1} if keep_last else {}
        with torch.autocast(device.type, enabled=False):
            logits = model(
                input_ids=ids, attention_mask=mask, position_ids=left_padded_positions(mask), **kwargs
            ).logits
        logp = torch.log_softmax(logits[:, -(t + 1) : -1].float(), dim=-1)  # (R, t, V)
        taken = logp.gather(-1, ids[:, -t:].unsqueeze(-1)).squeeze(-1)  # (R, t)
        out[rows, :t] = torch.where(mask[:, -t:].bool(), taken, 0.0).to(out.device)
    return out


def accepts_kwarg(model: torch.nn.Module, arg: str) -> bool:
    """Whether ``model.forward`` declares the keyword argument ``arg``.

    A wrapper whose forward only takes ``**kwargs`` and passes them on to the model it wraps (a PEFT
    ``PeftModel``: ``get_base_model()``) is seen through: the wrapped model's forward decides.
    """
    try:
        params = inspect.signature(model.forward).parameters
    except (TypeError, ValueError):
        return False
    if arg in params:
        return True
    get_base = getattr(model, "get_base_model", None)
    passes_on = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    if passes_on and callable(get_base):
        base = get_base()
        return base is not model and isinstance(base, torch.nn.Module) and accepts_kwarg(base, arg)
    return False


def cache_kwarg(model: torch.nn.Module) -> str:
    """The name under which ``model.forward`` takes (and its output returns) the KV cache.

    transformers 5.24 renamed ``past_key_values`` to ``cache`` (the old name warns, and goes away in
    5.40); older releases only know ``past_key_values``. Decide once per model, not per call.
    """
    return "cache" if accepts_kwarg(model, "cache") else "past_key_values"


class _Slots:
    """State the cache layers share during a step: the slot each row writes and the attended width.

    Attributes:
        write: (B,) slot index row ``b`` writes its new key/value to (the row's slot count).
        every_row: (B,) ``arange(B)``: the rows of a one-token step's writes.
        width: Slots ``[0, width)`` every row attends over (masked per row), the written ones included.
        rows: ``None`` for a step of every row; for a span (:meth:`IncrementalLM.extend`), the ``(R,)``
            rows the forward runs on, which write slots ``write[rows] + j`` for the span's ``j``.
    """

    def __init__(self, write: torch.Tensor):
        self.write = write
        self.every_row = torch.arange(write.shape[0], device=write.device)  # (B,)
        self.width = 0
        self.rows: torch.Tensor | None = None


class _SlotLayer(CacheLayerMixin):
    """One attention layer's keys and values in preallocated ``(B, H, capacity, D)`` buffers.

    A one-token forward scatters each row's new key/value into slot ``slots.write[b]`` (in place,
    no reallocation) and returns views of the first ``slots.width`` slots. A span forward of some rows
    (``slots.rows``) writes each row's ``S`` new keys/values into its next ``S`` slots.
    """

    is_sliding = False

    def __init__(self, slots: _Slots, keys: torch.Tensor, values: torch.Tensor):
        super().__init__()
        self.slots = slots
        self.keys: torch.Tensor = keys
        self.values: torch.Tensor = values
        self.dtype, self.device = keys.dtype, keys.device
        self.is_initialized = True

    def lazy_initialization(self, key_states: torch.Tensor, value_states: torch.Tensor) -> None:
        """Nothing to do: the buffers exist before the first forward."""

    def update(
        self, key_states: torch.Tensor, value_states: torch.Tensor, *args: object, **kwargs: object
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if key_states.dtype != self.keys.dtype:
            # A prefill under bf16 autocast and steps outside it (or the reverse) give keys of another
            # dtype: the buffers follow the forwards that step them (one cast, when the dtype changes).
            self.keys, self.values = self.keys.to(key_states.dtype), self.values.to(value_states.dtype)
            self.dtype = self.keys.dtype
        width, rows = self.slots.width, self.slots.rows
        if rows is None:
            if key_states.shape[-2] != 1:
                raise RuntimeError(f"IncrementalLM feeds one token per forward, got {key_states.shape[-2]}")
            # One (H, D) slice per row by advanced indexing: in a rollout, scatter_ with an expanded index
            # copied the whole buffer (twice) at every layer and step, which cost more than the matmuls.
            every, write = self.slots.every_row, self.slots.write
            self.keys[every, :, write] = key_states[:, :, 0]  # (B, H, D)
            self.values[every, :, write] = value_states[:, :, 0]
            return self.keys[:, :, :width], self.values[:, :, :width]
        S = key_states.shape[-2]
        slots = self.slots.write[rows].view(-1, 1, 1, 1) + torch.arange(S, device=rows.device).view(
            1, 1, -1, 1
        )
        out = []
        for name, new in (("keys", key_states), ("values", value_states)):
            buffer = getattr(self, name)
            part = buffer.index_select(0, rows)  # (R, H, C, D)
            part.scatter_(2, slots.expand_as(new), new)
            buffer.index_copy_(0, rows, part)
            out.append(part[:, :, :width])
        return out[0], out[1]

    def get_mask_sizes(self, query_length: int) -> tuple[int, int]:
        return self.slots.width, 0

    def get_seq_length(self) -> int:
        # The slots before the one being written; what 2-D mask creation sizes against.
        return self.slots.width - 1

    def get_max_length(self) -> int:
        return self.keys.shape[2]

    def get_max_cache_shape(self) -> int:  # the name of get_max_length before transformers 5.x
        return self.keys.shape[2]


class _SlotCache(Cache):
    """The transformers ``Cache`` of an :class:`IncrementalLM`: one :class:`_SlotLayer` per layer."""

    def __init__(self, layers: list[_SlotLayer]):
        generic: list[Any] = list(layers)
        super().__init__(layers=generic)


class IncrementalLM:
    """Steps a causal LM for ``num_rows`` independent episodes, one token per forward.

    Each row owns a fixed run of KV-cache slots in preallocated buffers: a reset writes the row's
    prompt into its slots ``[0, P)`` and every :meth:`step` writes the next slot of every row, in
    place. ``slot_mask`` records which slots belong to each row's current episode and
    ``position_ids`` are kept per row, so rows may reset at different times. A step attends over
    the slots up to the longest row's, never reallocates, and makes no host sync, so its cost
    does not grow with the number of steps taken (beyond attention itself). The buffers hold
    ``max_length`` slots per row and double if a row outgrows them.

    With SDPA or eager attention the step's 4-D mask is built here directly (transformers' mask
    construction is skipped); other attention implementations get the usual 2-D mask.

    Example:
        >>> lm = IncrementalLM(model, num_rows=2, max_length=40)  # doctest: +SKIP
        >>> logits = lm.reset_rows(torch.arange(2), ids, mask)  # (2, V) next-token logits
        >>> logits = lm.step(next_tokens, active=torch.ones(2, dtype=torch.bool))
    """

    def __init__(self, model: torch.nn.Module, *, num_rows: int, max_length: int):
        self.model = model
        self.num_rows = num_rows
        self.max_length = max_length
        self._keep_last = accepts_kwarg(model, "logits_to_keep")
        self._cache_kwarg = cache_kwarg(model)
        config = getattr(model, "config", None)
        self._attn = getattr(config, "_attn_implementation", None)
        device = next(model.parameters()).device
        self.cache: Cache | None = None
        self._mask = torch.zeros(num_rows, max_length, dtype=torch.bool, device=device)  # (B, capacity)
        self._used = torch.zeros(num_rows, dtype=torch.long, device=device)  # (B,) slots of each row
        self._slots = _Slots(self._used)  # a step writes slot `_used[b]` of row b
        self.next_position = torch.zeros(num_rows, dtype=torch.long, device=device)  # (B,)
        self.logits: torch.Tensor | None = None  # (B, V) next-token logits of every row

    @property
    def device(self) -> torch.device:
        return self._mask.device

    @property
    def slot_mask(self) -> torch.Tensor:
        """(B, S) int64: 1 where a slot belongs to the row's current episode."""
        return self._mask[:, : self._slots.width].long()

    def _forward(self, input_ids, attention_mask, position_ids, cache):
        kwargs = {"logits_to_keep": 1} if self._keep_last else {}
        kwargs[self._cache_kwarg] = cache
        return self.model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            use_cache=True,
            **kwargs,
        )

    @torch.no_grad()
    def reset_rows(
        self, rows: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor
    ) -> torch.Tensor:
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
        prompt_len = mask.shape[1]
        prompt_cache = getattr(out, self._cache_kwarg)
        if self.cache is None:
            self._allocate(prompt_cache, max(self.max_length, prompt_len + 1))
        self._ensure_capacity(prompt_len + 1)
        for layer, new in zip(self.cache.layers, prompt_cache.layers):  # type: ignore[union-attr]
            layer.keys[rows, :, :prompt_len] = new.keys.to(layer.keys.dtype)
            layer.values[rows, :, :prompt_len] = new.values.to(layer.values.dtype)
        self._mask[rows] = False
        self._mask[rows, :prompt_len] = mask.bool()
        self._used[rows] = prompt_len
        # Every row restarting (rows are distinct) shrinks the attended width back to the prompt.
        full = rows.numel() == self.num_rows
        self._slots.width = prompt_len if full else max(self._slots.width, prompt_len)
        return new_logits

    def _allocate(self, prompt_cache: Cache, capacity: int) -> None:
        layers = []
        for layer in prompt_cache.layers:
            # (R, H, P, D); a prefill fills the keys/values of every attention layer.
            k: torch.Tensor = layer.keys  # type: ignore[union-attr, assignment]
            v: torch.Tensor = layer.values  # type: ignore[union-attr, assignment]
            keys = k.new_zeros((self.num_rows, k.shape[1], capacity, k.shape[3]))
            values = v.new_zeros((self.num_rows, v.shape[1], capacity, v.shape[3]))
            layers.append(_SlotLayer(self._slots, keys, values))
        self.cache = _SlotCache(layers)
        self._mask = self._mask.new_zeros(self.num_rows, capacity)
        self._used.zero_()
        self._slots.width = 0

    def _ensure_capacity(self, width: int) -> None:
        """Makes room for ``width`` slots: doubles the buffers if a row outgrows them."""
        capacity = self._mask.shape[1]
        if width <= capacity:
            return
        capacity = max(width, 2 * capacity)
        for layer in self.cache.layers:  # type: ignore[union-attr]
            for name in ("keys", "values"):
                old = getattr(layer, name)
                grown = old.new_zeros((old.shape[0], old.shape[1], capacity, old.shape[3]))
                grown[:, :, : old.shape[2]] = old
                setattr(layer, name, grown)
        mask = self._mask.new_zeros(self.num_rows, capacity)
        mask[:, : self._mask.shape[1]] = self._mask
        self._mask = mask

    @torch.no_grad()
    def step(self, tokens: torch.Tensor, active: torch.Tensor | None = None) -> torch.Tensor:
        """Feeds one token per row and returns the next-token logits (B, V), float32.

        Rows where ``active`` is False keep their state and logits (their slot is masked out and
        overwritten by their next token).
        """
        if self.cache is None or self.logits is None:
            raise RuntimeError("IncrementalLM.step() called before reset_rows()")
        tokens = tokens.to(self.device).long().view(-1, 1)  # (B, 1)
        slots = self._slots
        # `width` is a host-side bound on every row's slot count + 1, so no step syncs with the
        # device; when it reaches the capacity one sync recomputes it from the rows themselves.
        if slots.width + 1 > self._mask.shape[1]:
            slots.width = int(self._used.max())
            self._ensure_capacity(slots.width + 1)
        slots.width += 1
        # The new slot is always visible to its own query, so an idle row never attends to nothing.
        self._mask.scatter_(1, slots.write.view(-1, 1), True)
        out = self._forward(tokens, self._step_mask(slots.width), self.next_position.view(-1, 1), self.cache)
        logits = out.logits[:, -1].float()
        if active is None:
            self._used += 1
            self.next_position += 1
            self.logits = logits
        else:
            active = active.to(self.device).bool()
            self._mask.scatter_(1, slots.write.view(-1, 1), active.view(-1, 1))
            self._used += active
            self.next_position += active
            self.logits = torch.where(active.view(-1, 1), logits, self.logits)
        return self.logits

    @torch.no_grad()
    def extend(self, rows: torch.Tensor, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Feeds a span of tokens to some rows in one forward and returns every row's next-token logits.

        Row ``rows[i]`` reads ``tokens[i, :lengths[i]]`` (the rest is padding), as if stepped one token at a
        time: each token attends to the row's episode so far and to the span's tokens before it. Rows
        not in ``rows`` keep their state. A multi-turn env's inserted reply goes in this way.

        Args:
            rows: ``(R,)`` distinct row indices.
            tokens: ``(R, S)`` token ids.
            lengths: ``(R,)`` how many of each row's ``S`` tokens are real (>= 1).

        Returns:
            ``(B, V)`` float32 next-token logits of every row.
        """
        if self.cache is None or self.logits is None:
            raise RuntimeError("IncrementalLM.extend() called before reset_rows()")
        rows = rows.to(self.device).long()
        tokens = tokens.to(self.device).long()
        lengths = lengths.to(self.device).long()
        R, S = tokens.shape
        if self._attn not in ("sdpa", "eager"):
            # Other attention implementations build their own masks: one token at a time is exact there.
            for k in range(S):
                active = torch.zeros(self.num_rows, dtype=torch.bool, device=self.device)
                active[rows] = lengths > k
                column = torch.zeros(self.num_rows, dtype=torch.long, device=self.device)
                column[rows] = tokens[:, k]
                self.step(column, active)
            return self.logits
        slots = self._slots
        start = self._used[rows]  # (R,) the first slot each row writes
        width = int((start + S).max())
        self._ensure_capacity(width)
        slots.width = max(slots.width, width)
        j = torch.arange(S, device=self.device)
        real = j[None, :] < lengths[:, None]  # (R, S) the span's real tokens
        # Query j of row r attends the row's episode so far and the span's slots up to its own; a padding
        # query attends its own slot only (its output is dropped).
        slot = torch.arange(slots.width, device=self.device)
        offset = slot[None, None, :] - start[:, None, None]  # (R, 1, W) slot relative to the span
        own = (offset >= 0) & (offset <= j[None, :, None])  # (R, S, W)
        allowed = torch.where(
            real[:, :, None], self._mask[rows, None, : slots.width] | own, offset == j[None, :, None]
        )
        dtype = next(self.model.parameters()).dtype
        mask = torch.zeros(allowed.shape, dtype=dtype, device=self.device).masked_fill_(
            ~allowed, torch.finfo(dtype).min
        )
        positions = self.next_position[rows, None] + j[None, :]  # (R, S)
        slots.rows = rows
        try:
            kwargs: dict[str, Any] = {"logits_to_keep": 0} if self._keep_last else {}
            kwargs[self._cache_kwarg] = self.cache
            out = self.model(
                input_ids=tokens,
                attention_mask=mask[:, None],
                position_ids=positions,
                use_cache=True,
                **kwargs,
            )
        finally:
            slots.rows = None
        last = out.logits[torch.arange(R, device=self.device), (lengths - 1).clamp(min=0)].float()  # (R, V)
        written = (slot[None, :] >= start[:, None]) & (slot[None, :] < (start + lengths)[:, None])  # (R, W)
        self._mask[rows, : slots.width] |= written
        self._used[rows] += lengths
        self.next_position[rows] += lengths
        self.logits[rows] = last
        return self.logits

    def _step_mask(self, width: int) -> torch.Tensor:
        """The attention mask of a one-token step over ``width`` slots, in the form the model takes fastest.

        SDPA and eager attention get a (B, 1, 1, W) additive float mask (transformers passes 4-D masks
        through untouched; on CPU SDPA runs faster with a float mask than with a bool one); other
        attention implementations get the (B, W) 2-D mask and build their own.
        """
        mask = self._mask[:, :width]
        if self._attn in ("sdpa", "eager"):
            dtype = next(self.model.parameters()).dtype
            additive = torch.zeros(mask.shape, dtype=dtype, device=mask.device)
            return additive.masked_fill_(~mask, torch.finfo(dtype).min)[:, None, None, :]
        return mask.long()
