"""Real object cut-outs pasted into real photos: ``data=objects``, read from ``python -m pbe.data.fetch objects DIR``.

A scene is a random crop of a *training* photo with one *training* object (an RGBA emoji cut-out of a training
style) alpha-composited into it: its box covers a random fraction of the scene, at a random position, maybe
flipped, turned by a small angle, and with its colours nudged toward the photo's (``match_colours``). The source
gives the scene, the object's alpha box and its coverage (``masks``, as ``data=synthetic`` does); the dataset then
applies the paper's mask and exemplar augmentations unchanged. The exemplar is, by choice:

- a crop of the scene (the paper's; the dataset makes it), or, with ``exemplar_on_white_p``, the cut-out alone on a
  white square, as users give exemplars both ways;
- with ``exemplar_style: other``, drawn from *another style's* drawing of the same code point (pasted the same way
  into the same photo, or on white), so copying pixels cannot solve the task. A code point drawn in one training
  style only keeps its own style; ``single_style_codepoints`` lists those and ``same_style_fallbacks`` counts uses.

Scene ``i`` of epoch ``e`` is a function of ``(seed, e, i)`` only; the dataset passes the epoch on (``set_epoch``).
What is never used for training: rows whose ``split`` is not ``train`` (held-out code points, the reserved style,
held-out photos), anything under ``heldout_style/``, and the project's demo photos (astronaut, coffee, chelsea,
rocket) whatever the manifest says. ``heldout_scenes`` composes evaluation scenes from the held-out rows only.
"""

from __future__ import annotations

import json
import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import numpy as np
import torch
from PIL import Image

from pbe.data.masks import Box, pad_box
from pbe.data.objects_fetch.config import DEMO_PHOTOS
from pbe.data.sources import SkippedSampleWarning, SourceImage

MANIFEST = "manifest.jsonl"
RESERVED_SPLIT = "reserved_style"
RESERVED_FOLDER = "heldout_style"
EXEMPLAR_STYLES = ("same", "other")
EXEMPLAR_PAD = 0.05  # a crop exemplar is the object's box grown by this fraction of its longest side per side
WHITE_MARGIN = 0.1  # an exemplar on white: the object centred on a square this much larger per side
FETCH_HINT = "the folder written by `python -m pbe.data.fetch objects DIR` (docs/objects_data.md)"


# --- the manifest ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ObjectEntry:
    """One cut-out of the manifest (``kind == "object"``)."""

    path: str  # relative to the root
    style: str
    codepoint: str
    name: str
    category: str
    split: str  # train | heldout | reserved_style
    codepoint_split: str  # train | heldout: the code point's own split, the same in every style


@dataclass(frozen=True)
class BackgroundEntry:
    """One photo of the manifest (``kind == "background"``)."""

    path: str
    name: str
    split: str  # train | heldout


@dataclass(frozen=True)
class Manifest:
    root: Path
    objects: list[ObjectEntry]
    backgrounds: list[BackgroundEntry]

    def training_styles(self) -> list[str]:
        return sorted({o.style for o in self.objects if o.split == "train"})

    def reserved_styles(self) -> list[str]:
        return sorted({o.style for o in self.objects if o.split == RESERVED_SPLIT})


def inside_root(path: str) -> bool:
    parts = PurePosixPath(path).parts
    return bool(parts) and not PurePosixPath(path).is_absolute() and ".." not in parts


def is_demo_photo(entry: BackgroundEntry) -> bool:
    """The project's demo and evaluation photos are never scene backgrounds, by name or by file name."""
    return bool({entry.name.lower(), PurePosixPath(entry.path).stem.lower()} & DEMO_PHOTOS)


def parse_row(row: dict) -> ObjectEntry | BackgroundEntry | None:
    """A manifest line as an entry; None for a kind this module does not use."""
    if row["kind"] == "object":
        return ObjectEntry(
            path=row["path"],
            style=row["style"],
            codepoint=row["codepoint"],
            name=row.get("name") or row["codepoint"],
            category=row.get("category") or "",
            split=row["split"],
            codepoint_split=row.get("codepoint_split") or row["split"],
        )
    if row["kind"] == "background":
        return BackgroundEntry(path=row["path"], name=row.get("name") or row["path"], split=row["split"])
    return None


