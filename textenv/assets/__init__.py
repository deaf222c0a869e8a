"""Built-in offline models and data, so every task runs without network access.

The assets are small models trained on a seeded grammar of short English movie reviews; rebuild
them from a source checkout with ``python -m tools.build_assets`` (the builder, :mod:`tools.build_assets`,
is a developer tool and is not installed with the package).

Assets:
    ``"tiny-lm"``: directory of a ~1.5M-parameter ``GPT2LMHeadModel`` that writes short movie
        reviews and then EOS; it also holds the tokenizer.
    ``"tiny-tokenizer"``: the byte-level BPE tokenizer (the same directory as ``"tiny-lm"``), shared by
        every built-in model; its chat template renders ``"user: <content> assistant: <content> "`` and,
        with ``add_generation_prompt=True``, ends with ``"assistant:"``.
    ``"tiny-sentiment"``: directory of a ``GPT2ForSequenceClassification`` with labels
        ``0 = "negative"``, ``1 = "positive"`` and the same tokenizer.
    ``"tiny-solver"``: directory of a small ``GPT2LMHeadModel`` (same tokenizer) trained on short
        additions (``"Q: 23+48= A: 71"``) and word reversals (``"Reverse: plot dull => dull plot"``),
        until its sampled accuracy on ``"arithmetic-prompts"`` first reached 35%: right sometimes,
        wrong often.
    ``"tiny-solver-early"``: the same training run saved earlier, when its sampled similarity on
        ``"reverse-prompts"`` first reached 0.5 (reversal is learned long before addition).
    ``"tiny-agent"``: directory of a small ``GPT2LMHeadModel`` (same tokenizer) trained on multi-turn
        transcripts of two tasks, the policy's turns only: calculator tool use (``"Q: 37*48= A:"``,
        then `` <call>calc(37*48)</call>``, the inserted `` <result>1776</result>``, then `` 1776`` and
        EOS; or a direct, wrong answer), and a number-guessing game (``"Guess my number from 1 to
        8:"``, then guesses `` 4`` + EOS answered `` higher`` / `` lower``). It calls the tool on
        about 40% of the questions and copies the numbers right on about 60% of its calls; its
        guesses heed the replies only half the time. Untrained figures: its ``build_info.json``.
    ``"review-prompts"``: text file, one review opening per line ("The movie was").
    ``"keyword-prompts"``: JSON-lines file of ``{"prompt": str, "keywords": [str, ...]}``; each prompt
        names its keywords before the opening (``"Use: villain, boring. The soundtrack was"``).
    ``"copy-prompts"``: JSON-lines file of ``{"prompt": "Repeat: <sentence> =>", "references": [str, ...]}``;
        the first reference is the sentence itself, later ones (on some lines) are paraphrases.
    ``"arithmetic-prompts"``: JSON-lines file of ``{"prompt": "Q: 23+48= A:", "answer": "71"}``.
    ``"reverse-prompts"``: JSON-lines file of ``{"prompt": "Reverse: plot dull great =>",
        "references": ["great dull plot"]}``.
    ``"calculator-prompts"``: JSON-lines file of ``{"prompt": "Q: 37*48= A:", "answer": "1776"}``
        (two numbers from 10 to 99; none is a prompt of ``tiny-agent``'s training transcripts).
    ``"guess-prompts"``: JSON-lines file of ``{"prompt": "Guess my number from 1 to 8:", "secret": 5}``,
        every secret from 1 to 8 equally often.

Example:
    >>> from transformers import AutoModelForCausalLM, AutoTokenizer
    >>> from textenv import assets
    >>> tokenizer = AutoTokenizer.from_pretrained(assets.path("tiny-tokenizer"))
    >>> model = AutoModelForCausalLM.from_pretrained(assets.path("tiny-lm"))
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["NAMES", "PRETRAINED", "path"]

_ROOT = Path(__file__).resolve().parent

# name -> (path relative to this package, file that must exist for the asset to count as built)
_ASSETS: dict[str, tuple[str, str]] = {
    "tiny-lm": ("tiny-lm", "model.safetensors"),
    "tiny-tokenizer": ("tiny-lm", "tokenizer.json"),
    "tiny-sentiment": ("tiny-sentiment", "model.safetensors"),
    "tiny-solver": ("tiny-solver", "model.safetensors"),
    "tiny-solver-early": ("tiny-solver-early", "model.safetensors"),
    "tiny-agent": ("tiny-agent", "model.safetensors"),
    "review-prompts": ("data/review_prompts.txt", ""),
    "keyword-prompts": ("data/keyword_prompts.jsonl", ""),
    "copy-prompts": ("data/copy_prompts.jsonl", ""),
    "arithmetic-prompts": ("data/arithmetic_prompts.jsonl", ""),
    "reverse-prompts": ("data/reverse_prompts.jsonl", ""),
    "calculator-prompts": ("data/calculator_prompts.jsonl", ""),
    "guess-prompts": ("data/guess_prompts.jsonl", ""),
}

NAMES: tuple[str, ...] = tuple(_ASSETS)
"""Every valid asset name, in documentation order."""

PRETRAINED: tuple[str, ...] = tuple(name for name, (_, built) in _ASSETS.items() if built)
"""The assets that ``from_pretrained`` reads (model and tokenizer folders; the others are prompt files)."""


def path(name: str) -> str:
    """Returns the absolute path of a built-in asset.

    Args:
        name: One of :data:`NAMES`: ``"tiny-lm"``, ``"tiny-tokenizer"``, ``"tiny-sentiment"``,
            ``"tiny-solver"``, ``"tiny-solver-early"``, ``"tiny-agent"`` (directories for ``from_pretrained``)
            or ``"review-prompts"``, ``"keyword-prompts"``, ``"copy-prompts"``, ``"arithmetic-prompts"``,
            ``"reverse-prompts"``, ``"calculator-prompts"``, ``"guess-prompts"`` (files).

    Returns:
        The absolute path as a string.

    Raises:
        ValueError: ``name`` is not a known asset.
        FileNotFoundError: The asset has not been built (run ``python -m tools.build_assets``).

    Example:
        >>> from textenv import assets
        >>> assets.path("review-prompts").endswith("review_prompts.txt")
        True
    """
    try:
        rel, marker = _ASSETS[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown asset {name!r}; valid names: {', '.join(NAMES)}") from None
    target = _ROOT / rel
    required = target / marker if marker else target
    if not required.is_file():
        raise FileNotFoundError(
            f"built-in asset {name!r} is missing ({required}); build it with `python -m tools.build_assets`"
        )
    return str(target)
