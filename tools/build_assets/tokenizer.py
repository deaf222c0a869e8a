"""The byte-level BPE tokenizer shared by every built-in model."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

EOS_TOKEN = "<|endoftext|>"
PAD_TOKEN = "<pad>"


def train_tokenizer(texts: Sequence[str], vocab_size: int, model_max_length: int):
    """Byte-level BPE on ``texts`` wrapped in a ``PreTrainedTokenizerFast``."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    # No prefix space: "The movie" and " movie" stay distinct tokens and decode() round-trips exactly.
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        special_tokens=[EOS_TOKEN, PAD_TOKEN],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=EOS_TOKEN,
        eos_token=EOS_TOKEN,
        pad_token=PAD_TOKEN,
        padding_side="left",
        model_max_length=model_max_length,
        clean_up_tokenization_spaces=False,
    )


def save_tokenizer(tokenizer, directory: Path) -> None:
    """Saves ``tokenizer`` with the same serialized padding state wherever and whenever it is saved.

    transformers leaves the backend's padding as set by the last call (on after ``padding=True``,
    off after an unpadded call), and tokenizer.json records it; fixing it here keeps the two saved
    copies identical and the build reproducible. Left padding also suits direct ``tokenizers`` use.
    The chat template also goes into tokenizer_config.json, where transformers before 4.47 looks for
    it (later versions read chat_template.jinja).
    """
    tokenizer.backend_tokenizer.enable_padding(
        direction="left", pad_id=tokenizer.pad_token_id, pad_token=tokenizer.pad_token
    )
    tokenizer.save_pretrained(directory)
    if tokenizer.chat_template:
        config_path = Path(directory) / "tokenizer_config.json"
        config = json.loads(config_path.read_text(encoding="utf-8"))
        config["chat_template"] = tokenizer.chat_template
        config_path.write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
