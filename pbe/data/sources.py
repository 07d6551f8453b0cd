"""Where training images and their boxes come from: Open Images box CSVs, COCO instances JSON, JSONL manifests.

A source is a sized collection with ``open(i) -> SourceImage``: the decoded RGB image and its usable boxes in
pixel ``(x0, y0, x1, y1)`` (ints, ``x1``/``y1`` exclusive). A box is usable when its area, as a fraction of the
image, lies in ``[min_area, max_area]`` (the paper keeps [0.02, 0.8]). Indexing drops entries that cannot have a
usable box; ``open`` raises ``UnusableSample`` for an unreadable image or one whose boxes all fail the filter,
which the dataset turns into a counted skip. Images are decoded as stored (EXIF orientation is not applied),
since the boxes of these datasets refer to the stored pixels. Synthetic scenes live in ``pbe.data.synthetic``.
"""

from __future__ import annotations

import csv
import json
import math
import warnings
from array import array
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from pbe.data.masks import Box


class UnusableSample(Exception):
    """An image that cannot be used: unreadable, corrupt, or without a usable box."""


class SkippedSampleWarning(UserWarning):
    """Emitted (with a running count) whenever data is left out instead of crashing a run."""


@dataclass
class SourceImage:
    image: torch.Tensor  # uint8 (3, H, W)
    boxes: list[Box]
    labels: list[str]
    image_id: str
    # float (H, W) in [0, 1] per box: the object's own coverage, where the source knows it (data=synthetic);
    # data.augment.recolour_p needs it
    masks: list[torch.Tensor] | None = None


def check_area_range(min_area: float, max_area: float) -> None:
    if not 0.0 <= min_area <= max_area <= 1.0:
        raise ValueError(
            f"min_area and max_area must satisfy 0 <= min_area <= max_area <= 1, got {min_area}, {max_area}"
        )


def load_rgb(path: str | Path) -> torch.Tensor:
    """Decode an image file to a uint8 (3, H, W) RGB tensor; raise UnusableSample if it cannot be read."""
    try:
        with Image.open(path) as opened:
            rgb = np.array(opened.convert("RGB"))
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as err:
        raise UnusableSample(f"cannot read image {path}: {err}") from err
    return torch.from_numpy(rgb).permute(2, 0, 1)


def usable_boxes(
    boxes: Sequence[Sequence[float]],
    labels: Sequence[str],
    width: int,
    height: int,
    min_area: float,
    max_area: float,
) -> tuple[list[Box], list[str]]:
    """Pixel float boxes -> int boxes grown to whole pixels, clipped to the image, kept if the area fits."""
    kept, kept_labels = [], []
    for (x0, y0, x1, y1), label in zip(boxes, labels, strict=True):
        box = (  # the tolerance keeps float32 round-off (0.3 * 1000 = 300.00001) from adding a pixel
            max(0, math.floor(x0 + 1e-3)),
            max(0, math.floor(y0 + 1e-3)),
            min(width, math.ceil(x1 - 1e-3)),
            min(height, math.ceil(y1 - 1e-3)),
        )
        if box[2] <= box[0] or box[3] <= box[1]:
            continue
        area = (box[2] - box[0]) * (box[3] - box[1]) / (width * height)
        if min_area <= area <= max_area:
            kept.append(box)
            kept_labels.append(label)
    return kept, kept_labels


def open_with_boxes(
    path: Path, boxes, labels, image_id: str, min_area: float, max_area: float, normalised: bool = False
) -> SourceImage:
    """Load ``path`` and keep its usable boxes (pixel xyxy, or fractions of the image size if ``normalised``)."""
    image = load_rgb(path)
    height, width = image.shape[1:]
    pixel_boxes = (
        np.asarray(boxes, dtype=np.float64) * [width, height, width, height] if normalised else boxes
    )
    kept, kept_labels = usable_boxes(pixel_boxes, labels, width, height, min_area, max_area)
    if not kept:
        raise UnusableSample(f"{path}: no box with area in [{min_area}, {max_area}] of the image")
    return SourceImage(image=image, boxes=kept, labels=kept_labels, image_id=image_id)


def warn_left_out(source: str, count: int, reason: str) -> None:
    if count:
        warnings.warn(f"{source}: left out {count} {reason}", SkippedSampleWarning, stacklevel=3)


def existing_file(name: str, path: str | Path) -> Path:
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{name}: no such file {str(path)!r}")
    return path


def existing_dir(name: str, path: str | Path) -> Path:
    path = Path(path)
    if not path.is_dir():
        raise ValueError(f"{name}: no such directory {str(path)!r}")
    return path


