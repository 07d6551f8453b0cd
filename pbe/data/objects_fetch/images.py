"""Pixels: emoji files turned into trimmed RGBA cut-outs, and photos made ready as backgrounds.

An object is RGBA on a transparent background, cropped to the bounding box of its alpha, its longest side at most
``object_size`` (vector drawings are rendered so that it is exactly that; bitmaps are never upscaled), with the
colour of fully transparent pixels set to black so that resizing never bleeds a hidden colour into the edge.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont, ImageOps, features

from pbe.data.objects_fetch.clients import FetchError

# An SVG document and the side of a square box -> the drawing as RGBA, scaled to fit the box (aspect kept).
Rasteriser = Callable[[bytes, int], Image.Image]


def resvg_rasteriser() -> Rasteriser:
    """resvg (PyPI ``resvg-py``): a self-contained wheel, no system library, faithful to the SVG specification."""
    try:
        import resvg_py
    except ImportError:
        raise FetchError(
            "the SVG rasteriser resvg-py is not installed; install pbe's objects extra: pip install -e '.[objects]'"
        ) from None

    def rasterise(svg: bytes, box: int) -> Image.Image:
        # No emoji SVG of these packages holds <text>, so the system fonts are not loaded (faster, reproducible).
        png = resvg_py.svg_to_bytes(
            svg_string=svg.decode("utf-8"), width=box, height=box, skip_system_fonts=True
        )
        with Image.open(io.BytesIO(bytes(png))) as opened:
            return opened.convert("RGBA")

    return rasterise


def rasteriser_version() -> str:
    try:
        return f"resvg-py {version('resvg_py')}"
    except PackageNotFoundError:
        return "none"


def encode_png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def alpha_bbox(image: Image.Image) -> tuple[int, int, int, int] | None:
    return image.getchannel("A").getbbox()


def clear_transparent(image: Image.Image) -> Image.Image:
    """Black where alpha is 0 (invisible anyway; keeps resampling from bleeding hidden colours)."""
    pixels = np.array(image)
    pixels[pixels[..., 3] == 0] = 0
    return Image.fromarray(pixels, "RGBA")


def fit_within(image: Image.Image, size: int) -> Image.Image:
    """Downscale (never upscale) so that the longest side is at most ``size``."""
    longest = max(image.size)
    if longest <= size:
        return image
    width, height = (max(1, round(side * size / longest)) for side in image.size)
    return image.resize((width, height), Image.Resampling.LANCZOS)  # Pillow resamples RGBA premultiplied


def finish_object(image: Image.Image, size: int) -> Image.Image | None:
    """Trim to the alpha bounding box, fit within ``size``, clear transparent pixels; None if nothing is drawn."""
    image = image.convert("RGBA")
    box = alpha_bbox(image)
    if box is None:
        return None
    return clear_transparent(fit_within(image.crop(box), size))


def object_from_raster(data: bytes, size: int) -> Image.Image | None:
    with Image.open(io.BytesIO(data)) as opened:
        image = opened.convert("RGBA")
    return finish_object(image, size)


def object_from_svg(svg: bytes, size: int, max_canvas: int, rasterise: Rasteriser) -> Image.Image | None:
    """Render on the canvas that makes the drawing's longest side ``size``: a first render measures how much of its
    canvas the drawing fills, and up to two more correct the canvas, so that the drawing is rasterised at its final
    size (a pixel of overshoot is then scaled away, a pixel of shortfall kept)."""
    canvas = size
    for _ in range(3):
        image = rasterise(svg, canvas).convert("RGBA")
        box = alpha_bbox(image)
        if box is None:
            return None
        longest = max(box[2] - box[0], box[3] - box[1])
        wanted = min(max_canvas, max(1, round(canvas * size / longest)))
        if longest == size or wanted == canvas:
            break
        canvas = wanted
    return finish_object(image, size)


def open_font(path: Path, size: int) -> ImageFont.FreeTypeFont:
    """A font at ``size`` (a bitmap font's strike size), laid out with Raqm where Pillow has it."""
    layout = ImageFont.Layout.RAQM if features.check("raqm") else ImageFont.Layout.BASIC
    try:
        return ImageFont.truetype(str(path), size, layout_engine=layout)
    except OSError as e:
        raise FetchError(f"cannot open the emoji font {path} at size {size}: {e}") from None


class FontGlyphs:
    """Colour emoji drawn from a colour bitmap font (Noto Color Emoji's CBDT strike) with Pillow's FreeType.

    Pillow's Raqm layout (bundled with its wheels) shapes ZWJ sequences into their single glyph. A sequence the font
    does not draw as one glyph (it would come out as its parts side by side) and a code point it lacks (an empty
    glyph) give None.
    """

    def __init__(self, font: ImageFont.FreeTypeFont):
        self.font = font

    def _is_one_glyph(self, text: str) -> bool:
        single = self.font.getlength(text[0])
        return 0 < self.font.getlength(text) < 1.5 * single

    def render(self, text: str) -> Image.Image | None:
        if not self._is_one_glyph(text):
            return None
        left, top, right, bottom = self.font.getbbox(text)
        if right <= left or bottom <= top:
            return None
        canvas = Image.new("RGBA", (right - left, bottom - top), (0, 0, 0, 0))
        ImageDraw.Draw(canvas).text((-left, -top), text, font=self.font, embedded_color=True)
        return canvas


@dataclass(frozen=True)
class PreparedPhoto:
    data: bytes
    width: int
    height: int
    grayscale: bool
    resized: bool


def _is_grayscale(image: Image.Image) -> bool:
    if image.mode in ("1", "L", "LA", "I", "I;16", "F"):
        return True
    small = np.asarray(image.convert("RGB").resize((64, 64)), dtype=np.int16)
    return int(np.abs(small - small.mean(axis=2, keepdims=True)).max()) <= 2


def prepare_photo(data: bytes, short_side: int, jpeg_quality: int) -> PreparedPhoto:
    """A photo as a background: its own bytes when it is small enough and upright, else turned upright (EXIF) and
    downscaled so that its short side is ``short_side``, in its own format (JPEG at ``jpeg_quality``, or PNG)."""
    with Image.open(io.BytesIO(data)) as opened:
        source_format = opened.format
        orientation = opened.getexif().get(0x0112, 1)
        image = ImageOps.exif_transpose(opened)
        image.load()
    grayscale = _is_grayscale(image)
    if min(image.size) <= short_side and orientation == 1:
        return PreparedPhoto(data, image.width, image.height, grayscale, resized=False)
    scale = short_side / min(image.size)
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    image = image.convert("L" if image.mode in ("1", "L", "I", "I;16", "F") else "RGB")
    image = image.resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0)
    buffer = io.BytesIO()
    if source_format == "JPEG":
        image.save(buffer, format="JPEG", quality=jpeg_quality, subsampling=0)
    else:
        image.save(buffer, format="PNG")
    return PreparedPhoto(buffer.getvalue(), image.width, image.height, grayscale, resized=True)
