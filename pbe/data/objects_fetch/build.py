"""Builds DIR: fetch and check the packages, write the objects and backgrounds, then the notes and the manifest.

Output layout::

    DIR/objects/<style>/<codepoint>.png          RGBA cut-outs of the training styles (split train | heldout)
    DIR/heldout_style/noto/<codepoint>.png       the reserved style: never for training (split reserved_style)
    DIR/backgrounds/<package>/<name>.jpg|png     real photographs
    DIR/licences/<manager>-<package>.txt         each package's licence or copyright file
    DIR/manifest.jsonl                           one line per file above (MANIFEST_FIELDS)
    DIR/sources.json                             packages (version, licence, sha256 of the archive), counts
    DIR/ATTRIBUTION.md                           who made what, under which licence
    DIR/cache/                                   downloaded archives and what was unpacked from them

DIR must be new, empty, or an earlier output of this command (anything else in it is refused before work). Every
file is written atomically (`pbe.files`); ATTRIBUTION.md, sources.json and the manifest are written last, so a run
that stops early leaves whole files and the previous run's manifest. A rerun skips every file that the previous
manifest lists with the same sha256 (when sources.json's recipe, i.e. the packages and settings, is unchanged); any
other file is made again and rewritten only if its bytes differ. Files the previous manifest listed and the new one
does not (after a change of filter or photo list) are deleted; nothing else in DIR is ever deleted.

This module is the command, ``fetch_objects``; its steps live in modules of their own (their names stay importable
from here): ``packages`` (download, unpack, check), ``style_objects`` (the cut-outs of one style), ``backgrounds`` (the
photos), ``notes`` (licences, sources.json, ATTRIBUTION.md), ``manifest`` (the manifest's rows and bytes) and
``output_folder`` (what DIR may hold, what a rerun keeps, rewrites or deletes). Images are made in ``images``.
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from pbe.data.objects_fetch.backgrounds import (
    background_key,
    background_splits,
    build_photo_set,
    is_demo_photo,
    training_photos,
)
from pbe.data.objects_fetch.config import FetchConfig
from pbe.data.objects_fetch.emoji import select_objects
from pbe.data.objects_fetch.images import Rasteriser, resvg_rasteriser
from pbe.data.objects_fetch.manifest import MANIFEST_FIELDS, RESERVED, count_rows, manifest_bytes
from pbe.data.objects_fetch.notes import (
    attribution_markdown,
    copy_licences,
    recipe_of,
    sources_document,
)
from pbe.data.objects_fetch.output_folder import (
    OUTPUT_NAMES,
    Outputs,
    check_output_folder,
    previous_recipe,
    read_manifest_rows,
    remove_stale,
)
from pbe.data.objects_fetch.packages import Log, check_arrivals, fetch_packages, load_metadata
from pbe.data.objects_fetch.style_objects import ObjectFile, ObjectMaker, StyleResult, build_style

__all__ = [
    "MANIFEST_FIELDS",
    "OUTPUT_NAMES",
    "RESERVED",
    "Log",
    "ObjectFile",
    "ObjectMaker",
    "Outputs",
    "StyleResult",
    "Summary",
    "attribution_markdown",
    "background_key",
    "background_splits",
    "build_photo_set",
    "build_style",
    "check_arrivals",
    "check_output_folder",
    "copy_licences",
    "count_rows",
    "fetch_objects",
    "fetch_packages",
    "is_demo_photo",
    "load_metadata",
    "manifest_bytes",
    "previous_recipe",
    "read_manifest_rows",
    "recipe_of",
    "remove_stale",
    "resvg_rasteriser",
    "sources_document",
    "training_photos",
]


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# --- the command ----------------------------------------------------------------------------------------------------


@dataclass
class Summary:
    root: Path
    rows: list[dict]
    counts: dict
    dropped: Counter
    written: int
    unchanged: int
    removed: int


def fetch_objects(
    out_dir: str | Path,
    config: FetchConfig | None = None,
    *,
    progress: bool = True,
    rasterise: Rasteriser | None = None,
    log: Log = _stderr,
) -> Summary:
    """Fetch every package of ``config``, check them, and build DIR (see the module's docstring)."""
    config = config or FetchConfig()
    root = Path(out_dir)
    check_output_folder(root)
    if rasterise is None and any(style.kind == "svg" for style in config.styles):
        rasterise = resvg_rasteriser()
    fetched = fetch_packages(config, root / "cache", log)
    check_arrivals(config, fetched)

    emojis = load_metadata(config, fetched)
    kept, dropped = select_objects(emojis, config.object_filter)
    recipe = recipe_of(config, fetched)
    previous = read_manifest_rows(root)
    outputs = Outputs(root, previous if previous_recipe(root) == recipe else {})
    rows: list[dict] = []
    for style in config.styles:
        result = build_style(style, kept, fetched[style.package], config, outputs, rasterise, progress)
        log(
            f"{style.name}: {len(result.rows)} objects ({result.absent} of the kept code points not in this style"
            + (f", {result.empty} empty" if result.empty else "")
            + (
                f", {len(result.unreadable)} unreadable: {'; '.join(result.unreadable[:3])}"
                if result.unreadable
                else ""
            )
            + ")"
        )
        rows += result.rows
    splits = background_splits(config)
    for photo_set in config.photo_sets:
        rows += build_photo_set(photo_set, fetched[photo_set.package], splits, config, outputs, progress)

    licences = copy_licences(fetched, outputs)
    counts = count_rows(rows)
    sources = sources_document(config, fetched, root, recipe, counts, dropped, licences)
    outputs.put("ATTRIBUTION.md", attribution_markdown(sources, config).encode())
    outputs.put("sources.json", (json.dumps(sources, indent=2, ensure_ascii=False) + "\n").encode())
    outputs.put("manifest.jsonl", manifest_bytes(rows))
    removed = remove_stale(root, previous, rows)
    return Summary(root, rows, counts, dropped, outputs.written, outputs.unchanged, removed)