OPEN_IMAGES_COLUMNS = ("ImageID", "LabelName", "XMin", "XMax", "YMin", "YMax")


def read_class_names(path: Path) -> dict[str, str]:
    """Open Images class descriptions (``LabelName,DisplayName`` rows, header optional) -> {MID: name}."""
    with open(path, newline="", encoding="utf-8") as f:
        rows = [row for row in csv.reader(f) if len(row) >= 2]
    return {row[0]: row[1] for row in rows if row[0] != "LabelName"}


class OpenImagesSource:
    """Open Images boxes as released: CSV rows ``ImageID, ..., LabelName, ..., XMin, XMax, YMin, YMax`` (normalised).

    Boxes outside the area range are dropped while reading, and images left without boxes are left out. Boxes
    are kept in compact numpy arrays (the full train CSV has ~15 M rows). Images are ``image_dir/<ImageID><ext>``.
    """

    def __init__(
        self,
        box_csv: str | Path | Sequence[str | Path],
        image_dir: str | Path,
        class_names: str | Path | None = None,
        min_area: float = 0.02,
        max_area: float = 0.8,
        image_ext: str = ".jpg",
        progress: bool = True,
    ):
        check_area_range(min_area, max_area)
        paths = [box_csv] if isinstance(box_csv, str | Path) else list(box_csv)
        if not paths:
            raise ValueError("box_csv: give at least one Open Images box CSV")
        paths = [existing_file("box_csv", p) for p in paths]
        self.image_dir = existing_dir("image_dir", image_dir)
        self.image_ext, self.min_area, self.max_area = image_ext, min_area, max_area
        names = read_class_names(existing_file("class_names", class_names)) if class_names else {}

        image_index: dict[str, int] = {}
        label_index: dict[str, int] = {}
        rows_image, rows_label, rows_box = array("q"), array("q"), array("f")
        for path in paths:
            with open(path, newline="", encoding="utf-8") as f:
                reader = csv.reader(f)
                header = next(reader, [])
                missing = [c for c in OPEN_IMAGES_COLUMNS if c not in header]
                if missing:
                    raise ValueError(
                        f"box_csv: {path} lacks columns {missing}; needs {list(OPEN_IMAGES_COLUMNS)}"
                    )
                col = [header.index(c) for c in OPEN_IMAGES_COLUMNS]
                for row in tqdm(reader, desc=f"reading {path.name}", unit=" rows", disable=not progress):
                    image_id = row[col[0]]
                    image = image_index.setdefault(image_id, len(image_index))
                    x0, x1, y0, y1 = (float(row[c]) for c in col[2:])
                    if not min_area <= (x1 - x0) * (y1 - y0) <= max_area or x1 <= x0 or y1 <= y0:
                        continue
                    rows_image.append(image)
                    rows_label.append(label_index.setdefault(row[col[1]], len(label_index)))
                    rows_box.extend((x0, y0, x1, y1))

        image_of_row = np.frombuffer(rows_image, dtype=np.int64) if len(rows_image) else np.zeros(0, np.int64)
        order = np.argsort(image_of_row, kind="stable")
        kept_images, counts = np.unique(image_of_row[order], return_counts=True)
        ids = np.array(list(image_index))
        self.image_ids = ids[kept_images]
        self.offsets = np.concatenate([[0], np.cumsum(counts)])
        self.boxes = np.frombuffer(rows_box, dtype=np.float32).reshape(-1, 4)[order]
        self.label_ids = np.frombuffer(rows_label, dtype=np.int64)[order]
        self.label_names = [names.get(mid, mid) for mid in label_index]
        self.dropped = len(image_index) - len(self.image_ids)
        warn_left_out(
            "OpenImagesSource", self.dropped, f"images with no box of area in [{min_area}, {max_area}]"
        )
        if len(self.image_ids) == 0:
            raise ValueError(f"box_csv: no image has a box with area in [{min_area}, {max_area}]")

    def __len__(self) -> int:
        return len(self.image_ids)

    def open(self, index: int) -> SourceImage:
        image_id = str(self.image_ids[index])
        rows = slice(self.offsets[index], self.offsets[index + 1])
        labels = [self.label_names[i] for i in self.label_ids[rows]]
        path = self.image_dir / f"{image_id}{self.image_ext}"
        return open_with_boxes(
            path, self.boxes[rows], labels, image_id, self.min_area, self.max_area, normalised=True
        )


