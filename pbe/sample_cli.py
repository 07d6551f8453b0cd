"""What ``python sample.py`` does: check the arguments, name the outputs, run the pipeline, draw the grid, write PNGs.

    python sample.py weights=PATH image=photo.png mask=mask.png example=object.png out=outputs/result.png

Everything that can be wrong with the input (a missing or unreadable file, a mask of another size, steps 0, strength
outside [0, 1], a negative guidance, an output that already exists without ``overwrite=true``, an output that would
replace an input, an output folder that cannot be written) raises before the weights are loaded; for a ``-m`` sweep,
`check_command_line` checks every job before the first one runs. The functions here are plain and importable, so
tests and notebooks use them without Hydra.

The options and their checks are `pbe.sample_args` (`SampleArgs`, `parse_args`, `usage`); the output names and the
sweep record `pbe.sample_outputs`; this module reads the inputs, checks the outputs and runs the edits.
"""

from __future__ import annotations

import functools
import shutil
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, fields
from pathlib import Path

from PIL import Image

from pbe.checkpoints.formats import DTYPES
from pbe.edit_grid import GRID_GAP, LABEL_HEIGHT, draw_grid
from pbe.edit_options import MAX_SEED
from pbe.files import check_folder_writable, check_new_file, write_files
from pbe.preprocess import open_image
from pbe.sample_args import (
    AUTO_MASK,
    CONFIG_DIR,
    PATH_KEYS,
    QUOTING_HINT,
    REQUIRED,
    SampleArgs,
    config_values,
    default_weights,
    parse_args,
    quote_paths,
    usage,
)
from pbe.sample_outputs import (
    OUTPUT_SUFFIXES,
    SWEEP_RECORD,
    Outputs,
    check_free,
    check_sweep_record,
    input_paths,
    is_sweep_record,
    output_paths,
    sweep_suffix,
)
from pbe.sweeps import sweep_jobs, swept_keys

__all__ = [  # what this module has always offered, wherever it is defined now
    "AUTO_MASK",
    "CONFIG_DIR",
    "GRID_GAP",
    "LABEL_HEIGHT",
    "MAX_SEED",
    "OUTPUT_SUFFIXES",
    "PATH_KEYS",
    "QUOTING_HINT",
    "REQUIRED",
    "SWEEP_RECORD",
    "Inputs",
    "Outputs",
    "SampleArgs",
    "check_command_line",
    "check_free",
    "check_outputs",
    "check_sweep",
    "check_sweep_record",
    "config_values",
    "default_weights",
    "draw_grid",
    "input_paths",
    "is_sweep_record",
    "load_inputs",
    "output_paths",
    "parse_args",
    "quote_paths",
    "run",
    "run_hydra_job",
    "sweep_jobs",
    "sweep_suffix",
    "swept_keys",
    "usage",
]


@dataclass
class Inputs:
    image: Image.Image  # RGB
    mask: Image.Image | None  # "L", white = repaint; None for mask=auto
    example: Image.Image  # RGB


# ----------------------------------------------------------------------------------------------- inputs


def check_pixels(path: Path, name: str, max_pixels: int) -> None:
    """Refuse, from the file's header (before decoding it), an image of more than `max_pixels` pixels."""
    if not max_pixels or not path.is_file():
        return  # open_image says what is wrong with a missing file
    try:
        with Image.open(path) as img:
            width, height = img.size
    except Exception:  # noqa: BLE001 -- not an image: open_image says so, with the reason
        return
    if width * height > max_pixels:
        raise ValueError(
            f"{name}: {path} is {width}x{height} = {width * height:,} pixels, more than max_pixels={max_pixels:,}; "
            "resize it, or raise max_pixels (0: no limit) if you mean it (the VAE alone takes minutes at that size)"
        )


def check_input_pixels(args: SampleArgs) -> None:
    for path, name in ((args.image, "image"), (args.mask, "mask"), (args.example, "example")):
        if path is not None:
            check_pixels(path, name, args.max_pixels)


