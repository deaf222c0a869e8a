"""``as_scorer`` and ``parse_spec``: turn what a user passes as ``reward=`` into a scorer.

A string spec is one or more terms joined by ``+``; a term is ``[WEIGHT*]NAME[:ARG[:ARG]]``::

    "rouge"                                    ROUGE("rougeL")
    "rouge:rouge2:recall"                      ROUGE("rouge2", measure="recall")
    "bleu"                                     BLEU(): sacrebleu's sentence BLEU / 100 (0 to 1)
    "keyword:great,awesome:all"                Keyword(["great", "awesome"], mode="all")
    "keyword"                                  Keyword(None): each prompt's metadata "keywords"
    "sentiment"                                RewardModel("tiny-sentiment", label="positive", output="probability")
    "reward_model:PATH_OR_NAME[:LABEL]"        RewardModel(PATH_OR_NAME, label=LABEL)
    "kl[:PATH_OR_NAME[:COEF]]"                 KLPenalty(PATH_OR_NAME, coef=COEF, if_unbound="zero"),
                                               default "tiny-lm", 0.1; 0 and one warning until a
                                               policy is bound or hands its log-probs over
    "length[:TARGET]"                          Length(target=TARGET)
    "missing_eos[:VALUE]"                      MissingEOSPenalty(VALUE), default 1.0
    "answer[:COMPARE[:FORMAT]]"                Answer(compare=COMPARE, format=FORMAT): "numeric"/"exact", 0.1
    "format:REGEX"                             Format(REGEX): 1.0 when the text matches (search, under
                                               Format's DEFAULT_TIMEOUT, 1 s per text)
    "similarity"                               Similarity(): difflib ratio against references/answer
    "sentiment + kl:tiny-lm:0.05 + 0.1*missing_eos"   a weighted sum

The regular expression of ``format:REGEX`` runs to the end of its term and may hold ``:`` and
``+`` (a ``+`` splits terms only where a scorer name follows it: ``"answer + 0.1*format:^\\d+$"``);
surrounding spaces are dropped.

Every call builds fresh scorer objects, so each env gets its own dense-scorer state.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable as CallableType

from textenv.scorers.answer import Answer
from textenv.scorers.base import Scorer
from textenv.scorers.bleu import BLEU
from textenv.scorers.callable import Callable
from textenv.scorers.format import Format
from textenv.scorers.keyword import Keyword
from textenv.scorers.kl import KLPenalty
from textenv.scorers.length import Length, MissingEOSPenalty
from textenv.scorers.reward_model import RewardModel
from textenv.scorers.rouge import ROUGE
from textenv.scorers.similarity import Similarity

DEFAULT_SPEC = "sentiment"


def as_scorer(reward: object) -> Scorer:
    """A scorer from a scorer, a plain callable, a string spec, or ``None`` (the default reward).

    Args:
        reward: A :class:`Scorer` (returned as is), a callable ``fn(prompt, text, references, meta)
            -> float`` (wrapped in :class:`Callable`), a string spec (see :func:`parse_spec`) or
            ``None``: ``"sentiment"``, the built-in sentiment model's positive probability.

    Raises:
        TypeError: Anything else.
    """
    if reward is None:
        return parse_spec(DEFAULT_SPEC)
    if isinstance(reward, Scorer):
        return reward
    if isinstance(reward, str):
        return parse_spec(reward)
    if callable(reward):
        return Callable(reward)
    raise TypeError(
        f"reward must be a Scorer, a callable or a string spec such as 'rouge', got {type(reward).__name__}: {reward!r}"
    )


def _float(spec: str, value: str) -> float:
    try:
        return float(value)
    except ValueError:
        raise ValueError(f"reward spec {spec!r}: {value!r} is not a number") from None


def _int(spec: str, value: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"reward spec {spec!r}: {value!r} is not an integer") from None


def _rouge(spec: str, args: list[str]) -> Scorer:
    _max_args(spec, args, 2)
    kind = args[0] if args else "rougeL"
    return ROUGE(kind, measure=args[1]) if len(args) > 1 else ROUGE(kind)


def _bleu(spec: str, args: list[str]) -> Scorer:
    _max_args(spec, args, 1)
    return BLEU(tokenize=args[0]) if args else BLEU()


def _keyword(spec: str, args: list[str]) -> Scorer:
    _max_args(spec, args, 2)
    words = [w.strip() for w in args[0].split(",") if w.strip()] if args and args[0] else None
    return Keyword(words, mode=args[1]) if len(args) > 1 else Keyword(words)


def _sentiment(spec: str, args: list[str]) -> Scorer:
    _max_args(spec, args, 1)
    label = args[0] if args else "positive"
    return RewardModel("tiny-sentiment", label=label, output="probability", name="sentiment")


def _reward_model(spec: str, args: list[str]) -> Scorer:
    rest = ":".join(args)
    if not rest:
        raise ValueError(f"reward spec {spec!r} needs a model: 'reward_model:PATH_OR_NAME[:LABEL]'")
    # A path may itself hold ':' (Windows drives); the last part is a label only if the whole is no path.
    if ":" in rest and not os.path.exists(rest):
        model, label = rest.rsplit(":", 1)
        return RewardModel(model, label=label)
    return RewardModel(rest)


def _kl(spec: str, args: list[str]) -> Scorer:
    _max_args(spec, args, 2)
    reference = args[0] if args and args[0] else "tiny-lm"
    coef = _float(spec, args[1]) if len(args) > 1 else 0.1
    # As in the registered tasks: 0 (and one warning) until a policy is bound or hands log-probs over.
    return KLPenalty(reference, coef=coef, if_unbound="zero")


def _length(spec: str, args: list[str]) -> Scorer:
    _max_args(spec, args, 1)
    return Length(target=_int(spec, args[0])) if args else Length()


def _missing_eos(spec: str, args: list[str]) -> Scorer:
    _max_args(spec, args, 1)
    return MissingEOSPenalty(_float(spec, args[0])) if args else MissingEOSPenalty()


def _answer(spec: str, args: list[str]) -> Scorer:
    _max_args(spec, args, 2)
    compare = args[0] if args and args[0] else "numeric"
    return Answer(compare=compare, format=_float(spec, args[1])) if len(args) > 1 else Answer(compare=compare)


def _format(spec: str, args: list[str]) -> Scorer:
    # _parse_term hands the whole regex over as one argument (it may hold ':').
    if not args or not args[0]:
        raise ValueError(f"reward spec {spec!r} needs a regular expression: 'format:REGEX'")
    return Format(args[0])


def _similarity(spec: str, args: list[str]) -> Scorer:
    _max_args(spec, args, 1)
    return Similarity(key=args[0]) if args and args[0] else Similarity()


def _max_args(spec: str, args: list[str], n: int) -> None:
    if len(args) > n:
        raise ValueError(f"reward spec {spec!r} has {len(args)} ':' arguments; expected at most {n}")


# name -> (builder, usage shown in errors)
SPECS: dict[str, tuple[CallableType[[str, list[str]], Scorer], str]] = {
    "sentiment": (_sentiment, "sentiment[:LABEL]"),
    "reward_model": (_reward_model, "reward_model:PATH_OR_NAME[:LABEL]"),
    "rouge": (_rouge, "rouge[:KIND[:MEASURE]]"),
    "bleu": (_bleu, "bleu[:TOKENIZE]"),
    "keyword": (_keyword, "keyword[:WORD,WORD[:MODE]]"),
    "kl": (_kl, "kl[:PATH_OR_NAME[:COEF]]"),
    "length": (_length, "length[:TARGET]"),
    "missing_eos": (_missing_eos, "missing_eos[:VALUE]"),
    "answer": (_answer, "answer[:numeric|exact[:FORMAT_REWARD]]"),
    "format": (_format, "format:REGEX"),
    "similarity": (_similarity, "similarity[:KEY]"),
}
# Specs whose text after the first ':' is one argument, kept whole (a regular expression).
_WHOLE_ARGUMENT = frozenset({"format"})

_WEIGHT = re.compile(r"^\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*\*\s*(.*)$", re.DOTALL)


def parse_spec(spec: str) -> Scorer:
    """Parses a string spec into a (possibly composite) scorer; see the module docstring for the grammar.

    Args:
        spec: E.g. ``"rouge"``, ``"bleu"``, ``"keyword:great,fun"``, ``"reward_model:PATH:positive"``,
            ``"rouge + 0.5*keyword:great"``.

    Returns:
        A new scorer (a :class:`~textenv.scorers.base.CompositeScorer` for several terms).

    Raises:
        ValueError: An empty spec, an unknown name (the message lists the valid ones) or bad arguments.
        TypeError: ``spec`` is not a string.

    Example:
        >>> parse_spec("rouge:rouge1 + 0.5*keyword:great").terms()[1][:2]
        ('keyword', 0.5)
    """
    if not isinstance(spec, str):
        raise TypeError(f"a reward spec must be a string, got {type(spec).__name__}: {spec!r}")
    parts = _split_terms(spec)
    if not all(parts):
        raise ValueError(f"reward spec {spec!r} has an empty term; expected e.g. 'rouge + 0.5*keyword:great'")
    scorers = [_parse_term(spec, part) for part in parts]
    return scorers[0] if len(scorers) == 1 else sum(scorers[1:], scorers[0] * 1.0)


def _split_terms(spec: str) -> list[str]:
    """Splits on ``+``, except inside a ``format:REGEX`` term where no scorer name follows the ``+``."""
    parts: list[str] = []
    for piece in spec.split("+"):
        if (
            parts
            and _term_name(parts[-1]) in _WHOLE_ARGUMENT
            and ":" in parts[-1]
            and not _starts_term(piece)
        ):
            parts[-1] += "+" + piece
        else:
            parts.append(piece)
    return [p.strip() for p in parts]


def _term_name(term: str) -> str:
    match = _WEIGHT.match(term)
    return (match.group(2) if match else term).split(":", 1)[0].strip()


def _starts_term(piece: str) -> bool:
    return bool(piece.strip()) and _term_name(piece) in SPECS


def _parse_term(spec: str, term: str) -> Scorer:
    weight = None
    match = _WEIGHT.match(term)
    if match:
        weight, term = float(match.group(1)), match.group(2).strip()
    name, *args = term.split(":")
    name = name.strip()
    if name in _WHOLE_ARGUMENT:
        args = [term.split(":", 1)[1]] if args else []
    if name not in SPECS:
        valid = ", ".join(usage for _, usage in SPECS.values())
        raise ValueError(f"reward spec {spec!r} names no scorer ({name!r}); valid specs: {valid}")
    builder, usage = SPECS[name]
    try:
        scorer = builder(spec, [a.strip() for a in args])
    except (TypeError, ValueError) as err:
        if repr(spec) in str(err):
            raise
        # Name the spec: "reward spec 'kl:tiny_lm:0.1' (kl[:PATH_OR_NAME[:COEF]]): ... did you mean 'tiny-lm'?"
        raise type(err)(f"reward spec {spec!r} ({usage}): {err}") from err
    return scorer if weight is None else weight * scorer
