"""Mask geometry of Paint by Example: box padding and extension, the Bezier outline, the edit mask, the square crop.

Boxes are pixel ``(x0, y0, x1, y1)`` tuples of ints with ``x1`` and ``y1`` exclusive, so a box covers the pixels
``[x0, x1) x [y0, y1)``; geometrically its edges lie at ``x0`` and ``x1``. Masks use the model's convention:
a float ``H x W`` tensor with 1 = keep and 0 = the region to edit. Every random draw comes from the numpy
``Generator`` passed in, so a sample is reproducible from its seed alone.

Departures from the original code, on purpose: the Bezier edit region is the filled polygon plus the box, cut to the
extended box (the original's +-5 px jitter could cut box corners or cross the extended box); the square crop falls
back to squashing only when the extended box is longer than the short side (the original also squashed whenever
exactly one window position fitted), and its random shrink also applies to square images.
``style="original"`` (``data/augment=original``) reproduces the original code instead: its Bezier point
de-duplication and unclamped polygon on the whole image, and its square crop (square images kept whole, the
``right_most <= left_most`` fallback).
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image, ImageDraw

Box = tuple[int, int, int, int]
STYLES = ("pbe", "original")


def check_style(style: str) -> None:
    if style not in STYLES:
        raise ValueError(f"style must be one of {STYLES}, got {style!r}")


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
    style: str = "pbe",
) -> np.ndarray:
    """The Bezier mask outline: an ``(4 * points_per_curve, 2)`` array of (x, y) points, clockwise from top-left.

    Four quadratic curves run from corner to corner of ``box`` (top, right, bottom, left); each one's middle
    control point sits on the matching edge of ``extended``. Each curve is sampled at ``t = step, 2 step, ...,
    points_per_curve * step`` and every coordinate is jittered by ``randint(-jitter, jitter)``, then clamped to
    ``extended`` so the outline never leaves it. ``style="original"``: see ``bezier_outline_original``.
    """
    check_style(style)
    if style == "original":
        return bezier_outline_original(box, extended, rng, points_per_curve, step, jitter)
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
    width: int,
    height: int,
    box: Box,
    extended: Box,
    outline: np.ndarray | None = None,
    style: str = "pbe",
) -> torch.Tensor:
    """The keep mask (1 = keep, 0 = edit) of an image: the extended box, or the filled ``outline`` polygon.

    The polygon is rasterised inside the extended box only and the original box is always part of the edit
    region, so the edit region covers ``box`` and stays inside ``extended`` whatever the jitter did.
    ``style="original"``: the polygon is drawn as given on the whole image (PIL's rounding of the float points, no
    half-pixel shift, no clipping, box not forced), as the original code does.
    """
    check_style(style)
    keep = torch.ones(height, width)
    ex0, ey0, ex1, ey1 = extended
    if outline is None:
        keep[ey0:ey1, ex0:ex1] = 0
        return keep
    if style == "original":
        canvas = Image.new("L", (width, height), 255)
        ImageDraw.Draw(canvas).polygon([(float(x), float(y)) for x, y in outline], fill=0)
        return torch.from_numpy(np.array(canvas) > 0).float()
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
    width: int,
    height: int,
    extended: Box,
    rng: np.random.Generator,
    shrink_ratio: float = 0.6,
    style: str = "pbe",
) -> Box | None:
    """A square ``min(W, H)`` window containing ``extended``, shrunk symmetrically; None when none fits.

    The window slides along the long side to a random position that keeps the extended box inside, then each
    side moves in by ``randint(0, int(shrink_ratio * m))`` where ``m`` is the smallest margin between the window
    and the extended box. None means no square window can hold the extended box (the caller squashes the image).
    ``style="original"``: see ``square_crop_window_original``.
    """
    check_style(style)
    if style == "original":
        return square_crop_window_original(width, height, extended, rng, shrink_ratio)
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


# ----------------------------------------------------------------------------------------- the original's variants


def quadratic_bezier_point(nodes: tuple, s: float) -> float:
    """One coordinate of a quadratic Bezier curve at ``s``, with the float operations in the order of
    ``bezier.Curve.evaluate`` (the barycentric "VS" scheme) that the original code calls, so equal values
    compare equal exactly as they did there."""
    n0, n1, n2 = (float(n) for n in nodes)
    l1 = 1.0 - s
    return (l1 * n0 + (2.0 * s) * n1) * l1 + (s * s) * n2


def bezier_outline_original(
    box: Box,
    extended: Box,
    rng: np.random.Generator,
    points_per_curve: int = 18,
    step: float = 0.05,
    jitter: int = 5,
) -> np.ndarray:
    """The original code's Bezier outline: the same four curves as ``bezier_outline`` (top, right, bottom, left),
    sampled at ``s = i * step`` for i = 1..points_per_curve, but a point is kept only when neither its x nor its y
    (before jitter) already occurred on the same curve (exact float comparison, the original's ``not in``
    lists). The mirrored half of each curve repeats one coordinate, so about 53 of 72 points survive. Kept points
    get ``randint(-jitter, jitter)`` on x, then on y; nothing is clamped. Returns an (N, 2) float array."""
    x0, y0, x1, y1 = box
    ex0, ey0, ex1, ey1 = extended
    mid_x, mid_y = (x0 + x1) / 2, (y0 + y1) / 2
    curves = [  # (x nodes, y nodes) as in the original
        ((x0, mid_x, x1), (y0, ey0, y0)),  # top
        ((x1, ex1, x1), (y0, mid_y, y1)),  # right
        ((x1, mid_x, x0), (y1, ey1, y1)),  # bottom
        ((x0, ex0, x0), (y1, mid_y, y0)),  # left
    ]
    points = []
    for xs_nodes, ys_nodes in curves:
        seen_x, seen_y = [], []
        for i in range(1, points_per_curve + 1):
            s = i * step
            x, y = quadratic_bezier_point(xs_nodes, s), quadratic_bezier_point(ys_nodes, s)
            if x not in seen_x and y not in seen_y:
                dx = int(rng.integers(-jitter, jitter + 1))
                dy = int(rng.integers(-jitter, jitter + 1))
                points.append((x + dx, y + dy))
                seen_x.append(x)
                seen_y.append(y)
    return np.asarray(points, dtype=np.float64)


def square_crop_window_original(
    width: int, height: int, extended: Box, rng: np.random.Generator, shrink_ratio: float = 0.6
) -> Box | None:
    """The original code's square crop: square images are used whole (no shrink); otherwise the window slides
    between ``left_most = max(0, ex1 - side)`` and ``right_most = min(long, ex0 + side) - side`` and the image is
    squashed whole when ``right_most <= left_most`` (also when exactly one position fits); then the same shrink
    as ``square_crop_window``. None = use the whole image."""
    if width == height:
        return None
    side = min(width, height)
    ex0, ey0, ex1, ey1 = extended
    if width > height:
        low, high = max(0, ex1 - side), min(width, ex0 + side) - side
    else:
        low, high = max(0, ey1 - side), min(height, ey0 + side) - side
    if high <= low:
        return None
    offset = int(rng.integers(low, high + 1))
    left, top = (offset, 0) if width > height else (0, offset)
    margin = min(ex0 - left, ey0 - top, left + side - ex1, top + side - ey1)
    shrink = int(rng.integers(0, int(shrink_ratio * margin) + 1))
    return (left + shrink, top + shrink, left + side - shrink, top + side - shrink)