def load_inputs(args: SampleArgs) -> Inputs:
    """Read the image, mask and exemplar (sizes checked from the headers first); the mask must have the image's
    size."""
    check_input_pixels(args)
    image = open_image(args.image, "image").convert("RGB")
    example = open_image(args.example, "example").convert("RGB")
    mask = None
    if args.mask is not None:
        mask = open_image(args.mask, "mask").convert("L")
        if mask.size != image.size:
            raise ValueError(
                f"mask is {mask.width}x{mask.height} but image is {image.width}x{image.height}; they must match"
            )
    return Inputs(image, mask, example)


def input_sizes(args: SampleArgs, seen: dict) -> tuple[tuple[int, int], tuple[int, int]]:
    """The sizes of the image and the exemplar, read (and checked) by `load_inputs` once per set of input files in
    `seen`: a sweep's check decodes each input once, however many jobs use it."""
    files = (args.image, args.mask, args.example)
    if files in seen:
        check_input_pixels(args)  # max_pixels may be swept
    else:
        inputs = load_inputs(args)
        seen[files] = (inputs.image.size, inputs.example.size)
    return seen[files]


# ----------------------------------------------------------------------------------------------- outputs


def check_room(folder: Path, needed: int) -> None:
    """The nearest existing folder above the outputs has `needed` bytes free."""
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    free = shutil.disk_usage(existing).free
    if free < needed:
        raise ValueError(
            f"out: {existing} has {free / 2**20:.1f} MiB free; the outputs need up to {needed / 2**20:.1f} MiB"
        )


def output_bytes(args: SampleArgs, size: tuple[int, int], example_size: tuple[int, int]) -> int:
    """An upper bound on what the outputs take on disk (uncompressed pixels)."""
    (w, h), (ew, eh) = size, example_size
    total = args.num_images * w * h * 3 + (w * h if args.mask is None else 0)
    if args.grid:
        width = 3 * w + max(1, round(ew * h / eh)) + 3 * GRID_GAP
        total += width * (LABEL_HEIGHT + args.num_images * (h + GRID_GAP)) * 3
    return total + 65536


def check_outputs(args: SampleArgs, outputs: Outputs, needed: int = 0) -> None:
    """Before any work: no output would replace an input (even with overwrite=true) or anything but a PNG, existing
    outputs only with overwrite=true, and the output folder is writable with room for `needed` bytes."""
    check_free(outputs.all(), args.overwrite)
    for path in outputs.all():
        check_new_file(
            path, overwrite=args.overwrite, inputs=input_paths(args), suffixes=OUTPUT_SUFFIXES, label="out"
        )
    for folder in dict.fromkeys(p.parent for p in outputs.all()):
        check_folder_writable(folder, label="out")
        check_room(folder, needed)


# ----------------------------------------------------------------------------------------------- sweeps


