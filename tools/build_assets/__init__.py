"""The asset builder: rebuilds every built-in asset of :mod:`textenv.assets` from a seeded corpus.

One command rebuilds everything, without network access::

    python -m tools.build_assets                          # full build into textenv/assets/
    python -m tools.build_assets --quick --out /tmp/assets # seconds; for testing the tool
    python -m tools.build_assets --reuse-lm               # keep tiny-lm, rebuild the rest
    python -m tools.build_assets --agent-only             # the data files and tiny-agent only

Everything comes from a seeded grammar of short English movie reviews and seeded puzzles (two-digit
additions, word reversals, multi-turn calculator and guessing-game transcripts): the same seed
gives the same corpus, tokenizer, data files and (on the same torch build; the builder runs torch
on one thread) the same weights, so rebuilding with seed 0 reproduces the committed files byte for
byte. On the shared 2-core development machine (load 5 to 10) the full build took about 35 minutes
of wall time: tiny-lm 16, tiny-sentiment 2, tiny-solver 17 (2,950 steps, checked every 50); an
idle machine is several times faster. tiny-agent, built last, adds 1,200 steps: 7 minutes at load
4, 13 at load 5 (the whole build took 20 minutes at load 4).

Modules:
    lexicon: the grammar's words and phrases by polarity.
    grammar: :class:`ReviewGrammar`, the seeded review generator.
    corpus: the prompt files of the tasks and the models' training texts (reviews, copies, keyword
        instructions "Use: plot, dull. <review>", chat-formatted requests).
    puzzles: the arithmetic and reversal prompts and tiny-solver's training texts.
    protocols: the exact text protocols of the multi-turn tasks (calculator tool calls, the guessing
        game): the environment's replies and the returns.
    transcripts: their prompt files and tiny-agent's training transcripts (segments of prompt, policy
        turns and inserted replies).
    episodes: multi-turn episodes sampled at the text level, tiny-agent's evaluation.
    tokenizer: the shared byte-level BPE tokenizer.
    models: the models' shapes, training sequences and saved form.
    training: the one training loop (:func:`training.fit`) and evaluation helpers.
    cli: the build steps and the command line.

Layout written under ``--out``::

    tiny-lm/           GPT2LMHeadModel + tokenizer (also the "tiny-tokenizer" asset), build_info.json
    tiny-sentiment/    GPT2ForSequenceClassification (0=negative, 1=positive) + tokenizer, build_info.json
    tiny-solver/       GPT2LMHeadModel for additions and reversals + tokenizer, build_info.json
    tiny-solver-early/ the same run saved earlier (reversal learned, addition not yet)
    tiny-agent/        GPT2LMHeadModel for calculator tool use and the guessing game + tokenizer, build_info.json
    data/review_prompts.txt        one review opening per line
    data/keyword_prompts.jsonl     {"prompt": "Use: plot, dull. The movie was", "keywords": ["plot", "dull"]}
    data/copy_prompts.jsonl        {"prompt": "Repeat: <sentence> =>", "references": [<sentence>, ...]}
    data/arithmetic_prompts.jsonl  {"prompt": "Q: 23+48= A:", "answer": "71"}
    data/reverse_prompts.jsonl     {"prompt": "Reverse: plot dull great =>", "references": ["great dull plot"]}
    data/calculator_prompts.jsonl  {"prompt": "Q: 37*48= A:", "answer": "1776"}
    data/guess_prompts.jsonl       {"prompt": "Guess my number from 1 to 8:", "secret": 5}

The tokenizer carries a small chat template (``corpus.CHAT_TEMPLATE``: "user: <content> assistant:"),
and tiny-lm saw chat-formatted requests, so chat-templated prompts run offline.
"""