def read_manifest(root: str | Path, key: str = "data.source.root") -> Manifest:
    """``root/manifest.jsonl`` as entries; ``key`` names the option that gave ``root`` in error messages."""
    folder = Path(root).expanduser()
    if not folder.is_dir():
        raise FileNotFoundError(f"{key}: no folder {str(folder)!r}; expected {FETCH_HINT}")
    path = folder / MANIFEST
    if not path.is_file():
        raise FileNotFoundError(f"{key}: {str(folder)!r} has no {MANIFEST}; expected {FETCH_HINT}")
    objects, backgrounds = [], []
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                entry = parse_row(json.loads(line))
            except (ValueError, KeyError, TypeError) as err:
                raise ValueError(f"{key}: {path} line {number} is not a manifest line ({err!r})") from None
            if entry is None or not inside_root(entry.path):
                continue
            (objects if isinstance(entry, ObjectEntry) else backgrounds).append(entry)
    return Manifest(folder, objects, backgrounds)


def training_objects(manifest: Manifest, styles: list[str]) -> list[ObjectEntry]:
    return [
        o
        for o in manifest.objects
        if o.split == "train" and o.style in styles and PurePosixPath(o.path).parts[0] != RESERVED_FOLDER
    ]


def backgrounds_of_split(manifest: Manifest, split: str) -> list[BackgroundEntry]:
    return [b for b in manifest.backgrounds if b.split == split and not is_demo_photo(b)]


def check_styles(manifest: Manifest, styles: list[str] | None, key: str = "data.source.styles") -> list[str]:
    """The training styles to use: all of them (``None``), or the ones named, each a training style."""
    valid = manifest.training_styles()
    if styles is None:
        return valid
    chosen = [styles] if isinstance(styles, str) else list(styles)
    if not chosen:
        raise ValueError(f"{key}: empty; give null (every training style) or some of {valid}")
    for style in chosen:
        if style in manifest.reserved_styles():
            raise ValueError(
                f"{key}: {style!r} is the reserved held-out style, never for training; training styles are {valid}"
            )
        if style not in valid:
            raise ValueError(
                f"{key}: no training style {style!r} in the manifest; training styles are {valid}"
            )
    return chosen


# --- decoded images -------------------------------------------------------------------------------------------------


def load_cutout(path: Path, longest: int | None = None) -> Image.Image:
    """An RGBA cut-out, shrunk (never enlarged) so its longest side is at most ``longest``."""
    with Image.open(path) as opened:
        cutout = opened.convert("RGBA")
    if longest is not None and max(cutout.size) > longest:
        scale = longest / max(cutout.size)
        size = (max(1, round(cutout.width * scale)), max(1, round(cutout.height * scale)))
        cutout = cutout.resize(size, Image.Resampling.LANCZOS)  # Pillow resizes RGBA premultiplied
    return cutout


def load_photo(path: Path, short_side: int) -> Image.Image:
    """An RGB photo, shrunk (never enlarged) so its short side is ``short_side``; JPEGs decode at reduced scale."""
    with Image.open(path) as opened:
        scale = short_side / min(opened.size)
        if scale < 1:
            opened.draft("RGB", (math.ceil(opened.width * scale), math.ceil(opened.height * scale)))
        photo = opened.convert("RGB")
    scale = short_side / min(photo.size)
    if scale < 1:
        size = (max(1, round(photo.width * scale)), max(1, round(photo.height * scale)))
        photo = photo.resize(size, Image.Resampling.LANCZOS)
    return photo


def load_all(root: Path, entries: list, load) -> tuple[list, list]:
    """``load(root / entry.path)`` for each entry; unreadable files are left out with a counted warning."""
    kept, images, failed = [], [], []
    for entry in entries:
        try:
            images.append(load(root / entry.path))
            kept.append(entry)
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):
            failed.append(entry.path)
    if failed:
        warnings.warn(
            f"ObjectsSource: left out {len(failed)} unreadable files (first: {failed[0]})",
            SkippedSampleWarning,
            stacklevel=3,
        )
    return kept, images


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


# --- dominant colour ------------------------------------------------------------------------------------------------

HUE_NAMES = (  # (upper bound of the hue bin in degrees, name)
    (15, "red"),
    (35, "orange"),  # emoji gold (Twemoji's star, 35 degrees) reads as yellow
    (70, "yellow"),
    (165, "green"),
    (195, "cyan"),
    (255, "blue"),
    (290, "purple"),
    (345, "pink"),
    (360, "red"),
)
COLOUR_NAMES = tuple(dict.fromkeys([name for _, name in HUE_NAMES] + ["brown", "white", "grey", "black"]))


