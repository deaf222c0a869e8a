"""The batched episode state and scoring shared by :class:`~textenv.env.TextGenEnv` and :class:`~textenv.vector.TextGenVectorEnv`.

Both envs are thin Gymnasium shells around :class:`TextGenCore`, so a single env and a row of the
vector env behave identically by construction.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import numpy as np
import torch
from transformers import PreTrainedTokenizerBase

from textenv.conversation import Conversations, TurnPlan
from textenv.multiturn import POLICY_ROLE, Turn
from textenv.options import TextOptions
from textenv.prompts import Prompt
from textenv.scorers.base import (
    EpisodeBatch,
    NoReward,
    Scorer,
    ScorerContext,
    ScorerError,
    call_scorer,
    check_scores,
)
from textenv.scorers.kl import DEFERRABLE_ESTIMATORS, DeferredKL, KLPenalty
from textenv.text_spec import TextSpec, check_positive_int


@dataclass
class StepOutput:
    """What one step of all rows produced.

    Attributes:
        rewards: (B,) float64 reward of each row (0 for inactive rows).
        terminated: (B,) bool, rows whose episode ended on this step.
        infos: End-of-episode info of each row that finished, by row index.
        kl: (B,) float64 KL(policy || reference) of each row's token on this step, summed over the
            env's ``KLPenalty`` terms (0 for inactive rows); ``None`` when the reward has no KL term.
        turn_ended: (B,) bool, rows whose policy turn ended on this step (multi-turn; else ``None``).
        inserted: (B,) int, how many tokens the env appended after each row's token (multi-turn; else ``None``).
    """

    rewards: np.ndarray
    terminated: np.ndarray
    infos: dict[int, dict[str, Any]] = field(default_factory=dict)
    kl: np.ndarray | None = None
    turn_ended: np.ndarray | None = None
    inserted: np.ndarray | None = None


RESPONDER_TERM = "responder"
"""The name under which ``info["reward_terms"]`` reports a multi-turn env's responder rewards."""


def _as_prompt(choice: object) -> Prompt:
    if isinstance(choice, Prompt):
        return choice
    raise TypeError(f"a prompt choice must be a source index, a text or a Prompt, got {choice!r}")


