"""The dataset: sample layout and value ranges, mask/box invariants, per-sample determinism, skipping, ablations."""

import dataclasses
import math
import warnings

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from pbe.data import AugmentConfig, ExemplarEditDataset, SkippedSampleWarning, SyntheticSource, UnusableSample
from pbe.data.augment import CLIP_MEAN, CLIP_STD

TINY = AugmentConfig(image_size=32, exemplar_size=16)
SOURCE = SyntheticSource(num_scenes=40, seed=0, min_size=48, max_size=96)


# The pipeline runs in DataLoader workers, which use one thread; tiny ops crawl with more on a busy machine.
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def tiny_dataset(seed=0, **changes):
    return ExemplarEditDataset(SOURCE, dataclasses.replace(TINY, **changes), seed=seed)


def assert_same_sample(a, b):
    for key in ("image", "mask", "masked_image", "exemplar", "box"):
        assert torch.equal(a[key], b[key]), key
    assert a["meta"]["image_id"] == b["meta"]["image_id"]


def box_region(box, size, grow):
    """Boolean (size, size) grid of pixels whose centres lie inside ``box`` grown by ``grow`` pixels."""
    centres = torch.arange(size) + 0.5
    x0, y0, x1, y1 = box.tolist()
    inside_x = (centres >= x0 - grow) & (centres <= x1 + grow)
    inside_y = (centres >= y0 - grow) & (centres <= y1 + grow)
    return inside_y[:, None] & inside_x[None, :]


def test_sample_has_the_documented_keys_shapes_and_dtypes():
    sample = ExemplarEditDataset(SOURCE, AugmentConfig(image_size=64), seed=0)[0]
    assert sample["image"].shape == (3, 64, 64) and sample["masked_image"].shape == (3, 64, 64)
    assert sample["mask"].shape == (1, 64, 64) and sample["box"].shape == (4,)
    assert sample["exemplar"].shape == (3, 224, 224)
    assert all(sample[k].dtype == torch.float32 for k in ("image", "mask", "masked_image", "exemplar", "box"))
    assert {"image_id", "label", "bezier", "flipped", "rotated", "blurred", "elastic"} <= set(sample["meta"])


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 1000), st.integers(0, len(SOURCE) - 1))
def test_value_ranges_hold(seed, index):
    sample = tiny_dataset(seed)[index]
    assert sample["image"].min() >= -1 and sample["image"].max() <= 1
    assert sample["mask"].min() >= 0 and sample["mask"].max() <= 1
    torch.testing.assert_close(sample["masked_image"], sample["image"] * sample["mask"])
    low = (0 - torch.tensor(CLIP_MEAN)) / torch.tensor(CLIP_STD) - 1e-5
    high = (1 - torch.tensor(CLIP_MEAN)) / torch.tensor(CLIP_STD) + 1e-5
    exemplar = sample["exemplar"].flatten(1)
    assert (exemplar.min(1).values >= low).all() and (exemplar.max(1).values <= high).all()


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 1000), st.integers(0, len(SOURCE) - 1))
def test_edit_region_covers_the_box_and_stays_inside_the_extended_box(seed, index):
    dataset = tiny_dataset(seed)
    sample = dataset[index]
    mask, size = sample["mask"][0], TINY.image_size
    # the bilinear (antialiased) resize smears edges by up to one output pixel plus the downscale factor
    crop = sample["meta"]["crop_box"]
    scale = size / min(crop[2] - crop[0], crop[3] - crop[1]).item()
    smear = 1.0 + 1.0 / scale
    interior = box_region(sample["box"], size, -smear)
    assert (mask[interior] < 1e-6).all()
    extended = (sample["meta"]["extended_box"] - crop[[0, 1, 0, 1]]).float()
    extended *= torch.tensor([size / (crop[2] - crop[0]), size / (crop[3] - crop[1])] * 2)
    assert (mask[~box_region(extended, size, smear)] > 1 - 1e-6).all()
    assert 0 <= sample["box"].min() and sample["box"].max() <= size + 1e-4


