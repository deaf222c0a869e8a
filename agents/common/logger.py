"""Per-iteration metrics of an agent: console lines, a CSV file, TensorBoard and learning-curve plots.

One :class:`MetricsLogger` per training run. Every iteration the trainer hands it a flat dict of floats::

    logger = MetricsLogger("runs/x", verbose=1)
    logger.log({"iteration": 1, "episodes": 16, "score": 0.42, ...})
    logger.close()
    plot_learning_curve(logger.rows, "runs/x/learning_curve.png")

The CSV (``progress.csv``) gets one row per iteration; if a later iteration brings new keys the file is
rewritten with the union of the columns. TensorBoard events are written when ``tensorboard`` is importable.
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

CSV_NAME = "progress.csv"

# Keys shown on the console line, in this order, with their short labels.
_CONSOLE_KEYS: tuple[tuple[str, str], ...] = (
    ("iteration", "it"),
    ("episodes", "ep"),
    ("score", "score"),
    ("kl", "kl"),
    ("kl_coef", "kl_coef"),
    ("entropy", "ent"),
    ("clip_frac", "clip"),
    ("approx_kl", "approx_kl"),
    ("value_loss", "vf_loss"),
    ("explained_variance", "ev"),
    ("samples_per_s", "samples/s"),
    ("tokens_per_s", "tok/s"),
    ("iteration_time", "time"),
)


def _fmt(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, int) or (float(value).is_integer() and abs(value) < 1e9):
        return str(int(value))
    if math.isnan(value):
        return "nan"
    return f"{value:.4g}"


def format_metrics(metrics: Mapping[str, Any]) -> str:
    """One console line of the main metrics, e.g. ``it 3 | ep 48 | score 0.61 | kl 1.2 | ...``.

    Args:
        metrics: The iteration's metrics; missing keys are skipped.

    Returns:
        The line.
    """
    parts = [f"{label} {_fmt(metrics[key])}" for key, label in _CONSOLE_KEYS if key in metrics]
    return " | ".join(parts)


def read_csv(path: str | os.PathLike[str]) -> list[dict[str, float]]:
    """Reads a ``progress.csv`` back into a list of rows (empty cells are skipped).

    Args:
        path: The CSV file.

    Returns:
        One dict per row, values as floats.
    """
    rows: list[dict[str, float]] = []
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            rows.append({k: float(v) for k, v in row.items() if k is not None and v not in ("", None)})
    return rows


class MetricsLogger:
    """Writes each iteration's metrics to the console, ``<log_dir>/progress.csv`` and TensorBoard.

    Args:
        log_dir: Directory of the CSV and TensorBoard files; ``None`` writes no files.
        verbose: 0 silent, 1 one console line per iteration.
        tensorboard: Write TensorBoard events when the ``tensorboard`` package is importable.
        rows: Earlier rows to start from (when resuming a run; the CSV is rewritten with them).
        print_fn: Function that prints a console line (``tqdm.write`` while a progress bar runs).
    """

    def __init__(
        self,
        log_dir: str | os.PathLike[str] | None = None,
        *,
        verbose: int = 1,
        tensorboard: bool = True,
        rows: Sequence[Mapping[str, float]] = (),
        print_fn: Any = print,
    ) -> None:
        self.log_dir = None if log_dir is None else os.fspath(log_dir)
        self.verbose = verbose
        self.print_fn = print_fn
        self.rows: list[dict[str, float]] = [dict(r) for r in rows]
        self._columns: list[str] = []
        self._writer: Any = None
        if self.log_dir is not None:
            os.makedirs(self.log_dir, exist_ok=True)
            self._rewrite_csv()
            if tensorboard:
                self._writer = _summary_writer(os.path.join(self.log_dir, "tensorboard"))

    @property
    def csv_path(self) -> str | None:
        """Path of the CSV file, or ``None`` without a log directory."""
        return None if self.log_dir is None else os.path.join(self.log_dir, CSV_NAME)

    def log(self, metrics: Mapping[str, Any], step: int | None = None) -> None:
        """Records one iteration.

        Args:
            metrics: Flat dict of numbers (non-numbers are ignored in files).
            step: TensorBoard step; default ``metrics["episodes"]``.
        """
        row = {k: float(v) for k, v in metrics.items() if _is_number(v)}
        self.rows.append(row)
        if self.verbose:
            self.print_fn(format_metrics(metrics))
        if self.log_dir is None:
            return
        if set(row) - set(self._columns):
            self._rewrite_csv()
        else:
            with open(self.csv_path, "a", newline="") as f:  # type: ignore[arg-type]
                csv.DictWriter(f, fieldnames=self._columns).writerow(row)
        if self._writer is not None:
            global_step = int(step if step is not None else row.get("episodes", len(self.rows)))
            for key, value in row.items():
                self._writer.add_scalar(_tb_tag(key), value, global_step)
            self._writer.flush()

    def _rewrite_csv(self) -> None:
        columns: list[str] = []
        for row in self.rows:
            columns += [k for k in row if k not in columns]
        self._columns = columns
        tmp = f"{self.csv_path}.tmp"
        with open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=columns)
            writer.writeheader()
            writer.writerows(self.rows)
        os.replace(tmp, self.csv_path)  # type: ignore[arg-type]

    def close(self) -> None:
        """Closes the TensorBoard writer."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None


