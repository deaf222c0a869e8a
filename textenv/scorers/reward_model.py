"""``RewardModel``: a transformers sequence classifier scores each finished text (batched)."""

from __future__ import annotations

import copy
import numbers
from collections.abc import Sequence
from typing import Any

import torch
from transformers import AutoModelForSequenceClassification, PreTrainedTokenizerBase

from textenv.lm import resolve_device
from textenv.loading import from_pretrained
from textenv.scorers._models import describe, module_device
from textenv.scorers.base import EpisodeBatch, Scorer, ScorerContext
from textenv.tokenization import load_tokenizer

OUTPUTS = ("logit", "probability")
TEXTS = ("prompt+generation", "generation")
# Tokenizers without a real limit report a huge model_max_length.
_NO_LIMIT = 1_000_000


class RewardModel(Scorer):
    """Scores ``prompt + text`` (or the text alone) with a sequence-classification model.

    The model loads with ``AutoModelForSequenceClassification.from_pretrained(model,
    use_safetensors=True, trust_remote_code=False)`` (remote code is never run; pass a module to use a
    custom class); built-in names and errors as :func:`textenv.loading.from_pretrained`.
    Texts are scored ``batch_size`` at a time under ``torch.no_grad``, right-padded and truncated
    from the left to the model's length limit (so the generation, at the end, is kept).

    Args:
        model: A built-in asset name (``"tiny-sentiment"``), a hub name, a local path, or a
            sequence-classification module (used as is: not moved, not switched to eval mode).
        tokenizer: Tokenizer (object, name or path); default: the one saved with the model.
        label: Which output to read, by index or by name from ``config.id2label``. Default: 0 for a
            one-output model, 1 for a two-label model (the usual "positive"/"preferred" label).
        output: ``"logit"`` (the raw logit) or ``"probability"`` (softmax over the labels; sigmoid
            for a one-output model).
        text: ``"prompt+generation"`` (the prompt text followed by the generated text) or
            ``"generation"``. An empty input is scored as the single BOS (or EOS) token.
        batch_size: Texts per forward.
        device: Where a model loaded from a name runs (default: the env's device).
        name: Term name in ``info["reward_terms"]``.

    Raises:
        ValueError: An unknown label or option, or a tokenizer that cannot encode the texts.

    Example:
        >>> reward = RewardModel("tiny-sentiment", label="positive", output="probability")
        >>> env = gym.make("TextGen-v0", reward=reward)  # doctest: +SKIP
    """

    output: str
    text: str
    batch_size: int
    device: torch.device | None
    model: torch.nn.Module
    tokenizer: PreTrainedTokenizerBase
    label: int
    max_length: int | None
    pad_token_id: int
    empty_token_id: int
    _loaded: bool

    def __init__(
        self,
        model: str | torch.nn.Module,
        *,
        tokenizer: str | PreTrainedTokenizerBase | None = None,
        label: int | str | None = None,
        output: str = "logit",
        text: str = "prompt+generation",
        batch_size: int = 64,
        device: str | torch.device | None = None,
        name: str = "reward_model",
    ):
        if output not in OUTPUTS:
            raise ValueError(f"RewardModel output must be one of {OUTPUTS}, got {output!r}")
        if text not in TEXTS:
            raise ValueError(f"RewardModel text must be one of {TEXTS}, got {text!r}")
        if isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral) or batch_size < 1:
            raise ValueError(f"RewardModel batch_size must be a positive int, got {batch_size!r}")
        self.output, self.text, self.batch_size, self.name = output, text, int(batch_size), name
        self.device = None if device is None else resolve_device(device)
        self._loaded = isinstance(model, str)
        self.model = self._load_model(model)
        self.tokenizer = self._load_tokenizer(tokenizer, model)
        self.label = self._resolve_label(label)
        self.max_length = self._max_length()
        self._set_pad_token()

    def _load_model(self, model: str | torch.nn.Module) -> torch.nn.Module:
        if isinstance(model, str):
            loaded = from_pretrained(
                AutoModelForSequenceClassification, model, argument="RewardModel model", use_safetensors=True
            )
            loaded.requires_grad_(False)
            return loaded.eval().to(self.device or "cpu")
        if not isinstance(model, torch.nn.Module):
            raise TypeError(
                f"RewardModel model must be a name, a path or a sequence-classification module, got "
                f"{type(model).__name__}: {model!r}"
            )
        return model

    def _load_tokenizer(
        self, tokenizer: str | PreTrainedTokenizerBase | None, model: str | torch.nn.Module
    ) -> PreTrainedTokenizerBase:
        if tokenizer is None:
            source = model if isinstance(model, str) else self._config._name_or_path
            if not source:
                raise ValueError(
                    f"RewardModel({describe(model)}) has no saved tokenizer path; pass tokenizer="
                )
            try:
                tokenizer = load_tokenizer(source, argument="RewardModel tokenizer (from the model)")
            except ValueError as err:
                raise ValueError(
                    f"cannot load the tokenizer of reward model {describe(model)}: {err}; pass tokenizer="
                ) from err
        elif isinstance(tokenizer, str):
            tokenizer = load_tokenizer(tokenizer, argument="RewardModel tokenizer")
        elif isinstance(tokenizer, PreTrainedTokenizerBase):
            # Padding and truncation sides are set below: on a copy, not on the user's object.
            tokenizer = copy.deepcopy(tokenizer)
        else:
            raise TypeError(
                f"RewardModel tokenizer must be a tokenizer, a name or a path, got {type(tokenizer).__name__}"
            )
        tokenizer.padding_side = "right"
        tokenizer.truncation_side = "left"
        return tokenizer

    @property
    def _config(self) -> Any:
        """The model's transformers config (``Module.__getattr__`` is typed as returning a tensor)."""
        return self.model.config

    def _resolve_label(self, label: int | str | None) -> int:
        config = self._config
        num_labels = int(config.num_labels)
        names = {str(v): int(k) for k, v in (config.id2label or {}).items()}
        if label is None:
            if num_labels > 2:
                raise ValueError(
                    f"reward model {describe(self.model)} has {num_labels} labels {config.id2label}; choose one with label="
                )
            return num_labels - 1
        if isinstance(label, str) and label in names:
            return names[label]
        if isinstance(label, str) and label.isdigit():
            label = int(label)
        if isinstance(label, numbers.Integral) and not isinstance(label, bool) and 0 <= label < num_labels:
            return int(label)
        raise ValueError(
            f"reward model {describe(self.model)} has no label {label!r}; expected an index in [0, {num_labels}) "
            f"or one of {sorted(names)}"
        )

    def _max_length(self) -> int | None:
        limits = [int(self.tokenizer.model_max_length)] if self.tokenizer.model_max_length < _NO_LIMIT else []
        for key in ("n_positions", "max_position_embeddings"):
            value = getattr(self._config, key, None)
            if isinstance(value, int) and value > 0:
                limits.append(value)
        return min(limits) if limits else None

    def _set_pad_token(self) -> None:
        if self.tokenizer.pad_token_id is None:
            if self.tokenizer.eos_token is None:
                raise ValueError(
                    f"the tokenizer of reward model {describe(self.model)} has neither a pad nor an EOS token; "
                    "give it a pad token (tokenizer.pad_token = ...)"
                )
            self.tokenizer.pad_token = self.tokenizer.eos_token
        # Classifiers such as GPT2ForSequenceClassification find the last real token through
        # config.pad_token_id and refuse batches without it.
        if getattr(self._config, "pad_token_id", None) is None:
            self._config.pad_token_id = self.tokenizer.pad_token_id
        self.pad_token_id = int(self._config.pad_token_id)
        empty = (
            self.tokenizer.bos_token_id
            if self.tokenizer.bos_token_id is not None
            else self.tokenizer.eos_token_id
        )
        self.empty_token_id = self.pad_token_id if empty is None else int(empty)

    def attach(self, ctx: ScorerContext) -> None:
        if self._loaded and self.device is None:
            self.model.to(ctx.device)
        if self.text == "prompt+generation":
            # Fail at construction, not after the first episode, when the tokenizer cannot read the prompts.
            self._encode([p.text for p in ctx.prompts[: self.batch_size]])

    def inputs(self, batch: EpisodeBatch) -> list[str]:
        """The texts the model reads, one per episode."""
        if self.text == "generation":
            return list(batch.texts)
        return [p + t for p, t in zip(batch.prompts, batch.texts)]

    def _encode(self, texts: list[str]) -> dict[str, torch.Tensor]:
        try:
            enc = self.tokenizer(
                texts,
                padding=True,
                truncation=self.max_length is not None,
                max_length=self.max_length,
                return_tensors="pt",
            )
        except Exception as err:
            raise ValueError(
                f"the tokenizer of reward model {describe(self.model)} cannot encode {texts!r}: {type(err).__name__}: {err}"
            ) from err
        ids, mask = enc["input_ids"], enc["attention_mask"]
        lengths = mask.sum(1)
        for i, text in enumerate(texts):
            if lengths[i] == 0 and text:
                raise ValueError(
                    f"the tokenizer of reward model {describe(self.model)} encodes the non-empty text {text!r} "
                    "as no tokens; use the model's own tokenizer (tokenizer=)"
                )
        if (lengths == 0).any():
            # An empty input is read as one BOS/EOS token: the classifier needs at least one.
            empty = lengths == 0
            if ids.shape[1] == 0:  # every text of the batch is empty
                ids, mask = ids.new_zeros(len(texts), 1), mask.new_zeros(len(texts), 1)
            ids[empty, 0] = self.empty_token_id
            mask[empty, 0] = 1
        ids = ids.masked_fill(mask == 0, self.pad_token_id)
        return {"input_ids": ids, "attention_mask": mask}

    @torch.no_grad()
    def score_texts(self, texts: Sequence[str]) -> list[float]:
        """The reward of each full input text (what :meth:`score` computes after :meth:`inputs`)."""
        device = module_device(self.model)
        values: list[float] = []
        for start in range(0, len(texts), self.batch_size):
            enc = self._encode(list(texts[start : start + self.batch_size]))
            logits = self.model(**{k: v.to(device) for k, v in enc.items()}).logits.float()  # (b, num_labels)
            values.extend(self._read(logits).tolist())
        return values

    def _read(self, logits: torch.Tensor) -> torch.Tensor:
        if self.output == "logit":
            return logits[:, self.label]
        if logits.shape[-1] == 1:
            return torch.sigmoid(logits[:, 0])
        return torch.softmax(logits, dim=-1)[:, self.label]

    def score(self, batch: EpisodeBatch) -> Sequence[float]:
        return self.score_texts(self.inputs(batch))

    def __repr__(self) -> str:
        return f"RewardModel({describe(self.model)}, label={self.label}, output={self.output!r})"