def test_same_seed_and_index_give_the_same_sample_in_any_order():
    first, second = tiny_dataset(seed=5), tiny_dataset(seed=5)
    forward = [first[i] for i in range(6)]
    backward = [second[i] for i in reversed(range(6))][::-1]
    for a, b in zip(forward, backward):
        assert_same_sample(a, b)


def test_same_seed_and_index_give_the_same_sample_in_dataloader_workers():
    dataset = tiny_dataset(seed=2)
    loader = torch.utils.data.DataLoader(dataset, batch_size=None, num_workers=2, sampler=[7, 3, 7, 11, 0, 3])
    for index, sample in zip([7, 3, 7, 11, 0, 3], loader):
        assert_same_sample(sample, dataset[index])


def test_different_seeds_give_different_augmentations():
    a, b = tiny_dataset(seed=0), tiny_dataset(seed=1)
    assert any(not torch.equal(a[i]["mask"], b[i]["mask"]) for i in range(5))


def test_new_epoch_redraws_augmentations_of_the_same_image():
    dataset = tiny_dataset(seed=0)
    before = [dataset[i] for i in range(5)]
    dataset.set_epoch(1)
    after = [dataset[i] for i in range(5)]
    assert all(a["meta"]["image_id"] == b["meta"]["image_id"] for a, b in zip(before, after))
    assert any(not torch.equal(a["mask"], b["mask"]) for a, b in zip(before, after))


def test_no_exemplar_aug_changes_only_the_exemplar():
    base, ablated = tiny_dataset(seed=3), tiny_dataset(seed=3, exemplar_aug=False)
    for i in range(8):
        a, b = base[i], ablated[i]
        assert torch.equal(a["mask"], b["mask"]) and torch.equal(a["image"], b["image"])
        assert not (
            b["meta"]["flipped"] or b["meta"]["rotated"] or b["meta"]["blurred"] or b["meta"]["elastic"]
        )
    assert any(not torch.equal(base[i]["exemplar"], ablated[i]["exemplar"]) for i in range(8))


def test_rect_mask_only_gives_extended_rectangles_and_keeps_the_exemplar():
    base, ablated = tiny_dataset(seed=4), tiny_dataset(seed=4, bezier_p=0.0)
    for i in range(8):
        a, b = base[i], ablated[i]
        assert not b["meta"]["bezier"] and torch.equal(a["exemplar"], b["exemplar"])
        assert torch.equal(a["meta"]["extended_box"], b["meta"]["extended_box"])


def test_no_square_crop_squashes_the_whole_image():
    sample = tiny_dataset(seed=0, square_crop=False)[1]
    width, height = sample["meta"]["source_size"].tolist()
    assert (
        sample["meta"]["crop_box"].tolist() == [0, 0, width, height] and not sample["meta"]["square_cropped"]
    )


def test_square_crop_is_square_when_possible():
    samples = [tiny_dataset(seed=0)[i] for i in range(10)]
    cropped = [s["meta"]["crop_box"] for s in samples if s["meta"]["square_cropped"]]
    assert cropped and all(c[2] - c[0] == c[3] - c[1] for c in cropped)


class FlakySource:
    """Every index in ``bad`` raises UnusableSample; the others are synthetic scenes."""

    def __init__(self, bad):
        self.bad, self.scenes = set(bad), SyntheticSource(num_scenes=10, min_size=48, max_size=64)

    def __len__(self):
        return len(self.scenes)

    def open(self, index):
        if index in self.bad:
            raise UnusableSample(f"scene {index} is broken")
        return self.scenes.open(index)


