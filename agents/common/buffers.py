"""The batch types every algorithm passes around: finished episodes of a rollout and the training view.

``RolloutBatch`` is what the collector returns (tokens, masks, rollout log-probs, the env's rewards);
``TrainBatch`` adds what an algorithm's update reads (old log-probs, advantages, and for PPO values and
returns). Shapes: ``N`` episodes, ``P`` prompt slots, ``T`` generated slots, ``L = P + T``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
import torch


@dataclass
class RolloutBatch:
    """Finished episodes of one rollout, row ``i`` = episode ``i`` (``N`` episodes, ``P`` prompt slots,
    ``T`` generated slots).

    Attributes:
        input_ids: ``(N, P + T)`` the final observation: left-padded prompt, generated tokens, padding.
        attention_mask: ``(N, P + T)`` 1 on prompt and generated tokens.
        tokens: ``(N, T)`` generated tokens (``input_ids[:, P:]``).
        mask: ``(N, T)`` bool, the valid generated tokens (a prefix of each row).
        logprobs: ``(N, T)`` float32 rollout log-probs of the tokens under the sampling distribution.
        rewards: ``(N, T)`` float32 per-token rewards as ``env.step`` returned them, plus the penalty of
            the KL terms the agent scores after the rollout (``OnPolicyConfig.kl_after_rollout``).
        prompt_len: ``P``.
        scores: ``(N,)`` episode returns (sum of the rewards).
        reward_terms: Term name -> ``(N,)`` the term's total per episode (``info["reward_terms"]``).
        kl: ``(N,)`` KL(policy || reference) summed over each episode, from the KL term; ``None`` without one.
        texts: Generated texts.
        prompts: Prompt texts.
        finish_reasons: ``"eos"`` or ``"length"``.
        rollout_time: Seconds spent collecting.
        prompt_indices: ``(N,)`` the prompt index of each episode when the algorithm chose them, else ``None``.
    """

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    tokens: torch.Tensor
    mask: torch.Tensor
    logprobs: torch.Tensor
    rewards: torch.Tensor
    prompt_len: int
    scores: np.ndarray
    reward_terms: dict[str, np.ndarray] = field(default_factory=dict)
    kl: np.ndarray | None = None
    texts: list[str] = field(default_factory=list)
    prompts: list[str] = field(default_factory=list)
    finish_reasons: list[str] = field(default_factory=list)
    rollout_time: float = 0.0
    prompt_indices: np.ndarray | None = None

    def __len__(self) -> int:
        return self.tokens.shape[0]

    @property
    def num_tokens(self) -> int:
        """Generated tokens in the batch."""
        return int(self.mask.sum())

    @staticmethod
    def concat(parts: Sequence[RolloutBatch]) -> RolloutBatch:
        """Stacks the episodes of several batches (waves) into one."""
        if len(parts) == 1:
            return parts[0]
        terms = {k: np.concatenate([p.reward_terms[k] for p in parts]) for k in parts[0].reward_terms}
        kls = [p.kl for p in parts]
        return RolloutBatch(
            input_ids=torch.cat([p.input_ids for p in parts]),
            attention_mask=torch.cat([p.attention_mask for p in parts]),
            tokens=torch.cat([p.tokens for p in parts]),
            mask=torch.cat([p.mask for p in parts]),
            logprobs=torch.cat([p.logprobs for p in parts]),
            rewards=torch.cat([p.rewards for p in parts]),
            prompt_len=parts[0].prompt_len,
            scores=np.concatenate([p.scores for p in parts]),
            reward_terms=terms,
            kl=None if any(k is None for k in kls) else np.concatenate(kls),  # type: ignore[arg-type]
            texts=[t for p in parts for t in p.texts],
            prompts=[t for p in parts for t in p.prompts],
            finish_reasons=[t for p in parts for t in p.finish_reasons],
            rollout_time=sum(p.rollout_time for p in parts),
        )


class TrainBatch(NamedTuple):
    """Everything an update reads, ``N`` episodes, ``L = P + T``.

    Attributes:
        input_ids: ``(N, L)`` final observations.
        attention_mask: ``(N, L)``.
        position_ids: ``(N, L)`` positions of the left-padded rows.
        tokens: ``(N, T)`` generated tokens.
        mask: ``(N, T)`` bool, valid generated tokens.
        old_logprobs: ``(N, T)`` log-probs under the rollout policy (full forward, no grad).
        advantages: ``(N, T)`` advantages of each token.
        entropy: ``(N, T)`` entropy of the rollout policy's sampling distribution at each token.
        old_values: ``(N, T)`` values under the rollout policy (PPO), else ``None``.
        returns: ``(N, T)`` value targets (PPO), else ``None``.
        ref_logprobs: ``(N, T)`` log-probs under a frozen reference (a KL term in the loss), else ``None``.
    """

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    position_ids: torch.Tensor
    tokens: torch.Tensor
    mask: torch.Tensor
    old_logprobs: torch.Tensor
    advantages: torch.Tensor
    entropy: torch.Tensor
    old_values: torch.Tensor | None = None
    returns: torch.Tensor | None = None
    ref_logprobs: torch.Tensor | None = None

    @classmethod
    def from_rollout(cls, batch: RolloutBatch, advantages: torch.Tensor | None = None) -> TrainBatch:
        """The training view of a rollout, with zero log-probs, entropies (and advantages unless given)."""
        from textenv.lm import left_padded_positions

        zeros = torch.zeros(batch.mask.shape, device=batch.tokens.device)  # (N, T)
        return cls(
            input_ids=batch.input_ids,
            attention_mask=batch.attention_mask,
            position_ids=left_padded_positions(batch.attention_mask),  # (N, L)
            tokens=batch.tokens,
            mask=batch.mask,
            old_logprobs=zeros,
            advantages=zeros if advantages is None else torch.where(batch.mask, advantages, 0.0),
            entropy=zeros,
        )

    def take(self, rows: torch.Tensor) -> TrainBatch:
        """Rows ``rows``, without the columns that are padding in every one of them.

        Prompt columns that no selected row uses (left padding) and generated columns after the longest
        selected episode are dropped, so a forward never computes positions that all rows mask out. Position
        ids are kept, so the result is exactly that of the untrimmed rows.
        """
        T = self.tokens.shape[1]
        P = self.input_ids.shape[1] - T
        mask = self.mask[rows]  # (R, T)
        start = int(self.attention_mask[rows, :P].any(0).long().argmax())  # first prompt column in use
        t = max(int(mask.sum(1).max()), 1)  # longest episode
        cols = slice(start, P + t)

        def per_token(x: torch.Tensor | None) -> torch.Tensor | None:
            return None if x is None else x[rows, :t]

        return TrainBatch(
            input_ids=self.input_ids[rows, cols],
            attention_mask=self.attention_mask[rows, cols],
            position_ids=self.position_ids[rows, cols],
            tokens=self.tokens[rows, :t],
            mask=mask[:, :t],
            old_logprobs=self.old_logprobs[rows, :t],
            advantages=self.advantages[rows, :t],
            entropy=self.entropy[rows, :t],
            old_values=per_token(self.old_values),
            returns=per_token(self.returns),
            ref_logprobs=per_token(self.ref_logprobs),
        )
