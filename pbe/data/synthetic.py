"""Seeded synthetic scenes: coloured shapes of known class and colour on textured or photo backgrounds.

Scene ``i`` of a ``SyntheticSource`` depends only on ``(seed, i)``, so it is identical in every worker and
every run, and needs no files: it feeds the tests and the small demo model. Each shape's box is its tight
bounding box and its label is ``"<colour> <shape>"`` (for example ``"red circle"``).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from pbe.data.masks import Box
from pbe.data.sources import SourceImage, UnusableSample, check_area_range, load_rgb, usable_boxes

COLOURS = {
    "red": (220, 40, 40),
    "green": (40, 170, 60),
    "blue": (40, 80, 220),
    "yellow": (240, 210, 40),
    "cyan": (40, 200, 210),
    "magenta": (210, 50, 190),
    "orange": (245, 140, 30),
    "purple": (120, 60, 170),
    "white": (245, 245, 245),
    "black": (25, 25, 25),
}


def to_unit_box(points: np.ndarray) -> np.ndarray:
    """Scale an outline so its bounding box is exactly [0, 1] x [0, 1]."""
    low, high = points.min(axis=0), points.max(axis=0)
    return (points - low) / (high - low)


def regular_polygon(corners: int, start_degrees: float, radii: tuple[float, ...] = (1.0,)) -> np.ndarray:
    angles = np.radians(start_degrees) + 2 * np.pi * np.arange(corners * len(radii)) / (corners * len(radii))
    radius = np.resize(np.array(radii), len(angles))
    return to_unit_box(np.stack([radius * np.cos(angles), radius * np.sin(angles)], axis=1))


def circle_outline() -> np.ndarray:
    return regular_polygon(96, 0.0)


def square_outline() -> np.ndarray:
    return np.array([[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]])


def triangle_outline() -> np.ndarray:
    return np.array([[0.5, 0.0], [1.0, 1.0], [0.0, 1.0]])


def diamond_outline() -> np.ndarray:
    return np.array([[0.5, 0.0], [1.0, 0.5], [0.5, 1.0], [0.0, 0.5]])


def star_outline() -> np.ndarray:
    return regular_polygon(5, -90.0, radii=(1.0, 0.45))


def hexagon_outline() -> np.ndarray:
    return regular_polygon(6, 0.0)


SHAPES = {
    "circle": circle_outline,
    "square": square_outline,
    "triangle": triangle_outline,
    "diamond": diamond_outline,
    "star": star_outline,
    "hexagon": hexagon_outline,
}


def smooth_colour_field(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    """(H, W, 3) float colours interpolated from a coarse random grid."""
    cells = rng.integers(2, 6, size=2)
    coarse = rng.integers(30, 226, size=(cells[1], cells[0], 3), dtype=np.uint8)
    return np.asarray(Image.fromarray(coarse).resize((width, height), Image.BICUBIC), dtype=np.float32)


def stripes(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    angle, period = rng.uniform(0, np.pi), rng.uniform(8, 48)
    phase_x = (2 * np.pi * np.cos(angle) / period * np.arange(width, dtype=np.float32))[None, :]
    phase_y = (2 * np.pi * np.sin(angle) / period * np.arange(height, dtype=np.float32))[:, None]
    # sin(a + b) = sin a cos b + cos a sin b: two outer products instead of a sine per pixel
    return 0.5 + 0.5 * (np.cos(phase_y) * np.sin(phase_x) + np.sin(phase_y) * np.cos(phase_x))


def checker(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    cell = int(rng.integers(8, 48))
    ys, xs = np.ogrid[:height, :width]
    return ((xs // cell + ys // cell) % 2).astype(np.float32)


def grain(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    coarse = rng.integers(0, 256, size=(max(1, height // 4), max(1, width // 4)), dtype=np.uint8)
    return np.asarray(Image.fromarray(coarse).resize((width, height), Image.BILINEAR), dtype=np.float32) / 255


TEXTURES = {"stripes": stripes, "checker": checker, "grain": grain}


def textured_background(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    """(H, W, 3) float background: a smooth colour field darkened by a random pattern."""
    base = smooth_colour_field(rng, width, height)
    names = sorted(TEXTURES)
    pattern = TEXTURES[names[int(rng.integers(len(names)))]](rng, width, height)
    strength = rng.uniform(0.15, 0.45)
    return base * (1 - strength * pattern[..., None])


def photo_background(rng: np.random.Generator, path: Path, width: int, height: int) -> np.ndarray:
    """(H, W, 3) float background: a random crop of the photo with the scene's aspect, resized."""
    photo = load_rgb(path).permute(1, 2, 0).numpy()
    photo_h, photo_w = photo.shape[:2]
    scale = min(photo_w / width, photo_h / height)
    crop_w, crop_h = max(1, int(width * scale)), max(1, int(height * scale))
    left = int(rng.integers(0, photo_w - crop_w + 1))
    top = int(rng.integers(0, photo_h - crop_h + 1))
    crop = Image.fromarray(photo[top : top + crop_h, left : left + crop_w])
    return np.array(crop.resize((width, height), Image.BILINEAR), dtype=np.float32)


