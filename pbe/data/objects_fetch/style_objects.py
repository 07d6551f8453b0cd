"""The objects of one style: each kept emoji the style draws, made into an RGBA cut-out PNG under DIR, and its row.

How an image is made depends on the style's kind: a bitmap file, an SVG file (rasterised) or a glyph of a colour font
(``pbe.data.objects_fetch.images``). A file the previous run made and the manifest vouches for is reused unread.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image
from tqdm import tqdm

from pbe.data.objects_fetch.clients import Download
from pbe.data.objects_fetch.config import FetchConfig, Style
from pbe.data.objects_fetch.emoji import Emoji, index_style_files
from pbe.data.objects_fetch.images import (
    FontGlyphs,
    Rasteriser,
    encode_png,
    finish_object,
    object_from_raster,
    object_from_svg,
    open_font,
)
from pbe.data.objects_fetch.manifest import RESERVED, _row
from pbe.data.objects_fetch.output_folder import Outputs
from pbe.data.objects_fetch.packages import _first_match
from pbe.data.objects_fetch.split import codepoint_split


@dataclass
class StyleResult:
    rows: list[dict] = field(default_factory=list)
    absent: int = 0  # kept code points this style does not draw
    empty: int = 0  # files that drew nothing
    unreadable: list[str] = field(default_factory=list)  # source files that could not be decoded or rendered


@dataclass(frozen=True)
class ObjectFile:
    """An object PNG in DIR: where it came from, its size and its sha256."""

    source: str
    width: int
    height: int
    sha256: str


# emoji -> (source file, a function making its image), or None when the style does not draw that emoji
ObjectMaker = Callable[[Emoji], "tuple[str, Callable[[], Image.Image | None]] | None"]


def _object_maker(
    style: Style, folder: Path, config: FetchConfig, rasterise: Rasteriser | None
) -> ObjectMaker:
    """How one style's images are made, by kind: a bitmap file, an SVG file, or a glyph of a colour font."""
    size = config.images.object_size
    if style.kind == "font":
        glyphs = FontGlyphs(open_font(_first_match(folder, style.files), config.images.noto_font_size))

        def from_font(emoji: Emoji):
            glyph = glyphs.render(emoji.text)
            return None if glyph is None else (style.files, lambda: finish_object(glyph, size))

        return from_font
    index = index_style_files(folder, style.files)

    def from_file(emoji: Emoji):
        path = index.get(emoji.codepoint)
        if path is None:
            return None
        source = path.relative_to(folder).as_posix()
        if style.kind == "svg":
            return source, lambda: object_from_svg(
                path.read_bytes(), size, config.images.svg_max_canvas, rasterise
            )
        return source, lambda: object_from_raster(path.read_bytes(), size)

    return from_file


def _make_object(
    maker: ObjectMaker, emoji: Emoji, relative: str, outputs: Outputs, result: StyleResult
) -> ObjectFile | None:
    """Make and write one object; None (counted in ``result``) when the style lacks it or it cannot be made."""
    found = maker(emoji)
    if found is None:
        result.absent += 1
        return None
    source, make = found
    try:
        image = make()
    except (OSError, ValueError) as e:  # a file the decoder or the rasteriser refuses: left out, and reported
        result.unreadable.append(f"{source} ({e})")
        return None
    if image is None:
        result.empty += 1
        return None
    return ObjectFile(source, image.width, image.height, outputs.put(relative, encode_png(image)))


def _object_row(
    emoji: Emoji, style: Style, version: str, relative: str, made: ObjectFile, config: FetchConfig
) -> dict:
    split = codepoint_split(emoji.codepoint, config.split)
    return _row(
        path=relative,
        kind="object",
        style=style.name,
        codepoint=emoji.codepoint,
        emoji=emoji.text,
        name=emoji.name,
        short_name=emoji.short_name,
        category=emoji.category,
        subcategory=emoji.subcategory,
        split=RESERVED if style.reserved else split,
        codepoint_split=split,
        width=made.width,
        height=made.height,
        source_package=style.package.name,
        source_manager=style.package.manager,
        source_version=version,
        source_file=made.source,
        licence=style.package.licence,
        attribution=style.package.attribution,
        sha256=made.sha256,
    )


def build_style(
    style: Style,
    emojis: list[Emoji],
    fetched: tuple[Download, Path],
    config: FetchConfig,
    outputs: Outputs,
    rasterise: Rasteriser | None,
    progress: bool,
) -> StyleResult:
    """The objects of one style: each kept emoji it draws, reused when verified, else made and written."""
    download, folder = fetched
    maker = _object_maker(style, folder, config, rasterise)
    result = StyleResult()
    for emoji in tqdm(emojis, desc=f"objects {style.name}", unit="img", disable=not progress, leave=False):
        relative = f"{style.folder}/{emoji.codepoint}.png"
        previous = outputs.verified(relative)
        if previous is not None:
            made = ObjectFile(
                previous["source_file"], previous["width"], previous["height"], previous["sha256"]
            )
        else:
            made = _make_object(maker, emoji, relative, outputs, result)
        if made is not None:
            result.rows.append(_object_row(emoji, style, download.version, relative, made, config))
    return result
