"""The turns of every row of a multi-turn env: when a policy turn ends, what the responder says, which
tokens the env inserts, and when the episode ends.

:class:`Conversations` is a part of :class:`~textenv.core.TextGenCore` (which owns the token tensors). A
step asks it for a :class:`TurnPlan` (host-side: the responder is called and its reply encoded, nothing
changes yet); only when every reward term has scored the step does the core write the plan's inserted
spans and :meth:`Conversations.commit` it, so a step that fails leaves the conversations as they were.

Token in, token out: the policy's sampled ids are never decoded and re-encoded into the observation. A
reply is encoded once (``tokenizer(text, add_special_tokens=False)``), or, when the prompt was rendered by
the tokenizer's chat template, rendered as the template renders that message after the conversation so
far (with the assistant's generation prompt after it), so the observation's ids equal what
``apply_chat_template`` gives for the whole conversation. Where a template is not prefix-preserving
(the whole conversation does not start with the ids so far), the env keeps the sampled ids, inserts the
template's text after the conversation so far, encoded once, and says so once.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch

from textenv.multiturn import POLICY_ROLE, Episode, Reply, Turn, as_reply, call_responder

if TYPE_CHECKING:
    from textenv.core import TextGenCore
    from textenv.prompts import Prompt

FINISH_REASONS = ("eos", "length", "responder", "max_turns")
"""Why an episode ends: an EOS action, the token budget, the responder's ``done``, ``max_turns``."""


@dataclass
class TurnPlan:
    """What one step does to the conversations, decided before anything changes.

    Attributes:
        turn_ended: ``(B,)`` bool, rows whose policy turn ended on this step.
        finish: Row -> finish reason of the rows whose episode ends on this step.
        inserts: Row -> the reply ids to append after the step's token.
        rewards: ``(B,)`` float64 the responder's reward for the turn each row just played.
        turns: Row -> the turns this step completes (the policy's turn and the reply).
    """

    turn_ended: torch.Tensor
    rewards: torch.Tensor
    finish: dict[int, str] = field(default_factory=dict)
    inserts: dict[int, list[int]] = field(default_factory=dict)
    turns: dict[int, list[Turn]] = field(default_factory=dict)


