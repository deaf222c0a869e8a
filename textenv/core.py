"""The batched episode state and scoring shared by :class:`TextGenEnv` and :class:`TextGenVectorEnv`.

Both envs are thin Gymnasium shells around :class:`TextGenCore`, so a single env and a row of the
vector env behave identically by construction.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import numpy as np
import torch
from transformers import PreTrainedTokenizerBase

from textenv.lm import resolve_device
from textenv.prompts import Prompt, load_prompts
from textenv.scorers.base import EpisodeBatch, Scorer, ScorerContext, call_scorer, check_scores
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
        kl: (B,) float64 KL(policy || reference) of each row's token on this step, summed over the
            env's ``KLPenalty`` terms (0 for inactive rows); ``None`` when the reward has no KL term.
    """

    rewards: np.ndarray
    terminated: np.ndarray
    infos: dict[int, dict[str, Any]] = field(default_factory=dict)
    kl: np.ndarray | None = None


def _as_prompt(choice: object) -> Prompt:
    if isinstance(choice, Prompt):
        return choice
    raise TypeError(f"a prompt choice must be a source index, a text or a Prompt, got {choice!r}")


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
        from textenv.scorers.kl import KLPenalty

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
        self.prompt_column = prompt_column
        self.prompts = load_prompts(
            assets.path("review-prompts") if prompts is None else prompts, column=prompt_column
        )
        # Text -> first index in the source, so reset(options={"prompt": text}) keeps its references.
        self._index_of: dict[str, int] = {}
        for i, p in enumerate(self.prompts):
            self._index_of.setdefault(p.text, i)
        self.prompt_ids, self.prompt_mask = self.encode_prompts(self.prompts, warn=True)  # (N, P)
        self.reward = as_scorer(reward)
        self.terms = self.reward.terms()
        self.kl_terms: list[KLPenalty] = [s for _, _, s in self.terms if isinstance(s, KLPenalty)]
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
            # verbose=False: prompts longer than the tokenizer's limit are expected (they keep their tail).
            texts = [prompts[i].text for i in plain]
            for i, row in zip(plain, self.tokenizer(texts, verbose=False)["input_ids"]):
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
        self,
        rows: Sequence[int],
        prompts: Sequence[int | str | Prompt] = (),
        *,
        indices: Sequence[int] | None = None,
        texts: Sequence[str] = (),
    ) -> None:
        """Starts new episodes in ``rows``: each from a source index, a text or an ad-hoc prompt record.

        A text of the prompt source starts from that prompt (its references and metadata included);
        other texts and records are tokenised now. Raises before changing anything.

        Args:
            rows: The rows to restart.
            prompts: One source index, text or :class:`~textenv.prompts.Prompt` per row.
            indices: Same as ``prompts`` with source indices only (older spelling).
            texts: Same as ``prompts`` with texts only (older spelling).
        """
        prompts = list(indices) if indices is not None else list(texts) if texts else list(prompts)
        choices: list[int | Prompt] = [
            self._index_of.get(p, Prompt(text=p)) if isinstance(p, str) else p for p in prompts
        ]
        records = [self.prompts[c] if isinstance(c, int) else _as_prompt(c) for c in choices]
        ids, mask = self._prompt_tensors(choices, records)  # (R, P)
        row_index = torch.as_tensor(list(rows), dtype=torch.long, device=self.device)
        P = self.max_prompt_tokens
        self.input_ids[row_index] = self.pad_token_id
        self.attention_mask[row_index] = 0
        self.input_ids[row_index, :P] = ids
        self.attention_mask[row_index, :P] = mask
        self.num_generated[row_index] = 0
        self.done[row_index] = False
        self.term_totals[:, row_index] = 0
        for r, p in zip(rows, records):
            self.row_prompts[r] = p
        for _, _, scorer in self.terms:
            if scorer.dense:
                scorer.reset_rows(row_index, ids, mask)

    def _prompt_tensors(
        self, choices: Sequence[int | Prompt], records: Sequence[Prompt]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(R, P) ids and mask of the chosen prompts: cached rows for source indices, new ones for the rest."""
        if all(isinstance(c, int) for c in choices):
            index = torch.as_tensor(list(choices), dtype=torch.long, device=self.device)
            return self.prompt_ids[index], self.prompt_mask[index]
        new = [i for i, c in enumerate(choices) if not isinstance(c, int)]
        new_ids, new_mask = self.encode_prompts([records[i] for i in new], warn=True)
        ids = torch.empty(len(choices), self.max_prompt_tokens, dtype=torch.long, device=self.device)
        mask = torch.empty_like(ids)
        for j, i in enumerate(new):
            ids[i], mask[i] = new_ids[j], new_mask[j]
        for i, c in enumerate(choices):
            if isinstance(c, int):
                ids[i], mask[i] = self.prompt_ids[c], self.prompt_mask[c]
        return ids, mask

    def step(self, actions: torch.Tensor, active: torch.Tensor) -> StepOutput:
        """Appends ``actions`` (B,) to the active rows (B,) bool and returns their rewards.

        A step happens whole or not at all: if a scorer raises (or returns an unusable value) the
        rows, their totals and every dense scorer are left exactly as before the call.

        Raises:
            ScorerError: A term raised or returned something other than one finite float per row.
        """
        actions = actions.to(self.device, torch.long)
        active = active.to(self.device, torch.bool) & ~self.done
        # Every row writes at its next free position; inactive rows write back what is there. No
        # row indexing by a nonzero() mask, so the only host sync of a step is reading `terminated`.
        pos = (self.max_prompt_tokens + self.num_generated).clamp_(max=self.length - 1).unsqueeze(1)  # (B, 1)
        before = (self.input_ids.gather(1, pos), self.attention_mask.gather(1, pos))  # (B, 1) each
        num_generated, done = self.num_generated.clone(), self.done.clone()
        self.input_ids.scatter_(1, pos, torch.where(active.unsqueeze(1), actions.unsqueeze(1), before[0]))
        self.attention_mask.scatter_(1, pos, before[1] | active.unsqueeze(1))
        self.num_generated += active
        is_eos = torch.isin(actions, self._eos) & active
        terminated = is_eos | (active & (self.num_generated >= self.max_new_tokens))
        self.done |= terminated
        try:
            dense = self._dense_rewards(actions, active)  # (K, B), no scorer advanced yet
            terminated_np = terminated.cpu().numpy()
            finished = np.flatnonzero(terminated_np).tolist()
            batch = self.episode_batch(finished, is_eos) if finished else None
            terminal = self._score(batch, finished) if batch is not None else None  # (K, R)
        except BaseException:
            # Undo the token writes: a failed step leaves no trace.
            self.input_ids.scatter_(1, pos, before[0])
            self.attention_mask.scatter_(1, pos, before[1])
            self.num_generated.copy_(num_generated)
            self.done.copy_(done)
            raise
        for _, _, scorer in self.terms:
            if scorer.dense:
                scorer.advance_rows(actions, active)
        self.term_totals += dense
        rewards = dense.sum(0)
        infos: dict[int, dict[str, Any]] = {}
        if terminal is not None and batch is not None:
            index = torch.as_tensor(finished, device=self.device)
            self.term_totals[:, index] += terminal
            rewards[index] += terminal.sum(0)
            infos = self._end_infos(batch, finished)
        kl = torch.stack([t.step_kl() for t in self.kl_terms]).sum(0).cpu().numpy() if self.kl_terms else None
        return StepOutput(rewards=rewards.cpu().numpy(), terminated=terminated_np, infos=infos, kl=kl)

    def _row_texts(self) -> list[str]:
        return [p.text if p is not None else "" for p in self.row_prompts]

    def _dense_rewards(self, actions: torch.Tensor, active: torch.Tensor) -> torch.Tensor:
        """(K, B) float64 weighted rewards of the dense terms for this step (0 for terminal terms).

        Each weighted value and their sum per row are checked finite, as each value is.
        """
        out = torch.zeros(len(self.terms), self.num_rows, dtype=torch.float64, device=self.device)
        if not self.reward.dense:
            return out
        prompts = self._row_texts()
        for k, (name, weight, scorer) in enumerate(self.terms):
            if scorer.dense:
                values = call_scorer(name, scorer, partial(scorer.step_rows, actions, active), prompts)
                checked = check_scores(
                    name, scorer, values, prompts=prompts, active=active, device=self.device, weight=weight
                )
                out[k] = torch.where(active, checked, torch.zeros_like(checked))
        # The sum of finite terms may still overflow.
        check_scores(
            "sum of the terms", self.reward, out.sum(0), prompts=prompts, active=active, device=self.device
        )
        return out

    def set_policy_logprobs(self, logprobs: object) -> None:
        """Hands the policy's log-probs for the next :meth:`step` to every ``KLPenalty`` term.

        Args:
            logprobs: ``(B,)`` log-prob of each row's action or ``(B, V)`` log-probs over the vocabulary
                (see :meth:`KLPenalty.set_policy_logprobs <textenv.scorers.kl.KLPenalty.set_policy_logprobs>`).

        Raises:
            ValueError: The reward has no KL term, or the shape fits neither layout.
        """
        if not self.kl_terms:
            raise ValueError(
                "set_policy_logprobs: the env's reward has no KLPenalty term to hand log-probs to"
            )
        for term in self.kl_terms:
            term.set_policy_logprobs(logprobs)

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
        """(K, R) weighted terminal rewards of the finished ``rows``: one batched call per term.

        Each weighted value and their sum per row are checked finite, as each value is.
        """
        out = torch.zeros(len(self.terms), len(rows), dtype=torch.float64, device=self.device)
        for k, (name, weight, scorer) in enumerate(self.terms):
            values = call_scorer(name, scorer, partial(scorer.score, batch), batch.prompts)
            out[k] = check_scores(
                name,
                scorer,
                values,
                prompts=batch.prompts,
                texts=batch.texts,
                device=self.device,
                weight=weight,
            )
        check_scores(
            "sum of the terms",
            self.reward,
            out.sum(0),
            prompts=batch.prompts,
            texts=batch.texts,
            device=self.device,
        )
        return out

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

    @property
    def kl_penalties(self) -> list[Any]:
        """The ``KLPenalty`` terms of the reward (their ``coef`` is what a KL controller sets); may be empty."""
        return list(self.core.kl_terms)

    def set_policy_logprobs(self, logprobs: object) -> None:
        """The KL channel: hands the policy's log-probs of the next step's actions to the env's KL terms.

        An agent that samples its actions calls this before each ``step`` (``(B,)`` log-prob of each
        row's action, or ``(B, V)`` log-probs over the vocabulary; one row for the single env); the
        step's info then holds ``info["kl"]``, the KL of each row's token. Agents that cannot hand
        log-probs over bind their policy to the term instead (``KLPenalty.bind``).

        Example:
            >>> env.unwrapped.set_policy_logprobs(logp)  # doctest: +SKIP
            >>> obs, reward, terminated, truncated, info = env.step(actions)  # info["kl"]

        Raises:
            ValueError: The reward has no KL term, or the shape fits neither layout.
        """
        self.core.set_policy_logprobs(logprobs)
