"""The model side of pbe.app, without Gradio: masks from the editor's layers, the size checks, the example photos,
and `Editor`, which runs the edits and the auto mask on one pipeline (testable without a server)."""

from __future__ import annotations

import tempfile
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from pbe.edit_options import check_seed

DEFAULT_SAMPLER = "checkpoint default"
BRUSH_RGB = (255, 64, 160)  # the painted mask's colour in the editor
BRUSH_OPACITY = 0.6
MASK_ALPHA = 64  # a layer pixel at least this opaque is part of the mask (anti-aliased brush edges count)
BRUSH_FRACTION = 0.04  # the brush radius for a photo: this fraction of its shorter side (in [1, 100] pixels)
# Auto mask: generate_mask with the map brought to pixel size along the photo's edges, one region (not DiffEdit's
# latent-pixel blocks: on the small model's held-out scenes IoU 0.51 vs 0.29; docs/small_model.md)
AUTO_MASK_OPTIONS = {"upsample": "guided", "single_region": True}


# ----------------------------------------------------------------------------------------------- images


def check_size(size: tuple[int, int], name: str, max_pixels: int) -> None:
    """ValueError when an image of `size` (width, height) has more than `max_pixels` pixels."""
    width, height = size
    if width * height > max_pixels:
        raise ValueError(
            f"{name} is {width}x{height} = {width * height:,} pixels; this app takes at most {max_pixels:,} "
            "(max_pixels); scale it down first"
        )


def check_pixels(image: Image.Image | None, name: str, max_pixels: int) -> None:
    if image is not None:
        check_size(image.size, name, max_pixels)


def mask_from_layers(layers: Sequence[Image.Image], size: tuple[int, int]) -> Image.Image:
    """The painted strokes of the editor's layers -> an "L" mask of `size` (white = repaint)."""
    mask = np.zeros((size[1], size[0]), bool)
    for i, layer in enumerate(layers):
        if layer.size != size:
            raise ValueError(
                f"mask layer {i} is {layer.size[0]}x{layer.size[1]} but the source is {size[0]}x{size[1]}"
            )
        alpha = np.asarray(layer.convert("RGBA"))[..., 3]
        mask |= alpha >= MASK_ALPHA
    return Image.fromarray(mask.astype(np.uint8) * 255, mode="L")


def mask_layer(mask: Image.Image) -> Image.Image:
    """An "L" mask (white = repaint) -> an RGBA layer painted with the brush colour, editable in the editor."""
    painted = np.asarray(mask.convert("L")) >= 128
    layer = np.zeros((*painted.shape, 4), np.uint8)
    layer[painted] = (*BRUSH_RGB, round(255 * BRUSH_OPACITY))
    return Image.fromarray(layer, mode="RGBA")


def editor_value(background: Image.Image, mask: Image.Image | None) -> dict:
    """The editor's value for `background` with `mask` as its layer. No composite: Gradio's editor would load a
    composite as its background, with the mask's paint baked into the photo."""
    return {
        "background": background,
        "layers": [mask_layer(mask)] if mask is not None else [],
        "composite": None,
    }


def brush_radius(size: tuple[int, int]) -> int:
    """The brush's default radius for a photo of `size`: a stroke covers a region, not the whole photo."""
    return min(100, max(1, round(min(size) * BRUSH_FRACTION)))


def source_and_mask(value: dict | None, max_pixels: int) -> tuple[Image.Image, Image.Image]:
    """The editor's value -> (RGB source: its background, "L" mask: the union of its layers). ValueError when there is
    no source."""
    background = (value or {}).get("background")
    if background is None:
        raise ValueError("image: upload a source photo first (the left panel)")
    check_pixels(background, "image", max_pixels)
    source = background.convert("RGB")
    return source, mask_from_layers(value.get("layers") or [], source.size)


def example_rows(folder: Path) -> list[list[str]]:
    """(photo, exemplar) file pairs from scikit-image's bundled photos, written to `folder`; [] without skimage."""
    try:
        from skimage import data
    except ImportError:
        return []
    from pbe.files import write_files

    photos = {
        name: Image.fromarray(getattr(data, name)()).convert("RGB")
        for name in ("astronaut", "coffee", "chelsea", "rocket")
    }
    # (source photo, exemplar photo, the exemplar's crop box in it)
    specs = [
        ("astronaut", "coffee", (70, 10, 480, 390)),
        ("chelsea", "rocket", (230, 40, 380, 420)),
        ("coffee", "chelsea", (120, 20, 320, 220)),
        ("rocket", "astronaut", (150, 20, 330, 210)),
    ]
    rows = []
    for source, exemplar, crop in specs:
        pair = [
            (folder / f"{source}.png", photos[source]),
            (folder / f"{exemplar}_exemplar.png", photos[exemplar].crop(crop)),
        ]
        written = write_files(pair, overwrite=True)  # overwrite: the folder is the app's own
        rows.append([str(path) for path in written])
    return rows