def pixel_colour_names(rgb: np.ndarray) -> np.ndarray:
    """Index into ``COLOUR_NAMES`` for each uint8 (n, 3) pixel.

    Chromatic pixels (HSV saturation >= 0.2 and value >= 0.2) are named by hue bin (``HUE_NAMES``), except that
    an orange or yellow hue (15-50 degrees) darker than value 0.6 is "brown". The others are "black" (value
    < 0.25), "white" (value > 0.8) or "grey"."""
    hsv = np.asarray(Image.fromarray(rgb[None].astype(np.uint8)).convert("HSV"), dtype=np.float32)[0]
    hue, sat, val = hsv[:, 0] * 360 / 256, hsv[:, 1] / 255, hsv[:, 2] / 255
    bounds = np.array([bound for bound, _ in HUE_NAMES])
    by_hue = np.array([COLOUR_NAMES.index(name) for _, name in HUE_NAMES])[
        np.searchsorted(bounds, hue, "right")
    ]
    by_hue = np.where((hue >= 15) & (hue < 50) & (val < 0.6), COLOUR_NAMES.index("brown"), by_hue)
    achromatic = np.select(
        [val < 0.25, val > 0.8],
        [COLOUR_NAMES.index("black"), COLOUR_NAMES.index("white")],
        COLOUR_NAMES.index("grey"),
    )
    return np.where((sat >= 0.2) & (val >= 0.2), by_hue, achromatic)


def dominant_colour(cutout: Image.Image | np.ndarray) -> str:
    """The colour name (one of ``COLOUR_NAMES``) of most of an RGBA object's opaque (alpha >= 128) pixels.

    Each pixel is named (``pixel_colour_names``). If at least a quarter of them are chromatic, the most common
    chromatic name wins, so black outlines and white highlights do not decide; else the most common of black,
    white, grey. An object with no opaque pixel is "white"."""
    rgba = np.asarray(cutout)
    opaque = rgba[rgba[..., 3] >= 128][:, :3]
    if len(opaque) == 0:
        return "white"
    counts = np.bincount(pixel_colour_names(opaque), minlength=len(COLOUR_NAMES))
    first_achromatic = COLOUR_NAMES.index("white")
    if counts[:first_achromatic].sum() * 4 >= len(opaque):
        return COLOUR_NAMES[int(counts[:first_achromatic].argmax())]
    return COLOUR_NAMES[first_achromatic + int(counts[first_achromatic:].argmax())]


# --- the training source --------------------------------------------------------------------------------------------


@dataclass
class ObjectImage(SourceImage):
    """A composed scene: ``SourceImage`` plus the exemplar when it is not the dataset's crop of the scene."""

    # uint8 (3, h, w): another style's drawing, or the object on white; None: the dataset crops the scene
    exemplar: torch.Tensor | None = None
    # style, codepoint, background, the exemplar's style and whether on white, the paste's draws
    details: dict = field(default_factory=dict)


def check_source_options(
    num_samples, seed, exemplar_on_white_p, exemplar_style, object_cache_size, background_cache_size
) -> None:
    """The ``ObjectsSource`` options that are not the paste's (``PasteConfig`` checks those)."""
    if not (isinstance(num_samples, int) and num_samples >= 1):
        raise ValueError(f"data.source.num_samples must be an int >= 1, got {num_samples!r}")
    if not (isinstance(seed, int) and seed >= 0):
        raise ValueError(f"data.source.seed must be an int >= 0, got {seed!r}")
    if not 0 <= exemplar_on_white_p <= 1:
        raise ValueError(f"data.source.exemplar_on_white_p must be in [0, 1], got {exemplar_on_white_p}")
    if exemplar_style not in EXEMPLAR_STYLES:
        raise ValueError(
            f"data.source.exemplar_style must be one of {EXEMPLAR_STYLES}, got {exemplar_style!r}"
        )
    for name, value in (
        ("object_cache_size", object_cache_size),
        ("background_cache_size", background_cache_size),
    ):
        if not (isinstance(value, int) and value >= 16):
            raise ValueError(f"data.source.{name} must be an int >= 16, got {value!r}")


def training_entries(
    manifest: Manifest, styles: list[str]
) -> tuple[list[ObjectEntry], list[BackgroundEntry]]:
    """The training objects of ``styles`` and the training photos; a ValueError if either is missing."""
    objects = training_objects(manifest, styles)
    if not objects:
        raise ValueError(
            f"data.source.root: {manifest.root / MANIFEST} has no training object (kind object, split train) "
            f"in styles {styles}; expected {FETCH_HINT}"
        )
    backgrounds = backgrounds_of_split(manifest, "train")
    if not backgrounds:
        raise ValueError(
            f"data.source.root: {manifest.root / MANIFEST} has no training photo (kind background, split train)"
        )
    return objects, backgrounds


