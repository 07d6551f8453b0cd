"""The folder `python -m pbe.data.fetch objects DIR` writes, as the ``data=objects`` readers see it.

``read_manifest`` reads ``DIR/manifest.jsonl`` into entries (``ObjectEntry`` for a cut-out, ``BackgroundEntry`` for a
photo; paths outside DIR are left out), and the helpers here pick rows by split: the training objects of some styles
(never the reserved style nor anything under ``heldout_style/``) and the photos of a split (never the project's demo
photos, whatever the manifest says). ``load_cutout`` / ``load_photo`` / ``load_all`` decode the files, shrunk.
"""

from __future__ import annotations

import json
import math
import warnings
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from PIL import Image

from pbe.data.objects_fetch.config import DEMO_PHOTOS
from pbe.data.sources import SkippedSampleWarning

MANIFEST = "manifest.jsonl"
RESERVED_SPLIT = "reserved_style"
RESERVED_FOLDER = "heldout_style"
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
