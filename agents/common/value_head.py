"""A transformers causal LM with a scalar value head, for actor-critic training (PPO).

The policy (the LM's next-token logits) and the critic (one value per position) share the LM trunk:
the value head is a single ``nn.Linear(hidden_size, 1)`` on the last hidden state, always computed in
float32 whatever dtype the LM runs in.

Checkpoint layout (``save_pretrained(dir)``)::

    dir/config.json, dir/model.safetensors, ...   # the LM, loadable by plain AutoModelForCausalLM
    dir/value_head.safetensors                    # {"weight": (1, H), "bias": (1,)} float32
"""

from __future__ import annotations

import inspect
import math
import os
from pathlib import Path
from typing import Any, NamedTuple, cast

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from textenv.lm import cache_kwarg

VALUE_HEAD_FILENAME = "value_head.safetensors"


class ValueHeadOutput(NamedTuple):
    """Output of :meth:`CausalLMWithValueHead.forward`.

    Attributes:
        logits: Next-token logits ``(B, T, V)`` in the LM's dtype (cast to float before log_softmax).
        values: State values ``(B, T)`` in float32; ``values[:, t]`` is the value of the prefix ending
            at position ``t``, i.e. of the state in which the token at ``t + 1`` is chosen.
        past_key_values: The LM's KV cache when ``use_cache=True``, else ``None``.
    """

    logits: torch.Tensor
    values: torch.Tensor
    past_key_values: Any


def _hidden_size(lm: nn.Module) -> int:
    """Reads the width of ``lm``'s last hidden state from its config, else from its output embeddings.

    Args:
        lm: A transformers causal LM.

    Returns:
        The hidden size ``H``.

    Raises:
        ValueError: If neither the config nor the output embeddings give the hidden size.
    """
    config: Any = lm.config
    # get_text_config() returns the config itself for plain LMs and the text sub-config for multimodal ones.
    text_config = config.get_text_config() if hasattr(config, "get_text_config") else config
    hidden_size = getattr(text_config, "hidden_size", None)
    if isinstance(hidden_size, int) and hidden_size > 0:
        return hidden_size
    get_out = getattr(lm, "get_output_embeddings", None)
    out = get_out() if callable(get_out) else None
    in_features = getattr(out, "in_features", None)
    if isinstance(in_features, int) and in_features > 0:
        return in_features
    raise ValueError(
        f"cannot determine the hidden size of {type(lm).__name__}: its config has no positive integer "
        f"'hidden_size' (got {hidden_size!r}) and get_output_embeddings() is not a Linear layer "
        f"(got {type(out).__name__}); expected a transformers causal LM"
    )


