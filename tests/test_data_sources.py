"""Each source format on small fixtures written here (real photos from skimage.data), including corrupt files."""

import csv
import json
import warnings

import numpy as np
import pytest
import skimage.data
import torch
from PIL import Image

from pbe.data import (
    CocoSource,
    ExemplarEditDataset,
    JsonlSource,
    OpenImagesSource,
    SkippedSampleWarning,
    SyntheticSource,
    UnusableSample,
)
from pbe.data.augment import AugmentConfig
from pbe.data.sources import load_rgb
from pbe.data.synthetic import COLOURS, SHAPES, paint_shape

PHOTOS = ("astronaut", "coffee", "chelsea", "rocket")
TINY = AugmentConfig(image_size=32, exemplar_size=16)
OPEN_IMAGES_HEADER = [
    "ImageID", "Source", "LabelName", "Confidence", "XMin", "XMax", "YMin", "YMax",
    "IsOccluded", "IsTruncated", "IsGroupOf", "IsDepiction", "IsInside",
]  # fmt: skip


# The pipeline runs in DataLoader workers, which use one thread; tiny ops crawl with more on a busy machine.
pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def photo_dir(tmp_path_factory):
    """Four real photos, long side 96, saved as JPEG, plus corrupt and non-image files."""
    folder = tmp_path_factory.mktemp("photos")
    for name in PHOTOS:
        photo = Image.fromarray(getattr(skimage.data, name)())
        photo.thumbnail((96, 96))
        photo.save(folder / f"{name}.jpg", quality=90)
        photo.save(folder / f"{name}.png")
    full = (folder / "coffee.jpg").read_bytes()
    (folder / "truncated.jpg").write_bytes(full[: len(full) // 2])
    png = (folder / "chelsea.png").read_bytes()
    (folder / "truncated.png").write_bytes(png[: len(png) // 2])
    (folder / "notes.jpg").write_text("this is not an image\n")
    return folder


def size_of(folder, name):
    with Image.open(folder / f"{name}.jpg") as im:
        return im.size


def write_open_images_csv(path, rows):
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(OPEN_IMAGES_HEADER)
        for image_id, label, x0, x1, y0, y1 in rows:
            writer.writerow([image_id, "xclick", label, 1, x0, x1, y0, y1, 0, 0, 0, 0, 0])


def test_load_rgb_gives_three_uint8_channels_even_for_grayscale(tmp_path):
    Image.fromarray(np.full((5, 7), 200, np.uint8)).save(tmp_path / "gray.png")
    image = load_rgb(tmp_path / "gray.png")
    assert image.shape == (3, 5, 7) and image.dtype == torch.uint8 and (image == 200).all()


@pytest.mark.parametrize("name", ["truncated.jpg", "truncated.png", "notes.jpg", "missing.jpg"])
def test_load_rgb_raises_unusable_sample_for_bad_files(photo_dir, name):
    with pytest.raises(UnusableSample, match=name):
        load_rgb(photo_dir / name)


def test_open_images_keeps_boxes_in_the_area_range_as_pixels(photo_dir, tmp_path):
    rows = [
        ("astronaut", "/m/01", 0.25, 0.75, 0.1, 0.6),  # area 0.25: kept
        ("astronaut", "/m/02", 0.0, 0.05, 0.0, 0.05),  # 0.0025: too small
        ("astronaut", "/m/03", 0.0, 1.0, 0.0, 0.95),  # 0.95: too large
        ("coffee", "/m/02", 0.0, 0.1, 0.0, 0.1),  # only a tiny box: image left out
    ]
    write_open_images_csv(tmp_path / "boxes.csv", rows)
    with pytest.warns(SkippedSampleWarning, match="left out 1 images"):
        source = OpenImagesSource(tmp_path / "boxes.csv", photo_dir, progress=False)
    assert len(source) == 1 and source.dropped == 1
    item = source.open(0)
    width, height = size_of(photo_dir, "astronaut")
    assert item.image.shape == (3, height, width)
    # fractions scaled to pixels, grown outwards to whole pixels
    expected = (int(0.25 * width), int(0.1 * height), int(np.ceil(0.75 * width)), int(np.ceil(0.6 * height)))
    assert item.boxes == [expected]
    assert item.labels == ["/m/01"]


def test_open_images_uses_display_names_from_class_descriptions(photo_dir, tmp_path):
    write_open_images_csv(tmp_path / "boxes.csv", [("rocket", "/m/0rkt", 0.4, 0.6, 0.2, 0.9)])
    (tmp_path / "names.csv").write_text("LabelName,DisplayName\n/m/0rkt,Rocket\n")
    source = OpenImagesSource(
        tmp_path / "boxes.csv", photo_dir, class_names=tmp_path / "names.csv", progress=False
    )
    assert source.open(0).labels == ["Rocket"]


def test_open_images_rejects_a_csv_without_box_columns(photo_dir, tmp_path):
    (tmp_path / "bad.csv").write_text("ImageID,LabelName\nastronaut,/m/01\n")
    with pytest.raises(ValueError, match="box_csv.*XMin"):
        OpenImagesSource(tmp_path / "bad.csv", photo_dir, progress=False)


def test_coco_converts_xywh_and_skips_crowd_and_boxless_images(photo_dir, tmp_path):
    images = []
    for i, name in enumerate(["chelsea", "rocket", "astronaut"]):
        width, height = size_of(photo_dir, name)
        images.append({"id": 10 + i, "file_name": f"{name}.jpg", "width": width, "height": height})
    width, height = images[0]["width"], images[0]["height"]
    box = [0.2 * width, 0.1 * height, 0.5 * width, 0.6 * height]
    annotations = [
        {"id": 1, "image_id": 10, "category_id": 17, "bbox": box, "iscrowd": 0},
        {"id": 2, "image_id": 10, "category_id": 17, "bbox": [0, 0, width, height], "iscrowd": 1},
        {"id": 3, "image_id": 11, "category_id": 5, "bbox": [1, 1, 2, 2], "iscrowd": 0},  # too small
    ]
    data = {
        "images": images,
        "annotations": annotations,
        "categories": [{"id": 17, "name": "cat"}, {"id": 5, "name": "x"}],
    }
    (tmp_path / "instances.json").write_text(json.dumps(data))
    with pytest.warns(SkippedSampleWarning, match="left out 2 images"):
        source = CocoSource(tmp_path / "instances.json", photo_dir)
    assert len(source) == 1
    item = source.open(0)
    x, y, w, h = box
    assert item.boxes == [(int(np.floor(x)), int(np.floor(y)), int(np.ceil(x + w)), int(np.ceil(y + h)))]
    assert item.labels == ["cat"] and item.image_id == "10"


def test_coco_rejects_a_file_that_is_not_instances(photo_dir, tmp_path):
    (tmp_path / "captions.json").write_text(json.dumps({"images": [], "annotations": []}))
    with pytest.raises(ValueError, match="annotations.*categories"):
        CocoSource(tmp_path / "captions.json", photo_dir)


def test_jsonl_resolves_relative_paths_and_reads_labels(photo_dir):
    width, height = size_of(photo_dir, "coffee")
    line = {"image": "coffee.jpg", "boxes": [[10, 5, width - 10, height - 20]], "labels": ["cup"]}
    (photo_dir / "one.jsonl").write_text(json.dumps(line) + "\n")
    item = JsonlSource(photo_dir / "one.jsonl").open(0)
    assert item.boxes == [(10, 5, width - 10, height - 20)] and item.labels == ["cup"]


def test_jsonl_leaves_out_malformed_lines_with_a_counted_warning(photo_dir, tmp_path):
    good = json.dumps({"image": str(photo_dir / "rocket.jpg"), "boxes": [[20, 10, 60, 60]]})
    lines = [
        good,
        "{not json",
        json.dumps({"image": "a.jpg", "boxes": [[1, 2, 3]]}),
        json.dumps({"boxes": []}),
    ]
    (tmp_path / "m.jsonl").write_text("\n".join(lines) + "\n")
    with pytest.warns(SkippedSampleWarning, match="left out 3 malformed manifest lines"):
        source = JsonlSource(tmp_path / "m.jsonl")
    assert len(source) == 1


def test_jsonl_image_without_a_usable_box_is_unusable(photo_dir, tmp_path):
    (tmp_path / "m.jsonl").write_text(
        json.dumps({"image": str(photo_dir / "rocket.jpg"), "boxes": [[0, 0, 2, 2]]})
    )
    with pytest.raises(UnusableSample, match="no box with area"):
        JsonlSource(tmp_path / "m.jsonl").open(0)


def test_dataset_skips_corrupt_and_unusable_images_with_counted_warnings(photo_dir, tmp_path):
    names = ["truncated.jpg", "astronaut.jpg", "truncated.png", "notes.jpg", "missing.jpg", "chelsea.png"]
    lines = [json.dumps({"image": n, "boxes": [[10, 10, 60, 60]]}) for n in names]
    lines.append(json.dumps({"image": "coffee.jpg", "boxes": [[0, 0, 3, 3]]}))  # no usable box
    (photo_dir / "mixed.jsonl").write_text("\n".join(lines) + "\n")
    dataset = ExemplarEditDataset(JsonlSource(photo_dir / "mixed.jsonl"), TINY, seed=0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        samples = [dataset[i] for i in range(len(dataset))]
    skips = [w for w in caught if issubclass(w.category, SkippedSampleWarning)]
    assert dataset.skipped == len(skips) >= 5
    assert f"{dataset.skipped} skipped so far" in str(skips[-1].message)
    assert {s["meta"]["image_id"].rsplit("/", 1)[-1] for s in samples} <= {"astronaut.jpg", "chelsea.png"}
    assert all(s["image"].shape == (3, 32, 32) for s in samples)


def test_synthetic_scene_depends_only_on_seed_and_index():
    a, b = (
        SyntheticSource(num_scenes=5, seed=3, min_size=48, max_size=64),
        SyntheticSource(num_scenes=9, seed=3, min_size=48, max_size=64),
    )
    assert torch.equal(a.open(4).image, b.open(4).image) and a.open(4).boxes == b.open(4).boxes
    other = SyntheticSource(num_scenes=5, seed=4, min_size=48, max_size=64)
    assert a.open(4).image.shape != other.open(4).image.shape or not torch.equal(
        a.open(4).image, other.open(4).image
    )


def test_synthetic_labels_name_a_known_colour_and_shape_and_boxes_do_not_overlap():
    source = SyntheticSource(num_scenes=20, seed=0, min_size=64, max_size=96)
    for i in range(len(source)):
        item = source.open(i)
        assert all(label.split()[0] in COLOURS and label.split()[1] in SHAPES for label in item.labels)
        for j, p in enumerate(item.boxes):
            for q in item.boxes[j + 1 :]:
                assert p[2] <= q[0] or q[2] <= p[0] or p[3] <= q[1] or q[3] <= p[1]


@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_synthetic_shapes_fill_their_box_tightly(shape):
    canvas = np.zeros((60, 60, 3), np.float32)
    paint_shape(canvas, SHAPES[shape](), (10, 12, 50, 52), (255, 255, 255), np.random.default_rng(0))
    ys, xs = np.nonzero(canvas.max(axis=2) > 64)
    assert (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1) == (10, 12, 50, 52)


def test_synthetic_photo_backgrounds_come_from_the_folder(tmp_path):
    Image.new("RGB", (80, 60), (10, 200, 30)).save(tmp_path / "green.png")
    source = SyntheticSource(
        num_scenes=3, min_size=40, max_size=50, background_dir=tmp_path, photo_background_p=1.0
    )
    item = source.open(0)
    background = torch.ones(item.image.shape[1:], dtype=torch.bool)
    for x0, y0, x1, y1 in item.boxes:
        background[y0:y1, x0:x1] = False
    assert (item.image[:, background] == torch.tensor([10, 200, 30])[:, None]).all()


def test_synthetic_rejects_unknown_shapes_listing_the_valid_ones():
    with pytest.raises(ValueError, match="shapes.*circle"):
        SyntheticSource(shapes=["blob"])
