"""Training and evaluation of the built-in models: one training loop for the LMs and the classifier."""

from __future__ import annotations

import difflib
import math
import random
import re
import time
from collections.abc import Callable, Iterator, Sequence

import torch

Log = Callable[[str], None]


def _lr_at(step: int, total: int, peak: float, warmup: int) -> float:
    """Linear warm-up to ``peak``, then cosine decay to a tenth of it."""
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return peak * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


def _batches(
    lengths: Sequence[int], batch_size: int, steps: int, gen: torch.Generator
) -> Iterator[list[int]]:
    """``steps`` batches of indices, epoch after epoch of seeded permutations.

    Within windows of 32 batches the indices are sorted by length, so a batch holds sequences of
    similar length and little compute goes to padding; the batch order is then shuffled again.
    """
    n = len(lengths)
    window = batch_size * 32
    done = 0
    while True:
        perm = torch.randperm(n, generator=gen).tolist()
        batches: list[list[int]] = []
        for w in range(0, n, window):
            chunk = sorted(perm[w : w + window], key=lambda i: lengths[i])
            batches += [chunk[i : i + batch_size] for i in range(0, len(chunk) - batch_size + 1, batch_size)]
        for b in torch.randperm(len(batches), generator=gen).tolist():
            yield batches[b]
            done += 1
            if done == steps:
                return