class CocoSource:
    """COCO instances JSON (``images``, ``annotations`` with ``bbox = [x, y, w, h]`` in pixels, ``categories``).

    Crowd annotations are ignored unless ``include_crowd``; images without a box in the area range are left out.
    """

    def __init__(
        self,
        annotations: str | Path,
        image_dir: str | Path,
        min_area: float = 0.02,
        max_area: float = 0.8,
        include_crowd: bool = False,
    ):
        check_area_range(min_area, max_area)
        path = existing_file("annotations", annotations)
        self.image_dir = existing_dir("image_dir", image_dir)
        self.min_area, self.max_area = min_area, max_area
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
        missing = [k for k in ("images", "annotations", "categories") if k not in data]
        if missing:
            raise ValueError(
                f"annotations: {path} lacks keys {missing}; a COCO instances file has images, annotations, categories"
            )
        names = {c["id"]: c["name"] for c in data["categories"]}
        images = {im["id"]: im for im in data["images"]}
        found: dict[int, tuple[list, list]] = {}
        for ann in data["annotations"]:
            image = images.get(ann["image_id"])
            if image is None or (ann.get("iscrowd", 0) and not include_crowd):
                continue
            x, y, w, h = ann["bbox"]
            if w <= 0 or h <= 0 or not min_area <= w * h / (image["width"] * image["height"]) <= max_area:
                continue
            boxes, labels = found.setdefault(image["id"], ([], []))
            boxes.append((x, y, x + w, y + h))
            labels.append(names.get(ann["category_id"], str(ann["category_id"])))
        self.entries = [(images[i]["file_name"], str(i), *found[i]) for i in images if i in found]
        self.dropped = len(images) - len(self.entries)
        warn_left_out("CocoSource", self.dropped, f"images with no box of area in [{min_area}, {max_area}]")
        if not self.entries:
            raise ValueError(f"annotations: no image has a box with area in [{min_area}, {max_area}]")

    def __len__(self) -> int:
        return len(self.entries)

    def open(self, index: int) -> SourceImage:
        file_name, image_id, boxes, labels = self.entries[index]
        return open_with_boxes(
            self.image_dir / file_name, boxes, labels, image_id, self.min_area, self.max_area
        )


def parse_manifest_line(line: str) -> tuple[str, list, list]:
    """One JSONL line ``{"image": path, "boxes": [[x0, y0, x1, y1], ...], "labels": [...]?}``; ValueError if malformed."""
    entry = json.loads(line)
    if not isinstance(entry, dict) or not isinstance(entry.get("image"), str):
        raise ValueError('needs an object with a string "image"')
    boxes = entry.get("boxes")
    if not isinstance(boxes, list) or not all(
        isinstance(b, list) and len(b) == 4 and all(isinstance(v, int | float) for v in b) for b in boxes
    ):
        raise ValueError('"boxes" must be a list of [x0, y0, x1, y1] number lists')
    labels = entry.get("labels", [""] * len(boxes))
    if not isinstance(labels, list) or len(labels) != len(boxes):
        raise ValueError('"labels", when given, must be a list as long as "boxes"')
    return entry["image"], boxes, [str(label) for label in labels]


class JsonlSource:
    """A JSONL manifest: one ``{"image": path, "boxes": [[x0, y0, x1, y1], ...]}`` per line, pixel coordinates.

    Relative image paths are resolved against ``root`` (default: the manifest's folder). An optional ``labels``
    list names the boxes. Malformed lines and lines without boxes are left out with a counted warning.
    """

    def __init__(
        self,
        manifest: str | Path,
        root: str | Path | None = None,
        min_area: float = 0.02,
        max_area: float = 0.8,
    ):
        check_area_range(min_area, max_area)
        path = existing_file("manifest", manifest)
        self.root = existing_dir("root", root) if root is not None else path.parent
        self.min_area, self.max_area = min_area, max_area
        self.entries: list[tuple[Path, list, list]] = []
        malformed, first_error, no_boxes = 0, "", 0
        with open(path, encoding="utf-8") as f:
            for number, line in enumerate(f, start=1):
                if not line.strip():
                    continue
                try:
                    image, boxes, labels = parse_manifest_line(line)
                except ValueError as err:  # json.JSONDecodeError is a ValueError
                    malformed += 1
                    first_error = first_error or f"line {number}: {err}"
                    continue
                if not boxes:
                    no_boxes += 1
                    continue
                self.entries.append((self.root / image, boxes, labels))
        warn_left_out("JsonlSource", malformed, f"malformed manifest lines (first: {first_error})")
        warn_left_out("JsonlSource", no_boxes, "manifest lines without boxes")
        self.dropped = malformed + no_boxes
        if not self.entries:
            raise ValueError(f"manifest: {path} has no usable line")

    def __len__(self) -> int:
        return len(self.entries)

    def open(self, index: int) -> SourceImage:
        path, boxes, labels = self.entries[index]
        return open_with_boxes(path, boxes, labels, str(path), self.min_area, self.max_area)