class Editor:
    """The model side of the app: one pipeline, the handlers' logic, no Gradio types (testable without a server)."""

    def __init__(self, pipe, max_pixels: int, workdir: Path, padding_mask_crop: int | str | None = "auto"):
        from pbe.pipeline import padding_mask_crop_setting

        self.pipe = pipe
        self.max_pixels = max_pixels
        self.workdir = workdir
        self.padding_mask_crop = padding_mask_crop_setting(padding_mask_crop)  # see AppConfig
        self._lock = threading.Lock()  # Gradio's queue already runs one job at a time; this makes sure of it

    def generator(self, seed) -> object:
        import torch

        seed = (
            int(seed) if isinstance(seed, float) and seed.is_integer() else seed
        )  # from the page's number box
        return torch.Generator().manual_seed(check_seed("seed", seed))

    def edit(
        self,
        value: dict | None,
        exemplar: Image.Image | None,
        sampler: str,
        steps,
        guidance: float,
        strength: float,
        seed,
        paste_back: bool,
        feather,
        on_step: Callable[[int, int], None] | None = None,
    ) -> tuple[Image.Image, Image.Image, str]:
        """Run one edit; returns (result, mask used, grid PNG path). ValueError for anything wrong with the input.

        The mask is the editor's layer as the page shows it (see source_and_mask)."""
        from pbe.diffusion import img2img_start_step
        from pbe.edit_grid import draw_grid
        from pbe.files import write_file

        source, mask = source_and_mask(value, self.max_pixels)
        if exemplar is None:
            raise ValueError("example_image: upload an exemplar (the object to paint in)")
        check_pixels(exemplar, "example_image", self.max_pixels)
        if not np.asarray(mask).any():
            raise ValueError(
                "mask_image is empty: paint over the region to replace, upload a mask, or press 'Auto mask'"
            )
        steps = int(steps) if isinstance(steps, float) and steps.is_integer() else steps
        feather = int(feather) if isinstance(feather, float) and feather.is_integer() else feather
        total = None
        if isinstance(steps, int) and steps >= 1 and isinstance(strength, int | float) and 0 <= strength <= 1:
            total = steps - img2img_start_step(steps, float(strength))
        done = 0

        def callback(i, t, x):
            nonlocal done
            done += 1
            if on_step is not None:
                on_step(done, total or done)

        from pbe.pipeline import auto_padding_mask_crop

        train_resolution = getattr(self.pipe, "train_resolution", None)
        padding = auto_padding_mask_crop(self.padding_mask_crop, train_resolution, source.size, mask)
        generator = self.generator(seed)
        with self._lock:
            result = self.pipe(
                image=source,
                mask_image=mask,
                example_image=exemplar.convert("RGB"),
                num_inference_steps=steps,
                guidance_scale=float(guidance),
                strength=float(strength),
                generator=generator,
                paste_back=bool(paste_back),
                feather=feather,
                sampler=None if sampler in (None, DEFAULT_SAMPLER) else sampler,
                callback=callback,
                progress=False,
                padding_mask_crop=padding,
            ).images[0]
        grid = draw_grid(source, mask, exemplar.convert("RGB"), [result])
        out = write_file(Path(tempfile.mkdtemp(prefix="edit-", dir=self.workdir)) / "pbe_grid.png", grid)
        return result, mask, str(out)

    def load_photo(self, photo: Image.Image | None) -> dict:
        """A new source photo -> the editor's value: the photo, nothing painted."""
        if photo is None:
            raise ValueError("image: no photo uploaded")
        check_pixels(photo, "image", self.max_pixels)
        return editor_value(photo.convert("RGB"), None)

    def auto_mask(self, value: dict | None, exemplar: Image.Image | None, seed) -> dict:
        """DiffEdit-style mask (generate_mask) -> the editor's value with the mask as its layer (replacing strokes)."""
        source, _ = source_and_mask(value, self.max_pixels)
        if exemplar is None:
            raise ValueError(
                "example_image: upload an exemplar first; the auto mask is where it would change the photo"
            )
        check_pixels(exemplar, "example_image", self.max_pixels)
        with self._lock:
            mask = self.pipe.generate_mask(
                source, exemplar.convert("RGB"), generator=self.generator(seed), **AUTO_MASK_OPTIONS
            )[0]
        return editor_value(source, mask)

    def load_mask(self, value: dict | None, mask: Image.Image | None) -> dict:
        """An uploaded mask (white = repaint) -> the editor's mask layer (replacing what was painted)."""
        source, _ = source_and_mask(value, self.max_pixels)
        if mask is None:
            raise ValueError("mask_image: no mask uploaded")
        check_pixels(mask, "mask_image", self.max_pixels)
        if mask.size != source.size:
            raise ValueError(
                f"mask_image is {mask.width}x{mask.height} but image is {source.width}x{source.height}; they must match"
            )
        return editor_value(source, mask.convert("L").point(lambda v: 255 if v >= 128 else 0))

    def clear_mask(self, value: dict | None) -> dict | None:
        """Drop the mask (painted, uploaded or generated); keep the source."""
        background = (value or {}).get("background")
        return editor_value(background.convert("RGB"), None) if background is not None else None