def fit(
    model: torch.nn.Module,
    loss_of: Callable[[list[int]], torch.Tensor],
    lengths: Sequence[int],
    *,
    steps: int,
    batch_size: int,
    lr: float,
    seed: int,
    log: Log,
    name: str,
    until: Callable[[], bool] | None = None,
    check_every: int = 50,
) -> int:
    """The training loop of every built-in model: AdamW, warm-up and cosine decay, gradient clipping.

    Args:
        model: Trained in place; left in eval mode.
        loss_of: The loss of one batch, given the indices of its examples.
        lengths: Token length of every example (batches group similar lengths).
        steps: Optimizer steps.
        batch_size: Examples per step.
        lr: Peak learning rate.
        seed: Seed of the batch order.
        log: Progress printer (ten lines per run).
        name: Shown in the progress lines.
        until: Called every ``check_every`` steps; training stops early once it returns True.
        check_every: Steps between calls of ``until``.

    Returns:
        The number of steps taken.
    """
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, betas=(0.9, 0.98), weight_decay=0.01)
    model.train()
    warmup = max(1, steps // 20)
    t0 = time.time()
    done = 0
    for step, idx in enumerate(_batches(lengths, batch_size, steps, gen)):
        for group in opt.param_groups:
            group["lr"] = _lr_at(step, steps, lr, warmup)
        loss = loss_of(idx)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        done = step + 1
        if step % max(1, steps // 10) == 0 or step == steps - 1:
            log(f"  {name} step {done}/{steps} loss {loss.item():.3f} ({time.time() - t0:.0f}s)")
        if until is not None and done % check_every == 0 and until():
            log(f"  {name} stopped after step {done}")
            break
    model.eval()
    return done


def lm_batch(
    seqs: list[list[int]], pad_id: int, starts: list[int], learned: list[list[bool]] | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Right-padded ``(ids, mask, labels)``; labels are -100 on padding, before ``starts[i]`` and,
    when ``learned`` is given, wherever ``learned[i][t]`` is False."""
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, : len(s)] = torch.tensor(s)
        mask[i, : len(s)] = 1
    labels = ids.masked_fill(mask == 0, -100)
    for i, start in enumerate(starts):
        labels[i, :start] = -100
    for i, flags in enumerate(learned or []):
        keep = torch.zeros(width, dtype=torch.bool)
        keep[: len(flags)] = torch.tensor(flags, dtype=torch.bool)
        labels[i] = labels[i].masked_fill(~keep, -100)
    return ids, mask, labels


def train_lm(
    model: torch.nn.Module,
    seqs: list[list[int]],
    pad_id: int,
    *,
    steps: int,
    batch_size: int,
    lr: float,
    seed: int,
    log: Log,
    name: str = "lm",
    loss_starts: Sequence[int] | None = None,
    loss_masks: Sequence[list[bool]] | None = None,
    group_by_length: bool = True,
    until: Callable[[], bool] | None = None,
) -> int:
    """Causal-LM training on right-padded sequences (each already ends with EOS).

    ``loss_starts[i]``, when given, is the first position of ``seqs[i]`` whose token is a target:
    the prompt before it is read but not learned (its tokens are random by design). ``loss_masks[i]``,
    when given, says per token of ``seqs[i]`` whether it is a target (multi-turn transcripts: the
    policy's turns are, the prompt and the environment's replies are not). ``group_by_length=False``
    draws batches at random instead of from similar lengths: when the length tells which choice a
    text made (a tool call is long, a direct answer short), length-grouped batches hold one choice
    only, and the learned probability of the choice swings from batch to batch. ``until``: see
    :func:`fit`. Returns the number of steps taken.
    """

    def loss_of(idx: list[int]) -> torch.Tensor:
        starts = [loss_starts[i] for i in idx] if loss_starts is not None else []
        learned = [loss_masks[i] for i in idx] if loss_masks is not None else None
        ids, mask, labels = lm_batch([seqs[i] for i in idx], pad_id, starts, learned)
        return model(input_ids=ids, attention_mask=mask, labels=labels).loss

    return fit(
        model,
        loss_of,
        [len(x) if group_by_length else 0 for x in seqs],
        steps=steps,
        batch_size=batch_size,
        lr=lr,
        seed=seed,
        log=log,
        name=name,
        until=until,
    )


def _cls_batch(seqs: list[list[int]], pad_id: int, extra_pad: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Left-padded batch with ``extra_pad`` more pad columns, like the env's left-padded prompts."""
    width = max(len(s) for s in seqs) + extra_pad
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, width - len(s) :] = torch.tensor(s)
        mask[i, width - len(s) :] = 1
    return ids, mask


def train_classifier(
    model: torch.nn.Module,
    seqs: list[list[int]],
    targets: list[float],
    pad_id: int,
    *,
    steps: int,
    batch_size: int,
    lr: float,
    seed: int,
    log: Log,
) -> None:
    """Soft-target cross-entropy (target = P(positive)) so mixed/neutral texts land near 0.5."""
    rng = random.Random(seed)

    def loss_of(idx: list[int]) -> torch.Tensor:
        # Random left padding: GPT-2 positions count pads, so the model must not depend on the offset.
        extra = rng.choice((0, 0, rng.randint(1, 48)))
        ids, mask = _cls_batch([seqs[i] for i in idx], pad_id, extra)
        target = torch.tensor([targets[i] for i in idx])
        logp = torch.log_softmax(model(input_ids=ids, attention_mask=mask).logits, dim=-1)
        return -(target * logp[:, 1] + (1 - target) * logp[:, 0]).mean()

    fit(
        model,
        loss_of,
        [len(x) for x in seqs],
        steps=steps,
        batch_size=batch_size,
        lr=lr,
        seed=seed,
        log=log,
        name="cls",
    )


@torch.no_grad()
def positive_probs(
    model: torch.nn.Module, tokenizer, texts: Sequence[str], batch_size: int = 128
) -> list[float]:
    """P(positive) for each text, batched with the tokenizer's left padding."""
    out: list[float] = []
    for i in range(0, len(texts), batch_size):
        enc = tokenizer(list(texts[i : i + batch_size]), return_tensors="pt", padding=True)
        probs = torch.softmax(model(**enc).logits, dim=-1)[:, 1]
        out.extend(probs.tolist())
    return out


@torch.no_grad()
def sample_continuations(
    model, tokenizer, prompts: Sequence[str], max_new_tokens: int, seed: int, batch_size: int = 50
) -> list[str]:
    """Sampled continuations (temperature 1; text after the prompt, special tokens dropped)."""
    torch.manual_seed(seed)
    out: list[str] = []
    for i in range(0, len(prompts), batch_size):
        enc = tokenizer(list(prompts[i : i + batch_size]), return_tensors="pt", padding=True)
        gen = model.generate(
            **enc,
            do_sample=True,
            top_k=0,
            top_p=1.0,
            max_new_tokens=max_new_tokens,
            pad_token_id=tokenizer.pad_token_id,
            eos_token_id=tokenizer.eos_token_id,
        )
        new = gen[:, enc["input_ids"].shape[1] :]
        out.extend(tokenizer.batch_decode(new, skip_special_tokens=True))
    return out


def last_number(text: str) -> str | None:
    """The last integer in ``text`` (as written), or ``None``."""
    found = re.findall(r"-?\d+", text)
    return found[-1] if found else None


def similarity(text: str, reference: str) -> float:
    """difflib's ``SequenceMatcher`` ratio, the reverse task's reward."""
    return difflib.SequenceMatcher(None, text, reference).ratio()