def test_unusable_index_is_replaced_by_a_usable_one_with_a_counted_warning():
    dataset = ExemplarEditDataset(FlakySource(bad=range(5)), TINY, seed=0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        sample = dataset[2]
    assert sample["meta"]["source_index"] >= 5 and sample["meta"]["index"] == 2
    assert dataset.skipped == len(caught) == sample["meta"]["attempts"] - 1 >= 1
    assert all(issubclass(w.category, SkippedSampleWarning) for w in caught)
    assert "scene 2 is broken (1 skipped so far" in str(caught[0].message)
    assert f"({len(caught)} skipped so far" in str(caught[-1].message)


def test_replacement_is_deterministic():
    first, second = (ExemplarEditDataset(FlakySource(bad=range(5)), TINY, seed=0) for _ in range(2))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SkippedSampleWarning)
        assert_same_sample(first[3], second[3])


def test_all_unusable_raises_after_max_attempts():
    dataset = ExemplarEditDataset(FlakySource(bad=range(10)), TINY, seed=0, max_attempts=4)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SkippedSampleWarning)
        with pytest.raises(RuntimeError, match="4 unusable images"):
            dataset[0]
    assert dataset.skipped == 4


def test_negative_and_out_of_range_indices():
    dataset = tiny_dataset()
    assert_same_sample(dataset[-1], dataset[len(dataset) - 1])
    with pytest.raises(IndexError):
        dataset[len(dataset)]


def test_dataloader_batches_collate():
    loader = torch.utils.data.DataLoader(tiny_dataset(), batch_size=4)
    batch = next(iter(loader))
    assert batch["image"].shape == (4, 3, 32, 32) and batch["meta"]["bezier"].shape == (4,)
    assert len(batch["meta"]["label"]) == 4


def test_output_box_maps_the_source_box_through_the_crop():
    sample = tiny_dataset(seed=1)[0]
    x0, y0, x1, y1 = sample["meta"]["crop_box"].tolist()
    expected = (sample["meta"]["source_box"] - torch.tensor([x0, y0, x0, y0])) * 32 / (x1 - x0)
    torch.testing.assert_close(sample["box"], expected.float())
    assert math.isclose(x1 - x0, y1 - y0) or not sample["meta"]["square_cropped"]


def test_seed_must_be_a_non_negative_int():
    with pytest.raises(ValueError, match="seed"):
        ExemplarEditDataset(SOURCE, TINY, seed=-1)


def test_recorded_mask_kind_matches_the_mask():
    # 64 x 64 scenes, no crop and no resize: the rectangle mask is exactly the extended box
    source = SyntheticSource(num_scenes=12, min_size=64, max_size=64)
    dataset = ExemplarEditDataset(source, dataclasses.replace(TINY, image_size=64, square_crop=False), seed=0)
    kinds = []
    for sample in (dataset[i] for i in range(len(dataset))):
        x0, y0, x1, y1 = sample["meta"]["extended_box"].tolist()
        rectangle = torch.ones(64, 64)
        rectangle[y0:y1, x0:x1] = 0
        kinds.append(sample["meta"]["bezier"])
        assert torch.equal(sample["mask"][0], rectangle) != sample["meta"]["bezier"]
    assert 0 < sum(kinds) < len(kinds)


def test_full_mask_p_one_edits_the_whole_image_and_keeps_the_rest():
    base, full = tiny_dataset(seed=5), tiny_dataset(seed=5, full_mask_p=1.0)
    for i in range(4):
        a, b = base[i], full[i]
        assert torch.equal(b["mask"], torch.zeros_like(b["mask"])) and not torch.equal(a["mask"], b["mask"])
        assert torch.equal(b["masked_image"], torch.zeros_like(b["masked_image"]))
        assert torch.equal(a["image"], b["image"]) and torch.equal(a["exemplar"], b["exemplar"])


def test_full_mask_p_zero_draws_nothing_and_some_masks_are_full_in_between():
    assert_same_sample(tiny_dataset(seed=6)[0], tiny_dataset(seed=6, full_mask_p=0.0)[0])
    half = tiny_dataset(seed=6, full_mask_p=0.5)
    full = [bool((half[i]["mask"] == 0).all()) for i in range(24)]
    assert 3 <= sum(full) <= 21
    with pytest.raises(ValueError, match="full_mask_p"):
        tiny_dataset(full_mask_p=1.5)