def paint_shape(
    canvas: np.ndarray, outline: np.ndarray, box: Box, colour: tuple, rng: np.random.Generator
) -> np.ndarray:
    """Paint the unit ``outline`` scaled to ``box`` into ``canvas`` (in place), anti-aliased and softly shaded;
    returns the shape's coverage inside ``box``, float (h, w) in [0, 1]."""
    x0, y0, x1, y1 = box
    width, height = x1 - x0, y1 - y0
    supersample = 2
    alpha = Image.new("L", (width * supersample, height * supersample), 0)
    corners = outline * [width * supersample, height * supersample] - 0.5
    ImageDraw.Draw(alpha).polygon([tuple(p) for p in corners], fill=255)
    alpha = np.asarray(alpha.reduce(supersample), dtype=np.float32)[..., None] / 255
    direction = rng.uniform(0, 2 * math.pi)
    ys, xs = np.ogrid[:height, :width]
    ramp = ((xs / width - 0.5) * math.cos(direction) + (ys / height - 0.5) * math.sin(direction)).astype(
        np.float32
    )
    shaded = np.clip(np.asarray(colour, dtype=np.float32) * (1 + 0.3 * ramp[..., None]), 0, 255)
    region = canvas[y0:y1, x0:x1]
    region *= 1 - alpha
    region += alpha * shaded
    return alpha[..., 0]


def place_boxes(
    rng: np.random.Generator, width: int, height: int, count: int, min_frac: float, max_frac: float
) -> list[Box]:
    """Up to ``count`` square boxes of side ``frac * min(W, H)``, not overlapping (the first is always placed)."""
    boxes: list[Box] = []
    for _ in range(count):
        for _attempt in range(30):
            side = max(2, int(rng.uniform(min_frac, max_frac) * min(width, height)))
            x0 = int(rng.integers(0, width - side + 1))
            y0 = int(rng.integers(0, height - side + 1))
            box = (x0, y0, x0 + side, y0 + side)
            if all(box[2] <= b[0] or b[2] <= box[0] or box[3] <= b[1] or b[3] <= box[1] for b in boxes):
                boxes.append(box)
                break
    return boxes