class TextGenCore:
    """Episode state of ``num_rows`` rows plus the reward; see ARCHITECTURE.md for the layout.

    Args:
        options: The env's :class:`~textenv.options.TextOptions`.
        num_rows: Episodes stepped together.
    """

    def __init__(self, options: TextOptions, *, num_rows: int = 1):
        from textenv.scorers import as_scorer

        self.num_rows = check_positive_int("num_rows", num_rows)
        self.options = options
        self.spec = TextSpec.from_options(options)
        self.device = self.spec.device
        # Text -> first index in the source, so reset(options={"prompt": text}) keeps its references.
        self._index_of: dict[str, int] = {}
        for i, p in enumerate(self.spec.prompts):
            self._index_of.setdefault(p.text, i)
        self.prompt_ids, self.prompt_mask = self.spec.encode_prompts(self.spec.prompts, warn=True)  # (N, P)
        # A multi-turn env's responder may give every reward: then no scorer term unless one is asked for.
        no_terms = options.reward is None and self.spec.multi_turn
        self.reward = NoReward() if no_terms else as_scorer(options.reward)
        self.terms = self.reward.terms()
        self.kl_terms: list[KLPenalty] = [s for _, _, s in self.terms if isinstance(s, KLPenalty)]
        # A multi-turn env's responder rewards count as one more term of every episode's return.
        self.term_names = [n for n, _, _ in self.terms] + ([RESPONDER_TERM] if self.spec.multi_turn else [])
        spec = self.spec
        self.reward.attach(
            ScorerContext(
                tokenizer=spec.tokenizer,
                prompts=spec.prompts,
                num_rows=self.num_rows,
                max_prompt_tokens=spec.max_prompt_tokens,
                max_new_tokens=spec.max_new_tokens,
                vocab_size=spec.vocab_size,
                device=self.device,
            )
        )
        self._eos = torch.tensor(spec.eos_token_ids, device=self.device)
        B, L = self.num_rows, spec.length
        self.input_ids = torch.full((B, L), spec.pad_token_id, dtype=torch.long, device=self.device)
        self.attention_mask = torch.zeros((B, L), dtype=torch.long, device=self.device)
        self.policy_mask = torch.zeros((B, L), dtype=torch.long, device=self.device)  # 1: the policy's tokens
        self.num_generated = torch.zeros(
            B, dtype=torch.long, device=self.device
        )  # (B,) positions used after P
        self.done = torch.ones(B, dtype=torch.bool, device=self.device)  # (B,) no episode yet
        self.row_prompts: list[Prompt | None] = [None] * B
        self.term_totals = torch.zeros(len(self.term_names), B, dtype=torch.float64, device=self.device)
        self.conversations = Conversations(self, options.responder) if self.spec.multi_turn else None

    # The spec's fields the core's own code reads most (read-only views).
    @property
    def tokenizer(self) -> PreTrainedTokenizerBase:
        return self.spec.tokenizer

    @property
    def max_prompt_tokens(self) -> int:
        return self.spec.max_prompt_tokens

    @property
    def max_new_tokens(self) -> int:
        return self.spec.max_new_tokens

    @property
    def prompts(self) -> tuple[Prompt, ...]:
        return self.spec.prompts

    @property
    def length(self) -> int:
        """Observation length ``P + T``."""
        return self.spec.length

    def reset_rows(
        self,
        rows: Sequence[int],
        prompts: Sequence[int | str | Prompt],
    ) -> None:
        """Starts new episodes in ``rows``: each from a source index, a text or an ad-hoc prompt record.

        A text of the prompt source starts from that prompt (its references and metadata included);
        other texts and records are tokenised now. Raises before changing anything.

        Args:
            rows: The rows to restart.
            prompts: One source index, text or :class:`~textenv.prompts.Prompt` per row.
        """
        choices: list[int | Prompt] = [
            self._index_of.get(p, Prompt(text=p)) if isinstance(p, str) else p for p in prompts
        ]
        records = [self.prompts[c] if isinstance(c, int) else _as_prompt(c) for c in choices]
        ids, mask = self._prompt_tensors(choices, records)  # (R, P)
        if self.conversations is not None:
            self.conversations.check_reset(list(rows), records)
            self.conversations.reset(list(rows))
        row_index = torch.as_tensor(list(rows), dtype=torch.long, device=self.device)
        P = self.max_prompt_tokens
        self.input_ids[row_index] = self.spec.pad_token_id
        self.attention_mask[row_index] = 0
        self.policy_mask[row_index] = 0
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
        new_ids, new_mask = self.spec.encode_prompts([records[i] for i in new], warn=True)
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

        In a multi-turn env, a row whose policy turn ends on this step gets the responder's reward, and its
        reply's tokens are appended after the action (or its episode ends).

        A step happens whole or not at all: if a scorer or the responder raises (or returns an unusable
        value) the rows, their totals, their conversations and every dense scorer are left exactly as
        before the call.

        Raises:
            ScorerError: A term raised or returned something other than one finite float per row.
            ResponderError: The responder raised or returned something that is not a reply.
        """
        actions = actions.to(self.device, torch.long)
        active = active.to(self.device, torch.bool) & ~self.done
        # Every row writes at its next free position; inactive rows write back what is there. No
        # row indexing by a nonzero() mask, so the only host sync of a single-turn step is reading
        # `terminated`.
        pos = (self.max_prompt_tokens + self.num_generated).clamp_(max=self.length - 1).unsqueeze(1)  # (B, 1)
        before = [x.gather(1, pos) for x in (self.input_ids, self.attention_mask, self.policy_mask)]  # (B, 1)
        num_generated, done = self.num_generated.clone(), self.done.clone()
        self.input_ids.scatter_(1, pos, torch.where(active.unsqueeze(1), actions.unsqueeze(1), before[0]))
        self.attention_mask.scatter_(1, pos, before[1] | active.unsqueeze(1))
        self.policy_mask.scatter_(1, pos, before[2] | active.unsqueeze(1))
        self.num_generated += active
        budget_full = active & (self.num_generated >= self.max_new_tokens)
        try:
            plan = self._plan(actions, active, budget_full)
            terminated = torch.zeros_like(active)
            terminated[list(plan.finish)] = True
            self.done |= terminated
            dense = self._dense_rewards(actions, active)  # (K, B), no scorer advanced yet
            finished = sorted(plan.finish)
            batch = self.episode_batch(finished, plan) if finished else None
            step_terms = torch.cat([dense, plan.rewards[None]]) if self.conversations else dense  # (K', B)
            if batch is not None:
                index = torch.as_tensor(finished, device=self.device)
                step_terms[: len(self.terms), index] += self._score(batch, finished)
            self._check_sums(step_terms, active)
        except BaseException:
            # Undo the token writes: a failed step leaves no trace.
            for x, old in zip((self.input_ids, self.attention_mask, self.policy_mask), before):
                x.scatter_(1, pos, old)
            self.num_generated.copy_(num_generated)
            self.done.copy_(done)
            raise
        for _, _, scorer in self.terms:
            if scorer.dense:
                scorer.advance_rows(actions, active)
        inserted = self._insert(plan.inserts)
        if self.conversations is not None:
            self.conversations.commit(plan, finished)
        self.term_totals += step_terms
        rewards = step_terms.sum(0)  # (B,)
        infos = self._end_infos(batch, finished) if batch is not None else {}
        kl = torch.stack([t.step_kl() for t in self.kl_terms]).sum(0).cpu().numpy() if self.kl_terms else None
        return StepOutput(
            rewards=rewards.cpu().numpy(),
            terminated=terminated.cpu().numpy(),
            infos=infos,
            kl=kl,
            turn_ended=None if self.conversations is None else plan.turn_ended.cpu().numpy(),
            inserted=inserted,
        )

    def _plan(self, actions: torch.Tensor, active: torch.Tensor, budget_full: torch.Tensor) -> TurnPlan:
        """Which rows end their episode (or turn) on this step, and what the responder replies."""
        if self.conversations is not None:
            return self.conversations.plan(actions, active, budget_full)
        is_eos = torch.isin(actions, self._eos) & active
        plan = TurnPlan(
            turn_ended=is_eos, rewards=torch.zeros(self.num_rows, dtype=torch.float64, device=self.device)
        )
        ended = (is_eos | budget_full).nonzero().flatten().tolist()
        eos = is_eos.tolist() if ended else []
        plan.finish = {r: "eos" if eos[r] else "length" for r in ended}
        return plan

    def _insert(self, inserts: dict[int, list[int]]) -> np.ndarray | None:
        """Appends each row's reply ids after its token (the policy mask stays 0 there) and tells the dense
        scorers (a KL reference reads them); returns how many tokens each row got, ``None`` single-turn."""
        if self.conversations is None:
            return None
        counts = np.zeros(self.num_rows, dtype=np.int64)
        if not inserts:
            return counts
        rows = sorted(inserts)
        S = max(len(inserts[r]) for r in rows)
        span = torch.full((len(rows), S), self.spec.pad_token_id, dtype=torch.long, device=self.device)
        lengths = torch.tensor([len(inserts[r]) for r in rows], dtype=torch.long, device=self.device)
        for i, r in enumerate(rows):
            n = len(inserts[r])
            span[i, :n] = torch.tensor(inserts[r], dtype=torch.long)
            start = self.max_prompt_tokens + int(self.num_generated[r])
            self.input_ids[r, start : start + n] = span[i, :n]
            self.attention_mask[r, start : start + n] = 1
            counts[r] = n
        row_index = torch.as_tensor(rows, dtype=torch.long, device=self.device)
        self.num_generated[row_index] += lengths
        for _, _, scorer in self.terms:
            if scorer.dense:
                scorer.insert_rows(row_index, span, lengths)
        return counts

    def _check_sums(self, step_terms: torch.Tensor, active: torch.Tensor) -> None:
        """Every term is finite (checked by each term's own check); their weighted sum on this step and each
        term's episode total must be too: ``10.0 * term`` of ``1e308`` is not a reward."""
        total = step_terms.sum(0)  # (B,)
        totals = self.term_totals + step_terms  # (K, B)
        bad = active & ~(torch.isfinite(total) & torch.isfinite(totals).all(0))
        if not bool(bad.any()):
            return
        r = int(bad.nonzero()[0, 0])
        parts = ", ".join(
            f"{name} = {float(step_terms[k, r])!r} (episode total {float(totals[k, r])!r})"
            for k, name in enumerate(self.term_names)
        )
        prompt = self.row_prompts[r]
        raise ScorerError(
            f"the reward terms of row {r} (prompt {prompt.text if prompt else ''!r}) add up to "
            f"{float(total[r])!r}, which is not a finite float: {parts}; expected rewards whose weighted sum "
            "fits a float64"
        )

    def _row_texts(self) -> list[str]:
        return [p.text if p is not None else "" for p in self.row_prompts]

    def _dense_rewards(self, actions: torch.Tensor, active: torch.Tensor) -> torch.Tensor:
        """(K, B) float64 weighted rewards of the dense terms for this step (0 for terminal terms).

        Each weighted value is checked finite, as each value is (their sum: :meth:`_check_sums`).
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
        return out

    def set_policy_logprobs(self, logprobs: object) -> None:
        """Hands the policy's log-probs for the next :meth:`step` to every ``KLPenalty`` term.

        Raises:
            ValueError: The reward has no KL term, or the values are not log-probs of one of the layouts.
        """
        if not self.kl_terms:
            raise ValueError(
                "set_policy_logprobs: the env's reward has no KLPenalty term to hand log-probs to"
            )
        for term in self.kl_terms:
            term.set_policy_logprobs(logprobs)

    @contextlib.contextmanager
    def defer_kl(self) -> Iterator[DeferredKL]:
        """Inside the block the KL terms with a per-token estimator (``k1``, ``k3``) give 0 and skip their
        reference; the yielded :class:`~textenv.scorers.kl.DeferredKL` scores the finished episodes
        afterwards with one batched reference forward per term (weights and coefficients included).
        Terms with the ``"full"`` estimator keep scoring every step."""
        deferred = [
            (n, w, s)
            for n, w, s in self.terms
            if isinstance(s, KLPenalty) and s.estimator in DEFERRABLE_ESTIMATORS
        ]
        with contextlib.ExitStack() as stack:
            for _, _, term in deferred:
                stack.enter_context(term.deferred())
            yield DeferredKL(deferred)  # type: ignore[arg-type]

    def generated_ids(self, row: int) -> list[int]:
        """Token ids after the prompt in ``row`` so far: the policy's (EOS included) and inserted ones."""
        P = self.max_prompt_tokens
        return self.input_ids[row, P : P + int(self.num_generated[row])].tolist()

    def episode_batch(self, rows: Sequence[int], plan: TurnPlan) -> EpisodeBatch:
        """The finished episodes of ``rows`` as terminal scorers see them (``plan`` has not been committed)."""
        if self.conversations is not None:
            conversations = self.conversations
            turns = [conversations.episode_turns(r, plan) for r in rows]
        else:
            turns = [(Turn(POLICY_ROLE, "", tuple(self.generated_ids(r))),) for r in rows]
        finish = [plan.finish[r] for r in rows]
        # The text is the policy's last turn's, without the EOS that ended it (and special tokens).
        token_ids = [list(next(t for t in reversed(ts) if t.role == POLICY_ROLE).token_ids) for ts in turns]
        texts = self.tokenizer.batch_decode(
            [ids[:-1] if f == "eos" else ids for ids, f in zip(token_ids, finish)], skip_special_tokens=True
        )
        if self.conversations is None:
            turns = [(Turn(POLICY_ROLE, text, tuple(ids)),) for text, ids in zip(texts, token_ids)]
        prompts = [self.row_prompts[r] for r in rows]
        P = self.max_prompt_tokens
        return EpisodeBatch(
            prompts=[p.text for p in prompts],  # type: ignore[union-attr]
            prompt_ids=[self.input_ids[r, :P][self.attention_mask[r, :P].bool()].tolist() for r in rows],
            texts=texts,
            token_ids=token_ids,
            references=[list(p.references) for p in prompts],  # type: ignore[union-attr]
            metadata=[dict(p.metadata) for p in prompts],  # type: ignore[union-attr]
            finish_reasons=finish,
            turns=[tuple(ts) for ts in turns],
        )

    def _score(self, batch: EpisodeBatch, rows: list[int]) -> torch.Tensor:
        """(K, R) weighted terminal rewards of the finished ``rows``: one batched call per term.

        Each weighted value is checked finite, as each value is (their sum: :meth:`_check_sums`).
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
        return out

    def _end_infos(self, batch: EpisodeBatch, rows: list[int]) -> dict[int, dict[str, Any]]:
        """Each finished row's end-of-episode info (read after the step's totals were added)."""
        totals = self.term_totals[:, torch.as_tensor(rows, device=self.device)].cpu().numpy()  # (K', R)
        policy_tokens = self.policy_mask[torch.as_tensor(rows, device=self.device)].sum(1).tolist()
        infos = {}
        for i, r in enumerate(rows):
            info = {
                "prompt": batch.prompts[i],
                "text": batch.texts[i],
                "finish_reason": batch.finish_reasons[i],
                "num_tokens": int(policy_tokens[i]),
                "reward_terms": {name: float(totals[k, i]) for k, name in enumerate(self.term_names)},
            }
            if self.conversations is not None:
                info["turns"] = [t.as_dict() for t in batch.turns[i]]
            infos[r] = info
        return infos

    def render_row(self, row: int) -> str:
        """Prompt and everything after it so far in ``row``, as text (``│`` after the prompt)."""
        prompt = self.row_prompts[row]
        if prompt is None:
            return ""
        text = self.tokenizer.decode(self.generated_ids(row), skip_special_tokens=True)
        return f"{prompt.text}\u2502{text}"


class TextEnvAPI:
    """What both envs add to Gymnasium's API: the text setup, the reward and the KL channel.

    Agents, benchmarks and other trainers read an env through these (``env.unwrapped.text_spec`` ...),
    never through the env's internal state.
    """

    core: TextGenCore

    @property
    def text_spec(self) -> TextSpec:
        """The env's text setup: tokenizer, vocabulary size, ids, lengths, prompts and their encoding."""
        return self.core.spec

    @property
    def tokenizer(self) -> PreTrainedTokenizerBase:
        """``text_spec.tokenizer``."""
        return self.core.spec.tokenizer

    @property
    def max_prompt_tokens(self) -> int:
        """``text_spec.max_prompt_tokens``."""
        return self.core.spec.max_prompt_tokens

    @property
    def max_new_tokens(self) -> int:
        """``text_spec.max_new_tokens``."""
        return self.core.spec.max_new_tokens

    @property
    def eos_token_id(self) -> tuple[int, ...]:
        """``text_spec.eos_token_ids``."""
        return self.core.spec.eos_token_ids

    @property
    def reward(self) -> Scorer:
        """The scorer (a ``Scorer`` or ``CompositeScorer``) that computes rewards."""
        return self.core.reward

    @property
    def kl_penalties(self) -> list[KLPenalty]:
        """The ``KLPenalty`` terms of the reward (they own their ``coef``); may be empty."""
        return list(self.core.kl_terms)

    def prompt_of(self, row: int = 0) -> Prompt | None:
        """The prompt record of ``row``'s current (or last) episode; ``None`` before the first reset."""
        if not 0 <= row < self.core.num_rows:
            raise ValueError(f"row must be in [0, {self.core.num_rows}), got {row!r}")
        return self.core.row_prompts[row]

    def generated_ids(self, row: int = 0) -> list[int]:
        """The token ids after the prompt in ``row``'s current (or last) episode, EOS included."""
        if not 0 <= row < self.core.num_rows:
            raise ValueError(f"row must be in [0, {self.core.num_rows}), got {row!r}")
        return self.core.generated_ids(row)

    def set_policy_logprobs(self, logprobs: object) -> None:
        """The KL channel: hands the policy's log-probs of the next step's actions to the env's KL terms.

        An agent that samples its actions calls this before each ``step`` (``(B,)`` log-prob of each
        row's action, or ``(B, V)`` log-probs over the vocabulary; one row for the single env); the
        step's info then holds ``info["kl"]``, the KL of each row's token. They belong to that one step:
        a reset in between discards them. Agents that cannot hand log-probs over bind their policy to the
        term instead (``KLPenalty.bind``).

        Example:
            >>> env.unwrapped.set_policy_logprobs(logp)  # doctest: +SKIP
            >>> obs, reward, terminated, truncated, info = env.step(actions)  # info["kl"]

        Raises:
            ValueError: The reward has no KL term, the shape fits neither layout, or the values are not
                log-probabilities (positive values, or rows that do not normalise: logits).
        """
        self.core.set_policy_logprobs(logprobs)

    def defer_kl(self) -> contextlib.AbstractContextManager[DeferredKL]:
        """Scores the KL terms after the episodes instead of at every step (one batched reference forward).

        Example:
            >>> with env.unwrapped.defer_kl() as deferred:  # doctest: +SKIP
            ...     ...  # run episodes, keep each token's log-prob
            >>> scores = deferred.score(input_ids, attention_mask, logprobs)  # rewards, kl, term totals
        """
        return self.core.defer_kl()
