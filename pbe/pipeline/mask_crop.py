"""`padding_mask_crop`: edit a square around the mask, resized to the model's training resolution."""

from __future__ import annotations

import math
import numbers

import numpy as np
import torch

from pbe.preprocess import (
    keep_mask,
    to_mask_float,
)

# sample.py, the app and the demo: padding_mask_crop=auto crops when the model records its training resolution and
# the photo is larger than it on either side, with a margin of AUTO_CROP_MARGIN x the mask box's longest side on every
# side (at least AUTO_CROP_MIN_MARGIN pixels): the crop is about twice the box, so the edited region fills about half
# of what the model sees, as the objects did in the small model's training scenes (25-50 % of the side).
AUTO_CROP = "auto"
AUTO_CROP_MARGIN = 0.5
AUTO_CROP_MIN_MARGIN = 8


def _crop_margin(value) -> int | None:
    """padding_mask_crop: None, or a whole number of pixels >= 0; ValueError naming it otherwise (bools refused)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
        raise ValueError(
            "padding_mask_crop must be None (no crop) or an integer >= 0 (pixels of margin around the mask), "
            f"got {value!r}"
        )
    return int(value)


def mask_crop_box(repaint, padding: int) -> tuple[int, int, int, int]:
    """The region `padding_mask_crop=padding` edits, (left, top, right, bottom) with right / bottom exclusive.

    `repaint`: (H, W) booleans (or 0 / 1), True where the mask repaints. The bounding box of those pixels, grown by
    `padding` on every side, then to a square (centred on the box) of its longer side, then moved inside the image;
    in a dimension where the image is smaller than the square, the whole dimension. ValueError for an empty mask."""
    repaint = np.asarray(repaint.cpu() if isinstance(repaint, torch.Tensor) else repaint).astype(bool)
    if repaint.ndim != 2:
        raise ValueError(f"mask_crop_box takes an (H, W) mask, got shape {repaint.shape}")
    padding = _crop_margin(padding)
    if padding is None:
        raise ValueError("padding_mask_crop must be an integer >= 0 here, got None")
    rows, cols = np.flatnonzero(repaint.any(axis=1)), np.flatnonzero(repaint.any(axis=0))
    if rows.size == 0:
        raise ValueError("the mask marks nothing to repaint: there is no region to crop around")
    box = [
        int(cols[0]) - padding,
        int(rows[0]) - padding,
        int(cols[-1]) + 1 + padding,
        int(rows[-1]) + 1 + padding,
    ]
    side = max(box[2] - box[0], box[3] - box[1])
    for lo, n in ((0, repaint.shape[1]), (1, repaint.shape[0])):  # x, then y
        start = box[lo] - (side - (box[lo + 2] - box[lo])) // 2  # the square, centred on the grown box
        start = 0 if side >= n else min(max(start, 0), n - side)  # inside the image
        box[lo], box[lo + 2] = start, start + min(side, n)
    return box[0], box[1], box[2], box[3]


def padding_mask_crop_setting(value, name: str = "padding_mask_crop") -> int | str | None:
    """A sample.py / app / demo setting, checked: "auto", None (also "none", "null" or ""), or pixels >= 0 (an int, or
    a string of digits from a command line). ValueError naming `name` otherwise."""
    if isinstance(value, str):
        text = value.strip().lower()
        if text == AUTO_CROP:
            return AUTO_CROP
        if text in ("none", "null", ""):
            return None
        if text.isdigit():
            return int(text)
    elif value is None or (
        isinstance(value, numbers.Integral) and not isinstance(value, bool) and value >= 0
    ):
        return None if value is None else int(value)
    raise ValueError(
        f"{name} must be {AUTO_CROP} (crop around the mask when the photo is larger than the model's training "
        f"resolution), an integer >= 0 (always crop, with that many pixels of margin) or none (never crop); "
        f"got {value!r}"
    )


def auto_padding_mask_crop(setting, train_resolution: int | None, size: tuple[int, int], masks) -> int | None:
    """The pipeline's padding_mask_crop for a sample.py / app / demo `setting` (see padding_mask_crop_setting).

    None: None. An int: itself. "auto": None unless `train_resolution` is known and the photo (`size`: width,
    height) is larger than it on either side; then AUTO_CROP_MARGIN x the longest side of the mask's bounding box
    (over all `masks`, white = repaint, binarised as the pipeline does), at least AUTO_CROP_MIN_MARGIN pixels. A mask
    that marks nothing gives None (the pipeline then edits as without the crop, and warns about the mask)."""
    setting = padding_mask_crop_setting(setting)
    if setting != AUTO_CROP:
        return setting
    if train_resolution is None or max(size) <= train_resolution:
        return None
    longest = 0
    for i, mask in enumerate(masks if isinstance(masks, list | tuple) else [masks]):
        repaint = keep_mask(to_mask_float(mask, f"mask_image[{i}]")).numpy() < 0.5
        rows, cols = np.flatnonzero(repaint.any(axis=1)), np.flatnonzero(repaint.any(axis=0))
        if rows.size:
            longest = max(longest, int(rows[-1] - rows[0] + 1), int(cols[-1] - cols[0] + 1))
    if longest == 0:
        return None
    return max(AUTO_CROP_MIN_MARGIN, math.ceil(AUTO_CROP_MARGIN * longest))