class ObjectsSource:
    """``num_samples`` scenes composed from the fetched folder ``root`` (see the module docstring).

    Cut-outs and photos are decoded once, here, and kept in memory, shrunk to ``object_cache_size`` (longest side)
    and ``background_cache_size`` (short side): about 180 MiB for the 2,164 training cut-outs at 160 px, shared
    by forked DataLoader workers. ``styles``: the training styles to use (null: all; the reserved style is refused).
    """

    # `open` gives the object's coverage (SourceImage.masks), which data.augment.recolour_p needs
    object_masks = True

    def __init__(
        self,
        root: str | Path,
        num_samples: int = 20000,
        seed: int = 0,
        styles: list[str] | None = None,
        min_size: int = 160,
        max_size: int = 256,
        min_object_area: float = 0.05,
        max_object_area: float = 0.5,
        flip_p: float = 0.5,
        max_rotation: float = 15.0,
        colour_match: float = 0.3,
        min_background_crop: float = 0.5,
        exemplar_on_white_p: float = 0.5,
        exemplar_style: str = "other",
        object_cache_size: int = 160,
        background_cache_size: int = 512,
    ):
        check_source_options(
            num_samples, seed, exemplar_on_white_p, exemplar_style, object_cache_size, background_cache_size
        )
        try:
            self.paste_config = PasteConfig(
                min_size, max_size, min_object_area, max_object_area, flip_p, max_rotation, colour_match,
                min_background_crop,
            )  # fmt: skip
        except ValueError as err:  # its messages start with the option's name
            raise ValueError(f"data.source.{err}") from None
        manifest = read_manifest(root)
        self.styles = check_styles(manifest, styles)
        objects, backgrounds = training_entries(manifest, self.styles)
        self.objects, self.cutouts = load_all(
            manifest.root, objects, lambda p: load_cutout(p, object_cache_size)
        )
        self.backgrounds, self.photos = load_all(
            manifest.root, backgrounds, lambda p: load_photo(p, background_cache_size)
        )
        if not self.objects or not self.photos:
            raise ValueError(
                f"data.source.root: no readable training {'photo' if self.objects else 'object'}"
            )
        self.root, self.num_samples, self.seed = manifest.root, num_samples, seed
        self.exemplar_on_white_p, self.exemplar_style = exemplar_on_white_p, exemplar_style
        self.by_codepoint: dict[str, list[int]] = {}
        for i, entry in enumerate(self.objects):
            self.by_codepoint.setdefault(entry.codepoint, []).append(i)
        self.single_style_codepoints = sorted(cp for cp, rows in self.by_codepoint.items() if len(rows) == 1)
        if exemplar_style == "other" and self.single_style_codepoints:
            warnings.warn(
                f"data.source.exemplar_style=other: {len(self.single_style_codepoints)} of {len(self.by_codepoint)} "
                f"code points have one training style; their exemplars use that style "
                f"(first: {self.single_style_codepoints[:5]})",
                stacklevel=2,
            )
        # scenes of this process whose exemplar kept the scene's style for want of another (exemplar_style=other)
        self.same_style_fallbacks = 0
        self.epoch = 0

    def __len__(self) -> int:
        return self.num_samples

    def set_epoch(self, epoch: int) -> None:
        if not (isinstance(epoch, int) and epoch >= 0):
            raise ValueError(f"epoch must be an int >= 0, got {epoch!r}")
        self.epoch = epoch

    def exemplar_object(self, chosen: int, draw: int) -> int:
        """The object whose drawing is the exemplar: ``chosen`` itself, or (exemplar_style=other) another style's
        drawing of its code point, picked by ``draw``."""
        if self.exemplar_style == "same":
            return chosen
        others = [i for i in self.by_codepoint[self.objects[chosen].codepoint] if i != chosen]
        if not others:
            self.same_style_fallbacks += 1
            return chosen
        return others[draw % len(others)]

    def open(self, index: int) -> ObjectImage:
        """Scene ``index`` of the current epoch. Every draw is made whatever the options say, so changing one
        option leaves the others' draws as they were."""
        if not 0 <= index < self.num_samples:
            raise IndexError(f"scene index {index} out of range [0, {self.num_samples})")
        config, rng = self.paste_config, np.random.default_rng([self.seed, self.epoch, index])
        chosen = int(rng.integers(len(self.objects)))
        photo = int(rng.integers(len(self.photos)))
        width, height = rng.integers(config.min_size, config.max_size + 1, size=2).tolist()
        window = draw_crop(rng, self.photos[photo].size, width, height, config.min_background_crop)
        params = draw_paste(rng, config)
        white = bool(rng.random() < self.exemplar_on_white_p)
        exemplar_index = self.exemplar_object(chosen, int(rng.integers(2**31)))

        scene = crop_photo(self.photos[photo], window, width, height)
        image, coverage, box = paste(scene, self.cutouts[chosen], params)
        exemplar = None  # the dataset crops the scene
        if white:
            exemplar = on_white(self.cutouts[exemplar_index])
        elif exemplar_index != chosen:
            other_image, _, other_box = paste(scene, self.cutouts[exemplar_index], params)
            exemplar = crop_exemplar(other_image, other_box)
        entry = self.objects[chosen]
        return ObjectImage(
            image=torch.from_numpy(image).permute(2, 0, 1),
            boxes=[box],
            labels=[entry.name],
            image_id=f"objects-{self.seed}-{self.epoch}-{index}:{entry.style}/{entry.codepoint}",
            masks=[torch.from_numpy(coverage)],
            exemplar=exemplar,
            details={
                "style": entry.style,
                "codepoint": entry.codepoint,
                "background": self.backgrounds[photo].path,
                "exemplar_style": self.objects[exemplar_index].style,
                "exemplar_on_white": white,
                "same_style_fallback": self.exemplar_style == "other" and exemplar_index == chosen,
                "flip": params.flip,
                "angle": params.angle,
                "colour_match": params.colour_match,
            },
        )


