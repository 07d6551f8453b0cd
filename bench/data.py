"""Training-data throughput: samples per second through a DataLoader, at 512 x 512 with every augmentation on.

    .venv/bin/python bench/data.py                      # synthetic scenes, 2 workers, both rate settings
    .venv/bin/python bench/data.py --source photos      # JPEG photos (skimage.data, long side 1024)

"every augmentation on" is measured two ways: ``all`` fires every augmentation on every sample (flip,
rotation, blur, elastic and the Bezier mask with probability 1: the worst case), ``paper`` uses the paper's
probabilities. The first batches (worker start-up) are not timed. Target: >= 25 samples/s with 2 workers.
On a shared machine the measured rate depends on the other load, so the CPU cost per sample (one thread, as
in a worker) and the rate it implies on idle cores are printed as well.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

from pbe.data import AugmentConfig, ExemplarEditDataset, JsonlSource, SyntheticSource

ALL_ON = dict(flip_p=1.0, rotate_p=1.0, blur_p=1.0, elastic_p=1.0, bezier_p=1.0)


def write_photos(folder: Path) -> Path:
    """JPEG copies of some skimage.data photos, long side 1024, with two central boxes each; returns a manifest."""
    import skimage.data
    from PIL import Image

    lines = []
    for name in ("astronaut", "coffee", "chelsea", "rocket", "hubble_deep_field", "immunohistochemistry"):
        photo = Image.fromarray(getattr(skimage.data, name)())
        scale = 1024 / max(photo.size)
        photo = photo.resize((round(photo.width * scale), round(photo.height * scale)), Image.BICUBIC)
        photo.save(folder / f"{name}.jpg", quality=90)
        w, h = photo.size
        boxes = [[0.3 * w, 0.25 * h, 0.65 * w, 0.7 * h], [0.05 * w, 0.1 * h, 0.35 * w, 0.5 * h]]
        lines.append(json.dumps({"image": f"{name}.jpg", "boxes": boxes}))
    manifest = folder / "photos.jsonl"
    manifest.write_text("\n".join(lines * 50) + "\n")
    return manifest


def measure(dataset, workers: int, batch_size: int, samples: int, warmup_batches: int) -> float:
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, num_workers=workers, shuffle=True)
    batches = iter(loader)
    for _ in range(warmup_batches):
        next(batches)
    start, seen = time.perf_counter(), 0
    while seen < samples:
        seen += len(next(batches)["image"])
    return seen / (time.perf_counter() - start)


def cpu_ms_per_sample(dataset, samples: int) -> float:
    """CPU milliseconds per sample in this process on one thread, as in a DataLoader worker."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    dataset[0]
    start = time.process_time()
    for i in range(samples):
        dataset[i % len(dataset)]
    torch.set_num_threads(threads)
    return (time.process_time() - start) * 1000 / samples


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--source", choices=["synthetic", "photos"], default="synthetic")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--size", type=int, default=512, help="image_size of the samples")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--samples", type=int, default=256, help="timed samples per setting")
    parser.add_argument("--warmup-batches", type=int, default=4)
    parser.add_argument("--rates", choices=["all", "paper", "both"], default="both")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        if args.source == "photos":
            source = JsonlSource(write_photos(Path(tmp)))
        else:
            source = SyntheticSource(num_scenes=4096)
        settings = ["all", "paper"] if args.rates == "both" else [args.rates]
        for rates in settings:
            config = AugmentConfig(image_size=args.size, **(ALL_ON if rates == "all" else {}))
            dataset = ExemplarEditDataset(source, config, seed=0)
            speed = measure(dataset, args.workers, args.batch_size, args.samples, args.warmup_batches)
            cpu_ms = cpu_ms_per_sample(dataset, min(args.samples, 64))
            print(
                f"source={args.source} rates={rates} workers={args.workers} size={args.size} "
                f"batch={args.batch_size}: {speed:.1f} samples/s measured; {cpu_ms:.1f} CPU ms/sample, "
                f"so {args.workers * 1000 / cpu_ms:.0f} samples/s with {args.workers} idle cores"
            )


if __name__ == "__main__":
    main()
