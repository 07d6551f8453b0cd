"""Augmentation rates over 2,000 draws match the configuration (counted from each sample's recorded decisions)."""

import dataclasses

import numpy as np
import pytest

from pbe.data import AugmentConfig, ExemplarEditDataset, SyntheticSource

DRAWS = 2000
TOLERANCE = 0.05  # about five standard errors at p = 0.5 over 2,000 draws
CUSTOM = dict(flip_p=0.2, rotate_p=0.8, blur_p=0.6, elastic_p=0.1, bezier_p=0.9)
DECISIONS = {
    "flip_p": "flipped",
    "rotate_p": "rotated",
    "blur_p": "blurred",
    "elastic_p": "elastic",
    "bezier_p": "bezier",
}


# The pipeline runs in DataLoader workers, which use one thread; tiny ops crawl with more on a busy machine.
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def draw_meta(config: AugmentConfig, seed: int, draws: int = DRAWS) -> list[dict]:
    """Recorded decisions of ``draws`` samples: 200 scenes over several epochs."""
    source = SyntheticSource(num_scenes=200, min_size=32, max_size=40)
    dataset = ExemplarEditDataset(source, config, seed=seed)
    metas = []
    for epoch in range(draws // len(dataset)):
        dataset.set_epoch(epoch)
        metas.extend(dataset[i]["meta"] for i in range(len(dataset)))
    return metas


@pytest.fixture(scope="module")
def paper_draws():
    return draw_meta(AugmentConfig(image_size=16, exemplar_size=16), seed=0)


@pytest.fixture(scope="module")
def custom_draws():
    return draw_meta(AugmentConfig(image_size=16, exemplar_size=16, **CUSTOM), seed=1)


def rate(metas, key):
    return float(np.mean([m[key] for m in metas]))


@pytest.mark.parametrize("probability", sorted(DECISIONS))
def test_paper_rates(paper_draws, probability):
    assert len(paper_draws) == DRAWS
    expected = getattr(AugmentConfig(), probability)
    assert abs(rate(paper_draws, DECISIONS[probability]) - expected) <= TOLERANCE


@pytest.mark.parametrize("probability", sorted(DECISIONS))
def test_configured_rates(custom_draws, probability):
    assert abs(rate(custom_draws, DECISIONS[probability]) - CUSTOM[probability]) <= TOLERANCE


def test_rotation_angles_are_uniform_within_the_limit(paper_draws):
    angles = np.array([m["angle"] for m in paper_draws if m["rotated"]])
    assert np.abs(angles).max() <= 20.0
    assert (
        abs(np.mean(np.abs(angles) > 10) - 0.5) <= TOLERANCE and abs(np.mean(angles > 0) - 0.5) <= TOLERANCE
    )


def test_blur_kernels_are_the_odd_sizes_3_to_7_equally_often(paper_draws):
    kernels = [m["blur_kernel"] for m in paper_draws if m["blurred"]]
    assert set(kernels) == {3, 5, 7}
    assert all(abs(kernels.count(k) / len(kernels) - 1 / 3) <= TOLERANCE for k in (3, 5, 7))


def test_decisions_are_not_correlated(paper_draws):
    flipped = np.array([m["flipped"] for m in paper_draws], float)
    bezier = np.array([m["bezier"] for m in paper_draws], float)
    assert abs(np.corrcoef(flipped, bezier)[0, 1]) < 0.1


def test_turning_exemplar_aug_off_zeroes_every_exemplar_rate():
    config = dataclasses.replace(AugmentConfig(image_size=16, exemplar_size=16), exemplar_aug=False)
    metas = draw_meta(config, seed=0, draws=200)
    assert all(rate(metas, key) == 0 for key in ("flipped", "rotated", "blurred", "elastic"))
    assert rate(metas, "bezier") > 0
