"""The notes written beside the files: the licence texts, sources.json (packages, versions, archive hashes, counts
and the recipe a rerun compares) and ATTRIBUTION.md (who made what, under which licence).
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from dataclasses import asdict
from importlib.metadata import version as package_version
from pathlib import Path

from pbe.data.objects_fetch.backgrounds import training_photos
from pbe.data.objects_fetch.clients import Download
from pbe.data.objects_fetch.config import DEMO_PHOTOS, FetchConfig, Package
from pbe.data.objects_fetch.images import rasteriser_version
from pbe.data.objects_fetch.output_folder import Outputs
from pbe.data.objects_fetch.packages import _first_match


def recipe_of(config: FetchConfig, fetched: dict[Package, tuple[Download, Path]]) -> str:
    """A fingerprint of everything the output files depend on: settings, packages' versions and bytes, tools."""
    parts = {
        "config": asdict(config),
        "archives": sorted(download.sha256 for download, _ in fetched.values()),
        "rasteriser": rasteriser_version(),
        "pillow": package_version("pillow"),
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


def _used_for(package: Package, config: FetchConfig) -> str:
    if package == config.metadata:
        return "emoji names and categories"
    for style in config.styles:
        if style.package == package:
            return f"objects, style {style.name}" + (
                " (reserved held-out style, never for training)" if style.reserved else ""
            )
    return "background photos"


def copy_licences(fetched: dict[Package, tuple[Download, Path]], outputs: Outputs) -> dict:
    """DIR/licences/<manager>-<package>.txt from each package's licence file; {package name: path}."""
    copied = {}
    for package, (_, folder) in fetched.items():
        if package.licence_file is None:
            continue
        found = _first_match(folder, package.licence_file)
        if found is not None:
            relative = f"licences/{package.manager}-{package.slug}.txt"
            outputs.put(relative, found.read_bytes())
            copied[package.name] = relative
    return copied


def sources_document(
    config: FetchConfig,
    fetched: dict[Package, tuple[Download, Path]],
    root: Path,
    recipe: str,
    counts: dict,
    dropped: Counter,
    licences: dict,
) -> dict:
    packages = []
    for package, (download, _) in fetched.items():
        packages.append(
            {
                "manager": package.manager,
                "name": package.name,
                "version": download.version,
                "licence": package.licence,
                "attribution": package.attribution,
                "homepage": package.homepage,
                "used_for": _used_for(package, config),
                "archive": download.archive.relative_to(root).as_posix(),
                "sha256": download.sha256,
                "size": download.size,
                "licence_file": licences.get(package.name),
            }
        )
    return {
        "generated_by": "python -m pbe.data.fetch objects",
        "recipe": recipe,
        "rasteriser": rasteriser_version(),
        "object_size": config.images.object_size,
        "split": asdict(config.split),
        "reserved_styles": [style.name for style in config.styles if style.reserved],
        "excluded_demo_photos": sorted(DEMO_PHOTOS),
        "packages": packages,
        "counts": counts,
        "dropped_emoji": dict(sorted(dropped.items())),
    }


def attribution_markdown(sources: dict, config: FetchConfig) -> str:
    lines = [
        "# Attribution",
        "",
        "Made by `python -m pbe.data.fetch objects`. Each file's own licence and attribution is in manifest.jsonl;",
        "licence texts are in licences/. A file made from a package keeps that package's licence: share-alike",
        "terms (CC BY-SA) carry over to it, and attribution terms (CC BY) need the attribution below.",
        "",
    ]
    reserved = [style.folder + "/" for style in config.styles if style.reserved]
    if reserved:
        lines += [
            f"Files under {', '.join(reserved)} are a reserved evaluation style: never use them for training.",
            "",
        ]
    lines += ["## Packages", ""]
    for package in sources["packages"]:
        lines.append(
            f"- **{package['name']}** {package['version']} ({package['manager']}), {package['licence']}: "
            f"{package['attribution']}. Used for {package['used_for']}. <{package['homepage']}>"
        )
    lines += ["", "## Background photos", ""]
    for photo_set in config.photo_sets:
        for photo in training_photos(photo_set):
            lines.append(f"- {photo_set.folder}/{photo.name}: {photo.author}, {photo.licence}")
    return "\n".join(lines) + "\n"
