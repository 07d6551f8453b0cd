"""Composing a scene: an RGBA cut-out pasted into a crop of a photo, and the exemplars made of a cut-out.

``draw_crop`` and ``draw_paste`` make the random decisions (``PasteConfig`` bounds them); ``paste`` poses the cut-out
(flip, scale to a fraction of the scene, small rotation), nudges its colours toward the photo's (``match_colours``)
and alpha-composites it, returning the object's coverage and box too. ``crop_exemplar`` crops a scene around the
object; ``on_white`` puts the cut-out alone on a white square. Used by ``ObjectsSource`` and ``heldout_scenes``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from pbe.data.masks import Box, pad_box

EXEMPLAR_PAD = 0.05  # a crop exemplar is the object's box grown by this fraction of its longest side per side
WHITE_MARGIN = 0.1  # an exemplar on white: the object centred on a square this much larger per side


# --- composing a scene ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PasteConfig:
    """How an object is pasted into a photo crop (``ObjectsSource`` and ``heldout_scenes``)."""

    min_size: int = 160  # scene width and height, each uniform in [min_size, max_size] pixels
    max_size: int = 256
    min_object_area: float = 0.05  # the object's box as a fraction of the scene, uniform in [min, max]
    max_object_area: float = 0.5
    flip_p: float = 0.5
    max_rotation: float = 15.0  # degrees, uniform in [-max, max]
    colour_match: float = 0.3  # the object's colour statistics move U(0, this) of the way to the photo's
    min_background_crop: float = 0.5  # crop side / side of the largest crop of the scene's aspect, U(min, 1)

    def __post_init__(self):
        if not (isinstance(self.min_size, int) and isinstance(self.max_size, int)):
            raise ValueError(f"min_size and max_size must be ints, got {self.min_size!r}, {self.max_size!r}")
        if not 32 <= self.min_size <= self.max_size:
            raise ValueError(
                f"min_size and max_size must satisfy 32 <= min_size <= max_size, got {self.min_size}, {self.max_size}"
            )
        if not 0 < self.min_object_area <= self.max_object_area <= 1:
            raise ValueError(
                "min_object_area and max_object_area must satisfy 0 < min <= max <= 1, "
                f"got {self.min_object_area}, {self.max_object_area}"
            )
        for name in ("flip_p", "colour_match"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)}")
        if not 0 <= self.max_rotation <= 180:
            raise ValueError(f"max_rotation must be in [0, 180] degrees, got {self.max_rotation}")
        if not 0 < self.min_background_crop <= 1:
            raise ValueError(f"min_background_crop must be in (0, 1], got {self.min_background_crop}")


@dataclass(frozen=True)
class PasteParams:
    """The random decisions of one paste; ``position`` places the box within the free space (0 = left / top)."""

    area: float
    flip: bool
    angle: float
    position: tuple[float, float]
    colour_match: float


def draw_paste(rng: np.random.Generator, config: PasteConfig) -> PasteParams:
    return PasteParams(
        area=float(rng.uniform(config.min_object_area, config.max_object_area)),
        flip=bool(rng.random() < config.flip_p),
        angle=float(rng.uniform(-config.max_rotation, config.max_rotation)),
        position=(float(rng.random()), float(rng.random())),
        colour_match=float(rng.uniform(0.0, config.colour_match)),
    )


def draw_crop(
    rng: np.random.Generator, photo_size: tuple[int, int], width: int, height: int, min_crop: float
) -> tuple[float, float, float, float]:
    """A random window of the photo with the scene's aspect, side U(min_crop, 1) of the largest such window."""
    photo_w, photo_h = photo_size
    scale = min(photo_w / width, photo_h / height) * rng.uniform(min_crop, 1.0)
    crop_w, crop_h = width * scale, height * scale
    left = rng.uniform(0, photo_w - crop_w)
    top = rng.uniform(0, photo_h - crop_h)
    return (left, top, left + crop_w, top + crop_h)


def crop_photo(photo: Image.Image, window: tuple[float, ...], width: int, height: int) -> np.ndarray:
    """uint8 (H, W, 3): ``window`` of ``photo`` resized to the scene."""
    return np.array(photo.resize((width, height), Image.Resampling.BILINEAR, box=window))


def trim(cutout: Image.Image) -> Image.Image:
    """The cut-out cropped to the box of its non-zero alpha."""
    box = cutout.getchannel("A").getbbox()
    return cutout.crop(box) if box else cutout


