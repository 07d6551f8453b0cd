"""A COCOEE-layout benchmark from held-out synthetic scenes, so the whole protocol runs here.

    python -m pbe.eval.make_synthetic_bench OUT [--items 200] [--real 500] [--size 512] [--seed 1000003]

OUT gets what COCOEE has (id_list.npy, GT_3500/, Mask_bbox_3500/, Ref_3500/; the folder names are kept so the
authors' scripts read it too) plus real/: other held-out scenes, the stand-in for COCO test2017 (FID real set and QS
mixture). Item i: scene i of a `SyntheticSource` with seed `--seed` (training uses seed 0, so the scenes are held
out), square `--size`; the mask is the first usable object's box (white = 255); the reference is another instance of
that object's class (same shape and colour name, new size, shading and background), as COCOEE pairs a box with a
hand-picked object of the same category. Written to a temporary folder and renamed, so OUT is complete or absent.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from pbe.data.sources import UnusableSample
from pbe.data.synthetic import COLOURS, SHAPES, SyntheticSource, paint_shape, textured_background

REAL_SEED_OFFSET = 1  # the real set uses scene seed `seed + 1`: disjoint from the items and from training (0)


def reference_image(colour: str, shape: str, size: int, rng: np.random.Generator) -> np.ndarray:
    """Another instance of "<colour> <shape>": new background, size, placement and shading."""
    canvas = textured_background(rng, size, size)
    side = int(rng.uniform(0.55, 0.9) * size)
    x0, y0 = (int(v) for v in rng.integers(0, size - side + 1, size=2))
    paint_shape(canvas, SHAPES[shape](), (x0, y0, x0 + side, y0 + side), COLOURS[colour], rng)
    return np.clip(canvas + 0.5, 0, 255).astype(np.uint8)


def make_bench(
    out: str | Path,
    items: int = 200,
    real: int = 500,
    size: int = 512,
    seed: int = 1_000_003,
    reference_size: int | None = None,
    background_dir: str | Path | None = None,
    overwrite: bool = False,
    progress: bool = True,
) -> Path:
    from pbe.checkpoints.tensor_io import atomic_path

    if items < 1 or real < 0:
        raise ValueError(f"--items must be >= 1 and --real >= 0, got {items}, {real}")
    if size < 16:
        raise ValueError(f"--size must be >= 16, got {size}")
    if seed == 0 or seed + REAL_SEED_OFFSET == 0:
        raise ValueError("--seed 0 (or -1) would reuse the training scenes (seed 0); choose another")
    reference_size = reference_size or max(64, size // 2)
    out = Path(out).expanduser()
    backgrounds = {"background_dir": background_dir, "photo_background_p": 0.3} if background_dir else {}
    scenes = SyntheticSource(
        num_scenes=10 * items + 100, seed=seed, min_size=size, max_size=size, **backgrounds
    )
    with atomic_path(out, overwrite=overwrite) as tmp:
        dirs = {k: tmp / k for k in ("GT_3500", "Mask_bbox_3500", "Ref_3500", "real")}
        for d in dirs.values():
            d.mkdir(parents=True)
        ids, labels, index = [], {}, 0
        bar = tqdm(total=items, desc="bench items", disable=not progress)
        while len(ids) < items:
            try:
                scene = scenes.open(index)
            except UnusableSample:
                index += 1
                continue
            name = str(index).zfill(12)
            x0, y0, x1, y1 = (int(v) for v in scene.boxes[0])
            mask = np.zeros((size, size), np.uint8)
            mask[y0:y1, x0:x1] = 255
            colour, shape = scene.labels[0].split(" ")
            rng = np.random.default_rng([seed, index, 1])
            Image.fromarray(scene.image.permute(1, 2, 0).numpy()).save(dirs["GT_3500"] / f"{name}_GT.png")
            Image.fromarray(mask, mode="L").save(dirs["Mask_bbox_3500"] / f"{name}_mask.png")
            Image.fromarray(reference_image(colour, shape, reference_size, rng)).save(
                dirs["Ref_3500"] / f"{name}_ref.png"
            )
            ids.append(index)
            labels[name] = scene.labels[0]
            index += 1
            bar.update()
        bar.close()
        np.save(tmp / "id_list.npy", np.array(ids, dtype=np.int64))
        real_scenes = SyntheticSource(
            num_scenes=max(real, 1), seed=seed + REAL_SEED_OFFSET, min_size=size, max_size=size
        )
        for k in tqdm(range(real), desc="real set", disable=not progress):
            pixels, _, _ = real_scenes.render(k)
            Image.fromarray(pixels).save(dirs["real"] / f"{k:06d}.png")
        info = {
            "items": items,
            "real": real,
            "size": size,
            "seed": seed,
            "real_seed": seed + REAL_SEED_OFFSET,
            "reference_size": reference_size,
            "background_dir": str(background_dir) if background_dir else None,
            "labels": labels,
        }
        (tmp / "bench_info.json").write_text(json.dumps(info, indent=1) + "\n")
    return out


def main(argv=None) -> Path:
    parser = argparse.ArgumentParser(
        prog="python -m pbe.eval.make_synthetic_bench", description=__doc__.split("\n")[0]
    )
    parser.add_argument("out")
    parser.add_argument("--items", type=int, default=200)
    parser.add_argument("--real", type=int, default=500, help="real-set scenes (FID reference, QS mixture)")
    parser.add_argument("--size", type=int, default=512, help="square scene size (COCOEE: 512)")
    parser.add_argument("--seed", type=int, default=1_000_003, help="scene seed (training uses 0)")
    parser.add_argument("--reference-size", type=int, default=None, help="default: max(64, size / 2)")
    parser.add_argument("--background-dir", default=None, help="photos as backgrounds (30%% of scenes)")
    parser.add_argument("--overwrite", action="store_true")
    args = parser.parse_args(argv)
    out = make_bench(
        args.out,
        args.items,
        args.real,
        args.size,
        args.seed,
        args.reference_size,
        args.background_dir,
        args.overwrite,
    )
    print(f"wrote {out}")
    return out


if __name__ == "__main__":
    try:
        main()
    except (ValueError, FileNotFoundError, FileExistsError) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)
