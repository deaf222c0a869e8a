"""The built-in models: their shapes, training sequences and saved form."""

from __future__ import annotations

import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from transformers import AutoTokenizer, GPT2Config, GPT2LMHeadModel

from tools.build_assets.grammar import Review
from tools.build_assets.lexicon import TARGET
from tools.build_assets.transcripts import Segment

LM_CONFIG: dict[str, Any] = {"n_layer": 4, "n_embd": 160, "n_head": 4, "n_positions": 128}
CLS_CONFIG: dict[str, Any] = {"n_layer": 2, "n_embd": 96, "n_head": 4, "n_positions": 256}
SOLVER_CONFIG: dict[str, Any] = {"n_layer": 2, "n_embd": 128, "n_head": 4, "n_positions": 64}
# A calculator episode is 56 tokens and a game at most 36; the room up to 128 is for longer budgets.
AGENT_CONFIG: dict[str, Any] = {"n_layer": 2, "n_embd": 128, "n_head": 4, "n_positions": 128}


def gpt2_config(tokenizer, shape: dict[str, Any], **extra: Any) -> GPT2Config:
    """A dropout-free GPT-2 config of ``shape`` for ``tokenizer`` (EOS doubles as BOS)."""
    eos_id = tokenizer.eos_token_id
    return GPT2Config(
        vocab_size=len(tokenizer),
        **shape,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        bos_token_id=eos_id,
        eos_token_id=eos_id,
        pad_token_id=tokenizer.pad_token_id,
        **extra,
    )


def lm_sequences(
    tokenizer, texts: Sequence[str], seed: int, max_len: int, tag: str = "bos"
) -> list[list[int]]:
    """Token ids of ``texts``, each ending with EOS; a few start with BOS.

    The BOS-started ones make unconditional ``generate()`` (which starts from BOS) work.
    """
    eos_id = tokenizer.eos_token_id
    enc = tokenizer(list(texts), add_special_tokens=False)["input_ids"]
    rng = random.Random(f"{tag}-{seed}")
    seqs = [([eos_id] if rng.random() < 0.05 else []) + ids + [eos_id] for ids in enc]
    return [s[:max_len] for s in seqs]


def transcript_sequences(
    tokenizer, transcripts: Sequence[Sequence[Segment]]
) -> tuple[list[list[int]], list[list[bool]]]:
    """Token ids of multi-turn transcripts and, per token, whether it is learned (a policy token).

    Each segment is encoded on its own, as the environment encodes its replies and as the policy
    writes its turns, so the training sequences hold exactly the token ids of real episodes. A
    segment with ``eos`` is followed by EOS (learned: it ends the policy's turn).

    Example:
        >>> ids, learned = transcript_sequences(tok, [[Segment("Q:", False), Segment(" 7", True, eos=True)]])
        >>> learned  # "Q", ":" read; " ", "7", EOS learned
        [[False, False, True, True, True]]
    """
    eos_id = tokenizer.eos_token_id
    flat = [seg for t in transcripts for seg in t]
    encoded = iter(tokenizer([seg.text for seg in flat], add_special_tokens=False)["input_ids"])
    seqs: list[list[int]] = []
    masks: list[list[bool]] = []
    for transcript in transcripts:
        ids: list[int] = []
        learned: list[bool] = []
        for seg in transcript:
            seg_ids = next(encoded) + ([eos_id] if seg.eos else [])
            ids += seg_ids
            learned += [seg.policy] * len(seg_ids)
        seqs.append(ids)
        masks.append(learned)
    return seqs, masks


def classifier_sequences(
    tokenizer, reviews: Sequence[Review], seed: int
) -> tuple[list[list[int]], list[float]]:
    """Token ids and soft targets (P(positive)) of ``reviews`` and of prefixes of half of them.

    Prefixes teach the model to score partial generations: an uninformative prefix of a balanced
    corpus averages to 0.5, a prefix with a sentiment word leans its way. Some texts end with EOS,
    as finished episodes do.
    """
    eos_id = tokenizer.eos_token_id
    rng = random.Random(f"prefix-{seed}")
    seqs: list[list[int]] = []
    targets: list[float] = []
    for r, ids in zip(reviews, tokenizer([r.text for r in reviews])["input_ids"]):
        seqs.append(ids + ([eos_id] if rng.random() < 0.15 else []))
        targets.append(TARGET[r.label])
        if rng.random() < 0.5 and len(ids) > 3:
            seqs.append(ids[: rng.randint(2, len(ids) - 1)])
            targets.append(TARGET[r.label])
    return seqs, targets


def load_lm(lm_dir: Path, tokenizer) -> GPT2LMHeadModel:
    """A saved LM, after checking it was built with the same tokenizer (for ``--reuse-lm``)."""
    if not (lm_dir / "model.safetensors").is_file():
        raise FileNotFoundError(f"--reuse-lm: no built LM in {lm_dir}")
    check_tokenizer(lm_dir, tokenizer, "--reuse-lm")
    return GPT2LMHeadModel.from_pretrained(lm_dir).eval()


def check_tokenizer(directory: Path, tokenizer, flag: str) -> None:
    """Raises ValueError when ``directory`` holds a tokenizer other than ``tokenizer`` (none there is fine)."""
    if (directory / "tokenizer.json").is_file() and (
        AutoTokenizer.from_pretrained(directory).get_vocab() != tokenizer.get_vocab()
    ):
        raise ValueError(f"{flag}: {directory} was built with another tokenizer (other seed or corpus)")


def parameters(model) -> int:
    return sum(p.numel() for p in model.parameters())


def size(path: Path) -> int:
    """Bytes of every file under ``path``."""
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