def pose(cutout: Image.Image, params: PasteParams, width: int, height: int) -> Image.Image:
    """Flip, scale and rotate the cut-out for a ``width x height`` scene, trimmed to its alpha box.

    The scale makes the rotated box cover ``params.area`` of the scene (the trimmed box is a little smaller, as
    the drawing's corners are transparent) and never lets it exceed the scene."""
    if params.flip:
        cutout = cutout.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    cos, sin = abs(math.cos(math.radians(params.angle))), abs(math.sin(math.radians(params.angle)))
    turned_w = cutout.width * cos + cutout.height * sin
    turned_h = cutout.width * sin + cutout.height * cos
    scale = min(
        math.sqrt(params.area * width * height / (turned_w * turned_h)), width / turned_w, height / turned_h
    )
    size = (max(1, round(cutout.width * scale)), max(1, round(cutout.height * scale)))
    posed = cutout.resize(size, Image.Resampling.BILINEAR)
    if params.angle:
        posed = posed.rotate(params.angle, Image.Resampling.BILINEAR, expand=True)
    posed = trim(posed)
    if posed.width > width or posed.height > height:  # rounding of the rotated canvas
        fit = min(width / posed.width, height / posed.height)
        posed = trim(
            posed.resize(
                (max(1, int(posed.width * fit)), max(1, int(posed.height * fit))), Image.Resampling.BILINEAR
            )
        )
    return posed


def match_colours(rgb: np.ndarray, alpha: np.ndarray, surround: np.ndarray, strength: float) -> np.ndarray:
    """Move the object's per-channel mean and spread a fraction ``strength`` of the way to the surround's.

    ``rgb`` float (h, w, 3) and ``alpha`` float (h, w) in [0, 1] (the weights of the object's statistics);
    ``surround`` (..., 3) the photo around the paste. Each channel becomes ``(c - mean) * gain + new_mean`` with
    ``new_mean = mean + strength * (surround_mean - mean)`` and ``gain = (surround_std / std) ** strength``, the
    ratio clipped to [0.5, 2]: brightness and cast follow the photo, while the object keeps its own colours
    (at strength 0.3 a red apple on grass stays red)."""
    if strength <= 0:
        return rgb
    sample_rgb, sample_alpha = rgb[::2, ::2].reshape(-1, 3), alpha[::2, ::2].reshape(-1, 1)  # statistics only
    weight = sample_alpha / max(float(sample_alpha.sum()), 1e-6)
    mean = (sample_rgb * weight).sum(axis=0)
    std = np.sqrt(((sample_rgb - mean) ** 2 * weight).sum(axis=0)) + 1.0
    target = surround.reshape(-1, 3).astype(np.float32)
    gain = np.clip((target.std(axis=0) + 1.0) / std, 0.5, 2.0) ** strength
    new_mean = mean + strength * (target.mean(axis=0) - mean)
    return np.clip(rgb * gain + (new_mean - mean * gain), 0, 255).astype(np.float32)


def paste(scene: np.ndarray, cutout: Image.Image, params: PasteParams) -> tuple[np.ndarray, np.ndarray, Box]:
    """Composite the posed cut-out into a copy of uint8 (H, W, 3) ``scene``.

    Returns the image, the object's coverage (float (H, W) in [0, 1]) and its box, which is exactly the box of
    the non-zero coverage."""
    height, width = scene.shape[:2]
    posed = pose(cutout, params, width, height)
    w, h = posed.size
    x = round(params.position[0] * (width - w))
    y = round(params.position[1] * (height - h))
    box = (x, y, x + w, y + h)
    rgba = np.asarray(posed, dtype=np.float32)
    alpha = rgba[..., 3] / 255
    sx0, sy0, sx1, sy1 = pad_box(box, width, height, max(w, h) // 2)
    rgb = match_colours(rgba[..., :3], alpha, scene[sy0:sy1:3, sx0:sx1:3], params.colour_match)
    image = scene.copy()
    region = image[y : y + h, x : x + w].astype(np.float32)
    image[y : y + h, x : x + w] = (region + alpha[..., None] * (rgb - region) + 0.5).astype(np.uint8)
    coverage = np.zeros((height, width), dtype=np.float32)
    coverage[y : y + h, x : x + w] = alpha
    return image, coverage, box


def crop_exemplar(image: np.ndarray, box: Box) -> torch.Tensor:
    """uint8 (3, h, w): the box grown by ``EXEMPLAR_PAD`` of its longest side, from uint8 (H, W, 3) ``image``."""
    height, width = image.shape[:2]
    pad = max(1, round(EXEMPLAR_PAD * max(box[2] - box[0], box[3] - box[1])))
    x0, y0, x1, y1 = pad_box(box, width, height, pad)
    return torch.from_numpy(np.ascontiguousarray(image[y0:y1, x0:x1])).permute(2, 0, 1)


def on_white(cutout: Image.Image, margin: float = WHITE_MARGIN) -> torch.Tensor:
    """uint8 (3, S, S): the cut-out centred on a white square ``1 + 2 * margin`` times its longest side (square, so
    the dataset's resize to the exemplar size does not distort it)."""
    side = max(1, round(max(cutout.size) * (1 + 2 * margin)))
    canvas = Image.new("RGB", (side, side), "white")
    canvas.paste(cutout, ((side - cutout.width) // 2, (side - cutout.height) // 2), cutout)
    return torch.from_numpy(np.array(canvas)).permute(2, 0, 1)