class Conversations:
    """Turn bookkeeping of every row of ``core`` (a multi-turn env).

    Args:
        core: The core whose rows these are.
        responder: The environment's side (see :mod:`textenv.multiturn`).
    """

    def __init__(self, core: TextGenCore, responder: object):
        self.core = core
        self.responder = responder
        spec = core.spec
        device = core.device
        self._end_of_turn = torch.tensor(spec.end_of_turn_ids, dtype=torch.long, device=device)
        # EOS ids that do not end a turn end the episode, as in a single-turn env.
        self._eos_only = torch.tensor(
            [i for i in spec.eos_token_ids if i not in spec.end_of_turn_ids], dtype=torch.long, device=device
        )
        self._stop_candidates = self._stop_string_tokens()
        self.turns: list[list[Turn]] = [[] for _ in range(core.num_rows)]
        self.turn_start = [0] * core.num_rows  # position (after the prompt) where the policy's turn began
        self._warned_prefix = False

    def _stop_string_tokens(self) -> torch.Tensor | None:
        """A ``(V,)`` bool mask of the tokens whose text holds the last character of a stop string (or part of
        a character: a byte-level token of a multi-byte one decodes alone to U+FFFD): only a turn whose last
        token is one of them can end with a stop string, so only those are decoded."""
        stops = self.core.spec.stop_strings
        if not stops:
            return None
        last = {s[-1] for s in stops}
        tokenizer, V = self.core.spec.tokenizer, self.core.spec.vocab_size
        texts = tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))
        decoded = [tokenizer.convert_tokens_to_string([t]) if t is not None else "" for t in texts]
        mask = torch.zeros(V, dtype=torch.bool, device=self.core.device)
        for i, text in enumerate(decoded):
            mask[i] = any(c in text for c in last) or "\ufffd" in text
        return mask

    # --- resets ----------------------------------------------------------------------------------------
    def check_reset(self, rows: list[int], records: list[Prompt]) -> None:
        """Lets the responder start its episodes (``reset``); raises before the rows change.

        Raises:
            ResponderError: The responder's ``reset`` raised.
        """
        for r, prompt in zip(rows, records):
            call_responder(self.responder, Episode(row=r, prompt=prompt), method="reset")

    def reset(self, rows: list[int]) -> None:
        for r in rows:
            self.turns[r] = []
            self.turn_start[r] = 0

    # --- a step ----------------------------------------------------------------------------------------
    def plan(self, actions: torch.Tensor, active: torch.Tensor, budget_full: torch.Tensor) -> TurnPlan:
        """Which rows end a turn or the episode on this step (the step's token already written), and what
        the responder replies; changes nothing.

        Raises:
            ResponderError: The responder raised or returned no reply (named).
        """
        core = self.core
        eos = torch.isin(actions, self._eos_only) & active
        turn_end = torch.isin(actions, self._end_of_turn) & active & ~eos
        if self._stop_candidates is not None:
            candidates = active & ~eos & ~turn_end & self._stop_candidates[actions]
            for r in candidates.nonzero().flatten().tolist():
                text = str(core.spec.tokenizer.decode(self._turn_ids(r), skip_special_tokens=True))
                if text.endswith(core.spec.stop_strings):
                    turn_end[r] = True
        plan = TurnPlan(
            turn_ended=turn_end, rewards=torch.zeros(core.num_rows, dtype=torch.float64, device=core.device)
        )
        for r in (eos | (active & budget_full)).nonzero().flatten().tolist():
            plan.finish[r] = "eos" if bool(eos[r]) else "length"
        # A turn that ends on the budget's last token is answered too: its reward counts, its reply is recorded.
        for r in turn_end.nonzero().flatten().tolist():
            self._respond(r, plan)
        return plan

    def _turn_ids(self, row: int) -> list[int]:
        """The ids of ``row``'s current policy turn (the step's token included)."""
        core, P = self.core, self.core.spec.max_prompt_tokens
        return core.input_ids[row, P + self.turn_start[row] : P + int(core.num_generated[row])].tolist()

    def policy_turn(self, row: int) -> Turn:
        """``row``'s current policy turn as a :class:`~textenv.multiturn.Turn`."""
        ids = self._turn_ids(row)
        text = str(self.core.spec.tokenizer.decode(ids, skip_special_tokens=True))
        return Turn(role=POLICY_ROLE, text=text, token_ids=tuple(ids))

    def _respond(self, row: int, plan: TurnPlan) -> None:
        core = self.core
        prompt = core.row_prompts[row]
        assert prompt is not None
        policy = self.policy_turn(row)
        episode = Episode(row=row, prompt=prompt, turns=(*self.turns[row], policy))
        reply = as_reply(
            call_responder(self.responder, episode), self.responder, episode, core.spec.vocab_size
        )
        ids = self._reply_ids(row, episode, reply)
        # A reply given as ids is recorded with their text, so later turns and scorers see what it said.
        text = (
            reply.text
            if reply.token_ids is None
            else core.spec.tokenizer.decode(ids, skip_special_tokens=True)
        )
        plan.rewards[row] = float(reply.reward)
        plan.turns[row] = [
            policy,
            Turn(role=reply.role, text=str(text or ""), token_ids=tuple(ids), reward=float(reply.reward)),
        ]
        room = core.spec.max_new_tokens - int(core.num_generated[row])
        if reply.done:
            plan.finish[row] = "responder"
        elif core.spec.max_turns is not None and episode.policy_turns >= core.spec.max_turns:
            plan.finish[row] = "max_turns"
        elif len(ids) + 1 > room:  # the reply and at least one more policy token must fit
            plan.finish[row] = "length"
        elif ids:
            plan.inserts[row] = ids

    def _reply_ids(self, row: int, episode: Episode, reply: Reply) -> list[int]:
        """The ids the env appends for ``reply``: its own, its text encoded once, or the chat template's."""
        if reply.token_ids is not None:
            return [int(i) for i in reply.token_ids]
        if not reply.text:
            return []
        spec = self.core.spec
        chat = spec.chat(episode.prompt)
        if chat is None:
            return list(spec.tokenizer(reply.text, add_special_tokens=False)["input_ids"])
        messages = [*chat, *episode.messages(), {"role": reply.role, "content": reply.text}]
        full = spec.render_chat(messages, where=f"the conversation of row {row}")
        current = self._observation_ids(row)
        if full[: len(current)] == current:
            return full[len(current) :]
        if not self._warned_prefix:
            warnings.warn(
                "the chat template does not render the conversation so far as the ids in the observation (it "
                "is not prefix-preserving, or the prompt was cut to max_prompt_tokens): the env keeps the "
                "policy's sampled ids and inserts the template's text after them, encoded once",
                stacklevel=6,
            )
            self._warned_prefix = True
        tokenizer = spec.tokenizer
        before: Any = tokenizer.apply_chat_template(
            messages[:-1], tokenize=False, add_generation_prompt=False
        )
        after: Any = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        # The template's text goes on where the policy's turn ends in it (the observation holds the turn up
        # to its end-of-turn token, not what the template writes after that, e.g. a newline).
        turn = str(tokenizer.decode(self._turn_ids(row)))
        end = before.rfind(turn) + len(turn) if turn and turn in before else len(before)
        tail = after[end:] if after.startswith(before[:end]) else reply.text
        return list(tokenizer(tail, add_special_tokens=False)["input_ids"])

    def _observation_ids(self, row: int) -> list[int]:
        """The real ids of ``row``'s observation: the prompt's and every one after it."""
        core = self.core
        n = core.spec.max_prompt_tokens + int(core.num_generated[row])
        ids, mask = core.input_ids[row, :n], core.attention_mask[row, :n]
        return ids[mask.bool()].tolist()

    def commit(self, plan: TurnPlan, finished: list[int]) -> None:
        """The step happened: the completed turns are recorded, inserted rows start a new policy turn."""
        for r, turns in plan.turns.items():
            self.turns[r].extend(turns)
            self.turn_start[r] = int(self.core.num_generated[r])  # after the inserted span
        for r in finished:
            if r not in plan.turns:  # ended inside a policy turn (EOS, budget): it is the last turn
                self.turns[r].append(self.policy_turn(r))

    def episode_turns(self, row: int, plan: TurnPlan) -> tuple[Turn, ...]:
        """Every turn of ``row``'s finished episode (before :meth:`commit`)."""
        new = plan.turns.get(row) or [self.policy_turn(row)]
        return (*self.turns[row], *new)


__all__ = ["FINISH_REASONS", "Conversations", "TurnPlan"]
