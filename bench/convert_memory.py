"""Peak memory of checkpoint conversion on a full-size model.

Generates a random full-size Paint-by-Example checkpoint in the original layout (SD v1 UNet + VAE + ViT-L/14 exemplar
encoder, fp32, ~5.2 GB), then runs `python -m pbe.convert` on it in a child process and reports the child's peak
resident memory as a multiple of the checkpoint's size. Target: <= 1.3x (tensors are streamed, never held twice).

    .venv/bin/python bench/convert_memory.py [--workdir DIR] [--cases ckpt:diffusers safetensors:native ...]

Needs ~3x the checkpoint size of free disk in --workdir (default: a temporary folder, removed afterwards).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

import torch

from pbe.checkpoints import ldm_keys
from pbe.checkpoints.formats import expected_state, ldm_schedule_buffers
from pbe.checkpoints.tensor_io import write_safetensors
from pbe.models import PaintByExampleConfig

SCHEDULE = ldm_schedule_buffers({})  # the released model's noise-schedule buffers


class RandomTensors(Mapping):
    """Original-layout tensors made on access (so writing a .safetensors never holds the whole model)."""

    def __init__(self, shapes: dict[str, tuple[torch.Size, torch.dtype]]):
        self.shapes = shapes

    def __getitem__(self, key: str) -> torch.Tensor:
        if key in SCHEDULE:
            return SCHEDULE[key]
        shape, dtype = self.shapes[key]
        if not dtype.is_floating_point:
            return torch.arange(shape.numel()).reshape(shape).to(dtype)
        g = torch.Generator().manual_seed(hash(key) % 2**31)
        return torch.randn(shape, generator=g, dtype=dtype) * 0.02

    def __iter__(self) -> Iterator[str]:
        return iter(self.shapes)

    def __len__(self) -> int:
        return len(self.shapes)


def original_layout_shapes() -> dict[str, tuple[torch.Size, torch.dtype]]:
    config = PaintByExampleConfig()
    meta = expected_state(config)
    ldm = ldm_keys.native_to_ldm(meta, config.unet, config.vae, config.encoder.mapper_heads)
    shapes = {k: (v.shape, v.dtype) for k, v in ldm.items()}
    shapes[ldm_keys.VISION_PREFIX + "embeddings.position_ids"] = (torch.Size([1, 257]), torch.int64)
    for k, v in SCHEDULE.items():
        shapes[k] = (v.shape, v.dtype)
    return shapes


def make_checkpoint(path: Path) -> None:
    tensors = RandomTensors(original_layout_shapes())
    if path.suffix == ".safetensors":
        write_safetensors(path, tensors)
    else:
        torch.save({"state_dict": {k: tensors[k] for k in tensors}}, path)


_MEASURE = """
import resource, runpy, sys
sys.argv = sys.argv[1:]
try:
    runpy.run_module("pbe.convert", run_name="__main__")
except SystemExit as e:
    if e.code:
        raise
print("PEAK_RSS_KB", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)
"""


def peak_rss_of(args: list[str]) -> tuple[int, float]:
    """Run `python -m pbe.convert ARGS` in a fresh child; return (its own peak RSS in bytes, wall seconds)."""
    t0 = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", _MEASURE, "pbe.convert", *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    if done.returncode:
        raise RuntimeError(f"conversion failed:\n{done.stderr[-3000:]}")
    kb = int(done.stderr.rsplit("PEAK_RSS_KB", 1)[1].split()[0])
    return kb * 1024, time.perf_counter() - t0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--workdir", type=Path, default=None)
    p.add_argument("--cases", nargs="+", default=["ckpt:diffusers", "safetensors:native", "ckpt:ldm-fp16"])
    args = p.parse_args()
    root = Path(tempfile.mkdtemp(dir=args.workdir, prefix="pbe-convert-bench-"))
    try:
        print(f"{'source':<14}{'target':<14}{'checkpoint':>12}{'peak RSS':>12}{'ratio':>8}{'time':>9}")
        for case in args.cases:
            src_kind, target = case.split(":")
            src = root / f"model.{src_kind}"
            if not src.exists():
                # Generate in a child so the generator's memory does not count in the conversion's peak.
                subprocess.run([sys.executable, __file__, "--_make", str(src)], check=True)
            size = src.stat().st_size
            to, _, dtype = target.partition("-")
            dst = root / ("out.safetensors" if to == "ldm" else "out")
            cmd = [str(src), str(dst), "--to", to, "--no-progress"]
            if dtype:
                cmd += ["--dtype", dtype]
            peak, seconds = peak_rss_of(cmd)
            print(
                f"{src.name:<14}{target:<14}{size / 2**30:>10.2f}GB{peak / 2**30:>10.2f}GB"
                f"{peak / size:>7.2f}x{seconds:>8.1f}s"
            )
            shutil.rmtree(dst) if dst.is_dir() else dst.unlink()
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--_make":
        make_checkpoint(Path(sys.argv[2]))
    else:
        main()
