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

The parts live in modules of their own, and their names stay importable from here: ``pbe.data.objects_folder`` (the
fetched folder's manifest and decoded files), ``pbe.data.objects_paste`` (composing a scene and its exemplars),
``pbe.data.objects_colour`` (an object's dominant colour) and ``pbe.data.objects_heldout`` (the evaluation scenes).
This module is the training source, ``ObjectsSource``.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from pbe.data.objects_colour import COLOUR_NAMES, HUE_NAMES, dominant_colour, pixel_colour_names
from pbe.data.objects_folder import (
    FETCH_HINT,
    MANIFEST,
    RESERVED_FOLDER,
    RESERVED_SPLIT,
    BackgroundEntry,
    Manifest,
    ObjectEntry,
    backgrounds_of_split,
    check_styles,
    inside_root,
    is_demo_photo,
    load_all,
    load_cutout,
    load_photo,
    parse_row,
    read_manifest,
    training_objects,
)
from pbe.data.objects_heldout import Candidate, HeldoutFiles, HeldoutScene, heldout_scenes
from pbe.data.objects_paste import (
    EXEMPLAR_PAD,
    WHITE_MARGIN,
    PasteConfig,
    PasteParams,
    crop_exemplar,
    crop_photo,
    draw_crop,
    draw_paste,
    match_colours,
    on_white,
    paste,
    pose,
    trim,
)
from pbe.data.sources import SourceImage

__all__ = [
    "COLOUR_NAMES",
    "EXEMPLAR_PAD",
    "EXEMPLAR_STYLES",
    "FETCH_HINT",
    "HUE_NAMES",
    "MANIFEST",
    "RESERVED_FOLDER",
    "RESERVED_SPLIT",
    "WHITE_MARGIN",
    "BackgroundEntry",
    "Candidate",
    "HeldoutFiles",
    "HeldoutScene",
    "Manifest",
    "ObjectEntry",
    "ObjectImage",
    "ObjectsSource",
    "PasteConfig",
    "PasteParams",
    "backgrounds_of_split",
    "check_source_options",
    "check_styles",
    "crop_exemplar",
    "crop_photo",
    "dominant_colour",
    "draw_crop",
    "draw_paste",
    "heldout_scenes",
    "inside_root",
    "is_demo_photo",
    "load_all",
    "load_cutout",
    "load_photo",
    "match_colours",
    "on_white",
    "parse_row",
    "paste",
    "pixel_colour_names",
    "pose",
    "read_manifest",
    "training_entries",
    "training_objects",
    "trim",
]

EXEMPLAR_STYLES = ("same", "other")


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