def check_sweep(overrides: Sequence[str], config_dir: Path = CONFIG_DIR, multirun: bool = True) -> int:
    """Check every job of `overrides` (a sweep when `multirun`) before any runs: each job's arguments, inputs and
    outputs as `run` would, and that no two jobs write the same file. Nothing is written. Returns the job count."""
    from hydra import compose, initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    ours = [o for o in overrides if not o.lstrip("+~").startswith(("hydra.", "hydra/"))]
    try:
        jobs = sweep_jobs(ours) if multirun else [list(ours)]
    except (HydraException, OmegaConfBaseException) as e:
        raise ValueError(f"cannot read the command line: {e} ({QUOTING_HINT})") from None
    keys = swept_keys(ours) if multirun else []
    sizes: dict[tuple, tuple] = {}  # (image, mask, example) -> their sizes: each input is decoded once
    writers: dict[Path, int] = {}
    records: dict[Path, SampleArgs] = {}  # one sweep record (multirun.yaml) per output folder
    with initialize_config_dir(config_dir=str(config_dir), version_base="1.3"):
        for number, job in enumerate(jobs):
            where = (
                f"sweep job {number} ({' '.join(o for o in job if o.split('=')[0].lstrip('+~') in keys)}): "
            )
            try:
                try:
                    values = config_values(compose("sample", overrides=job))
                except (HydraException, OmegaConfBaseException) as e:
                    valid = ", ".join(f.name for f in fields(SampleArgs))
                    hint = f" ({QUOTING_HINT})" if "Lexer" in str(e) or "mismatched input" in str(e) else ""
                    raise ValueError(f"{str(e).splitlines()[0]}{hint} Valid options: {valid}") from None
                args = parse_args(values)
                size, example_size = input_sizes(args, sizes)
                outputs = output_paths(args, sweep_suffix(keys, values, number) if multirun else "")
                check_outputs(args, outputs, output_bytes(args, size, example_size))
                check_against_checkpoint(args, size)
            except (ValueError, OSError) as e:
                if not multirun:
                    raise
                raise type(e)(where + str(e)) from None
            records.setdefault(args.out.parent, args)
            for path in outputs.all():
                other = writers.setdefault(path.resolve(), number)
                if other != number:
                    raise ValueError(
                        f"sweep jobs {other} and {number} would both write {path}; sweep values that differ in their "
                        "file names (e.g. two images both called photo.png), or use separate runs"
                    )
    if multirun:
        for args in records.values():
            check_sweep_record(args)
    return len(jobs)


def check_command_line(argv: Sequence[str], config_dir: Path = CONFIG_DIR) -> bool:
    """sample.py's own check of its command line before Hydra runs anything (for a ``-m`` sweep: every job).

    Returns False, checking nothing, for command lines with Hydra flags other than -m (--cfg, --info, ...)."""
    flags = [a for a in argv if a.startswith("-")]
    if any(f not in ("-m", "--multirun") for f in flags):
        return False
    check_sweep([a for a in argv if not a.startswith("-")], config_dir, multirun=bool(flags))
    return True


# ----------------------------------------------------------------------------------------------- running


def resolve_device(device: str | None) -> str:
    import torch

    if device is None:
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        parsed = torch.device(device)
    except RuntimeError as e:
        raise ValueError(f"device={device!r} is not a torch device ({e}); use cpu, cuda or cuda:N") from None
    if parsed.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={device!r} but CUDA is not available here; use device=cpu (or null)")
    return device


def _note(args: SampleArgs, message: str) -> None:
    if args.progress:
        print(message, file=sys.stderr, flush=True)


def warn_if_large(args: SampleArgs, inputs: Inputs) -> None:
    w, h = inputs.image.size
    if args.warn_pixels and w * h > args.warn_pixels:
        print(
            f"warning: image is {w}x{h} = {w * h:,} pixels, more than warn_pixels={args.warn_pixels:,}: the edit will "
            "be slow and memory-hungry (the model was trained at 512x512; the VAE runs tiled above 1024 a side)",
            file=sys.stderr,
            flush=True,
        )


@functools.lru_cache(maxsize=4)
def _read_checkpoint(weights: Path, mtime_ns: int):
    from pbe.checkpoints.formats import load_checkpoint

    return load_checkpoint(weights)  # tensors memory-mapped, their values checked once (no model is built)


def read_checkpoint(weights: Path):
    """The checkpoint, read once per path and modification time (a sweep's jobs and the run share it)."""
    return _read_checkpoint(weights.resolve(), weights.stat().st_mtime_ns)


def check_against_checkpoint(args: SampleArgs, image_size: tuple[int, int]) -> None:
    """What depends on the checkpoint, checked before a model is built from it: the step count its schedule can
    run with the sampler, and an image (of `image_size`) of at least one latent pixel."""
    from pbe.diffusion import check_steps_for

    ckpt = read_checkpoint(args.weights)
    check_steps_for(ckpt.scheduler, args.sampler, args.steps)
    vae_scale = ckpt.config.vae.downsample_factor
    w, h = image_size
    if w < vae_scale or h < vae_scale:
        raise ValueError(
            f"image is {w}x{h} pixels; this model needs at least {vae_scale}x{vae_scale} (one latent pixel)"
        )


