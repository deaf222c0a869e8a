"""The prompt files' data (tools/build_assets/corpus.py): the shipped files are what seed 0 writes."""

from __future__ import annotations

from pathlib import Path

from textenv import assets
from tools.build_assets import corpus


def test_data_files_are_reproducible_from_seed_0(tmp_path):
    data = corpus.make_data(0)
    corpus.write_data(tmp_path, data)
    shipped = Path(assets.path("review-prompts")).parent
    names = sorted(p.name for p in (tmp_path / "data").iterdir())
    assert names == sorted(p.name for p in shipped.iterdir())
    for name in names:  # byte for byte
        assert (tmp_path / "data" / name).read_bytes() == (shipped / name).read_bytes(), name
    assert corpus.make_data(1) != data
