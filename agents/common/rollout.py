"""KV-cached rollouts of a causal-LM policy through a textenv environment's public step API.

A rollout runs in synchronous *waves*: every env row is reset together, the policy samples one token
per row per step from its own KV cache (:class:`textenv.lm.IncrementalLM`, one new token per forward),
the env steps all rows (so every scorer and wrapper applies), and the wave ends when every row has
terminated. Rows that finished early are inactive for the rest of the wave (the env leaves them
untouched and the policy's cache masks their slots). ``episodes_per_iteration / num_envs`` waves make
one rollout batch of exactly ``episodes_per_iteration`` finished episodes.

When the env's reward contains a ``KLPenalty`` term, the policy's log-probs are handed to the env before
each ``env.step`` through its KL channel (``env.unwrapped.set_policy_logprobs``), so the scorer never runs
the policy a second time; the KL comes back in the step's ``info["kl"]``. With ``defer_kl`` the env scores
its per-token KL terms after the episodes instead (``env.unwrapped.defer_kl()``: one batched reference
forward, the same rewards), and the collector adds what it returns to the batch. Actions go to a vector
env as tensors on the policy's device (no host round trip per step).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import gymnasium as gym
import numpy as np
import torch

from agents.common.buffers import RolloutBatch
from agents.common.sampling import sample_tokens
from textenv.lm import IncrementalLM
from textenv.scorers.kl import DeferredKL
from textenv.text_spec import text_spec
from textenv.vector import row_info

if TYPE_CHECKING:
    from agents.common.policies import CausalLMPolicy


# --- env access ---------------------------------------------------------------------------------------
def make_env(
    env: Any, num_envs: int, device: torch.device, env_kwargs: dict[str, Any] | None = None
) -> tuple[Any, str | None]:
    """The env an algorithm steps: an id is made into a ``TextGenVectorEnv`` of ``num_envs`` rows (autoreset
    disabled, torch observations on ``device``); an env object is used as it is.

    Returns:
        ``(env, env_id)``; ``env_id`` is ``None`` for env objects.

    Raises:
        ValueError: ``env_kwargs`` given with an env object.
        TypeError: ``env`` is neither an id nor a textenv env.
    """
    if isinstance(env, str):
        import textenv  # noqa: F401  (registers the ids)

        kwargs = {
            "observation_format": "torch",
            "device": device,
            "autoreset_mode": gym.vector.AutoresetMode.DISABLED,
            **(env_kwargs or {}),
        }
        vec = gym.make_vec(env, num_envs=num_envs, vectorization_mode="vector_entry_point", **kwargs)
        return vec, env
    if env_kwargs:
        raise ValueError(
            f"env_kwargs={env_kwargs!r} only apply when env is an id string, got {type(env).__name__}"
        )
    text_spec(env)  # raises TypeError for other envs
    return env, None


def _is_vector_env(env: Any) -> bool:
    return isinstance(getattr(env, "unwrapped", env), gym.vector.VectorEnv)


@dataclass
class EnvStep:
    """What one step of every row gave, as tensors on the driver's device and host arrays.

    Attributes:
        input_ids: ``(B, L)`` observations after the step (a multi-turn env's replies included).
        attention_mask: ``(B, L)``.
        policy_mask: ``(B, L)`` 1 where the policy chose the token.
        rewards: ``(B,)`` float64.
        terminated: ``(B,)`` bool, rows whose episode ended (terminated or truncated).
        infos: The end-of-episode info of each row that ended, by row.
        kl: ``(B,)`` the KL of this step's token (``info["kl"]``), or ``None`` without a KL term.
        inserted: ``(B,)`` how many tokens the env appended after each row's token (multi-turn), else ``None``.
    """

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    policy_mask: torch.Tensor
    rewards: np.ndarray
    terminated: np.ndarray
    infos: dict[int, dict[str, Any]]
    kl: np.ndarray | None
    inserted: np.ndarray | None


class EnvDriver:
    """Batched access to a textenv env through its public API: ``reset`` all rows, ``step`` all rows.

    A ``TextGenVectorEnv`` is stepped as it is: its autoreset mode must be ``DISABLED`` so that rows
    that finished early stay finished until the next wave's reset (other modes would restart them).
    A single ``TextGenEnv`` is one row.

    Args:
        env: The environment (Gymnasium wrappers allowed).
        device: Where the returned tensors live.
    """

    def __init__(self, env: Any, device: torch.device):
        self.env = env
        self.spec = text_spec(env)
        self.device = device
        self.vector = _is_vector_env(env)
        self.num_rows = int(env.num_envs) if self.vector else 1
        self.has_kl = bool(env.unwrapped.kl_penalties)
        if self.vector:
            mode = env.metadata.get("autoreset_mode")
            if mode is not None and getattr(mode, "value", mode) != gym.vector.AutoresetMode.DISABLED.value:
                raise ValueError(
                    f"the vector env's autoreset_mode is {mode!r}; the agents' rollouts need "
                    "autoreset_mode=gymnasium.vector.AutoresetMode.DISABLED (pass an env id to the agent, or build "
                    "the env with autoreset_mode=AutoresetMode.DISABLED)"
                )

    def _tensors(self, obs: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        ids, mask, policy = (
            torch.as_tensor(obs[key], device=self.device).long()
            for key in ("input_ids", "attention_mask", "policy_mask")
        )
        if not self.vector:
            ids, mask, policy = ids.view(1, -1), mask.view(1, -1), policy.view(1, -1)
        return ids, mask, policy

    def reset(
        self, seed: int | None = None, prompt_indices: Sequence[int] | np.ndarray | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Resets every row; returns the observations ``input_ids, attention_mask`` ``(B, L)``.

        Args:
            seed: Passed to ``env.reset``.
            prompt_indices: One prompt index per row (``None``: the env draws the prompts).
        """
        options = None
        if prompt_indices is not None:
            indices = [int(i) for i in prompt_indices]
            if len(indices) != self.num_rows:
                raise ValueError(
                    f"prompt_indices has {len(indices)} entries; expected one per row ({self.num_rows})"
                )
            options = {"prompt_index": indices if self.vector else indices[0]}
        obs, _ = self.env.reset(seed=seed, options=options)
        ids, mask, _ = self._tensors(obs)
        return ids, mask

    @property
    def num_prompts(self) -> int:
        """Prompts in the env's prompt source (what ``prompt_indices`` index)."""
        return len(self.spec.prompts)

    def defer_kl(self) -> contextlib.AbstractContextManager[DeferredKL]:
        """The env's KL terms scored after the episodes (``env.unwrapped.defer_kl()``)."""
        return self.env.unwrapped.defer_kl()

    def step(self, actions: torch.Tensor, logprobs: torch.Tensor | None = None) -> EnvStep:
        """Steps every row with ``actions`` (B,); finished rows ignore theirs.

        Args:
            actions: ``(B,)`` token ids on the driver's device (a vector env takes them as they are).
            logprobs: ``(B, V)`` the policy's log-probs of this step, handed to the env's KL channel when
                it has KL terms.
        """
        if self.has_kl and logprobs is not None:
            self.env.unwrapped.set_policy_logprobs(logprobs)
        if self.vector:
            obs, rewards, terminated, truncated, infos = self.env.step(actions)
            terminated = np.asarray(terminated, dtype=bool) | np.asarray(truncated, dtype=bool)
            ended = {int(r): row_info(infos, int(r)) for r in np.flatnonzero(terminated)}
            rewards = np.asarray(rewards, dtype=np.float64)
            kl, inserted = infos.get("kl"), infos.get("inserted")
        else:
            obs, reward, term, trunc, info = self.env.step(int(actions[0]))
            terminated = np.array([bool(term or trunc)])
            ended = {0: info} if terminated[0] else {}
            rewards = np.array([float(reward)])
            kl = np.array([info["kl"]]) if "kl" in info else None
            inserted = np.array([info["inserted"]]) if "inserted" in info else None
        ids, mask, policy = self._tensors(obs)
        return EnvStep(
            input_ids=ids,
            attention_mask=mask,
            policy_mask=policy,
            rewards=rewards,
            terminated=terminated,
            infos=ended,
            kl=None if kl is None else np.asarray(kl, dtype=np.float64),
            inserted=None if inserted is None else np.asarray(inserted, dtype=np.int64),
        )

    def env_rng_state(self) -> list[dict[str, Any]] | None:
        """The env's prompt-drawing RNG states (one per row of a vector env), JSON-able, for checkpoints."""
        rng = getattr(self.env.unwrapped, "np_random", None)
        if rng is None:
            return None
        rngs = rng if isinstance(rng, (tuple, list)) else [rng]
        return [r.bit_generator.state for r in rngs]

    def set_env_rng_state(self, states: list[dict[str, Any]] | None) -> None:
        """Restores :meth:`env_rng_state` output."""
        if states is None:
            return
        rng = self.env.unwrapped.np_random
        rngs = rng if isinstance(rng, (tuple, list)) else [rng]
        if len(rngs) != len(states):
            raise ValueError(
                f"the checkpoint holds {len(states)} env RNG states but the env has {len(rngs)} rows"
            )
        for r, state in zip(rngs, states):
            r.bit_generator.state = state


# --- the collector ------------------------------------------------------------------------------------
class RolloutCollector:
    """Collects finished episodes with a KV-cached policy, in synchronous waves of all env rows.

    Args:
        policy: The policy (its LM, sampling transform and precision), on ``driver.device``.
        driver: The env access.
        generator: Torch generator (on the driver's device) for the token draws.
        kl_batch_size: Episodes per reference forward when the env scores its KL terms after a rollout.
    """

    def __init__(
        self,
        policy: CausalLMPolicy,
        driver: EnvDriver,
        generator: torch.Generator,
        *,
        kl_batch_size: int = 64,
    ):
        self.policy = policy
        self.driver = driver
        self.sampling = policy.sampling
        self.generator = generator
        self.kl_batch_size = kl_batch_size
        spec = driver.spec
        self.prompt_len = spec.max_prompt_tokens
        self.max_new_tokens = spec.max_new_tokens
        self.pad_id = spec.pad_token_id
        self._cache = IncrementalLM(policy.lm, num_rows=driver.num_rows, max_length=spec.length)

    @torch.no_grad()
    def collect(
        self,
        num_episodes: int,
        seed: int | None = None,
        *,
        prompt_indices: Sequence[int] | np.ndarray | None = None,
        deterministic: bool = False,
        defer_kl: bool = True,
    ) -> RolloutBatch:
        """Runs ``num_episodes / num_rows`` waves.

        Args:
            num_episodes: A multiple of the env's rows.
            seed: Passed to the first wave's ``env.reset`` (``None`` continues the env's RNG).
            prompt_indices: ``num_episodes`` prompt indices, episode ``i`` starts from prompt
                ``prompt_indices[i]`` (``None``: the env draws the prompts).
            deterministic: Greedy decoding (argmax of the sampling distribution); the sampling generator is
                not used.
            defer_kl: Let the env score its per-token KL terms after the episodes (one batched reference
                forward) rather than at every step; the rewards are the same to float precision.

        Returns:
            The episodes, in wave order, with every reward term the env gives.

        Raises:
            ValueError: If ``num_episodes`` is not a positive multiple of the env's rows.
        """
        rows = self.driver.num_rows
        if num_episodes < 1 or num_episodes % rows:
            raise ValueError(
                f"num_episodes={num_episodes} must be a positive multiple of the env's {rows} rows"
            )
        if prompt_indices is not None and len(prompt_indices) != num_episodes:
            raise ValueError(f"prompt_indices has {len(prompt_indices)} entries; expected {num_episodes}")
        start = time.perf_counter()
        was_training = self.policy.training
        self.policy.eval()
        try:
            # One autocast context for the whole rollout: weights are cast to bf16 once, not every step.
            with (
                self.driver.defer_kl() if defer_kl else contextlib.nullcontext() as deferred,
                self.policy.autocast(),
            ):
                # Terms scored after the rollout read no per-step log-probs: hand them over only when a KL term
                # still scores every step (estimator "full"), which saves each step the env's check of (B, V).
                undeferred = self.driver.has_kl and len(deferred.terms if deferred else ()) < len(
                    self.driver.env.unwrapped.kl_penalties
                )
                waves = [
                    self._wave(
                        seed if i == 0 else None,
                        None if prompt_indices is None else prompt_indices[i * rows : (i + 1) * rows],
                        deterministic,
                        hand_logprobs=undeferred,
                    )
                    for i in range(num_episodes // rows)
                ]
        finally:
            self.policy.train(was_training)
        batch = RolloutBatch.concat(waves)
        if deferred:
            scored = deferred.score(
                batch.input_ids,
                batch.attention_mask,
                batch.logprobs,
                batch.mask,
                batch_size=self.kl_batch_size,
            )
            batch.add_scores(scored.rewards, scored.terms, scored.kl)
        batch.rollout_time = time.perf_counter() - start
        return batch

    def _wave(
        self,
        seed: int | None,
        prompt_indices: Sequence[int] | np.ndarray | None,
        deterministic: bool,
        *,
        hand_logprobs: bool = True,
    ) -> RolloutBatch:
        """One wave: reset every row, step until every row has terminated (``hand_logprobs``: the env's KL
        channel gets each step's log-probs).

        A row's token after the prompt goes to column ``pos[row]`` of ``(B, T)`` per-token arrays; a
        multi-turn env's replies take columns too (they leave ``policy_mask`` at 0), and the policy's KV
        cache reads each reply span in one forward for the rows that got one.
        """
        B, P, T, device = self.driver.num_rows, self.prompt_len, self.max_new_tokens, self.driver.device
        ids, mask = self.driver.reset(seed, prompt_indices)  # (B, L)
        final = (ids.clone(), mask.clone(), torch.zeros_like(mask))
        logits = self._cache.reset_rows(torch.arange(B, device=device), ids[:, :P], mask[:, :P])  # (B, V)
        logprobs = torch.zeros(B, T, device=device)
        rewards = np.zeros((B, T), dtype=np.float64)
        kl = np.zeros(B, dtype=np.float64) if self.driver.has_kl else None
        active = torch.ones(B, dtype=torch.bool, device=device)
        rows = torch.arange(B, device=device)
        pos = np.zeros(B, dtype=np.int64)  # each row's next column; equal to the step in a single-turn env
        multi_turn = self.driver.spec.multi_turn
        infos: dict[int, dict[str, Any]] = {}
        for t in range(T):
            column = torch.as_tensor(pos, device=device) if multi_turn else t
            logp_all = self.sampling.logprobs(logits, step=column)  # (B, V)
            action = logp_all.argmax(-1) if deterministic else sample_tokens(logp_all, self.generator)  # (B,)
            logp = logp_all.gather(1, action[:, None]).squeeze(1)  # (B,)
            with torch.autocast(device.type, enabled=False):  # the env's scorers run as they are
                out = self.driver.step(action, logp_all if hand_logprobs else None)
            at = torch.as_tensor(pos.clip(max=T - 1), device=device)
            logprobs[rows, at] = torch.where(active, logp, logprobs[rows, at])
            rewards[np.arange(B), pos.clip(max=T - 1)] += out.rewards  # idle rows get 0
            if kl is not None and out.kl is not None:
                kl += out.kl  # idle rows have KL 0
            done_now = torch.as_tensor(out.terminated, device=device) & active
            final = (
                torch.where(done_now[:, None], out.input_ids, final[0]),
                torch.where(done_now[:, None], out.attention_mask, final[1]),
                torch.where(done_now[:, None], out.policy_mask, final[2]),
            )
            infos.update(out.infos)
            active = active & ~done_now
            if not bool(active.any()):
                break
            running = active.cpu().numpy()
            inserted = np.zeros(B, dtype=np.int64) if out.inserted is None else out.inserted * running
            logits = self._feed(action, active, inserted, out.input_ids, pos)
            pos += running + inserted
        if bool(active.any()):
            raise RuntimeError(
                f"rows {active.nonzero().flatten().tolist()} did not terminate within T={T} steps"
            )
        return self._episodes(*final, logprobs, rewards, kl, infos)

    def _feed(
        self,
        action: torch.Tensor,
        active: torch.Tensor,
        inserted: np.ndarray,
        obs_ids: torch.Tensor,
        pos: np.ndarray,
    ) -> torch.Tensor:
        """Feeds the step's tokens to the policy's cache: one token per running row, and for the rows the
        env answered, the token and the reply's span in one forward; returns the next logits ``(B, V)``."""
        if not inserted.any():
            return self._cache.step(action, active)
        got = torch.as_tensor(inserted > 0, device=active.device)
        logits = (
            self._cache.step(action, active & ~got) if bool((active & ~got).any()) else self._cache.logits
        )
        rows = np.flatnonzero(inserted > 0)
        n = inserted[rows]
        span = torch.full((len(rows), 1 + int(n.max())), self.pad_id, dtype=torch.long, device=action.device)
        for i, r in enumerate(rows.tolist()):
            start = self.prompt_len + int(pos[r])  # the action's column; the reply follows it
            span[i, : 1 + n[i]] = obs_ids[r, start : start + 1 + n[i]]
        index = torch.as_tensor(rows, device=action.device)
        logits = self._cache.extend(index, span, torch.as_tensor(1 + n, device=action.device))
        return logits

    def _episodes(
        self,
        ids: torch.Tensor,
        mask: torch.Tensor,
        policy_mask: torch.Tensor,
        logprobs: torch.Tensor,
        rewards: np.ndarray,
        kl: np.ndarray | None,
        infos: dict[int, dict[str, Any]],
    ) -> RolloutBatch:
        B, P = ids.shape[0], self.prompt_len
        policy = policy_mask[:, P:].bool()  # (B, T) the policy's tokens
        row_infos = [infos.get(r, {}) for r in range(B)]
        names = list(row_infos[0].get("reward_terms", {}))
        terms = {
            n: np.array([float(i.get("reward_terms", {}).get(n, np.nan)) for i in row_infos]) for n in names
        }
        rewards_t = torch.where(policy, torch.as_tensor(rewards, device=ids.device), 0.0)  # float64
        return RolloutBatch(
            input_ids=ids,
            attention_mask=mask,
            tokens=torch.where(mask[:, P:].bool(), ids[:, P:], self.pad_id),
            mask=policy,
            logprobs=logprobs * policy,
            rewards=rewards_t,
            prompt_len=P,
            scores=rewards.sum(1),
            reward_terms=terms,
            kl=kl,
            texts=[str(i.get("text", "")) for i in row_infos],
            prompts=[str(i.get("prompt", "")) for i in row_infos],
            finish_reasons=[str(i.get("finish_reason", "")) for i in row_infos],
        )
