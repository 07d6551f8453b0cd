"""Convert Paint-by-Example checkpoints between layouts, or warm-start one from Stable Diffusion + CLIP.

    python -m pbe.convert SRC DST --to {native,diffusers,ldm} [--dtype fp32|fp16|bf16] [--config FILE] [--overwrite]
    python -m pbe.convert SD_V1.ckpt DST --to native --clip CLIP_PATH      # SD v1.x warm start

SRC: the authors' model.ckpt (or .safetensors with the same keys), a diffusers folder, or a pbe folder.
DST: a folder for native / diffusers, a .ckpt or .safetensors file for ldm (which also carries pbe's model and
scheduler configs as plain JSON entries the authors' loader ignores, so that what pbe writes it reads back as the same
model; --dtype casts the weights, the noise schedule stays float32). DST is written to a temporary path and
renamed, so a failed run leaves nothing behind. An existing DST is replaced only with --overwrite, and only when it
is a checkpoint pbe wrote: a folder in the native layout (pbe_config.json + model.safetensors) or the diffusers
layout (model_index.json + component folders) with nothing else in it, or one .ckpt/.safetensors file. A DST that
is or contains SRC, or is the working directory or one of its parents, is refused.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from pbe.checkpoints.formats import (
    DTYPES,
    FORMATS,
    detect_format,
    load_checkpoint,
    load_config_file,
    parameter_counts,
    read_ldm,
    save_checkpoint,
    unreadable_as_checkpoint_error,
)
from pbe.checkpoints.tensor_io import CheckpointError, check_replaceable, read_tensors
from pbe.checkpoints.warm_start import is_stable_diffusion, warm_start


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m pbe.convert",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("\n\n", 1)[1],
    )
    p.add_argument("src", type=Path, help="source checkpoint (file or folder)")
    p.add_argument("dst", type=Path, help="destination (folder, or .ckpt/.safetensors file for --to ldm)")
    p.add_argument("--to", required=True, choices=FORMATS, help="output layout")
    p.add_argument("--dtype", choices=sorted(DTYPES), default=None, help="cast floating-point weights")
    p.add_argument("--config", type=Path, default=None, help="JSON/YAML with what shapes cannot tell (heads)")
    p.add_argument("--clip", type=Path, default=None, help="CLIP weights for an SD warm start")
    p.add_argument("--seed", type=int, default=23, help="seed of the new layers in an SD warm start")
    p.add_argument(
        "--overwrite", action="store_true", help="replace DST if it is a checkpoint pbe wrote (see below)"
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    return p


def _validate(args: argparse.Namespace) -> None:
    if not args.src.exists():
        raise FileNotFoundError(f"SRC not found: {args.src}")
    # never the source, the working directory, or files pbe did not write (refused even with --overwrite)
    check_replaceable(args.dst, args.src)
    if (args.dst.exists() or args.dst.is_symlink()) and not args.overwrite:
        raise FileExistsError(f"DST {args.dst} exists; pass --overwrite to replace it")
    if args.to == "ldm" and args.dst.suffix not in (".ckpt", ".safetensors"):
        raise ValueError(f"DST {args.dst}: with --to ldm, DST is one file ending in .ckpt or .safetensors")
    if args.to != "ldm" and args.dst.suffix in (".ckpt", ".safetensors", ".bin", ".pt"):
        raise ValueError(f"DST {args.dst}: with --to {args.to}, DST is a folder (no file extension)")


def _read(args: argparse.Namespace, overrides: dict | None):
    """(checkpoint, description of where it came from); SRC's tensors are read once."""
    state, metadata = read_tensors(args.src) if detect_format(args.src) == "ldm" else (None, None)  # once
    if state is not None and is_stable_diffusion(state):
        if args.clip is None:
            raise ValueError(
                f"SRC {args.src} is a Stable Diffusion checkpoint; pass --clip PATH (a transformers CLIP folder or "
                "an open_clip file) to warm-start a Paint-by-Example model from it"
            )
        ckpt = warm_start(args.src, args.clip, overrides=overrides, seed=args.seed, state=state)
        source = "Stable Diffusion warm start + CLIP"
    else:
        if args.clip is not None:
            raise ValueError("--clip applies only when SRC is a Stable Diffusion checkpoint")
        ckpt = (
            read_ldm(args.src, overrides, state, metadata)
            if state is not None
            else load_checkpoint(args.src, overrides)
        )
        source = f"{ckpt.format} layout"
    return ckpt, source


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        _validate(args)
        overrides = load_config_file(args.config)
        t0 = time.perf_counter()
        with unreadable_as_checkpoint_error(args.src):
            ckpt, source = _read(args, overrides)
        files = save_checkpoint(
            ckpt,
            args.dst,
            args.to,
            DTYPES.get(args.dtype),
            args.overwrite,
            progress=not args.no_progress,
            src=args.src,
        )
    except (CheckpointError, OSError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    counts = parameter_counts(ckpt)
    size = sum(f.stat().st_size for f in files)
    print(f"read {args.src} ({source})")
    for part, n in counts.items():
        print(f"  {part:<8s} {n / 1e6:10.2f} M parameters")
    print(
        f"wrote {args.dst} ({args.to} layout, {args.dtype or 'dtype kept'}), {size / 2**20:.1f} MiB in {len(files)} files:"
    )
    for f in files:
        print(f"  {f}")
    print(f"done in {time.perf_counter() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
