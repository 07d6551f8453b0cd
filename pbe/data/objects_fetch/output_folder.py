"""The output folder DIR: what may be written there, and what a rerun keeps, rewrites or deletes.

DIR must be new, empty, or an earlier output of this command (``check_output_folder``). ``Outputs`` skips a file the
previous manifest vouches for (same recipe, same sha256) and otherwise writes it atomically, only when its bytes
differ; ``remove_stale`` deletes the files the previous manifest listed and the new one does not, and nothing else.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from pbe.data.objects_fetch.clients import FetchError, sha256_file
from pbe.files import check_folder_writable, write_file

# The top-level names this command writes in DIR; a folder holding anything else is refused (it is not ours).
OUTPUT_NAMES = frozenset(
    {
        "cache",
        "objects",
        "heldout_style",
        "backgrounds",
        "licences",
        "manifest.jsonl",
        "sources.json",
        "ATTRIBUTION.md",
    }
)


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass
class Outputs:
    """The files under DIR: skips what the previous manifest vouches for, (re)writes the rest atomically."""

    root: Path
    previous: dict[str, dict]  # path -> manifest row of the previous run with the same recipe
    written: int = 0
    unchanged: int = 0

    def verified(self, relative: str) -> dict | None:
        """The previous row of a file that is still there with the same sha256, else None."""
        row = self.previous.get(relative)
        path = self.root / relative
        if row is None or not path.is_file() or sha256_file(path) != row["sha256"]:
            return None
        self.unchanged += 1
        return row

    def put(self, relative: str, data: bytes) -> str:
        """Write ``data`` at ``relative`` unless the file already holds exactly it; its sha256."""
        path = self.root / relative
        digest = _sha256(data)
        if path.is_file() and sha256_file(path) == digest:
            self.unchanged += 1
        else:
            write_file(path, data, overwrite=True, label="objects")
            self.written += 1
        return digest


def check_output_folder(root: Path) -> None:
    """DIR must be new, empty, or an earlier output of this command (resumed or refreshed); never a user's folder."""
    if root.exists() and not root.is_dir():
        raise FetchError(f"{root} is a file; name a folder")
    if root.is_dir():
        foreign = sorted(
            p.name for p in root.iterdir() if p.name not in OUTPUT_NAMES and not p.name.startswith(".")
        )
        if foreign:
            raise FetchError(
                f"{root} holds files this command did not write ({', '.join(foreign[:3])}"
                f"{', ...' if len(foreign) > 3 else ''}); choose a new or empty folder, or an earlier output of "
                "`python -m pbe.data.fetch objects`"
            )
    check_folder_writable(root, label="objects")


def read_manifest_rows(root: Path) -> dict[str, dict]:
    """The rows of DIR/manifest.jsonl by path (nothing when it is missing or unreadable)."""
    try:
        lines = (root / "manifest.jsonl").read_text(encoding="utf-8").splitlines()
        rows = [json.loads(line) for line in lines if line.strip()]
    except (OSError, ValueError):
        return {}
    return {row["path"]: row for row in rows if isinstance(row, dict) and "path" in row and "sha256" in row}


def previous_recipe(root: Path) -> str | None:
    try:
        return json.loads((root / "sources.json").read_text(encoding="utf-8")).get("recipe")
    except (OSError, ValueError, AttributeError):
        return None


def remove_stale(root: Path, previous: dict[str, dict], rows: list[dict]) -> int:
    """Delete the files that the previous manifest listed (so this command wrote them) and the new one does not
    (an emoji the filter now drops, a photo no longer listed); the number deleted."""
    current = {row["path"] for row in rows}
    removed = 0
    for relative in sorted(set(previous) - current):
        parts = PurePosixPath(relative).parts
        ours = (
            len(parts) > 1 and parts[0] in ("objects", "heldout_style", "backgrounds") and ".." not in parts
        )
        path = root / relative
        if ours and path.is_file() and not path.is_symlink():
            path.unlink()
            removed += 1
    return removed
