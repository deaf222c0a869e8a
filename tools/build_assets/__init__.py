"""The asset builder: rebuilds every built-in asset of :mod:`textenv.assets` from a seeded corpus.

One command rebuilds everything, without network access::

    python -m tools.build_assets                          # full build into textenv/assets/
    python -m tools.build_assets --quick --out /tmp/assets # seconds; for testing the tool
    python -m tools.build_assets --reuse-lm               # keep tiny-lm, rebuild the rest

Everything comes from a seeded grammar of short English movie reviews: the same seed gives the same
corpus, tokenizer, data files and (on the same torch build and thread count) the same weights, so
rebuilding with seed 0 reproduces the committed files byte for byte.

Modules:
    lexicon: the grammar's words and phrases by polarity.
    grammar: :class:`ReviewGrammar`, the seeded review generator.
    corpus: the prompt files of the tasks and the models' training texts.
    tokenizer: the shared byte-level BPE tokenizer.
    models: the models' shapes, training sequences and saved form.
    training: the one training loop (:func:`training.fit`) and evaluation helpers.
    cli: the build steps and the command line.

Layout written under ``--out``::

    tiny-lm/           GPT2LMHeadModel + tokenizer (also the "tiny-tokenizer" asset), build_info.json
    tiny-sentiment/    GPT2ForSequenceClassification (0=negative, 1=positive) + tokenizer, build_info.json
    data/review_prompts.txt     one review opening per line
    data/keyword_prompts.jsonl  {"prompt": ..., "keywords": [...]}
    data/copy_prompts.jsonl     {"prompt": "Repeat: <sentence> =>", "references": [<sentence>, ...]}
"""
