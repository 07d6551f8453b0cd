"""`make demo` with the objects model: held-out objects (never trained on; the Noto ones are also of a style never
trained on) painted into scikit-image's astronaut, coffee, chelsea and rocket photos; writes outputs/demo/grid.png.

The photos are downscaled to a short side of 256 px; the edit runs on a square around each mask, resized to the
model's training resolution (`padding_mask_crop`, with sample.py's `auto` margin), and is pasted back. The masks (white = repaint) are the small
model's demo masks, scaled; the exemplars are committed in `pbe/assets/demo/objects/` (`make_demo_exemplars` wrote
them from a fetched objects folder; `ATTRIBUTION.md` there names their sources and licences).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from pbe.assets import demo_dir, demo_photo
from pbe.files import write_file, write_files

SHORT_SIDE = 256
MASK_SHORT_SIDE = 128  # the committed demo masks' photo size
# photo -> the held-out code points painted into it: (style, code point, name)
PHOTO_EXEMPLARS = {
    "astronaut": [("fluent_3d", "1f31f", "glowing star"), ("noto", "1f389", "party popper")],
    "coffee": [("fluent_3d", "1f9c1", "cupcake"), ("noto", "1fad0", "blueberries")],
    "chelsea": [("fluent_3d", "1f97d", "goggles"), ("noto", "1f511", "key")],
    "rocket": [("twemoji", "1f319", "crescent moon"), ("noto", "2b50", "white medium star")],
}


def objects_demo_dir() -> Path:
    return demo_dir() / "objects"


def exemplar_file(style: str, codepoint: str) -> Path:
    return objects_demo_dir() / f"{style}_{codepoint}.png"


def make_demo_exemplars(root: str | Path) -> list[Path]:
    """Write each exemplar of PHOTO_EXEMPLARS (the object on white, 128 px) and ATTRIBUTION.md from a fetched
    objects folder ``root``; every one must be a held-out code point."""
    from pbe.data.objects import load_cutout, on_white, read_manifest

    manifest = read_manifest(root, key="root")
    rows = {(o.style, o.codepoint): o for o in manifest.objects}
    with open(Path(root) / "manifest.jsonl") as f:
        raw = {
            (r.get("style"), r.get("codepoint")): r for r in map(json.loads, f) if r.get("kind") == "object"
        }
    files, notes = [], ["# Demo exemplars", "", "Held-out objects of the objects data, never trained on.", ""]
    for style, codepoint, name in (e for es in PHOTO_EXEMPLARS.values() for e in es):
        entry = rows[(style, codepoint)]
        if entry.codepoint_split != "heldout":
            raise ValueError(f"{style}/{codepoint} ({name}) is not a held-out code point")
        image = on_white(load_cutout(Path(root) / entry.path)).permute(1, 2, 0).numpy()
        files.append(
            (exemplar_file(style, codepoint), Image.fromarray(image).resize((128, 128), Image.LANCZOS))
        )
        r = raw[(style, codepoint)]
        notes.append(
            f"- `{exemplar_file(style, codepoint).name}`: {name}, {r['source_package']} {r['source_version']} "
            f"({r['licence']}), {r['attribution']}"
        )
    files.append((objects_demo_dir() / "ATTRIBUTION.md", "\n".join(notes) + "\n"))
    return write_files(files, overwrite=True)


def load_photo(name: str) -> np.ndarray:
    """A scikit-image photo, downscaled (Lanczos) to a short side of 256 px."""
    return demo_photo(name, SHORT_SIDE)


def demo_items() -> list[dict]:
    items = []
    for name, exemplars in PHOTO_EXEMPLARS.items():
        photo = load_photo(name)
        mask = Image.open(demo_dir() / f"{name}_mask.png").convert("L")
        mask = np.asarray(mask.resize((photo.shape[1], photo.shape[0]), Image.NEAREST))
        for style, codepoint, label in exemplars:
            exemplar = np.asarray(Image.open(exemplar_file(style, codepoint)).convert("RGB"))
            items.append(
                {"name": f"{name}: {label} ({style})", "image": photo, "mask": mask, "exemplar": exemplar}
            )
    return items


def zoom(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The square around the mask's box (grown by half its longest side) of ``image``, so the edit can be seen."""
    from pbe.pipeline import mask_crop_box

    repaint = mask > 127
    rows, cols = np.flatnonzero(repaint.any(1)), np.flatnonzero(repaint.any(0))
    longest = max(rows[-1] - rows[0], cols[-1] - cols[0]) + 1
    x0, y0, x1, y1 = mask_crop_box(repaint, int(longest) // 2)
    return np.ascontiguousarray(image[y0:y1, x0:x1])


def run_objects_demo(
    model=None,
    out: str | Path = "outputs/demo/grid.png",
    steps: int = 25,
    seed: int = 0,
    padding_mask_crop="auto",
) -> dict:
    from pbe.assets import objects_model_path
    from pbe.pipeline import PaintByExamplePipeline, auto_padding_mask_crop
    from pbe.recipes.small.demo import grid

    start = time.perf_counter()
    pipe = PaintByExamplePipeline.from_pretrained(model or objects_model_path(), torch_dtype=torch.float32)
    items = demo_items()
    rows = []
    for k, item in enumerate(items):
        result = pipe(
            image=item["image"],
            mask_image=item["mask"],
            example_image=item["exemplar"],
            num_inference_steps=steps,
            guidance_scale=5.0,
            generator=torch.Generator().manual_seed(seed + k),
            padding_mask_crop=auto_padding_mask_crop(
                padding_mask_crop, pipe.train_resolution, item["image"].shape[1::-1], item["mask"]
            ),
            output_type="np",
            progress=False,
        ).images[0]
        result = (result * 255).round().astype(np.uint8)
        rows.append([item["image"], item["mask"], item["exemplar"], result, zoom(result, item["mask"])])
        print(f"  edited {item['name']}")
    out = Path(out)
    labels = ["source", "mask", "exemplar", "result", "result, around the mask"]
    write_file(out, grid(rows, labels, height=256), overwrite=True)
    elapsed = time.perf_counter() - start
    print(f"wrote {out} ({len(rows)} edits, {steps} steps each) in {elapsed:.1f} s")
    return {"grid": out, "edits": len(rows), "seconds": elapsed}