def test_recolour_p_one_recolours_only_the_object_and_leaves_the_other_draws_alone():
    base, recoloured = tiny_dataset(seed=7), tiny_dataset(seed=7, recolour_p=1.0)
    for i in range(4):
        a, b = base[i], recoloured[i]
        assert_same_sample(a, b)  # the recolour stage draws from its own generator
        assert "noisy_image" not in a and bool(b["recoloured"])
        changed = (b["noisy_image"] - b["image"]).abs().amax(0) > 1e-6
        # only pixels near the chosen object's box change (resize blur: one pixel of slack)
        assert changed.any() and not (changed & ~box_region(b["box"], 32, grow=1.5)).any()
        assert b["noisy_image"].min() >= -1 and b["noisy_image"].max() <= 1


def test_recoloured_object_is_far_from_its_colour_and_keeps_its_shading():
    import numpy as np

    from pbe.data.augment import recolour_object

    pixels, boxes, _, masks = SOURCE.render_with_masks(3)
    image = torch.from_numpy(pixels).permute(2, 0, 1)
    coverage = torch.from_numpy(masks[0])
    out = recolour_object(image, coverage, np.random.default_rng(0), min_distance=150.0)
    inside, outside = coverage > 0.99, coverage == 0
    assert torch.equal(out[:, outside], image[:, outside])
    before, after = image[:, inside].float(), out[:, inside].float()
    assert (after.mean(1) - before.mean(1)).norm() >= 150.0 - 2.0  # rounding and clamping
    shift = after - before  # one colour shift for the whole object, except where clamped
    unclamped = ((after > 0) & (after < 255)).all(0)
    assert (shift[:, unclamped] - shift[:, unclamped].median(1, keepdim=True).values).abs().max() <= 1
    with pytest.raises(ValueError, match="coverage is empty"):
        recolour_object(image, torch.zeros_like(coverage), np.random.default_rng(0))


def test_recolour_p_needs_a_source_with_object_masks_and_a_probability():
    class BoxesOnly:
        def __len__(self):
            return len(SOURCE)

        def open(self, index):
            return dataclasses.replace(SOURCE.open(index), masks=None)

    with pytest.raises(ValueError, match="recolour_p=0.5 needs a source with object masks"):
        ExemplarEditDataset(BoxesOnly(), dataclasses.replace(TINY, recolour_p=0.5))
    with pytest.raises(ValueError, match="recolour_p"):
        tiny_dataset(recolour_p=-0.1)
    with pytest.raises(ValueError, match="recolour_min_distance"):
        tiny_dataset(recolour_min_distance=300.0)
    half = tiny_dataset(seed=8, recolour_p=0.5)
    flags = [bool(half[i]["recoloured"]) for i in range(24)]
    assert 3 <= sum(flags) <= 21
    for i in range(24):  # not recoloured: the noisy image is the image itself
        if not flags[i]:
            assert torch.equal(half[i]["noisy_image"], half[i]["image"])


def test_recolour_with_a_palette_paints_another_palette_colour():
    import numpy as np

    from pbe.data.augment import recolour_object
    from pbe.data.synthetic import COLOURS

    pixels, _, labels, masks = SOURCE.render_with_masks(5)
    image = torch.from_numpy(pixels).permute(2, 0, 1)
    coverage = torch.from_numpy(masks[0])
    own = torch.tensor(COLOURS[labels[0].split(" ")[0]], dtype=torch.float32)
    palette = list(COLOURS.values())
    inside = coverage > 0.99
    seen = set()
    for seed in range(12):
        out = recolour_object(image, coverage, np.random.default_rng(seed), 96.0, palette)
        target = out[:, inside].float().mean(1)  # a palette colour, up to shading and clamping
        distances = torch.tensor([float((target - torch.tensor(c).float()).norm()) for c in palette])
        nearest = int(distances.argmin())
        assert distances[nearest] < 12 and float((torch.tensor(palette[nearest]).float() - own).norm()) >= 90
        seen.add(nearest)
    assert len(seen) >= 3  # drawn, not always the same colour
