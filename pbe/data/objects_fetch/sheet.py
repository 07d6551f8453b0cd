"""A contact sheet of a fetched objects folder, to look at what arrived.

    python -m pbe.data.objects_fetch.sheet DIR OUT.png [--per-style 36] [--backgrounds 8] [--cell 64]

One row block per style (the same code points in every style, picked evenly over the manifest, on a grey
checkerboard so that transparency shows), then a row of background photos. Reads only DIR/manifest.jsonl and the
files it lists.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from pbe.files import write_file

LABEL_HEIGHT = 14


def read_manifest(root: Path) -> list[dict]:
    lines = (root / "manifest.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def checkerboard(size: int, square: int = 8) -> Image.Image:
    y, x = np.indices((size, size)) // square
    grey = np.where((x + y) % 2 == 0, 205, 165).astype(np.uint8)
    return Image.fromarray(grey).convert("RGBA")


def object_tile(path: Path, cell: int) -> Image.Image:
    with Image.open(path) as opened:
        image = opened.convert("RGBA")
    image.thumbnail((cell - 4, cell - 4), Image.Resampling.LANCZOS)
    tile = checkerboard(cell)
    tile.alpha_composite(image, ((cell - image.width) // 2, (cell - image.height) // 2))
    return tile


def photo_tile(path: Path, width: int, height: int) -> Image.Image:
    with Image.open(path) as opened:
        opened.draft("RGB", (width * 2, height * 2))
        image = opened.convert("RGB")
    scale = max(width / image.width, height / image.height)
    image = image.resize((max(width, round(image.width * scale)), max(height, round(image.height * scale))))
    left, top = (image.width - width) // 2, (image.height - height) // 2
    return image.crop((left, top, left + width, top + height)).convert("RGBA")


def spread(items: list, count: int) -> list:
    """``count`` items picked evenly over ``items`` (all of them if fewer)."""
    if len(items) <= count or count < 2:
        return items[:count]
    return [items[round(i * (len(items) - 1) / (count - 1))] for i in range(count)]


def contact_sheet(
    root: Path, per_style: int = 36, backgrounds: int = 8, cell: int = 64, columns: int = 18
) -> Image.Image:
    rows = read_manifest(root)
    objects = [row for row in rows if row["kind"] == "object"]
    reserved = {row["style"] for row in objects if row["split"] == "reserved_style"}
    styles = sorted(dict.fromkeys(row["style"] for row in objects), key=lambda style: style in reserved)
    if not styles:
        raise ValueError(f"{root / 'manifest.jsonl'} lists no objects")
    drawn_everywhere = set.intersection(
        *({r["codepoint"] for r in objects if r["style"] == s} for s in styles)
    )
    codepoints = spread(sorted(drawn_everywhere), per_style)
    by_key = {(row["style"], row["codepoint"]): row for row in objects}
    photos = spread([row for row in rows if row["kind"] == "background"], backgrounds)

    object_rows = -(-len(codepoints) // columns)
    photo_width, photo_height = cell * columns // max(1, min(len(photos), 6)), cell * 2
    photo_rows = -(-len(photos) // 6) if photos else 0
    height = (
        len(styles) * (LABEL_HEIGHT + object_rows * cell) + photo_rows * (photo_height + 2) + LABEL_HEIGHT
    )
    sheet = Image.new("RGBA", (cell * columns, height), "white")
    draw = ImageDraw.Draw(sheet)
    y = 0
    for style in styles:
        split = by_key[(style, codepoints[0])]["split"] if codepoints else ""
        draw.text(
            (4, y + 1),
            f"{style}" + (" (reserved style: never for training)" if split == "reserved_style" else ""),
            fill="black",
        )
        y += LABEL_HEIGHT
        for i, codepoint in enumerate(codepoints):
            tile = object_tile(root / by_key[(style, codepoint)]["path"], cell)
            sheet.paste(tile, ((i % columns) * cell, y + (i // columns) * cell))
        y += object_rows * cell
    draw.text((4, y + 1), "backgrounds", fill="black")
    y += LABEL_HEIGHT
    for i, row in enumerate(photos):
        tile = photo_tile(root / row["path"], photo_width - 2, photo_height)
        sheet.paste(tile, ((i % 6) * photo_width, y + (i // 6) * (photo_height + 2)))
    return sheet.convert("RGB")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m pbe.data.objects_fetch.sheet", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("dir", type=Path, help="a folder made by `python -m pbe.data.fetch objects`")
    parser.add_argument("out", type=Path, help="the PNG to write")
    parser.add_argument("--per-style", type=int, default=36)
    parser.add_argument("--backgrounds", type=int, default=6)
    parser.add_argument("--cell", type=int, default=64)
    parser.add_argument(
        "--colours", type=int, default=0, help="quantise to this many colours (a smaller PNG)"
    )
    parser.add_argument("--overwrite", action="store_true", help="replace an existing OUT")
    args = parser.parse_args(argv)
    try:
        sheet = contact_sheet(args.dir, args.per_style, args.backgrounds, args.cell)
        if args.colours:
            palette = sheet.quantize(args.colours, method=Image.Quantize.MEDIANCUT)
            sheet = sheet.quantize(palette=palette, dither=Image.Dither.FLOYDSTEINBERG)
        write_file(args.out, sheet, overwrite=args.overwrite, suffixes=(".png",))
    except (OSError, ValueError, KeyError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"wrote {args.out} ({sheet.width} x {sheet.height})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