def crop_note(pipe, mask, padding: int) -> str:
    """The line sample.py prints when it edits a crop around the mask (padding_mask_crop)."""
    import numpy as np

    from pbe.pipeline import mask_crop_box

    left, top, right, bottom = mask_crop_box(np.asarray(mask.convert("L")) >= 128, padding)
    size = pipe.crop_generation_size([max(right - left, bottom - top)])
    known = pipe.train_resolution is not None
    why = "the model's training resolution" if known else "its own size, rounded up"
    return (
        f"padding_mask_crop: editing the {right - left}x{bottom - top} region around the mask ({padding} px margin) "
        f"at {size}x{size} ({why}), pasted into the photo"
    )


def run(args: SampleArgs, suffix: str = "") -> Outputs:
    """Edit `args.image` and write the result(s) and grid. Every check happens before the weights load."""
    import torch

    from pbe.pipeline import PaintByExamplePipeline, auto_padding_mask_crop

    inputs = load_inputs(args)
    outputs = output_paths(args, suffix)
    check_outputs(args, outputs, output_bytes(args, inputs.image.size, inputs.example.size))
    device = resolve_device(args.device)
    dtype = DTYPES[args.dtype]
    warn_if_large(args, inputs)
    _note(args, f"loading weights from {args.weights} ...")
    start = time.perf_counter()
    check_against_checkpoint(args, inputs.image.size)
    ckpt = read_checkpoint(args.weights)
    _read_checkpoint.cache_clear()  # the model owns the tensors now
    pipe = PaintByExamplePipeline.from_checkpoint(ckpt, torch_dtype=dtype, device=device)
    _note(args, f"loaded in {time.perf_counter() - start:.1f} s; editing on {device} ({args.dtype})")
    pipe.vae_tiling = args.vae_tiling
    pipe.large_image_pixels = None  # warned above, before the weights loaded
    mask = inputs.mask
    if mask is None:
        # Its own generator: rerunning with mask=<stem>_mask.png and the same seed gives the same result.
        mask = pipe.generate_mask(
            inputs.image,
            inputs.example,
            strength=args.mask_strength,
            num_maps=args.num_maps,
            threshold_ratio=args.threshold_ratio,
            upsample=args.mask_upsample,
            single_region=args.mask_single_region,
            generator=torch.Generator().manual_seed(args.seed),
            progress=args.progress,
        )[0]
    padding = auto_padding_mask_crop(args.padding_mask_crop, pipe.train_resolution, inputs.image.size, mask)
    if padding is not None:
        _note(args, crop_note(pipe, mask, padding))
    results = pipe(
        inputs.image,
        mask,
        inputs.example,
        num_inference_steps=args.steps,
        guidance_scale=args.guidance,
        num_images_per_prompt=args.num_images,
        generator=torch.Generator().manual_seed(args.seed),
        strength=args.strength,
        paste_back=args.paste_back,
        sampler=args.sampler,
        feather=args.feather,
        progress=args.progress,
        padding_mask_crop=padding,
    ).images

    files = list(zip(outputs.results, results, strict=True))
    if outputs.mask is not None:
        files.append((outputs.mask, mask))
    if outputs.grid is not None:
        files.append((outputs.grid, draw_grid(inputs.image, mask, inputs.example, results)))
    write_files(files, overwrite=args.overwrite, inputs=input_paths(args), suffixes=OUTPUT_SUFFIXES)
    print(f"wrote {', '.join(str(p) for p in outputs.all())}")
    return outputs


def run_hydra_job(cfg, argv: Sequence[str] | None = None) -> Outputs:
    """The body of sample.py's Hydra main: in a ``-m`` sweep each job's files carry its swept values."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    values = config_values(cfg)
    args = parse_args(values)
    suffix = ""
    if HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN:
        keys = swept_keys(sys.argv[1:] if argv is None else argv)
        suffix = sweep_suffix(keys, values, HydraConfig.get().job.num)
    return run(args, suffix)
