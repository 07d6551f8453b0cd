"""A whole edit, pbe vs diffusers, on identical random full-size weights, each run in its own process.

Writes a random full-size Paint-by-Example model once as a diffusers folder (both libraries read it), then for each
image size runs the edit alternately in fresh `pbe` and `diffusers` child processes (`--rounds` each): load, then one
`pipe(image, mask, exemplar, num_inference_steps, generator=seed 0)` with the default PNDM/PLMS sampler and
guidance 5. Reports the edit's wall time (median over rounds; loading is reported apart), the child's peak RSS (the
largest over rounds), the pbe/diffusers ratios, and the max |difference| of the output images (values in [0, 1];
expected <= 1e-3).

    .venv/bin/python bench/pipeline.py [--sizes 256 512] [--steps 50] [--rounds 2] [--threads 2]
        [--workdir DIR] [--dtype fp32|bf16]

The folder (~4.3 GB fp32) goes to a temporary directory under --workdir (default: the system's), removed at the end.
Last lines: `ratio edit_time_<size> <pbe / diffusers>` and `ratio edit_peak_rss_<size> <pbe / diffusers>`; with
--pbe-only (sizes diffusers cannot run in memory): `ratio pbe_peak_rss_vs_24gb_<size> <peak RSS / 24 GiB>`.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


def write_random_model(dst: Path, tiny: bool = False) -> None:
    """A full-size model with PyTorch's default random initialisation (seed 0), as a diffusers folder."""
    from pbe.checkpoints.formats import Checkpoint, save_checkpoint
    from pbe.demo import tiny_config
    from pbe.models import PaintByExample, PaintByExampleConfig

    torch.manual_seed(0)
    config = tiny_config() if tiny else PaintByExampleConfig()
    model = PaintByExample(config)
    save_checkpoint(Checkpoint(config, model.state_dict()), dst, "diffusers", progress=False)


