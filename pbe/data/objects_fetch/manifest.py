"""DIR/manifest.jsonl as this command writes it: its fields, one row, the file's bytes, and the counts of its rows.

Every row has every field of ``MANIFEST_FIELDS``, in that order (None where a field does not apply); the file is
sorted by path, so the same rows always give the same bytes. ``pbe.data.objects_folder`` reads it back.
"""

from __future__ import annotations

import json
from collections import Counter

MANIFEST_FIELDS = (
    "path",
    "kind",  # object | background
    "style",  # objects: fluent_3d | twemoji | openmoji | noto
    "codepoint",  # objects: canonical key, e.g. 1f43b-200d-2744
    "emoji",
    "name",
    "short_name",
    "category",
    "subcategory",
    "split",  # train | heldout | reserved_style (every Noto file)
    "codepoint_split",  # objects: the code point's own split (also for the reserved style)
    "width",
    "height",
    "grayscale",  # backgrounds
    "source",  # backgrounds: the photo set (folder under backgrounds/)
    "source_package",
    "source_manager",
    "source_version",
    "source_file",
    "licence",
    "attribution",
    "sha256",
)
RESERVED = "reserved_style"


def _row(**values) -> dict:
    unknown = set(values) - set(MANIFEST_FIELDS)
    assert not unknown, unknown
    return {name: values.get(name) for name in MANIFEST_FIELDS}


def count_rows(rows: list[dict]) -> dict:
    objects = [row for row in rows if row["kind"] == "object"]
    backgrounds = [row for row in rows if row["kind"] == "background"]
    by_style: dict[str, Counter] = {}
    by_category: dict[str, Counter] = {}
    for row in objects:
        by_style.setdefault(row["style"], Counter())[row["split"]] += 1
        by_category.setdefault(row["category"], Counter())[row["style"]] += 1
    by_source: dict[str, Counter] = {}
    for row in backgrounds:
        by_source.setdefault(row["source"], Counter())[row["split"]] += 1
    return {
        "objects_by_style_and_split": {k: dict(sorted(v.items())) for k, v in sorted(by_style.items())},
        "objects_by_category_and_style": {k: dict(sorted(v.items())) for k, v in sorted(by_category.items())},
        "code_points": dict(
            Counter(split for split in {r["codepoint"]: r["codepoint_split"] for r in objects}.values())
        ),
        "backgrounds_by_source_and_split": {k: dict(sorted(v.items())) for k, v in sorted(by_source.items())},
    }


def manifest_bytes(rows: list[dict]) -> bytes:
    """One JSON object per line, sorted by path (the same rows give the same bytes)."""
    ordered = sorted(rows, key=lambda row: row["path"])
    return "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in ordered).encode()
