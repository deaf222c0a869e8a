"""Runs a peer script (``shared/peers/*.py``) with our benchmarks' thread count and clock.

The peer scripts time with ``time.perf_counter`` and set their own torch thread count; on a shared
machine both sides must run on one thread and on this process's CPU time to be compared (the
``--threads 1 --clock cpu`` of our scripts). This wrapper runs the peer script unchanged in this
interpreter (the peer's virtual environment: it needs only the standard library and torch) with
``torch.set_num_threads`` pinned to ``--threads`` and, for ``--clock cpu``, ``time.perf_counter``
reading ``time.process_time``.

Example:
    /tmp/textenv-peers/bin/python benchmarks/peer_clock.py --threads 1 --clock cpu \\
        shared/peers/trl_ppo.py small 16 32 2 --bf16
"""

from __future__ import annotations

import argparse
import os
import runpy
import sys
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1, help="torch threads for the peer")
    parser.add_argument(
        "--clock", choices=("cpu", "wall"), default="cpu", help="cpu: this process's CPU time"
    )
    parser.add_argument("script", help="the peer script")
    parser.add_argument("args", nargs=argparse.REMAINDER, help="the peer script's own arguments")
    a = parser.parse_args()

    import torch

    torch.set_num_threads(a.threads)
    torch.set_num_threads = lambda _n: None  # the peer's own call would undo --threads
    if a.clock == "cpu":
        time.perf_counter = time.process_time  # type: ignore[assignment]
    script = os.path.abspath(a.script)
    sys.path.insert(0, os.path.dirname(script))  # the peers import their `common` module
    sys.argv = [script, *a.args]
    runpy.run_path(script, run_name="__main__")


if __name__ == "__main__":
    main()