def edit_inputs(size: int):
    """A random photo-sized image, a centred rectangular mask (white = repaint) and a random exemplar."""
    from PIL import Image

    g = torch.Generator().manual_seed(0)
    image = Image.fromarray((torch.rand(size, size, 3, generator=g) * 255).byte().numpy())
    mask = Image.new("L", (size, size), 0)
    mask.paste(255, (size // 4, size // 4, 3 * size // 4, 3 * size // 4))
    example = Image.fromarray((torch.rand(300, 260, 3, generator=g) * 255).byte().numpy())
    return image, mask, example


def load_diffusers(folder: Path, dtype: torch.dtype):
    """diffusers' pipeline assembled component by component (its from_pretrained cannot resolve the image encoder
    of a PaintByExample folder since diffusers 0.33)."""
    import diffusers
    from diffusers import AutoencoderKL, PaintByExamplePipeline, UNet2DConditionModel
    from diffusers.pipelines.deprecated.paint_by_example.image_encoder import PaintByExampleImageEncoder
    from transformers import CLIPImageProcessor

    index = json.loads((folder / "model_index.json").read_text())
    scheduler = getattr(diffusers, index["scheduler"][1]).from_pretrained(folder, subfolder="scheduler")
    return PaintByExamplePipeline(
        unet=UNet2DConditionModel.from_pretrained(folder, subfolder="unet", torch_dtype=dtype).eval(),
        vae=AutoencoderKL.from_pretrained(folder, subfolder="vae", torch_dtype=dtype).eval(),
        image_encoder=PaintByExampleImageEncoder.from_pretrained(
            folder / "image_encoder", torch_dtype=dtype
        ).eval(),
        scheduler=scheduler,
        feature_extractor=CLIPImageProcessor.from_pretrained(folder / "feature_extractor"),
        safety_checker=None,
        requires_safety_checker=False,
    )


def child(args) -> None:
    torch.set_num_threads(args.threads)
    dtype = DTYPES[args.dtype]
    t0 = time.perf_counter()
    if args.child == "pbe":
        from pbe import PaintByExamplePipeline

        pipe = PaintByExamplePipeline.from_pretrained(args.folder, torch_dtype=dtype)
        extra = {"progress": False}
        if args.sampler:
            extra["sampler"] = args.sampler
    else:
        pipe = load_diffusers(Path(args.folder), dtype)
        pipe.set_progress_bar_config(disable=True)
        extra = {}
    load_s = time.perf_counter() - t0
    image, mask, example = edit_inputs(args.size)
    t0 = time.perf_counter()
    with torch.no_grad():
        out = pipe(
            image=image,
            mask_image=mask,
            example_image=example,
            num_inference_steps=args.steps,
            guidance_scale=5.0,
            generator=torch.Generator().manual_seed(0),
            output_type="np",
            **extra,
        ).images
    edit_s = time.perf_counter() - t0
    np.save(args.out, np.asarray(out, dtype=np.float32))
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB
    print(json.dumps({"load_s": load_s, "edit_s": edit_s, "peak_rss_mb": peak_mb}))


def run_child(impl: str, folder: Path, size: int, args, out: Path) -> dict:
    cmd = [sys.executable, __file__, "--child", impl, "--folder", str(folder), "--size", str(size)]
    cmd += [
        "--steps",
        str(args.steps),
        "--threads",
        str(args.threads),
        "--dtype",
        args.dtype,
        *(["--sampler", args.sampler] if args.sampler else []),
        "--out",
        str(out),
    ]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{impl} child failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 512])
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--dtype", choices=sorted(DTYPES), default="fp32")
    parser.add_argument("--workdir", default=None)
    parser.add_argument(
        "--pbe-only",
        action="store_true",
        help="run pbe alone (large images: pbe tiles its VAE above 1024 px)",
    )
    parser.add_argument("--tiny", action="store_true", help="a tiny model (to check the script itself)")
    parser.add_argument(
        "--sampler", default=None, help="pbe's sampler (with --pbe-only; default: the checkpoint's PLMS)"
    )
    parser.add_argument("--child", choices=["pbe", "diffusers"], help=argparse.SUPPRESS)
    parser.add_argument("--folder", help=argparse.SUPPRESS)
    parser.add_argument("--size", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    if args.steps < 1 or args.rounds < 1 or any(s < 8 for s in args.sizes):
        parser.error("--steps and --rounds must be >= 1 and --sizes >= 8")
    if args.sampler and not args.pbe_only:
        parser.error("--sampler needs --pbe-only (diffusers' pipeline keeps its scheduler)")

    tmp = Path(tempfile.mkdtemp(prefix="pbe_bench_pipeline_", dir=args.workdir))
    lines = []
    try:
        folder = tmp / "model"
        t0 = time.perf_counter()
        write_random_model(folder, args.tiny)
        print(
            f"random full-size model written as a diffusers folder in {time.perf_counter() - t0:.0f} s",
            flush=True,
        )
        print(
            f"edit: {args.sampler or 'PLMS'} {args.steps} steps, guidance 5, {args.dtype}, {args.threads} threads, {args.rounds} rounds"
        )
        for size in args.sizes:
            impls = ["pbe"] if args.pbe_only else ["pbe", "diffusers"]
            runs = {impl: [] for impl in impls}
            for r in range(args.rounds):
                order = impls if r % 2 == 0 else impls[::-1]
                for impl in order:
                    res = run_child(impl, folder, size, args, tmp / f"{impl}_{size}.npy")
                    runs[impl].append(res)
                    print(
                        f"  {size}px round {r + 1} {impl:<10} edit {res['edit_s']:7.1f} s  load {res['load_s']:5.1f} s"
                        f"  peak RSS {res['peak_rss_mb']:7.0f} MB",
                        flush=True,
                    )
            edit = {k: statistics.median(r["edit_s"] for r in v) for k, v in runs.items()}
            rss = {k: max(r["peak_rss_mb"] for r in v) for k, v in runs.items()}
            load = {k: statistics.median(r["load_s"] for r in v) for k, v in runs.items()}
            if args.pbe_only:
                print(
                    f"{size}x{size}: pbe edit median {edit['pbe']:.1f} s, load {load['pbe']:.1f} s, "
                    f"peak RSS {rss['pbe']:.0f} MB",
                    flush=True,
                )
                lines.append(f"ratio pbe_peak_rss_vs_24gb_{size} {rss['pbe'] / (24 * 1024):.3f}")
                continue
            diff = float(
                np.abs(np.load(tmp / f"pbe_{size}.npy") - np.load(tmp / f"diffusers_{size}.npy")).max()
            )
            print(
                f"{size}x{size}: edit median pbe {edit['pbe']:.1f} s, diffusers {edit['diffusers']:.1f} s "
                f"(ratio {edit['pbe'] / edit['diffusers']:.3f}); load pbe {load['pbe']:.1f} s, diffusers "
                f"{load['diffusers']:.1f} s; peak RSS pbe {rss['pbe']:.0f} MB, diffusers {rss['diffusers']:.0f} MB "
                f"(ratio {rss['pbe'] / rss['diffusers']:.3f}); max |pbe - diffusers| = {diff:.2e}",
                flush=True,
            )
            lines += [
                f"ratio edit_time_{size} {edit['pbe'] / edit['diffusers']:.3f}",
                f"ratio edit_peak_rss_{size} {rss['pbe'] / rss['diffusers']:.3f}",
                f"ratio edit_max_abs_diff_{size} {diff:.2e}",
            ]
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print()
    print("\n".join(lines))


if __name__ == "__main__":
    main()
