"""Emoji as objects: one key per code point sequence across styles, and which emoji are kept.

Every style names its files differently (``1f34e.webp``, ``a9.svg``, ``00A9-FE0F.svg``); all are reduced to one
key, `canonical_codepoint`: lower-case hex, at least four digits, joined by ``-``, without the emoji presentation
selector FE0F. The same key in several styles is several renderings of one object; its split (``split.py``)
follows the key.
"""

from __future__ import annotations

import fnmatch
import json
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from pbe.data.objects_fetch.config import ObjectFilter

PRESENTATION_SELECTOR = 0xFE0F
ZERO_WIDTH_JOINER = 0x200D
SKIN_TONES = range(0x1F3FB, 0x1F400)
REGIONAL_INDICATORS = range(0x1F1E6, 0x1F200)  # flags
TAGS = range(0xE0020, 0xE0080)  # subdivision flags
KEYCAP = 0x20E3
# People and body parts that appear inside ZWJ sequences (man/woman/person/boy/girl/baby, hands, ...).
PEOPLE = frozenset({0x1F466, 0x1F467, 0x1F468, 0x1F469, 0x1F9D1, 0x1F476, 0x1F9D2, 0x1F474, 0x1F475, 0x1F9D3})
HAND_RANGES = (
    range(0x1F446, 0x1F451),
    range(0x1F90C, 0x1F910),
    range(0x1F918, 0x1F920),
    range(0x1FAF0, 0x1FAF9),
)


@dataclass(frozen=True)
class Emoji:
    codepoint: str  # canonical key, e.g. "1f43b-200d-2744"
    text: str  # the fully qualified emoji, e.g. "🐻‍❄️"
    name: str  # lower-case name, e.g. "polar bear"
    short_name: str
    category: str
    subcategory: str


def parse_codepoints(sequence: str) -> list[int]:
    """``"1F43B-200D-2744-FE0F"`` / ``"1f43b_200d_2744"`` -> code points (raises ValueError for non-hex parts)."""
    return [int(part, 16) for part in re.split(r"[-_ ]", sequence.strip()) if part]


def canonical_codepoint(sequence: str) -> str:
    """The key shared by every style: lower-case hex, 4+ digits, '-'-joined, without FE0F."""
    return "-".join(f"{cp:04x}" for cp in parse_codepoints(sequence) if cp != PRESENTATION_SELECTOR)


def read_emoji_metadata(path: Path) -> list[Emoji]:
    """emoji-datasource's emoji.json -> one Emoji per entry (skin-tone variants are nested there, not entries)."""
    entries = json.loads(path.read_text(encoding="utf-8"))
    emojis = []
    for entry in entries:
        unified = entry["unified"]
        name = entry.get("name") or entry.get("short_name") or unified
        emojis.append(
            Emoji(
                codepoint=canonical_codepoint(unified),
                text="".join(chr(cp) for cp in parse_codepoints(unified)),
                name=name.lower(),
                short_name=entry.get("short_name") or "",
                category=entry.get("category") or "",
                subcategory=entry.get("subcategory") or "",
            )
        )
    return emojis


def _structural_reason(codepoints: list[int]) -> str | None:
    """Sequences that are never a single object, whatever their category says."""
    if any(cp in SKIN_TONES for cp in codepoints):
        return "skin-tone variant"
    if any(cp in REGIONAL_INDICATORS or cp in TAGS for cp in codepoints):
        return "flag"
    if KEYCAP in codepoints:
        return "keycap"
    if ZERO_WIDTH_JOINER in codepoints and any(
        cp in PEOPLE or any(cp in hands for hands in HAND_RANGES) for cp in codepoints
    ):
        return "people sequence"
    return None


def drop_reason(emoji: Emoji, object_filter: ObjectFilter) -> str | None:
    """Why ``emoji`` is not kept as an object (None: kept)."""
    reason = _structural_reason(parse_codepoints(emoji.codepoint))
    if reason is not None:
        return reason
    if emoji.category not in object_filter.categories:
        return f"category {emoji.category or '(none)'}"
    for pattern, why in object_filter.dropped_names:
        if re.fullmatch(pattern, emoji.name, flags=re.IGNORECASE):
            return why
    return None


def select_objects(emojis: list[Emoji], object_filter: ObjectFilter) -> tuple[list[Emoji], Counter]:
    """The kept emoji (sorted by key, each key once) and a count of the others by reason."""
    kept: dict[str, Emoji] = {}
    dropped: Counter = Counter()
    for emoji in emojis:
        reason = drop_reason(emoji, object_filter)
        if reason is None:
            kept.setdefault(emoji.codepoint, emoji)
        else:
            dropped[reason] += 1
    return [kept[key] for key in sorted(kept)], dropped


def index_style_files(folder: Path, pattern: str) -> dict[str, Path]:
    """{canonical key: file} for the files of a style whose names are code point sequences; names that are not
    (a README, a logo) are ignored. Where two files share a key (``2764.svg``, ``2764-fe0f.svg``) the first in
    sorted order is used."""
    index: dict[str, Path] = {}
    for path in sorted(folder.rglob("*")):
        relative = path.relative_to(folder).as_posix()
        if not path.is_file() or not fnmatch.fnmatchcase(relative, pattern):
            continue
        try:
            key = canonical_codepoint(path.name.split(".", 1)[0])
        except ValueError:
            continue
        if key:
            index.setdefault(key, path)
    return index
