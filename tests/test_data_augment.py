"""Exemplar augmentation: config checks, parameter draws and each transform against an independent oracle."""

import dataclasses

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import ndimage

from pbe.data.augment import (
    CLIP_MEAN,
    CLIP_STD,
    AugmentConfig,
    ExemplarParams,
    augment_exemplar,
    box_blur,
    elastic_source,
    pixel_grid,
    reflect_coordinates,
    rotate_reflect,
    sample_exemplar_params,
    warp_reflect,
)

NONE = ExemplarParams(False, 0.0, 0, False, np.zeros((3, 2)), 0)


def random_image(seed=0, shape=(3, 40, 40)):
    return torch.rand(shape, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize(
    "field, value",
    [
        ("flip_p", 1.5),
        ("bezier_p", -0.1),
        ("blur_kernel_min", 4),
        ("image_size", 4),
        ("extension_ratio", 2.0),
    ],
)
def test_config_rejects_bad_values_naming_the_field(field, value):
    with pytest.raises(ValueError, match=field):
        AugmentConfig(**{field: value})


def test_config_from_dict_lists_valid_keys_for_unknown_ones():
    with pytest.raises(ValueError, match="flip_p"):
        AugmentConfig.from_dict({"flip_probability": 0.5})


def test_exemplar_is_224_square_and_clip_normalised():
    crop = (random_image(1, (3, 90, 60)) * 255).to(torch.uint8)
    config = AugmentConfig(flip_p=1, rotate_p=1, blur_p=1, elastic_p=1)
    exemplar = augment_exemplar(crop, sample_exemplar_params(np.random.default_rng(0), config), config)
    assert exemplar.shape == (3, 224, 224) and exemplar.dtype == torch.float32
    low = (0 - torch.tensor(CLIP_MEAN)) / torch.tensor(CLIP_STD)
    high = (1 - torch.tensor(CLIP_MEAN)) / torch.tensor(CLIP_STD)
    per_channel = exemplar.flatten(1)
    assert (per_channel.min(1).values >= low - 1e-5).all() and (
        per_channel.max(1).values <= high + 1e-5
    ).all()


def test_without_augmentation_the_exemplar_is_the_normalised_resized_crop():
    crop = torch.full((3, 30, 50), 128, dtype=torch.uint8)
    exemplar = augment_exemplar(crop, NONE, AugmentConfig())
    expected = (128 / 255 - torch.tensor(CLIP_MEAN)) / torch.tensor(CLIP_STD)
    torch.testing.assert_close(exemplar[:, 100, 100], expected)


def test_switching_exemplar_aug_off_disables_every_exemplar_transform():
    config = AugmentConfig(exemplar_aug=False, flip_p=1, rotate_p=1, blur_p=1, elastic_p=1)
    params = sample_exemplar_params(np.random.default_rng(0), config)
    assert (params.flip, params.angle, params.blur_kernel, params.elastic) == (False, 0.0, 0, False)


def test_flip_mirrors_the_exemplar():
    crop = (random_image(2) * 255).to(torch.uint8)
    config = AugmentConfig(exemplar_size=40)
    flipped = augment_exemplar(crop, dataclasses.replace(NONE, flip=True), config)
    torch.testing.assert_close(flipped, augment_exemplar(crop, NONE, config).flip(-1))


@settings(max_examples=30, deadline=None)
@given(st.integers(1, 9), st.lists(st.integers(-40, 40), min_size=1, max_size=20))
def test_reflect_coordinates_match_numpy_reflect_padding(size, coords):
    pad = 40
    padded_index = np.pad(np.arange(size), pad, mode="reflect") if size > 1 else np.zeros(size + 2 * pad, int)
    expected = [padded_index[c + pad] for c in coords if 0 <= c + pad < len(padded_index)]
    inside = [c for c in coords if 0 <= c + pad < len(padded_index)]
    folded = reflect_coordinates(torch.tensor(inside, dtype=torch.float32), size)
    assert folded.tolist() == [float(e) for e in expected]


def test_rotation_by_90_degrees_is_a_counter_clockwise_quarter_turn():
    image = random_image(3)
    torch.testing.assert_close(
        rotate_reflect(image, 90.0), torch.rot90(image, 1, dims=(1, 2)), atol=1e-5, rtol=0
    )


def test_rotation_fills_corners_by_reflection_not_black():
    image = torch.full((3, 32, 32), 0.7)
    torch.testing.assert_close(rotate_reflect(image, 20.0), image)


def test_rotation_keeps_the_centre_pixel():
    image = random_image(4, (3, 33, 33))
    torch.testing.assert_close(rotate_reflect(image, 17.0)[:, 16, 16], image[:, 16, 16])


@pytest.mark.parametrize("kernel", [3, 5, 7])
def test_box_blur_matches_scipy_uniform_filter_with_mirror_border(kernel):
    image = random_image(5, (3, 20, 24))
    expected = ndimage.uniform_filter(image.numpy(), size=(1, kernel, kernel), mode="mirror")
    np.testing.assert_allclose(box_blur(image, kernel).numpy(), expected, atol=1e-6)


def test_elastic_without_affine_or_field_is_the_identity():
    config = AugmentConfig(elastic_alpha=0.0, elastic_alpha_affine=0.0)
    params = dataclasses.replace(NONE, elastic=True)
    torch.testing.assert_close(elastic_source(24, 24, params, config), pixel_grid(24, 24))


def test_elastic_affine_moves_each_anchor_to_its_jittered_place():
    config = AugmentConfig(elastic_alpha=0.0)
    jitter = np.array([[3.0, -4.0], [-5.0, 2.0], [1.0, 6.0]])
    source = elastic_source(60, 60, dataclasses.replace(NONE, elastic=True, affine_jitter=jitter), config)
    anchors = np.array([[50, 50], [50, 10], [10, 10]])  # centre 30 +- 60 // 3
    for anchor, moved in zip(anchors, (anchors + jitter).astype(int)):
        np.testing.assert_allclose(source[moved[1], moved[0]].numpy(), anchor, atol=1e-4)


def test_elastic_field_displaces_by_at_most_alpha():
    config = AugmentConfig(elastic_alpha=3.0, elastic_sigma=2.0, elastic_alpha_affine=0.0)
    params = dataclasses.replace(NONE, elastic=True, noise_seed=7)
    shift = (elastic_source(50, 50, params, config) - pixel_grid(50, 50)).abs()
    assert 0.1 < shift.max() <= 3.0


def test_warp_with_an_integer_shift_copies_pixels_and_reflects_at_the_border():
    image = random_image(6, (1, 10, 10))
    source = pixel_grid(10, 10) + torch.tensor([2.0, 0.0])  # read two pixels to the right
    warped = warp_reflect(image, source)
    torch.testing.assert_close(warped[:, :, :8], image[:, :, 2:])
    torch.testing.assert_close(warped[:, :, 8:], image[:, :, [8, 7]])  # 10 -> 8, 11 -> 7


def test_parameter_draws_do_not_depend_on_the_switches():
    draws = [
        sample_exemplar_params(np.random.default_rng(3), AugmentConfig(**kw))
        for kw in ({}, {"exemplar_aug": False}, {"blur_p": 0.0})
    ]
    assert len({p.noise_seed for p in draws}) == 1
    assert all(np.array_equal(p.affine_jitter, draws[0].affine_jitter) for p in draws)