class CausalLMWithValueHead(nn.Module):
    """A causal LM (``self.lm``) plus a float32 value head (``self.value_head``) on its last hidden state.

    ``CausalLMWithValueHead(lm)`` wraps an existing LM module (it is not copied; the wrapper shares its
    parameters). The value head stays float32 even if the whole wrapper is cast with ``.to(dtype)``,
    ``.half()`` or ``.bfloat16()``; only the LM's dtype changes.

    Example:
        >>> model = CausalLMWithValueHead(GPT2LMHeadModel(GPT2Config(n_embd=32, n_layer=2, n_head=2)))
        >>> out = model(input_ids)          # input_ids (B, T)
        >>> out.logits.shape, out.values.shape   # (B, T, V), (B, T)
    """

    def __init__(self, lm: nn.Module, value_head_init_std: float | None = None) -> None:
        """Wraps ``lm`` and creates a freshly initialised value head on the LM's device.

        Args:
            lm: A transformers causal LM (``PreTrainedModel`` with a ``config``), e.g. from
                ``AutoModelForCausalLM``.
            value_head_init_std: Standard deviation of the normal init of the head weight; default
                ``1 / sqrt(hidden_size + 1)``. The bias is initialised to 0.

        Raises:
            TypeError: If ``lm`` is not an ``nn.Module`` with a ``config`` attribute.
            ValueError: If the hidden size cannot be determined or ``value_head_init_std`` is negative.
        """
        super().__init__()
        if not isinstance(lm, nn.Module) or not hasattr(lm, "config"):
            raise TypeError(
                f"lm must be a transformers causal LM (an nn.Module with a .config), got {type(lm).__name__}"
            )
        self.lm = lm
        self._cache_kwarg = cache_kwarg(lm)
        hidden_size = _hidden_size(lm)
        std = 1.0 / math.sqrt(hidden_size + 1) if value_head_init_std is None else value_head_init_std
        if isinstance(std, bool) or not (isinstance(std, (int, float)) and std >= 0):
            raise ValueError(f"value_head_init_std must be a float >= 0 or None, got {value_head_init_std!r}")
        self.value_head = nn.Linear(hidden_size, 1, dtype=torch.float32)
        nn.init.normal_(self.value_head.weight, mean=0.0, std=std)
        nn.init.zeros_(self.value_head.bias)
        self.value_head.to(self.device)

    @classmethod
    def from_lm(cls, lm: nn.Module, value_head_init_std: float | None = None) -> CausalLMWithValueHead:
        """Wraps an existing LM module with a new value head; same as ``CausalLMWithValueHead(lm)``."""
        return cls(lm, value_head_init_std=value_head_init_std)

    @classmethod
    def from_pretrained(cls, name_or_path: str | os.PathLike[str], **kwargs: Any) -> CausalLMWithValueHead:
        """Loads the LM with ``AutoModelForCausalLM.from_pretrained`` and, if present, the value head.

        The head is read from ``<name_or_path>/value_head.safetensors`` when ``name_or_path`` is a local
        directory holding that file (as written by :meth:`save_pretrained`); otherwise it is freshly
        initialised, so any plain LM checkpoint can start PPO training.

        Args:
            name_or_path: A local directory or a hub model id.
            **kwargs: Passed to ``AutoModelForCausalLM.from_pretrained`` (e.g. ``dtype``, ``device_map``).
                ``trust_remote_code`` is False unless passed explicitly.

        Returns:
            The model, on the device the LM was loaded to, in eval mode as transformers loads it.

        Raises:
            ValueError: If ``value_head.safetensors`` does not match the LM's hidden size.
        """
        from transformers import AutoModelForCausalLM

        from textenv.loading import from_pretrained

        lm = from_pretrained(AutoModelForCausalLM, os.fspath(name_or_path), argument="policy", **kwargs)
        model = cls(lm)
        head_file = Path(name_or_path) / VALUE_HEAD_FILENAME
        if head_file.is_file():
            model.load_value_head(head_file)
        return model

    def read_value_head(self, path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
        """The float32 value-head tensors of a ``value_head.safetensors`` file, checked against this LM.

        Raises:
            ValueError: If the file's tensors are not ``weight (1, H)`` and ``bias (1,)`` for this LM's ``H``.
        """
        state = load_file(str(path))
        expected = {name: tuple(p.shape) for name, p in self.value_head.state_dict().items()}
        got = {name: tuple(t.shape) for name, t in state.items()}
        if got != expected:
            raise ValueError(f"value head file {str(path)!r} holds tensors {got}, expected {expected}")
        return {k: v.to(torch.float32) for k, v in state.items()}

    def load_value_head(self, path: str | os.PathLike[str]) -> None:
        """Loads the value head weights from a ``value_head.safetensors`` file.

        Args:
            path: The file written by :meth:`save_pretrained`.

        Raises:
            ValueError: If the file's tensors are not ``weight (1, H)`` and ``bias (1,)`` for this LM's ``H``.
        """
        self.value_head.load_state_dict(self.read_value_head(path))

    def save_pretrained(self, save_directory: str | os.PathLike[str], **kwargs: Any) -> None:
        """Saves the LM (safetensors, loadable by plain transformers) and ``value_head.safetensors``.

        Args:
            save_directory: Directory to write to; created if missing.
            **kwargs: Passed to the LM's ``save_pretrained``.
        """
        os.makedirs(save_directory, exist_ok=True)
        # transformers v4 needs safe_serialization=True for safetensors; v5 always writes safetensors and
        # no longer has the parameter.
        save = cast(Any, self.lm).save_pretrained
        if "safe_serialization" in inspect.signature(save).parameters:
            kwargs.setdefault("safe_serialization", True)
        save(save_directory, **kwargs)
        state = {
            k: v.detach().to("cpu", torch.float32).contiguous()
            for k, v in self.value_head.state_dict().items()
        }
        save_file(
            state,
            os.path.join(save_directory, VALUE_HEAD_FILENAME),
            metadata={"format": "pt", "hidden_size": str(self.value_head.in_features)},
        )

    @property
    def config(self) -> Any:
        """The LM's config."""
        return self.lm.config

    @property
    def device(self) -> torch.device:
        """The device of the LM's first parameter."""
        return next(self.lm.parameters()).device

    def disable_dropout(self) -> None:
        """Sets the dropout probability of every ``nn.Dropout`` in the LM to 0.

        PPO compares log-probs of the same tokens before and after an update; dropout makes the two
        forwards differ even with identical weights (the ratio is not 1 at the first minibatch), so LM-PPO
        implementations usually disable it.
        """
        for module in self.lm.modules():
            if isinstance(module, nn.Dropout):
                module.p = 0.0

    def _apply(self, fn: Any, recurse: bool = True) -> CausalLMWithValueHead:
        # Every .to()/.half()/.cuda() goes through _apply: let it act, then restore the head to float32
        # (device moves are kept).
        super()._apply(fn, recurse)
        self.value_head.float()
        return self

    def values_of(self, hidden: torch.Tensor) -> torch.Tensor:
        """``(..., )`` float32 values of final hidden states ``(..., H)`` (of any dtype)."""
        # Autocast would run the Linear in bf16; the head is meant to be float32 end to end.
        with torch.autocast(device_type=hidden.device.type, enabled=False):
            return self.value_head(hidden.to(self.value_head.weight.device, torch.float32)).squeeze(-1)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        past_key_values: Any = None,
        use_cache: bool = False,
        **lm_kwargs: Any,
    ) -> ValueHeadOutput:
        """Runs the LM and the value head.

        Args:
            input_ids: Token ids ``(B, T)``.
            attention_mask: ``(B, T_past + T)`` 1 for real tokens, 0 for padding; ``None`` means all ones.
            position_ids: ``(B, T)`` positions (needed with left padding); ``None`` lets the LM infer them.
            past_key_values: KV cache from a previous call with ``use_cache=True``.
            use_cache: Whether to return the updated KV cache.
            **lm_kwargs: Extra keyword arguments passed to the LM's forward.

        Returns:
            ``ValueHeadOutput(logits (B, T, V), values (B, T) float32, past_key_values)``.
        """
        if past_key_values is not None:
            lm_kwargs[self._cache_kwarg] = past_key_values
        out = self.lm(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            use_cache=use_cache,
            output_hidden_states=True,
            return_dict=True,
            **lm_kwargs,
        )
        return ValueHeadOutput(
            logits=out.logits,
            values=self.values_of(out.hidden_states[-1]),  # (B, T) float32
            past_key_values=getattr(out, self._cache_kwarg) if use_cache else None,
        )