# --- evaluation scenes ----------------------------------------------------------------------------------------------


@dataclass
class Candidate:
    """A candidate exemplar: a cut-out on white, with what it shows."""

    role: str  # "same_object" (the scene's code point), "same_colour" or "other_colour" (another code point)
    codepoint: str
    name: str
    style: str
    dominant_colour: str
    image: torch.Tensor  # uint8 (3, S, S), the object on white


@dataclass
class HeldoutScene:
    image: torch.Tensor  # uint8 (3, size, size): a held-out object pasted into a held-out photo crop
    mask: torch.Tensor  # float (size, size): 1 = keep, 0 = the box to repaint (the model's convention)
    box: Box
    coverage: torch.Tensor  # float (size, size) in [0, 1]: the pasted object's alpha
    candidates: list[
        Candidate
    ]  # the object in each asked style that has it, then a same- and an other-colour one
    meta: dict  # codepoint, name, category, style, codepoint_split, dominant_colour, background, seed, index


class HeldoutFiles:
    """The held-out rows of a manifest, with each file decoded once and each object's dominant colour."""

    def __init__(self, manifest: Manifest, styles: list[str], codepoint_split: str, photo_side: int):
        self.root, self.photo_side = manifest.root, photo_side
        entries = [o for o in manifest.objects if o.style in styles and o.codepoint_split == codepoint_split]
        self.photos = backgrounds_of_split(manifest, "heldout")
        if not entries or not self.photos:
            raise ValueError(
                f"root: {manifest.root / MANIFEST} has no object of code point split {codepoint_split!r} in "
                f"styles {styles}, or no held-out photo"
            )
        self.by_codepoint: dict[str, list[ObjectEntry]] = {}
        for entry in entries:
            self.by_codepoint.setdefault(entry.codepoint, []).append(entry)
        self.codepoints = sorted(self.by_codepoint)
        self.cache: dict[str, Image.Image] = {}
        self.colours: dict[str, str] = {}

    def cutout(self, entry: ObjectEntry) -> Image.Image:
        if entry.path not in self.cache:
            self.cache[entry.path] = load_cutout(self.root / entry.path)
        return self.cache[entry.path]

    def photo(self, entry: BackgroundEntry) -> Image.Image:
        if entry.path not in self.cache:
            self.cache[entry.path] = load_photo(self.root / entry.path, self.photo_side)
        return self.cache[entry.path]

    def colour(self, entry: ObjectEntry) -> str:
        if entry.path not in self.colours:
            self.colours[entry.path] = dominant_colour(self.cutout(entry))
        return self.colours[entry.path]

    def drawing(self, codepoint: str, style: str) -> ObjectEntry:
        """The code point drawn in ``style`` if it is, else in its first style."""
        drawings = self.by_codepoint[codepoint]
        return next((d for d in drawings if d.style == style), drawings[0])

    def candidate(self, role: str, entry: ObjectEntry) -> Candidate:
        cutout = self.cutout(entry)
        return Candidate(role, entry.codepoint, entry.name, entry.style, self.colour(entry), on_white(cutout))

    def candidates(self, rng: np.random.Generator, entry: ObjectEntry) -> list[Candidate]:
        """The scene object's code point in each style (its own first), then another code point of the same
        dominant colour and one of another colour (each drawn in the scene's style where it can be)."""
        own = [entry] + [d for d in self.by_codepoint[entry.codepoint] if d is not entry]
        found = [self.candidate("same_object", d) for d in own]
        colour = self.colour(entry)
        for role, same in (("same_colour", True), ("other_colour", False)):
            pool = [
                self.drawing(cp, entry.style)
                for cp in self.codepoints
                if cp != entry.codepoint and (self.colour(self.drawing(cp, entry.style)) == colour) == same
            ]
            if pool:
                found.append(self.candidate(role, pool[int(rng.integers(len(pool)))]))
        return found


