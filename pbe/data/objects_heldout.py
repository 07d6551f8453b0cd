"""Held-out evaluation scenes of ``data=objects``: ``heldout_scenes`` composes them from the manifest's held-out rows.

A scene is a held-out code point (or, on request, a seen one) pasted into a crop of a held-out photo, with candidate
exemplars on white: the object in each asked style, then one of the same dominant colour and one of another.
Nothing here reads a training photo, and the scenes are a function of the seed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from pbe.data.masks import Box
from pbe.data.objects_colour import dominant_colour
from pbe.data.objects_folder import (
    MANIFEST,
    BackgroundEntry,
    Manifest,
    ObjectEntry,
    backgrounds_of_split,
    load_cutout,
    load_photo,
    read_manifest,
)
from pbe.data.objects_paste import PasteConfig, crop_photo, draw_crop, draw_paste, on_white, paste


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
