"""Compare RL algorithms on a textenv task: learning curves (PNG, CSV) and a results table.

    python examples/compare_algorithms.py --env TextGen-Sentiment-v0 --episodes 512 --seeds 0 1 \\
        --algos agents-ppo sb3-ppo sb3-a2c --out runs/compare

Same as the ``textenv-compare`` command; see :mod:`agents.compare` for the options and outputs.
"""

from agents.compare import main

if __name__ == "__main__":
    main()