class SyntheticSource:
    """``num_scenes`` seeded scenes of 1 to ``max_shapes`` shapes on a ``W x H`` background.

    W and H are drawn in ``[min_size, max_size]``; shapes are squares of side ``[min_shape_frac, max_shape_frac]``
    times ``min(W, H)``. With ``background_dir`` (a folder of photos) a scene gets a photo background with
    probability ``photo_background_p``, else a procedural texture.
    """

    # `open` gives each box's coverage (SourceImage.masks), which data.augment.recolour_p needs
    object_masks = True

    def __init__(
        self,
        num_scenes: int = 1000,
        seed: int = 0,
        min_size: int = 384,
        max_size: int = 640,
        min_shapes: int = 1,
        max_shapes: int = 3,
        min_shape_frac: float = 0.2,
        max_shape_frac: float = 0.5,
        shapes: list[str] | None = None,
        colours: list[str] | None = None,
        background_dir: str | Path | None = None,
        photo_background_p: float = 0.5,
        min_area: float = 0.02,
        max_area: float = 0.8,
    ):
        if num_scenes < 1:
            raise ValueError(f"num_scenes must be >= 1, got {num_scenes}")
        if not 16 <= min_size <= max_size:
            raise ValueError(
                f"min_size and max_size must satisfy 16 <= min_size <= max_size, got {min_size}, {max_size}"
            )
        if not 1 <= min_shapes <= max_shapes:
            raise ValueError(
                f"min_shapes and max_shapes must satisfy 1 <= min <= max, got {min_shapes}, {max_shapes}"
            )
        if not 0 < min_shape_frac <= max_shape_frac <= 1:
            raise ValueError(
                f"min_shape_frac and max_shape_frac must satisfy 0 < min <= max <= 1, got {min_shape_frac}, {max_shape_frac}"
            )
        if not 0 <= photo_background_p <= 1:
            raise ValueError(f"photo_background_p must be a probability in [0, 1], got {photo_background_p}")
        check_area_range(min_area, max_area)
        self.shapes = list(shapes) if shapes is not None else sorted(SHAPES)
        self.colours = list(colours) if colours is not None else sorted(COLOURS)
        for name, chosen, valid in (("shapes", self.shapes, SHAPES), ("colours", self.colours, COLOURS)):
            unknown = [c for c in chosen if c not in valid]
            if unknown or not chosen:
                raise ValueError(f"{name}: unknown or empty {unknown or chosen}; valid are {sorted(valid)}")
        self.backgrounds: list[Path] = []
        if background_dir is not None:
            folder = Path(background_dir)
            if not folder.is_dir():
                raise ValueError(f"background_dir: no such directory {str(folder)!r}")
            suffixes = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}
            self.backgrounds = sorted(p for p in folder.iterdir() if p.suffix.lower() in suffixes)
            if not self.backgrounds:
                raise ValueError(f"background_dir: {str(folder)!r} holds no {sorted(suffixes)} image")
        self.num_scenes, self.seed = num_scenes, seed
        self.size_range, self.shape_count_range = (min_size, max_size), (min_shapes, max_shapes)
        self.shape_frac_range, self.photo_background_p = (min_shape_frac, max_shape_frac), photo_background_p
        self.min_area, self.max_area = min_area, max_area

    def __len__(self) -> int:
        return self.num_scenes

    @property
    def object_colours(self) -> list[tuple[int, int, int]]:
        """The RGB colours this source paints its shapes in (data.augment.recolour_p draws from them)."""
        return [COLOURS[name] for name in self.colours]

    def background(self, rng: np.random.Generator, width: int, height: int) -> np.ndarray:
        use_photo = rng.random() < self.photo_background_p
        if self.backgrounds and use_photo:
            path = self.backgrounds[int(rng.integers(len(self.backgrounds)))]
            try:
                return photo_background(rng, path, width, height)
            except UnusableSample:
                pass  # an unreadable photo falls back to a texture; the scene stays usable
        return textured_background(rng, width, height)

    def render(self, index: int) -> tuple[np.ndarray, list[Box], list[str]]:
        """Scene ``index`` as a uint8 (H, W, 3) array, its boxes and their ``"<colour> <shape>"`` labels."""
        pixels, boxes, labels, _ = self.render_with_masks(index)
        return pixels, boxes, labels

    def render_with_masks(self, index: int) -> tuple[np.ndarray, list[Box], list[str], list[np.ndarray]]:
        """``render`` plus each shape's coverage, float32 (H, W) in [0, 1] (the shapes never overlap)."""
        if not 0 <= index < self.num_scenes:
            raise IndexError(f"scene index {index} out of range [0, {self.num_scenes})")
        rng = np.random.default_rng([self.seed, index])
        width, height = (int(v) for v in rng.integers(self.size_range[0], self.size_range[1] + 1, size=2))
        canvas = self.background(rng, width, height)
        count = int(rng.integers(self.shape_count_range[0], self.shape_count_range[1] + 1))
        boxes = place_boxes(rng, width, height, count, *self.shape_frac_range)
        labels, masks = [], []
        for box in boxes:
            shape = self.shapes[int(rng.integers(len(self.shapes)))]
            colour = self.colours[int(rng.integers(len(self.colours)))]
            alpha = paint_shape(canvas, SHAPES[shape](), box, COLOURS[colour], rng)
            labels.append(f"{colour} {shape}")
            mask = np.zeros((height, width), dtype=np.float32)
            mask[box[1] : box[3], box[0] : box[2]] = alpha
            masks.append(mask)
        return np.clip(canvas + 0.5, 0, 255).astype(np.uint8), boxes, labels, masks

    def open(self, index: int) -> SourceImage:
        pixels, boxes, labels, masks = self.render_with_masks(index)
        height, width = pixels.shape[:2]
        kept, kept_labels, kept_masks = [], [], []
        for box, label, mask in zip(boxes, labels, masks):
            usable, _ = usable_boxes([box], [label], width, height, self.min_area, self.max_area)
            if usable:
                kept.append(usable[0])
                kept_labels.append(label)
                kept_masks.append(torch.from_numpy(mask))
        if not kept:
            raise UnusableSample(
                f"synthetic scene {index}: no box with area in [{self.min_area}, {self.max_area}]"
            )
        image = torch.from_numpy(pixels).permute(2, 0, 1)
        return SourceImage(
            image=image,
            boxes=kept,
            labels=kept_labels,
            image_id=f"synthetic-{self.seed}-{index}",
            masks=kept_masks,
        )
