"""The background photos: each photo set's photos, less the project's demo photos, prepared under DIR with their rows.

Photos are split (train | heldout) by ``ranked_split`` over all photo sets at once; the demo and evaluation photos
(astronaut, coffee, chelsea, rocket) are never written at all.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath

from tqdm import tqdm

from pbe.data.objects_fetch.clients import Download
from pbe.data.objects_fetch.config import DEMO_PHOTOS, FetchConfig, Photo, PhotoSet
from pbe.data.objects_fetch.images import prepare_photo
from pbe.data.objects_fetch.manifest import _row
from pbe.data.objects_fetch.output_folder import Outputs
from pbe.data.objects_fetch.split import ranked_split


def is_demo_photo(photo: Photo) -> bool:
    """The project's demo and evaluation photos (astronaut, coffee, chelsea, rocket) are never training data."""
    names = {photo.name.lower(), PurePosixPath(photo.member).stem.lower()}
    return bool(names & DEMO_PHOTOS)


def training_photos(photo_set: PhotoSet) -> list[Photo]:
    return [photo for photo in photo_set.photos if not is_demo_photo(photo)]


def background_key(photo_set: PhotoSet, photo: Photo) -> str:
    return f"{photo_set.folder}/{photo.name}"


def background_splits(config: FetchConfig) -> dict[str, str]:
    keys = [background_key(s, photo) for s in config.photo_sets for photo in training_photos(s)]
    return ranked_split(keys, config.split)


def build_photo_set(
    photo_set: PhotoSet,
    fetched: tuple[Download, Path],
    splits: dict[str, str],
    config: FetchConfig,
    outputs: Outputs,
    progress: bool,
) -> list[dict]:
    download, folder = fetched
    rows = []
    for photo in tqdm(
        training_photos(photo_set), desc=f"backgrounds {photo_set.folder}", disable=not progress, leave=False
    ):
        suffix = ".png" if photo.member.lower().endswith(".png") else ".jpg"
        relative = f"backgrounds/{photo_set.folder}/{photo.name}{suffix}"
        previous = outputs.verified(relative)
        if previous is not None:
            width, height, grayscale, digest = (
                previous[k] for k in ("width", "height", "grayscale", "sha256")
            )
        else:
            prepared = prepare_photo(
                (folder / photo.member).read_bytes(),
                config.images.background_short_side,
                config.images.jpeg_quality,
            )
            width, height, grayscale = prepared.width, prepared.height, prepared.grayscale
            digest = outputs.put(relative, prepared.data)
        rows.append(
            _row(
                path=relative,
                kind="background",
                name=photo.name,
                split=splits[background_key(photo_set, photo)],
                width=width,
                height=height,
                grayscale=grayscale,
                source=photo_set.folder,
                source_package=photo_set.package.name,
                source_manager=photo_set.package.manager,
                source_version=download.version,
                source_file=photo.member,
                licence=photo.licence,
                attribution=photo.author,
                sha256=digest,
            )
        )
    return rows
