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


SMALL = [
    "n=2", "cell=16", "per_row=2", "progress=false", "data.augment.image_size=32", "data.augment.exemplar_size=16",
]  # fmt: skip
SYNTHETIC = ["data.source.min_size=32", "data.source.max_size=48"]


def run_preview(monkeypatch, *arguments: str) -> int:
    """`python -m pbe.data.preview ARGUMENTS` in this process; its exit code (0 when it returns)."""
    monkeypatch.setattr(sys, "argv", ["preview", *arguments])
    try:
        main()
    except SystemExit as e:
        return e.code
    finally:
        GlobalHydra.instance().clear()
    return 0


def photo_manifest(folder) -> list:
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(2):
        Image.fromarray(rng.integers(0, 256, (48, 48, 3), dtype=np.uint8)).save(folder / f"photo{i}.png")
    lines = [f'{{"image": "photo{i}.png", "boxes": [[8, 8, 36, 36]]}}' for i in range(2)]
    (folder / "photos.jsonl").write_text("\n".join(lines) + "\n")
    return ["data=jsonl", f"data.source.manifest={folder / 'photos.jsonl'}"]


def test_an_existing_out_is_replaced_only_with_overwrite(tmp_path, monkeypatch, capsys):
    out = tmp_path / "photo.png"
    Image.new("RGB", (5, 5), "red").save(out)
    mine = out.read_bytes()
    assert run_preview(monkeypatch, *SMALL, *SYNTHETIC, f"out={out}") == 1
    assert capsys.readouterr().err == (
        f"error: out: {out} already exists; pass overwrite=true (--overwrite) to replace it, or choose another output\n"
    )
    assert out.read_bytes() == mine
    assert run_preview(monkeypatch, *SMALL, *SYNTHETIC, f"out={out}", "overwrite=true") == 0
    assert Image.open(out).size == (2 * (4 * 16 + 3 * GAP) + SAMPLE_GAP, 16)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["photo.png"]  # no temporary file left


def test_out_never_replaces_one_of_the_manifests_photos(tmp_path, monkeypatch, capsys):
    data = photo_manifest(tmp_path / "photos")
    photo = tmp_path / "photos" / "photo1.png"
    before = photo.read_bytes()
    for overwrite in ("false", "true"):
        assert run_preview(monkeypatch, *SMALL, *data, f"out={photo}", f"overwrite={overwrite}") == 1
        assert photo.read_bytes() == before
    assert "is the input" in capsys.readouterr().err
    assert run_preview(monkeypatch, *SMALL, *data, f"out={tmp_path / 'photos' / 'grid.png'}") == 0


@pytest.mark.parametrize(
    "arguments, message",
    [
        (["n=0"], "n must be an integer >= 1, got 0"),
        (["cell=0"], "cell must be an integer >= 8, got 0"),
        (["per_row=0"], "per_row must be an integer >= 1, got 0"),
        (
            ["out=grid.txt"],
            "out must name an image file (.png, .jpg, .jpeg, .webp, .bmp, .tif, .tiff), got 'grid.txt'",
        ),
        (
            ["out=notes.txt/grid.png"],
            "out: cannot create the folder notes.txt: notes.txt is a file, not a folder",
        ),
        (["data=jsonl", "data.source.manifest=missing.jsonl"], "manifest: no such file 'missing.jsonl'"),
    ],
    ids=["n", "cell", "per_row", "extension", "under a file", "missing manifest"],
)
def test_bad_arguments_end_in_one_error_line(tmp_path, monkeypatch, capsys, arguments, message):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "notes.txt").write_text("mine")
    data = [] if "data=jsonl" in arguments else SYNTHETIC
    assert run_preview(monkeypatch, *SMALL, "out=grid.png", *data, *arguments) == 1
    assert capsys.readouterr().err == f"error: {message}\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]