def _is_number(value: Any) -> bool:
    if isinstance(value, bool):
        return True
    try:
        float(value)
    except (TypeError, ValueError):
        return False
    return True


def _tb_tag(key: str) -> str:
    if key.startswith("reward/"):
        return key
    groups = {"score": "rollout", "kl": "rollout", "kl_coef": "rollout", "episode_length": "rollout"}
    if key in groups:
        return f"{groups[key]}/{key}"
    if key in ("samples_per_s", "tokens_per_s", "iteration_time", "rollout_time", "update_time"):
        return f"time/{key}"
    return f"train/{key}"


def _summary_writer(path: str) -> Any:
    try:
        import tensorboard  # noqa: F401
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        return None
    return SummaryWriter(path)


def plot_learning_curve(
    rows: Iterable[Mapping[str, float]],
    path: str | os.PathLike[str],
    *,
    title: str = "learning curve",
    threshold: float | None = None,
) -> None:
    """Saves a PNG of the mean episode reward (``score``) and the KL against episodes.

    Args:
        rows: Per-iteration metrics with ``episodes``, ``score`` and optionally ``kl``.
        path: Output PNG file.
        title: Figure title.
        threshold: Draws the task's reward threshold as a dashed line when given.

    Raises:
        ValueError: If no row has ``episodes`` and ``score``.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    rows = [r for r in rows if "episodes" in r and "score" in r]
    if not rows:
        raise ValueError("plot_learning_curve needs rows with 'episodes' and 'score'; got none")
    x = [r["episodes"] for r in rows]
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(x, [r["score"] for r in rows], color="tab:blue", label="mean episode reward")
    if threshold is not None:
        ax.axhline(threshold, color="tab:blue", linestyle="--", linewidth=1, label=f"threshold {threshold:g}")
    ax.set_xlabel("episodes")
    ax.set_ylabel("mean episode reward", color="tab:blue")
    handles, labels = ax.get_legend_handles_labels()
    if any("kl" in r for r in rows):
        ax2 = ax.twinx()
        ax2.plot(
            x, [r.get("kl", float("nan")) for r in rows], color="tab:red", alpha=0.7, label="KL to reference"
        )
        ax2.set_ylabel("KL per episode (nats)", color="tab:red")
        h2, l2 = ax2.get_legend_handles_labels()
        handles, labels = handles + h2, labels + l2
    ax.legend(handles, labels, loc="lower right", fontsize=8)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(os.fspath(path), dpi=100)
    plt.close(fig)
