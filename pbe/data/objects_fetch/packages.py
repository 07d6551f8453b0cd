"""The packages of a ``FetchConfig``: downloaded (or found in the cache), unpacked, and checked for what this command
needs of them (the emoji metadata, each style's files, each photo), before anything is built from them.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable
from pathlib import Path

from pbe.data.objects_fetch.clients import (
    Download,
    FetchError,
    cached_download,
    fetch_archive,
    require_clients,
    unpack,
)
from pbe.data.objects_fetch.config import FetchConfig, Package
from pbe.data.objects_fetch.emoji import Emoji, index_style_files, read_emoji_metadata

Log = Callable[[str], None]


def fetch_packages(config: FetchConfig, cache: Path, log: Log) -> dict[Package, tuple[Download, Path]]:
    """Every package downloaded (or found in the cache) and unpacked: {package: (download, unpacked folder)}.
    All clients that are needed are checked before the first download."""
    cached = {package: cached_download(package, cache) for package in config.packages}
    require_clients([package for package, found in cached.items() if found is None])
    fetched = {}
    for package, download in cached.items():
        if download is None:
            log(f"fetching {package.manager} {package.spec}")
            download = fetch_archive(package, cache, config.client_timeout_s)
        fetched[package] = (download, unpack(download, cache))
    return fetched


def _first_match(folder: Path, pattern: str) -> Path | None:
    matches = sorted(
        p for p in folder.rglob("*") if fnmatch.fnmatchcase(p.relative_to(folder).as_posix(), pattern)
    )
    return matches[0] if matches else None


def check_arrivals(config: FetchConfig, fetched: dict[Package, tuple[Download, Path]]) -> None:
    """Fail with one line when a package lacks what this command expects of it."""
    problems = []
    metadata = fetched[config.metadata][1] / "package" / "emoji.json"
    if not metadata.is_file():
        problems.append(f"{config.metadata.spec} has no package/emoji.json")
    for style in config.styles:
        folder = fetched[style.package][1]
        if style.kind == "font":
            if _first_match(folder, style.files) is None:
                problems.append(f"{style.package.spec} has no {style.files}")
            continue
        count = len(index_style_files(folder, style.files))
        if count < style.min_files:
            problems.append(
                f"{style.package.spec} has {count} {style.files} files, expected at least {style.min_files}"
            )
    for photo_set in config.photo_sets:
        folder = fetched[photo_set.package][1]
        missing = [photo.member for photo in photo_set.photos if not (folder / photo.member).is_file()]
        if missing:
            problems.append(f"{photo_set.package.spec} lacks {', '.join(missing[:3])}")
    if problems:
        raise FetchError("; ".join(problems))


def load_metadata(config: FetchConfig, fetched: dict[Package, tuple[Download, Path]]) -> list[Emoji]:
    path = fetched[config.metadata][1] / "package" / "emoji.json"
    try:
        return read_emoji_metadata(path)
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
        raise FetchError(
            f"{config.metadata.spec}: cannot read package/emoji.json ({type(e).__name__}: {e})"
        ) from None
