"""Grids of image tiles with column labels: `tile_grid` lays out every "source | mask | exemplar | result" figure
(sample.py and the app, the training samples, the demos, the reports' figures and the eval contact sheet), each
caller passing its own tile size, spacing and labels; `draw_grid` is the grid `sample.py` and the app write."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw

GRID_GAP = 4  # white pixels between grid cells
LABEL_HEIGHT = 14  # the label strip above the first grid row
GRID_LABELS = ("source", "mask", "exemplar", "result")

Tile = Image.Image | np.ndarray
Resample = Image.Resampling | tuple[Image.Resampling, Image.Resampling]


def binary_mask(mask: Image.Image) -> Image.Image:
    """The mask as the model sees it: white where it repaints (value > 127.5), black elsewhere."""
    return mask.convert("L").point(lambda v: 255 if v >= 128 else 0)


def rgb_tile(tile: Tile) -> Image.Image:
    """An RGB image of a tile: a PIL image, or an (H, W) / (H, W, 3) array (uint8, or floats in [0, 1])."""
    if isinstance(tile, Image.Image):
        return tile.convert("RGB")
    array = np.asarray(tile)
    if array.dtype != np.uint8:
        array = (np.clip(array, 0, 1) * 255).round().astype(np.uint8)
    if array.ndim == 2:
        array = np.repeat(array[..., None], 3, axis=2)
    return Image.fromarray(array)


def fitted(
    image: Image.Image,
    size: int | tuple[int, int] | None,
    height: int | None,
    resample: Resample,
) -> Image.Image:
    """``image`` resized to ``size`` (a square side or (width, height)), else to ``height`` with its aspect kept,
    else as it is. ``resample``: one filter, or (filter when enlarging, filter otherwise)."""
    if size is not None:
        width, target = (size, size) if isinstance(size, int) else size
    elif height is not None:
        width, target = max(1, round(image.width * height / image.height)), height
    else:
        return image
    if isinstance(resample, tuple):
        resample = resample[0] if image.height < target else resample[1]
    return image.resize((width, target), resample)


def tile_grid(
    rows: Sequence[Sequence[Tile]],
    labels: Sequence[str] | None = None,
    *,
    size: int | tuple[int, int] | None = None,
    height: int | None = None,
    resample: Resample = Image.Resampling.LANCZOS,
    column_widths: Sequence[int] | None = None,
    row_height: int | None = None,
    gap: int = 0,
    margin: int = 0,
    label_height: int = LABEL_HEIGHT,
    label_at: tuple[int, int] = (2, 1),
    captions: Sequence[str] | None = None,
    caption_column: int = 0,
    caption_at: tuple[int, int] = (4, 2),
    caption_fill: str = "black",
    footer: str | None = None,
    footer_height: int = 18,
    footer_at: tuple[int, int] = (4, 3),
) -> Image.Image:
    """Rows of tiles on white, each pasted at its cell's top left, with a strip of column labels on top.

    Tiles are PIL images or arrays (`rgb_tile`), resized as `fitted` says (``size``: every tile that size;
    ``height``: that height, aspect kept; neither: as they are). A column is as wide as its widest tile and a row
    as tall as its tallest (with ``size``, every cell is ``size``, so an empty row is a blank band), unless
    ``column_widths`` / ``row_height`` say otherwise. ``gap`` white pixels lie between cells, ``margin`` around the
    whole grid. Labels (black) are drawn at ``label_at`` from each column's top left in a ``label_height`` strip;
    ``captions`` (one per row, ``caption_fill``) at ``caption_at`` from the top left of the row's
    ``caption_column`` cell; ``footer`` (black) at ``footer_at`` in a ``footer_height`` strip under the grid."""
    tiles = [[fitted(rgb_tile(t), size, height, resample) for t in row] for row in rows]
    if not tiles:
        raise ValueError("rows: need at least one row of tiles for the grid")
    count = max(len(labels or ()), *(len(row) for row in tiles))
    if column_widths is None:
        if size is not None:
            column_widths = [size if isinstance(size, int) else size[0]] * count
        else:
            column_widths = [
                max((row[j].width for row in tiles if j < len(row)), default=0) for j in range(count)
            ]
    if row_height is not None:
        heights = [row_height] * len(tiles)
    elif size is not None:
        heights = [size if isinstance(size, int) else size[1]] * len(tiles)
    else:
        heights = [max((t.height for t in row), default=0) for row in tiles]
    lefts = [margin + sum(column_widths[:j]) + gap * j for j in range(len(column_widths))]
    top = margin + (label_height if labels is not None else 0)
    tops = [top + sum(heights[:i]) + gap * i for i in range(len(heights))]
    bottom = tops[-1] + heights[-1]
    grid = Image.new(
        "RGB",
        (
            2 * margin + sum(column_widths) + gap * (len(column_widths) - 1),
            bottom + (footer_height if footer is not None else 0) + margin,
        ),
        "white",
    )
    draw = ImageDraw.Draw(grid)
    for left, text in zip(lefts, labels or (), strict=False):
        draw.text((left + label_at[0], margin + label_at[1]), text, fill="black")
    for i, row in enumerate(tiles):
        for left, tile in zip(lefts, row, strict=False):
            grid.paste(tile, (left, tops[i]))
        if captions is not None and i < len(captions):
            xy = (lefts[caption_column] + caption_at[0], tops[i] + caption_at[1])
            draw.text(xy, captions[i], fill=caption_fill)
    if footer is not None:
        draw.text((margin + footer_at[0], bottom + footer_at[1]), footer, fill="black")
    return grid


def draw_grid(
    source: Image.Image,
    mask: Image.Image,
    exemplar: Image.Image,
    results: Sequence[Image.Image],
    labels: bool = True,
) -> Image.Image:
    """One row per result: source | mask (white = repaint) | exemplar (row height, aspect kept) | result."""
    if not results:
        raise ValueError("results: need at least one result image for the grid")
    height = source.height
    exemplar = fitted(exemplar.convert("RGB"), None, height, Image.Resampling.LANCZOS)
    return tile_grid(
        [[source, binary_mask(mask), exemplar, result] for result in results],
        GRID_LABELS if labels else None,
        column_widths=[source.width, mask.width, exemplar.width, source.width],
        row_height=height,
        gap=GRID_GAP,
        label_at=(1, 1),
    )
