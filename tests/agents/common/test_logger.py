"""The metrics logger's console line, legend and learning-curve smoothing."""

from __future__ import annotations

import pytest

from agents.common.logger import MetricsLogger, format_legend, moving_average, plot_learning_curve


def test_moving_average_is_a_trailing_mean():
    assert moving_average([1.0, 2.0, 3.0, 4.0, 5.0], 3) == [1.0, 1.5, 2.0, 3.0, 4.0]
    assert moving_average([2.0, 4.0], 1) == [2.0, 4.0]
    with pytest.raises(ValueError, match="window"):
        moving_average([1.0], 0)


def test_legend_is_printed_once_and_names_only_the_keys_shown():
    lines: list[str] = []
    logger = MetricsLogger(None, print_fn=lines.append)
    logger.log({"iteration": 1, "episodes": 8, "score": 0.5})
    logger.log({"iteration": 2, "episodes": 16, "score": 0.6})
    assert lines[0] == format_legend({"iteration": 1, "episodes": 8, "score": 0.5})
    assert "kl_coef" not in lines[0] and "score = mean episode return" in lines[0]
    assert lines[1:] == ["it 1 | ep 8 | score 0.5", "it 2 | ep 16 | score 0.6"]


def test_learning_curve_png_is_written(tmp_path):
    rows = [{"episodes": 8.0 * i, "score": 0.1 * i, "kl": 0.01 * i} for i in range(1, 21)]
    plot_learning_curve(rows, tmp_path / "curve.png", threshold=0.8)
    assert (tmp_path / "curve.png").stat().st_size > 1000
