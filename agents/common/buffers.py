"""The batch types every algorithm passes around: finished episodes of a rollout and the training view.

``RolloutBatch`` is what the collector returns (tokens, masks, rollout log-probs, the env's rewards);
``TrainBatch`` adds what the shared update reads (old log-probs, advantages, entropies, a reference's
log-probs). An algorithm with more per-token fields subclasses ``TrainBatch`` (PPO's ``PPOBatch`` adds
values and returns). Shapes: ``N`` episodes, ``P`` prompt slots, ``T`` slots after the prompt,
``L = P + T``.

Numbers: rewards, returns and scores stay float64 from the env until an algorithm has turned them into
advantages (normalised or not), so rewards of any size that a float64 holds reach the advantage
computation intact; advantages enter the float32 loss only after a check that they fit.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np
import torch

from textenv.lm import left_padded_positions, used_columns

B = TypeVar("B", bound="TrainBatch")


@dataclass
class RolloutBatch:
    """Finished episodes of one rollout, row ``i`` = episode ``i``.

    Attributes:
        input_ids: ``(N, P + T)`` the final observation: left-padded prompt, then the episode's tokens.
        attention_mask: ``(N, P + T)`` 1 on prompt and episode tokens.
        tokens: ``(N, T)`` the tokens after the prompt (``input_ids[:, P:]``).
        mask: ``(N, T)`` bool, the policy's tokens: what the losses train on.
        logprobs: ``(N, T)`` float32 rollout log-probs of the policy's tokens under the sampling distribution.
        rewards: ``(N, T)`` float64 reward of each token as ``env.step`` returned it (plus the env's KL
            terms scored after the rollout).
        prompt_len: ``P``.
        scores: ``(N,)`` float64 episode returns (sum of the rewards).
        reward_terms: Term name -> ``(N,)`` the term's total per episode (``info["reward_terms"]``).
        kl: ``(N,)`` KL(policy || reference) summed over each episode, from the env's KL terms; ``None``
            without one.
        texts: Generated texts.
        prompts: Prompt texts.
        finish_reasons: Why each episode ended (``"eos"``, ``"length"``, ...).
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
        """The policy's tokens in the batch."""
        return int(self.mask.sum())

    def add_scores(
        self, rewards: torch.Tensor, terms: dict[str, torch.Tensor], kl: torch.Tensor | None
    ) -> None:
        """Adds reward terms scored after the rollout (the env's deferred KL terms) to every sum they count in.

        Args:
            rewards: ``(N, T)`` the terms' summed reward of each token.
            terms: Term name -> ``(N,)`` the term's episode total.
            kl: ``(N, T)`` KL of each token, or ``None``.
        """
        rewards = rewards.to(self.rewards.device, torch.float64)
        self.rewards = self.rewards + rewards
        self.scores = self.scores + rewards.sum(1).cpu().numpy()
        for name, total in terms.items():
            self.reward_terms[name] = self.reward_terms.get(name, 0.0) + total.double().cpu().numpy()
        if kl is not None:
            episode_kl = kl.sum(1).double().cpu().numpy()
            self.kl = episode_kl if self.kl is None else self.kl + episode_kl

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


PER_TOKEN = {"per_token": True}
"""Field metadata of a ``TrainBatch`` field of shape ``(N, T)`` (or ``None``): :meth:`TrainBatch.take` slices it.
A subclass declares its own per-token fields with ``field(metadata=PER_TOKEN)``."""


@dataclass(frozen=True, kw_only=True)
class TrainBatch:
    """Everything the shared update reads, ``N`` episodes, ``L = P + T``.

    Attributes:
        input_ids: ``(N, L)`` final observations.
        attention_mask: ``(N, L)``.
        position_ids: ``(N, L)`` positions of the left-padded rows.
        tokens: ``(N, T)`` the tokens after the prompt.
        mask: ``(N, T)`` bool, the policy's tokens.
        old_logprobs: ``(N, T)`` log-probs under the rollout policy.
        advantages: ``(N, T)`` float32 advantage of each token.
        entropy: ``(N, T)`` entropy of the rollout policy's sampling distribution at each token.
        ref_logprobs: ``(N, T)`` log-probs under a frozen reference (a KL term in the loss), else ``None``.
    """

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    position_ids: torch.Tensor
    tokens: torch.Tensor = field(metadata=PER_TOKEN)
    mask: torch.Tensor = field(metadata=PER_TOKEN)
    old_logprobs: torch.Tensor = field(metadata=PER_TOKEN)
    advantages: torch.Tensor = field(metadata=PER_TOKEN)
    entropy: torch.Tensor = field(metadata=PER_TOKEN)
    ref_logprobs: torch.Tensor | None = field(default=None, metadata=PER_TOKEN)

    @classmethod
    def from_rollout(
        cls: type[B], batch: RolloutBatch, advantages: torch.Tensor | None = None, **fields: Any
    ) -> B:
        """The training view of a rollout, with zero log-probs and entropies (and advantages unless given).

        Raises:
            FloatingPointError: Advantages that do not fit the float32 loss (rewards too large to train on).
        """
        zeros = torch.zeros(batch.mask.shape, device=batch.tokens.device)  # (N, T)
        if advantages is not None:
            advantages = finite_float32("advantages", torch.where(batch.mask, advantages, 0.0))
        return cls(
            input_ids=batch.input_ids,
            attention_mask=batch.attention_mask,
            position_ids=left_padded_positions(batch.attention_mask),  # (N, L)
            tokens=batch.tokens,
            mask=batch.mask,
            old_logprobs=zeros,
            advantages=zeros if advantages is None else advantages,
            entropy=zeros,
            **fields,
        )

    def replace(self: B, **changes: Any) -> B:
        """A copy with ``changes``."""
        return dataclasses.replace(self, **changes)

    def take(self: B, rows: torch.Tensor) -> B:
        """Rows ``rows``, without the columns that are padding in every one of them.

        Prompt columns that no selected row uses (left padding) and the columns after the longest
        selected episode are dropped, so a forward never computes positions that all rows mask out.
        Position ids are kept, so the result is exactly that of the untrimmed rows.
        """
        T = self.tokens.shape[1]
        start, t = used_columns(self.attention_mask[rows], T)
        cols = slice(start, self.input_ids.shape[1] - T + t)
        sliced: dict[str, Any] = {
            f.name: (None if (x := getattr(self, f.name)) is None else x[rows, :t])
            for f in dataclasses.fields(self)
            if f.metadata.get("per_token")
        }
        return dataclasses.replace(
            self,
            input_ids=self.input_ids[rows, cols],
            attention_mask=self.attention_mask[rows, cols],
            position_ids=self.position_ids[rows, cols],
            **sliced,
        )


def finite_float32(name: str, values: torch.Tensor) -> torch.Tensor:
    """``values`` (float64) as float32 for a loss, refusing what float32 cannot hold.

    Raises:
        FloatingPointError: A value that is not finite, or not finite in float32; the message names
            ``name`` and the largest magnitude, and says how to scale the rewards.
    """
    out = values.float()
    if not bool(torch.isfinite(out).all()):
        big = values.double().abs().nan_to_num(nan=float("inf")).max()
        raise FloatingPointError(
            f"{name} reach {float(big):.4g}, which the float32 loss cannot hold (largest finite float32: "
            f"{torch.finfo(torch.float32).max:.4g}); scale the env's rewards down (a scorer weight, or the "
            "algorithm's reward_scale where it has one) or normalise them"
        )
    return out
