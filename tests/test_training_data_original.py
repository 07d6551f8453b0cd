"""data/augment=original: the authors' pipeline where pbe deliberately differs, against hand-computed cases."""

import numpy as np
import pytest
import torch
from training_helpers import compose

from pbe.data import AugmentConfig, build_dataset
from pbe.data.augment import augment_exemplar, clip_normalize, resize_image, sample_exemplar_params
from pbe.data.masks import bezier_outline, edit_mask, square_crop_window

BOX, EXTENDED = (4, 10, 20, 18), (0, 2, 28, 26)


def test_original_bezier_drops_points_whose_x_or_y_already_occurred_on_the_curve():
    # s = 0.25, 0.5, 0.75: every value below is exact in binary, worked out by hand from the quadratic curves
    # (top y: 7, 6, 7; right x: 23, 24, 23; bottom y: 21, 22, 21; left x: 2.5, 2, 2.5): the third point of each
    # curve repeats the first one's y (top, bottom) or x (right, left) and is dropped.
    rng = np.random.default_rng(0)
    points = bezier_outline(BOX, EXTENDED, rng, points_per_curve=3, step=0.25, jitter=0, style="original")
    expected = [(8, 7), (12, 6), (23, 12), (24, 14), (16, 21), (12, 22), (2.5, 16), (2, 14)]
    assert points.tolist() == [list(map(float, p)) for p in expected]
    pbe = bezier_outline(BOX, EXTENDED, np.random.default_rng(0), points_per_curve=3, step=0.25, jitter=0)
    assert len(pbe) == 12  # pbe keeps every point


def test_original_bezier_jitters_kept_points_x_then_y_and_does_not_clamp():
    points = bezier_outline(BOX, EXTENDED, np.random.default_rng(3), 3, 0.25, jitter=5, style="original")
    draws = np.random.default_rng(3).integers(-5, 6, size=16)  # one x and one y draw per kept point, in order
    plain = bezier_outline(BOX, EXTENDED, np.random.default_rng(3), 3, 0.25, jitter=0, style="original")
    assert np.array_equal(points - plain, draws.reshape(8, 2))


def test_original_bezier_points_equal_the_bezier_package_evaluation():
    bezier = pytest.importorskip("bezier")
    rng = np.random.default_rng(1)
    kept = []
    for _ in range(20):
        x0, y0 = (int(v) for v in rng.integers(20, 200, 2))
        x1, y1 = x0 + int(rng.integers(10, 150)), y0 + int(rng.integers(10, 150))
        ext = (
            x0 - int(rng.integers(0, 30)),
            y0 - int(rng.integers(0, 30)),
            x1 + int(rng.integers(0, 30)),
            y1 + 7,
        )
        ours = bezier_outline((x0, y0, x1, y1), ext, np.random.default_rng(0), jitter=0, style="original")
        # the original loop, verbatim in spirit: bezier.Curve.evaluate and `not in` lists per curve
        mx, my = (x0 + x1) / 2, (y0 + y1) / 2
        nodes = [
            [[x0, mx, x1], [y0, ext[1], y0]],
            [[x1, ext[2], x1], [y0, my, y1]],
            [[x1, mx, x0], [y1, ext[3], y1]],
            [[x0, ext[0], x0], [y1, my, y0]],
        ]
        theirs = []
        for n in nodes:
            curve = bezier.Curve(np.asfortranarray(n, dtype=float), degree=2)
            xs, ys = [], []
            for i in range(1, 19):
                x, y = curve.evaluate(i * 0.05)[:, 0]
                if x not in xs and y not in ys:
                    theirs.append((x, y))
                    xs.append(x)
                    ys.append(y)
        assert ours.tolist() == [list(p) for p in theirs]
        kept.append(len(ours))
    assert 45 < np.mean(kept) < 60  # the authors' de-duplication keeps about 53 of 72 points


def test_original_polygon_is_drawn_unclamped_on_the_whole_image():
    outline = np.array([[2.0, 2.0], [6.0, 2.0], [6.0, 5.0], [2.0, 5.0]])  # reaches outside the extended box
    keep = edit_mask(8, 8, (3, 3, 5, 4), (3, 2, 6, 5), outline, style="original")
    expected = torch.ones(8, 8)
    expected[2:6, 2:7] = 0  # PIL fills the polygon with its boundary pixels
    assert torch.equal(keep, expected)
    pbe = edit_mask(8, 8, (3, 3, 5, 4), (3, 2, 6, 5), outline)
    assert pbe[:, :3].eq(1).all()  # pbe cuts the region to the extended box (x >= 3)


def test_original_square_crop_keeps_square_images_whole():
    for seed in range(20):
        assert (
            square_crop_window(100, 100, (40, 40, 60, 60), np.random.default_rng(seed), style="original")
            is None
        )
    shrunk = [square_crop_window(100, 100, (40, 40, 60, 60), np.random.default_rng(s)) for s in range(20)]
    assert any(w != (0, 0, 100, 100) for w in shrunk)  # pbe shrinks square images too


def test_original_square_crop_squashes_when_exactly_one_window_fits():
    # W=200, H=100, extended x from 50 to 150: left_most = 150 - 100 = 50, right_most = min(200, 50 + 100) - 100 = 50
    assert square_crop_window(200, 100, (50, 10, 150, 90), np.random.default_rng(0), style="original") is None
    assert square_crop_window(200, 100, (50, 10, 150, 90), np.random.default_rng(0)) == (50, 0, 150, 100)


def test_original_square_crop_otherwise_draws_like_pbe():
    # W=300, H=100, extended (120, 10, 160, 90): positions 60..120, margin min(120 - left, 10, left - 60, 10)
    for seed in range(10):
        a = square_crop_window(300, 100, (120, 10, 160, 90), np.random.default_rng(seed), style="original")
        b = square_crop_window(300, 100, (120, 10, 160, 90), np.random.default_rng(seed))
        assert a == b and a[2] - a[0] == a[3] - a[1]


def test_original_resizes_have_no_antialiasing():
    image = torch.zeros(3, 4, 4, dtype=torch.uint8)
    image[:, 0, 2] = 255
    plain = resize_image(image, 2, antialias=False)
    # bilinear, half-pixel centres, 2x down: each output pixel is the mean of one 2x2 block, in [-1, 1]
    assert torch.equal(plain[0], torch.tensor([[-1.0, -0.5], [-1.0, -1.0]]))
    assert resize_image(image, 2)[0, 0, 0] > -1  # pbe's antialiased resize reaches across blocks

    crop = torch.zeros(3, 16, 16, dtype=torch.uint8)
    crop[:, 4, 5] = 200  # block (2, 2) of the 8x8 exemplar: mean 50 / 255
    config = AugmentConfig(exemplar_size=8, exemplar_aug=False, antialias=False)
    exemplar = augment_exemplar(crop, sample_exemplar_params(np.random.default_rng(0), config), config)
    expected = torch.zeros(3, 8, 8)
    expected[:, 2, 2] = 50 / 255
    assert torch.allclose(exemplar, clip_normalize(expected), atol=1e-6)


def test_augment_original_config_switches_all_three_and_builds_samples():
    cfg = compose("data/augment=original")
    augment = AugmentConfig.from_dict(dict(cfg.data.augment))
    assert (augment.antialias, augment.mask_style, augment.crop_style) == (False, "original", "original")
    assert augment.bezier_p == 0.5 and augment.flip_p == 0.5  # the rest is the paper's
    sample = build_dataset(cfg.data)[0]
    assert sample["image"].shape == (3, 64, 64) and sample["exemplar"].shape == (3, 32, 32)
