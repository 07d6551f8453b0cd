"""Property tests of the mask geometry: box padding and extension, the Bezier outline and mask, the square crop."""

import math

import numpy as np
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from pbe.data.masks import bezier_outline, edit_mask, extend_box, pad_box, square_crop_window

FAST = settings(max_examples=60, deadline=None)


@st.composite
def image_and_box(draw, max_side=160):
    """An image size and a box inside it (pixel xyxy, exclusive ends)."""
    width = draw(st.integers(8, max_side))
    height = draw(st.integers(8, max_side))
    x0 = draw(st.integers(0, width - 2))
    y0 = draw(st.integers(0, height - 2))
    x1 = draw(st.integers(x0 + 1, width))
    y1 = draw(st.integers(y0 + 1, height))
    return width, height, (x0, y0, x1, y1)


def contains(outer, inner) -> bool:
    return outer[0] <= inner[0] and outer[1] <= inner[1] and inner[2] <= outer[2] and inner[3] <= outer[3]


@FAST
@given(image_and_box(), st.integers(0, 30))
def test_pad_box_grows_by_at_most_pad_and_stays_in_image(case, pad):
    width, height, box = case
    padded = pad_box(box, width, height, pad)
    assert contains(padded, box)
    assert contains((0, 0, width, height), padded)
    assert max(box[0] - padded[0], box[1] - padded[1], padded[2] - box[2], padded[3] - box[3]) <= pad


@FAST
@given(image_and_box(), st.integers(0, 2**32 - 1))
def test_extended_box_contains_box_and_stays_in_image_within_ratio(case, seed):
    width, height, box = case
    extended = extend_box(box, width, height, np.random.default_rng(seed), ratio=0.4)
    assert contains(extended, box)
    assert contains((0, 0, width, height), extended)
    free = (box[0], box[1], width - box[2], height - box[3])
    moves = (box[0] - extended[0], box[1] - extended[1], extended[2] - box[2], extended[3] - box[3])
    assert all(move <= int(0.4 * space) for move, space in zip(moves, free))


def test_extension_uses_the_whole_allowed_range():
    rng = np.random.default_rng(0)
    lefts = [extend_box((50, 50, 60, 60), 100, 100, rng)[0] for _ in range(400)]
    assert min(lefts) == 50 - int(0.4 * 50) and max(lefts) == 50


@FAST
@given(image_and_box(), st.integers(0, 2**32 - 1))
def test_bezier_outline_stays_inside_extended_box(case, seed):
    width, height, box = case
    rng = np.random.default_rng(seed)
    extended = extend_box(box, width, height, rng)
    outline = bezier_outline(box, extended, rng)
    assert outline.shape == (4 * 18, 2)
    assert (outline[:, 0] >= extended[0]).all() and (outline[:, 0] <= extended[2]).all()
    assert (outline[:, 1] >= extended[1]).all() and (outline[:, 1] <= extended[3]).all()


@FAST
@given(image_and_box(), st.integers(0, 2**32 - 1))
def test_bezier_outline_passes_near_each_box_corner(case, seed):
    width, height, box = case
    rng = np.random.default_rng(seed)
    extended = extend_box(box, width, height, rng)
    outline = bezier_outline(box, extended, rng, jitter=5)
    x0, y0, x1, y1 = box
    # the t = 0.05 point of the curve leaving a corner is 5% of the side away, plus the bulge and the jitter
    bulge = max(x0 - extended[0], y0 - extended[1], extended[2] - x1, extended[3] - y1)
    reach = 0.05 * max(x1 - x0, y1 - y0) + 0.1 * bulge + 5 * math.sqrt(2)
    for corner in [(x0, y0), (x1, y0), (x1, y1), (x0, y1)]:
        assert np.hypot(*(outline - corner).T).min() <= reach + 1e-9


def test_bezier_outline_bulges_to_the_extended_edges():
    box, extended = (40, 40, 60, 60), (20, 10, 90, 70)
    outline = bezier_outline(box, extended, np.random.default_rng(0), jitter=0)
    middles = outline[9::18]  # t = 0.5 on each curve: half way between box edge and extended edge
    np.testing.assert_allclose(middles, [[50, 25], [75, 50], [50, 65], [30, 50]])


@FAST
@given(image_and_box(), st.integers(0, 2**32 - 1), st.booleans())
def test_edit_region_covers_box_and_stays_inside_extended_box(case, seed, bezier):
    width, height, box = case
    rng = np.random.default_rng(seed)
    extended = extend_box(box, width, height, rng)
    outline = bezier_outline(box, extended, rng) if bezier else None
    keep = edit_mask(width, height, box, extended, outline)
    assert keep.shape == (height, width)
    assert set(keep.unique().tolist()) <= {0.0, 1.0}
    edit = keep == 0
    assert edit[box[1] : box[3], box[0] : box[2]].all()
    outside = torch.ones_like(edit)
    outside[extended[1] : extended[3], extended[0] : extended[2]] = False
    assert not edit[outside].any()


def test_rectangle_mask_is_exactly_the_extended_box():
    keep = edit_mask(50, 40, (10, 10, 20, 20), (5, 8, 30, 25))
    assert (keep == 0).sum() == 25 * 17
    assert (keep[8:25, 5:30] == 0).all()


def test_bezier_mask_differs_from_the_rectangle():
    box, extended = (40, 40, 80, 80), (10, 10, 110, 110)
    outline = bezier_outline(box, extended, np.random.default_rng(0))
    bezier_area = (edit_mask(120, 120, box, extended, outline) == 0).sum()
    assert 40 * 40 < bezier_area < 100 * 100 * 0.8


@FAST
@given(image_and_box(max_side=200), st.integers(0, 2**32 - 1))
def test_square_crop_is_square_inside_image_and_contains_extended_box(case, seed):
    width, height, box = case
    rng = np.random.default_rng(seed)
    extended = extend_box(box, width, height, rng)
    window = square_crop_window(width, height, extended, rng)
    long_extent = extended[2] - extended[0] if width >= height else extended[3] - extended[1]
    if window is None:
        assert long_extent > min(width, height)
        return
    assert window[2] - window[0] == window[3] - window[1] > 0
    assert contains((0, 0, width, height), window)
    assert contains(window, extended)


def test_square_crop_shrinks_by_at_most_sixty_percent_of_the_margin():
    rng = np.random.default_rng(0)
    windows = [square_crop_window(100, 100, (40, 40, 60, 60), rng) for _ in range(300)]
    assert {(w[0], w[1]) == (100 - w[2], 100 - w[3]) for w in windows} == {True}  # symmetric
    sides = {w[2] - w[0] for w in windows}
    assert min(sides) == 100 - 2 * int(0.6 * 40) and max(sides) == 100
