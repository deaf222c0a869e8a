"""The batched episode state and scoring shared by :class:`TextGenEnv` and :class:`TextGenVectorEnv`.

Both envs are thin Gymnasium shells around :class:`TextGenCore`, so a single env and a row of the
vector env behave identically by construction.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from transformers import PreTrainedTokenizerBase

from textenv.lm import resolve_device
from textenv.prompts import Prompt, load_prompts
from textenv.scorers.base import EpisodeBatch, Scorer, ScorerContext, ScorerError, check_scores
from textenv.tokenization import load_tokenizer, resolve_eos_ids, resolve_pad_id

DEFAULT_MAX_PROMPT_TOKENS = 16
DEFAULT_MAX_NEW_TOKENS = 24


@dataclass
class StepOutput:
    """What one step of all rows produced.

    Attributes:
        rewards: (B,) float64 reward of each row (0 for inactive rows).
        terminated: (B,) bool, rows whose episode ended on this step.
        infos: End-of-episode info of each row that finished, by row index.
    """

    rewards: np.ndarray
    terminated: np.ndarray
    infos: dict[int, dict[str, Any]] = field(default_factory=dict)


def _check_positive_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}: {value!r}")
    if value < 1:
        raise ValueError(f"{name} must be >= 1, got {value}")
    return int(value)


class TextGenCore:
    """Episode state of ``num_rows`` rows plus the reward; see ARCHITECTURE.md for the layout.

    Args:
        tokenizer: Name, local path or tokenizer object.
        prompts: Any source :func:`textenv.prompts.load_prompts` accepts.
        reward: Anything :func:`textenv.scorers.as_scorer` accepts.
        max_prompt_tokens: P, prompt positions (longer prompts keep their last P tokens).
        max_new_tokens: T, the episode's length cap.
        vocab_size: Action-space width; defaults to ``len(tokenizer)``.
        eos_token_id: EOS id or ids; defaults to the tokenizer's.
        num_rows: Episodes stepped together.
        device: Where the row tensors (and dense scorers' models) live.
        prompt_column: Key/column of the prompt text in dict, CSV and dataset sources.
        chat_template: Render prompts with the tokenizer's chat template: ``"auto"`` the prompts
            that hold ``messages``, ``True`` every prompt (a plain one as a single user message),
            ``False`` none (a chat prompt is then its plain text).
    """

    def __init__(
        self,
        *,
        tokenizer: str | PreTrainedTokenizerBase | None = None,
        prompts: object = None,
        reward: object = None,
        max_prompt_tokens: int = DEFAULT_MAX_PROMPT_TOKENS,
        max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
        vocab_size: int | None = None,
        eos_token_id: int | Sequence[int] | None = None,
        num_rows: int = 1,
        device: str | torch.device = "cpu",
        prompt_column: str = "prompt",
        chat_template: bool | str = "auto",
    ):
        from textenv import assets
        from textenv.scorers import as_scorer

        self.max_prompt_tokens = _check_positive_int("max_prompt_tokens", max_prompt_tokens)
        self.max_new_tokens = _check_positive_int("max_new_tokens", max_new_tokens)
        self.num_rows = _check_positive_int("num_rows", num_rows)
        if not (isinstance(chat_template, bool) or chat_template == "auto"):
            raise ValueError(f"chat_template must be True, False or 'auto', got {chat_template!r}")
        self.chat_template = chat_template
        self.device = resolve_device(device)
        self.tokenizer = load_tokenizer(assets.path("tiny-tokenizer") if tokenizer is None else tokenizer)
        self.vocab_size = self._resolve_vocab_size(vocab_size)
        self.eos_token_ids = resolve_eos_ids(self.tokenizer, eos_token_id, self.vocab_size)
        self.pad_token_id = resolve_pad_id(self.tokenizer, self.eos_token_ids, self.vocab_size)
        self.prompts = load_prompts(
            assets.path("review-prompts") if prompts is None else prompts, column=prompt_column
        )
        self.prompt_ids, self.prompt_mask = self.encode_prompts(self.prompts, warn=True)  # (N, P)
        self.reward = as_scorer(reward)
        self.terms = self.reward.terms()
        self.reward.attach(
            ScorerContext(
                tokenizer=self.tokenizer,
                prompts=self.prompts,
                num_rows=self.num_rows,
                max_prompt_tokens=self.max_prompt_tokens,
                max_new_tokens=self.max_new_tokens,
                vocab_size=self.vocab_size,
                device=self.device,
            )
        )
        self._eos = torch.tensor(self.eos_token_ids, device=self.device)
        length = self.max_prompt_tokens + self.max_new_tokens
        self.input_ids = torch.full(
            (self.num_rows, length), self.pad_token_id, dtype=torch.long, device=self.device
        )
        self.attention_mask = torch.zeros((self.num_rows, length), dtype=torch.long, device=self.device)
        self.num_generated = torch.zeros(self.num_rows, dtype=torch.long, device=self.device)  # (B,)
        self.done = torch.ones(self.num_rows, dtype=torch.bool, device=self.device)  # (B,) no episode yet
        self.row_prompts: list[Prompt | None] = [None] * self.num_rows
        self.term_totals = torch.zeros(
            len(self.terms), self.num_rows, dtype=torch.float64, device=self.device
        )

    def _resolve_vocab_size(self, vocab_size: int | None) -> int:
        tokenizer_size = len(self.tokenizer)
        if vocab_size is None:
            return tokenizer_size
        vocab_size = _check_positive_int("vocab_size", vocab_size)
        if vocab_size < tokenizer_size:
            raise ValueError(
                f"vocab_size={vocab_size} is smaller than the tokenizer's {tokenizer_size} tokens; "
                "expected the policy's logits width, at least len(tokenizer)"
            )
        return vocab_size

    @property
    def length(self) -> int:
        """Observation length ``P + T``."""
        return self.input_ids.shape[1]

    def encode_prompts(
        self, prompts: Sequence[Prompt], *, warn: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Tokenises prompts into left-padded (N, P) ids and mask; long prompts keep their tail."""
        P = self.max_prompt_tokens
        encoded = self._token_ids(prompts)
        ids = torch.full((len(prompts), P), self.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(prompts), P), dtype=torch.long)
        truncated = 0
        for i, row in enumerate(encoded):
            if not row:
                raise ValueError(
                    f"prompt {i} ({prompts[i].text!r}) tokenises to no tokens; expected at least one"
                )
            if max(row) >= self.vocab_size:
                raise ValueError(f"prompt {i} has token id {max(row)} >= vocab_size={self.vocab_size}")
            truncated += len(row) > P
            row = row[-P:]
            ids[i, P - len(row) :] = torch.tensor(row)
            mask[i, P - len(row) :] = 1
        if warn and truncated:
            warnings.warn(
                f"{truncated} of {len(prompts)} prompts are longer than max_prompt_tokens={P}; "
                f"they keep their last {P} tokens",
                stacklevel=4,
            )
        return ids.to(self.device), mask.to(self.device)

    def _token_ids(self, prompts: Sequence[Prompt]) -> list[list[int]]:
        """Each prompt's ids: its chat rendered by the chat template (the template's own ids), or its text."""
        chats = [self._chat(p) for p in prompts]
        plain = [i for i, chat in enumerate(chats) if chat is None]
        ids: list[list[int]] = [[] for _ in prompts]
        if plain:
            for i, row in zip(plain, self.tokenizer([prompts[i].text for i in plain])["input_ids"]):
                ids[i] = row
        for i, chat in enumerate(chats):
            if chat is not None:
                if not getattr(self.tokenizer, "chat_template", None):
                    raise ValueError(
                        f"prompt {i} ({prompts[i].text!r}) is a chat to render with the tokenizer's chat template, "
                        f"but tokenizer {type(self.tokenizer).__name__} ({self.tokenizer.name_or_path!r}) has none; "
                        "set tokenizer.chat_template, use an instruction-tuned model's tokenizer, or pass "
                        "chat_template=False to use the plain prompt text"
                    )
                # Tokenised by the template itself: no decode and re-encode, so no drift in the ids.
                rendered = self.tokenizer.apply_chat_template(
                    chat, tokenize=True, add_generation_prompt=True, return_dict=False
                )
                ids[i] = [int(t) for t in rendered]  # type: ignore[arg-type]  # tokenize=True, return_dict=False: ids
        return ids

    def _chat(self, prompt: Prompt) -> list[dict[str, str]] | None:
        if self.chat_template is False or (self.chat_template == "auto" and not prompt.messages):
            return None
        return [dict(m) for m in prompt.messages] or [{"role": "user", "content": prompt.text}]

    def reset_rows(
        self, rows: Sequence[int], indices: Sequence[int] | None = None, texts: Sequence[str] = ()
    ) -> None:
        """Starts new episodes in ``rows``: prompts by index into the source, or ad-hoc texts."""
        if indices is not None:
            prompts = [self.prompts[i] for i in indices]
            index = torch.as_tensor(list(indices), device=self.device)
            ids, mask = self.prompt_ids[index], self.prompt_mask[index]
        else:
            prompts = [Prompt(text=t) for t in texts]
            ids, mask = self.encode_prompts(load_prompts(list(texts)), warn=True)
        row_index = torch.as_tensor(list(rows), dtype=torch.long, device=self.device)
        P = self.max_prompt_tokens
        self.input_ids[row_index] = self.pad_token_id
        self.attention_mask[row_index] = 0
        self.input_ids[row_index, :P] = ids
        self.attention_mask[row_index, :P] = mask
        self.num_generated[row_index] = 0
        self.done[row_index] = False
        self.term_totals[:, row_index] = 0
        for r, p in zip(rows, prompts):
            self.row_prompts[r] = p
        for _, _, scorer in self.terms:
            if scorer.dense:
                scorer.reset_rows(row_index, ids, mask)

    def step(self, actions: torch.Tensor, active: torch.Tensor) -> StepOutput:
        """Appends ``actions`` (B,) to the active rows (B,) bool and returns their rewards."""
        actions = actions.to(self.device, torch.long)
        active = active.to(self.device, torch.bool) & ~self.done
        # Every row writes at its next free position; inactive rows write back what is there. No
        # row indexing by a nonzero() mask, so the only host sync of a step is reading `terminated`.
        pos = (self.max_prompt_tokens + self.num_generated).clamp_(max=self.length - 1).unsqueeze(1)  # (B, 1)
        token = torch.where(active, actions, self.input_ids.gather(1, pos).squeeze(1))
        seen = self.attention_mask.gather(1, pos).squeeze(1) | active
        self.input_ids.scatter_(1, pos, token.unsqueeze(1))
        self.attention_mask.scatter_(1, pos, seen.unsqueeze(1))
        self.num_generated += active
        is_eos = torch.isin(actions, self._eos) & active
        terminated = is_eos | (active & (self.num_generated >= self.max_new_tokens))
        self.done |= terminated

        dense_total = None
        for k, (_, weight, scorer) in enumerate(self.terms):
            if scorer.dense:
                dense = weight * scorer.step_rows(actions, active).to(torch.float64) * active
                dense_total = dense if dense_total is None else dense_total + dense
                self.term_totals[k] += dense

        terminated_np = terminated.cpu().numpy()
        rewards = np.zeros(self.num_rows) if dense_total is None else dense_total.cpu().numpy()
        infos: dict[int, dict[str, Any]] = {}
        if terminated_np.any():
            finished = np.flatnonzero(terminated_np).tolist()
            batch = self.episode_batch(finished, is_eos)
            rewards = rewards + self._score(batch, finished).cpu().numpy()
            infos = self._end_infos(batch, finished)
        return StepOutput(rewards=rewards, terminated=terminated_np, infos=infos)

    def generated_ids(self, row: int) -> list[int]:
        """Token ids generated so far in ``row`` (EOS included)."""
        P = self.max_prompt_tokens
        return self.input_ids[row, P : P + int(self.num_generated[row])].tolist()

    def episode_batch(self, rows: Sequence[int], is_eos: torch.Tensor) -> EpisodeBatch:
        """The finished episodes of ``rows`` as scorers see them."""
        token_ids = [self.generated_ids(r) for r in rows]
        eos = is_eos[torch.as_tensor(list(rows), device=self.device)].tolist()
        texts = self.tokenizer.batch_decode(
            [ids[:-1] if e else ids for ids, e in zip(token_ids, eos)], skip_special_tokens=True
        )
        prompts = [self.row_prompts[r] for r in rows]
        P = self.max_prompt_tokens
        return EpisodeBatch(
            prompts=[p.text for p in prompts],  # type: ignore[union-attr]
            prompt_ids=[self.input_ids[r, :P][self.attention_mask[r, :P].bool()].tolist() for r in rows],
            texts=texts,
            token_ids=token_ids,
            references=[list(p.references) for p in prompts],  # type: ignore[union-attr]
            metadata=[dict(p.metadata) for p in prompts],  # type: ignore[union-attr]
            finish_reasons=["eos" if e else "length" for e in eos],
        )

    def _score(self, batch: EpisodeBatch, rows: list[int]) -> torch.Tensor:
        """Terminal rewards of the finished ``rows``: one batched call per term."""
        index = torch.as_tensor(rows, device=self.device)
        extra = torch.zeros(self.num_rows, dtype=torch.float64, device=self.device)
        for k, (name, weight, scorer) in enumerate(self.terms):
            try:
                values = scorer.score(batch)
            except ScorerError:
                raise
            except Exception as err:
                raise ScorerError(
                    f"scorer {scorer!r} (term {name!r}) raised {type(err).__name__}: {err} "
                    f"while scoring prompts {batch.prompts!r}"
                ) from err
            term = weight * torch.as_tensor(check_scores(name, scorer, values, batch), device=self.device)
            extra[index] += term
            self.term_totals[k, index] += term
        return extra

    def _end_infos(self, batch: EpisodeBatch, rows: list[int]) -> dict[int, dict[str, Any]]:
        totals = self.term_totals[:, torch.as_tensor(rows, device=self.device)].cpu().numpy()  # (K, R)
        return {
            r: {
                "prompt": batch.prompts[i],
                "text": batch.texts[i],
                "finish_reason": batch.finish_reasons[i],
                "num_tokens": len(batch.token_ids[i]),
                "reward_terms": {name: float(totals[k, i]) for k, (name, _, _) in enumerate(self.terms)},
            }
            for i, r in enumerate(rows)
        }

    def render_row(self, row: int) -> str:
        """Prompt and generation so far of ``row`` as text."""
        prompt = self.row_prompts[row]
        if prompt is None:
            return ""
        text = self.tokenizer.decode(self.generated_ids(row), skip_special_tokens=True)
        return f"{prompt.text}\u2502{text}"


class CoreAttributes:
    """The attributes agents and wrappers read, shared by both envs (each has a ``core``)."""

    core: TextGenCore

    @property
    def tokenizer(self) -> PreTrainedTokenizerBase:
        return self.core.tokenizer

    @property
    def max_prompt_tokens(self) -> int:
        return self.core.max_prompt_tokens

    @property
    def max_new_tokens(self) -> int:
        return self.core.max_new_tokens

    @property
    def eos_token_id(self) -> tuple[int, ...]:
        return self.core.eos_token_ids

    @property
    def reward(self) -> Scorer:
        """The scorer (a ``Scorer`` or ``CompositeScorer``) that computes rewards."""
        return self.core.reward
