"""The preview grid and its command line."""

import sys

import numpy as np
import pytest
from hydra.core.global_hydra import GlobalHydra
from PIL import Image

from pbe.data import AugmentConfig, ExemplarEditDataset, SyntheticSource
from pbe.data.preview import GAP, SAMPLE_GAP, main, render_grid


@pytest.fixture(scope="module")
def dataset():
    source = SyntheticSource(num_scenes=5, min_size=32, max_size=48)
    return ExemplarEditDataset(source, AugmentConfig(image_size=32, exemplar_size=16), seed=0)


def test_grid_layout_has_four_cells_per_sample(dataset):
    grid = render_grid(dataset, n=3, cell=16, per_row=2, progress=False)
    assert grid.size == (2 * (4 * 16 + 3 * GAP) + SAMPLE_GAP, 2 * 16 + SAMPLE_GAP)


def test_mask_cell_shows_the_mask_white_for_keep(dataset):
    grid = np.asarray(render_grid(dataset, n=1, cell=32, per_row=1, progress=False))
    mask_cell = grid[:, 32 + GAP : 64 + GAP, 0]
    expected = (dataset[0]["mask"][0] * 255).round().numpy()
    np.testing.assert_allclose(mask_cell, expected, atol=1)


def test_exemplar_cell_undoes_clip_normalisation(dataset):
    grid = np.asarray(render_grid(dataset, n=1, cell=16, per_row=1, progress=False)).astype(float)
    exemplar_cell = grid[:, 3 * (16 + GAP) :, :]
    assert (
        exemplar_cell.min() >= 0 and abs(exemplar_cell.mean() - 128) < 110
    )  # a picture, not saturated noise


def test_render_grid_rejects_bad_sizes(dataset):
    with pytest.raises(ValueError, match="cell"):
        render_grid(dataset, n=2, cell=2)


def test_command_line_writes_the_png_and_nothing_else(tmp_path, monkeypatch, capsys):
    arguments = [
        "n=2", "cell=16", "per_row=2", "out=grid.png", "progress=false", "data.augment.image_size=32",
        "data.augment.exemplar_size=16", "data.source.min_size=32", "data.source.max_size=48",
    ]  # fmt: skip
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["preview", *arguments])
    try:
        main()  # the Hydra entry point itself, in this process: parses argv like python -m pbe.data.preview
    finally:
        GlobalHydra.instance().clear()
    assert "wrote grid.png: 2 samples" in capsys.readouterr().out
    assert sorted(p.name for p in tmp_path.iterdir()) == ["grid.png"]  # no outputs/, .hydra/ or log files
    with Image.open(tmp_path / "grid.png") as grid:
        assert grid.size == (2 * (4 * 16 + 3 * GAP) + SAMPLE_GAP, 16)
