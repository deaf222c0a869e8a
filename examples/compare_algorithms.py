"""Compare RL algorithms on textenv tasks: learning curves (PNG, CSV), results tables and the aggregate.

    python examples/compare_algorithms.py --env TextGen-Sentiment-v0 --episodes 512 --seeds 0 1 \\
        --algos ppo sb3-ppo sb3-a2c --out runs/compare
    python examples/compare_algorithms.py --suite builtin --episodes 2048 --seeds 0 1 2 3 4 \\
        --algos ppo grpo rloo --out runs/suite

The second writes, besides each task's curves and table, ``aggregate.md`` (IQM and probability of
improvement with 95% stratified bootstrap intervals) and ``performance_profiles.png``; run it again after
an interruption and the finished runs are read back. Same as the ``textenv-compare`` command; see
:mod:`agents.compare` for the options and outputs.
"""

import sys

from agents.compare import main

if __name__ == "__main__":
    sys.exit(main())
