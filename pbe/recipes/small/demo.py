"""The small model's demo: edit bundled synthetic scenes and four real photos, write one grid.

The photos are scikit-image's astronaut, coffee, chelsea and rocket (a dev extra), downscaled so that their short side
is 128 px: the small model was trained on 64x64 scenes, and its objects are 16-32 px wide. Their masks (white =
repaint) and exemplars (objects cropped from synthetic scenes) are committed in `pbe/assets/demo/`;
`make_demo_assets` wrote them and documents where each edit goes. As in sample.py and the app, `padding_mask_crop`
"auto" edits a photo larger than the model's training resolution as a square around its mask at that resolution.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from pbe.assets import backgrounds_dir, demo_dir, demo_photo
from pbe.data.synthetic import SyntheticSource
from pbe.edit_grid import tile_grid
from pbe.files import write_file, write_files
from pbe.recipes.small.scenes import exemplar_crop, held_out_edits, render_scene

SHORT_SIDE = 128
# photo -> (mask box in the downscaled photo, exemplar: (colour, shape)); the box is where the new object goes
PHOTO_EDITS = {
    "astronaut": ((29, 83, 57, 111), ("yellow", "star")),  # the round mission patch
    "coffee": ((148, 6, 182, 40), ("cyan", "circle")),  # on the wooden table
    "chelsea": ((54, 33, 90, 67), ("blue", "circle")),  # the cat's left eye
    "rocket": ((28, 8, 58, 38), ("white", "circle")),  # a moon in the evening sky
}


def load_photo(name: str) -> np.ndarray:
    """A scikit-image photo, downscaled (Lanczos) to a short side of 128 px, sides multiples of 16."""
    return demo_photo(name, SHORT_SIDE, 16)


def synthetic_exemplar(colour: str, shape: str, seed: int = 9_000) -> np.ndarray:
    """An object of the given colour and shape cropped from a synthetic scene (textured background)."""
    source = SyntheticSource(
        num_scenes=1, seed=seed, min_size=64, max_size=64, min_shapes=1, max_shapes=1,
        min_shape_frac=0.45, max_shape_frac=0.5, shapes=[shape], colours=[colour],
    )  # fmt: skip
    scene = render_scene(source, 0)
    return exemplar_crop(scene, scene.objects[0])


def make_demo_assets(folder: Path | None = None) -> list[Path]:
    """Write `<name>_mask.png` and `<name>_exemplar.png` for every photo of PHOTO_EDITS."""
    folder = Path(folder or demo_dir())
    files = []
    for name, (box, (colour, shape)) in PHOTO_EDITS.items():
        photo = load_photo(name)
        mask = Image.new("L", (photo.shape[1], photo.shape[0]), 0)
        ImageDraw.Draw(mask).rectangle((box[0], box[1], box[2] - 1, box[3] - 1), fill=255)
        files += [
            (folder / f"{name}_mask.png", mask),
            (folder / f"{name}_exemplar.png", Image.fromarray(synthetic_exemplar(colour, shape))),
        ]
    return write_files(files, overwrite=True)  # the package's own demo assets, regenerated


def demo_items(synthetic: int = 4) -> list[dict]:
    """The demo's edits: `synthetic` held-out synthetic scenes, then the four photos (skipped without skimage)."""
    items = []
    for edit in held_out_edits(synthetic, backgrounds=str(backgrounds_dir()), seed=5):
        items.append({"name": "synthetic", "image": edit.image, "mask": edit.mask, "exemplar": edit.exemplar})
    folder = demo_dir()
    for name in PHOTO_EDITS:
        try:
            photo = load_photo(name)
        except ImportError as e:
            print(f"skipping the photos: {e}")
            break
        mask = np.asarray(Image.open(folder / f"{name}_mask.png").convert("L"))
        exemplar = np.asarray(Image.open(folder / f"{name}_exemplar.png").convert("RGB"))
        items.append({"name": name, "image": photo, "mask": mask, "exemplar": exemplar})
    return items


def grid(rows: list[list[np.ndarray]], labels: list[str], height: int = 128) -> Image.Image:
    """One row per edit: source | mask | exemplar | result, each scaled to `height` px high (nearest-neighbour
    when enlarged, so the small model's 64-px pictures stay sharp)."""
    return tile_grid(
        rows,
        labels,
        height=height,
        resample=(Image.Resampling.NEAREST, Image.Resampling.LANCZOS),
        label_at=(3, 1),
    )


def run_demo(
    model=None,
    out: str | Path = "outputs/demo/grid.png",
    steps: int = 25,
    seed: int = 0,
    padding_mask_crop: int | str | None = "auto",
) -> dict:
    """Edit every demo item with the small model (or `model`, any checkpoint path) and write the grid.

    The items go through the pipeline in batches of one size (the synthetic scenes share one). `padding_mask_crop`:
    "auto", pixels of margin or None, as sample.py takes it (`pbe.pipeline.auto_padding_mask_crop`)."""
    from pbe.assets import small_model_path
    from pbe.pipeline import PaintByExamplePipeline, auto_padding_mask_crop, padding_mask_crop_setting

    padding_mask_crop = padding_mask_crop_setting(padding_mask_crop)
    start = time.perf_counter()
    pipe = PaintByExamplePipeline.from_pretrained(model or small_model_path(), torch_dtype=torch.float32)
    items = demo_items()
    groups: dict[tuple, list[int]] = {}
    for i, item in enumerate(items):
        groups.setdefault(item["image"].shape, []).append(i)
    results: dict[int, np.ndarray] = {}
    for k, indices in enumerate(groups.values()):
        height, width = items[indices[0]]["image"].shape[:2]
        masks = [items[i]["mask"] for i in indices]
        padding = auto_padding_mask_crop(padding_mask_crop, pipe.train_resolution, (width, height), masks)
        images = pipe(
            image=[items[i]["image"] for i in indices],
            mask_image=[items[i]["mask"] for i in indices],
            example_image=[items[i]["exemplar"] for i in indices],
            num_inference_steps=steps,
            guidance_scale=5.0,
            generator=torch.Generator().manual_seed(seed + k),
            paste_back=True,
            output_type="np",
            progress=False,
            padding_mask_crop=padding,
        ).images
        for i, image in zip(indices, images):
            results[i] = (image * 255).round().astype(np.uint8)
        names = sorted({items[i]["name"] for i in indices})
        crop = "" if padding is None else f", a crop around the mask with {padding} px margin"
        print(f"  edited {len(indices)} x {', '.join(names)} ({width}x{height}{crop})")
    rows = [[item["image"], item["mask"], item["exemplar"], results[i]] for i, item in enumerate(items)]
    out = Path(out)
    # the demo's own output: each run of the demo replaces the grid the last one drew
    write_file(out, grid(rows, ["source", "mask", "exemplar", "result (paste-back)"]), overwrite=True)
    elapsed = time.perf_counter() - start
    print(f"wrote {out} ({len(rows)} edits, {steps} steps each) in {elapsed:.1f} s")
    return {"grid": out, "edits": len(rows), "seconds": elapsed}