def heldout_scenes(
    root: str | Path,
    n: int,
    seed: int = 0,
    styles: list[str] | None = None,
    size: int = 256,
    codepoint_split: str = "heldout",
    paste_config: PasteConfig | None = None,
) -> list[HeldoutScene]:
    """``n`` evaluation scenes: held-out code points pasted into crops of held-out photos, a function of ``seed``.

    ``styles``: the styles the pasted objects and the candidates are drawn in, default the training styles (seen
    styles, unseen objects); name the reserved style (``["noto"]``) for an unseen style. ``codepoint_split="train"``
    takes seen code points instead (with the reserved style: seen objects, unseen style). Code points are used in
    a seeded order, each once before any repeats. Scenes are ``size`` square; the object's box covers 10-30% of
    the scene unless ``paste_config`` says otherwise. Photos are only ever the held-out ones."""
    if not (isinstance(n, int) and n >= 1):
        raise ValueError(f"n must be an int >= 1, got {n!r}")
    if not (isinstance(size, int) and size >= 32):
        raise ValueError(f"size must be an int >= 32, got {size!r}")
    if codepoint_split not in ("heldout", "train"):
        raise ValueError(f"codepoint_split must be 'heldout' or 'train', got {codepoint_split!r}")
    manifest = read_manifest(root, key="root")
    valid = manifest.training_styles() + manifest.reserved_styles()
    styles = manifest.training_styles() if styles is None else list(styles)
    unknown = [s for s in styles if s not in valid]
    if unknown or not styles:
        raise ValueError(f"styles: unknown or empty {unknown or styles}; styles in the manifest are {valid}")
    config = paste_config or PasteConfig(
        min_size=size, max_size=size, min_object_area=0.1, max_object_area=0.3
    )
    files = HeldoutFiles(manifest, styles, codepoint_split, photo_side=2 * size)
    rounds = math.ceil(n / len(files.codepoints))
    order_rng = np.random.default_rng([seed, 1])
    order = np.concatenate([order_rng.permutation(len(files.codepoints)) for _ in range(rounds)])
    scenes = []
    for index in range(n):
        rng = np.random.default_rng([seed, 2, index])
        drawings = files.by_codepoint[files.codepoints[int(order[index])]]
        entry = drawings[int(rng.integers(len(drawings)))]
        photo_entry = files.photos[int(rng.integers(len(files.photos)))]
        photo = files.photo(photo_entry)
        window = draw_crop(rng, photo.size, size, size, config.min_background_crop)
        params = draw_paste(rng, config)
        image, coverage, box = paste(crop_photo(photo, window, size, size), files.cutout(entry), params)
        mask = torch.ones(size, size)
        mask[box[1] : box[3], box[0] : box[2]] = 0
        scenes.append(
            HeldoutScene(
                image=torch.from_numpy(image).permute(2, 0, 1),
                mask=mask,
                box=box,
                coverage=torch.from_numpy(coverage),
                candidates=files.candidates(rng, entry),
                meta={
                    "codepoint": entry.codepoint,
                    "name": entry.name,
                    "category": entry.category,
                    "style": entry.style,
                    "codepoint_split": entry.codepoint_split,
                    "dominant_colour": files.colour(entry),
                    "background": photo_entry.path,
                    "seed": seed,
                    "index": index,
                },
            )
        )
    return scenes
