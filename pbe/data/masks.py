"""Mask geometry of Paint by Example: box padding and extension, the Bezier outline, the edit mask, the square crop.

Boxes are pixel ``(x0, y0, x1, y1)`` tuples of ints with ``x1`` and ``y1`` exclusive, so a box covers the pixels
``[x0, x1) x [y0, y1)``; geometrically its edges lie at ``x0`` and ``x1``. Masks use the model's convention:
a float ``H x W`` tensor with 1 = keep and 0 = the region to edit. Every random draw comes from the numpy
``Generator`` passed in, so a sample is reproducible from its seed alone.

Departures from the original code, on purpose: the Bezier edit region is the filled polygon plus the box, cut to the
extended box (the original's +-5 px jitter could cut box corners or cross the extended box); the square crop falls
back to squashing only when the extended box is longer than the short side (the original also squashed whenever
exactly one window position fitted), and its random shrink also applies to square images.
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image, ImageDraw

Box = tuple[int, int, int, int]


def pad_box(box: Box, width: int, height: int, pad: int) -> Box:
    """The box grown by up to ``pad`` pixels on each side, clipped to the image (the exemplar crop)."""
    x0, y0, x1, y1 = box
    return (max(0, x0 - pad), max(0, y0 - pad), min(width, x1 + pad), min(height, y1 + pad))


def extend_box(box: Box, width: int, height: int, rng: np.random.Generator, ratio: float = 0.4) -> Box:
    """Each side moved outwards by ``randint(0, int(ratio * free space on that side))``; stays inside the image."""
    x0, y0, x1, y1 = box
    free = (x0, y0, width - x1, height - y1)  # left, top, right, bottom
    moves = [int(rng.integers(0, int(ratio * space) + 1)) for space in free]
    return (x0 - moves[0], y0 - moves[1], x1 + moves[2], y1 + moves[3])


def bezier_outline(
    box: Box,
    extended: Box,
    rng: np.random.Generator,
    points_per_curve: int = 18,
    step: float = 0.05,
    jitter: int = 5,
) -> np.ndarray:
    """The Bezier mask outline: an ``(4 * points_per_curve, 2)`` array of (x, y) points, clockwise from top-left.

    Four quadratic curves run from corner to corner of ``box`` (top, right, bottom, left); each one's middle
    control point sits on the matching edge of ``extended``. Each curve is sampled at ``t = step, 2 step, ...,
    points_per_curve * step`` and every coordinate is jittered by ``randint(-jitter, jitter)``, then clamped to
    ``extended`` so the outline never leaves it.
    """
    x0, y0, x1, y1 = box
    ex0, ey0, ex1, ey1 = extended
    mid_x, mid_y = (x0 + x1) / 2, (y0 + y1) / 2
    top_left, top_right, bottom_right, bottom_left = (x0, y0), (x1, y0), (x1, y1), (x0, y1)
    curves = [
        (top_left, (mid_x, ey0), top_right),
        (top_right, (ex1, mid_y), bottom_right),
        (bottom_right, (mid_x, ey1), bottom_left),
        (bottom_left, (ex0, mid_y), top_left),
    ]
    t = (step * np.arange(1, points_per_curve + 1))[:, None]
    pieces = []
    for start, control, end in curves:
        start, control, end = (np.asarray(p, dtype=np.float64) for p in (start, control, end))
        pieces.append((1 - t) ** 2 * start + 2 * t * (1 - t) * control + t**2 * end)
    points = np.concatenate(pieces) + rng.integers(-jitter, jitter + 1, size=(4 * points_per_curve, 2))
    points[:, 0] = points[:, 0].clip(ex0, ex1)
    points[:, 1] = points[:, 1].clip(ey0, ey1)
    return points


def edit_mask(
    width: int, height: int, box: Box, extended: Box, outline: np.ndarray | None = None
) -> torch.Tensor:
    """The keep mask (1 = keep, 0 = edit) of an image: the extended box, or the filled ``outline`` polygon.

    The polygon is rasterised inside the extended box only and the original box is always part of the edit
    region, so the edit region covers ``box`` and stays inside ``extended`` whatever the jitter did.
    """
    keep = torch.ones(height, width)
    ex0, ey0, ex1, ey1 = extended
    if outline is None:
        keep[ey0:ey1, ex0:ex1] = 0
        return keep
    canvas = Image.new("L", (ex1 - ex0, ey1 - ey0), 0)
    # PIL puts integer coordinates on pixel centres; outline coordinates are pixel edges, hence the half pixel.
    local = [(float(x) - ex0 - 0.5, float(y) - ey0 - 0.5) for x, y in outline]
    ImageDraw.Draw(canvas).polygon(local, fill=255)
    region = torch.from_numpy(np.array(canvas) > 0)
    x0, y0, x1, y1 = box
    region[y0 - ey0 : y1 - ey0, x0 - ex0 : x1 - ex0] = True
    keep[ey0:ey1, ex0:ex1] = (~region).float()
    return keep


def square_crop_window(
    width: int, height: int, extended: Box, rng: np.random.Generator, shrink_ratio: float = 0.6
) -> Box | None:
    """A square ``min(W, H)`` window containing ``extended``, shrunk symmetrically; None when none fits.

    The window slides along the long side to a random position that keeps the extended box inside, then each
    side moves in by ``randint(0, int(shrink_ratio * m))`` where ``m`` is the smallest margin between the window
    and the extended box. None means no square window can hold the extended box (the caller squashes the image).
    """
    side = min(width, height)
    ex0, ey0, ex1, ey1 = extended
    if width >= height:
        low, high = max(0, ex1 - side), min(width - side, ex0)
    else:
        low, high = max(0, ey1 - side), min(height - side, ey0)
    if high < low:
        return None
    offset = int(rng.integers(low, high + 1))
    left, top = (offset, 0) if width >= height else (0, offset)
    margin = min(ex0 - left, ey0 - top, left + side - ex1, top + side - ey1)
    shrink = int(rng.integers(0, int(shrink_ratio * margin) + 1))
    return (left + shrink, top + shrink, left + side - shrink, top + side - shrink)
