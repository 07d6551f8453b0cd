"""The dominant colour of an RGBA object, as a name (``COLOUR_NAMES``): what held-out scenes' candidates are
matched on (an exemplar of the same colour as the scene's object, and one of another colour).
"""

from __future__ import annotations

import numpy as np
from PIL import Image

HUE_NAMES = (  # (upper bound of the hue bin in degrees, name)
    (15, "red"),
    (35, "orange"),  # emoji gold (Twemoji's star, 35 degrees) reads as yellow
    (70, "yellow"),
    (165, "green"),
    (195, "cyan"),
    (255, "blue"),
    (290, "purple"),
    (345, "pink"),
    (360, "red"),
)
COLOUR_NAMES = tuple(dict.fromkeys([name for _, name in HUE_NAMES] + ["brown", "white", "grey", "black"]))


def pixel_colour_names(rgb: np.ndarray) -> np.ndarray:
    """Index into ``COLOUR_NAMES`` for each uint8 (n, 3) pixel.

    Chromatic pixels (HSV saturation >= 0.2 and value >= 0.2) are named by hue bin (``HUE_NAMES``), except that
    an orange or yellow hue (15-50 degrees) darker than value 0.6 is "brown". The others are "black" (value
    < 0.25), "white" (value > 0.8) or "grey"."""
    hsv = np.asarray(Image.fromarray(rgb[None].astype(np.uint8)).convert("HSV"), dtype=np.float32)[0]
    hue, sat, val = hsv[:, 0] * 360 / 256, hsv[:, 1] / 255, hsv[:, 2] / 255
    bounds = np.array([bound for bound, _ in HUE_NAMES])
    by_hue = np.array([COLOUR_NAMES.index(name) for _, name in HUE_NAMES])[
        np.searchsorted(bounds, hue, "right")
    ]
    by_hue = np.where((hue >= 15) & (hue < 50) & (val < 0.6), COLOUR_NAMES.index("brown"), by_hue)
    achromatic = np.select(
        [val < 0.25, val > 0.8],
        [COLOUR_NAMES.index("black"), COLOUR_NAMES.index("white")],
        COLOUR_NAMES.index("grey"),
    )
    return np.where((sat >= 0.2) & (val >= 0.2), by_hue, achromatic)


def dominant_colour(cutout: Image.Image | np.ndarray) -> str:
    """The colour name (one of ``COLOUR_NAMES``) of most of an RGBA object's opaque (alpha >= 128) pixels.

    Each pixel is named (``pixel_colour_names``). If at least a quarter of them are chromatic, the most common
    chromatic name wins, so black outlines and white highlights do not decide; else the most common of black,
    white, grey. An object with no opaque pixel is "white"."""
    rgba = np.asarray(cutout)
    opaque = rgba[rgba[..., 3] >= 128][:, :3]
    if len(opaque) == 0:
        return "white"
    counts = np.bincount(pixel_colour_names(opaque), minlength=len(COLOUR_NAMES))
    first_achromatic = COLOUR_NAMES.index("white")
    if counts[:first_achromatic].sum() * 4 >= len(opaque):
        return COLOUR_NAMES[int(counts[:first_achromatic].argmax())]
    return COLOUR_NAMES[first_achromatic + int(counts[first_achromatic:].argmax())]
