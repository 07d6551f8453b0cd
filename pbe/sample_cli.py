"""What ``python sample.py`` does: check the arguments, name the outputs, run the pipeline, draw the grid, write PNGs.

    python sample.py weights=PATH image=photo.png mask=mask.png example=object.png out=outputs/result.png

Everything that can be wrong with the input (a missing or unreadable file, a mask of another size, steps 0, strength
outside [0, 1], a negative guidance, an output that already exists without ``overwrite=true``, an output that would
replace an input, an output folder that cannot be written) raises before the weights are loaded; for a ``-m`` sweep,
`check_command_line` checks every job before the first one runs. The functions here are plain and importable, so
tests and notebooks use them without Hydra.
"""

from __future__ import annotations

import functools
import math
import os
import shutil
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path

from omegaconf import OmegaConf
from PIL import Image, ImageDraw

from pbe.files import check_folder_writable, check_new_file, write_files
from pbe.preprocess import open_image
from pbe.sweeps import sweep_jobs, swept_keys

DTYPES = ("fp32", "fp16", "bf16")
MAX_SEED = 2**64 - 1  # the largest seed torch.Generator.manual_seed takes
SWEEP_RECORD = "multirun.yaml"  # what Hydra writes beside a sweep's outputs
AUTO_MASK = "auto"
GRID_GAP = 4  # white pixels between grid cells
LABEL_HEIGHT = 14  # the label strip above the first grid row
GRID_LABELS = ("source", "mask", "exemplar", "result")
# Arguments that are file paths: when swept, output names carry the file's stem (example-dog), not the whole path.
PATH_KEYS = ("weights", "image", "mask", "example")
REQUIRED = {
    "weights": "model.ckpt, a diffusers folder or a pbe folder; default: the bundled objects model, if installed",
    "image": "the photo to edit",
    "mask": f"white = repaint, or mask={AUTO_MASK}",
    "example": "the exemplar: a picture of what to paint in",
}
OUTPUT_SUFFIXES = (".png",)  # what sample.py writes, and so the only kind of file overwrite=true may replace
CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs"

# configs/sample.yaml puts a sweep's multirun.yaml beside the outputs: hydra.sweep.dir = ${pbe_parent:${out}}
OmegaConf.register_new_resolver("pbe_parent", lambda path: str(Path(path).parent), replace=True)


@dataclass
class SampleArgs:
    """The validated command line (configs/sample.yaml has the same keys and defaults)."""

    weights: Path
    image: Path
    mask: Path | None  # None: mask=auto, a DiffEdit-style mask from generate_mask
    example: Path
    out: Path = Path("outputs/result.png")
    grid: bool = True
    seed: int = 42
    steps: int = 50
    guidance: float = 5.0
    sampler: str | None = None
    strength: float = 1.0
    paste_back: bool = False
    feather: int = 0
    num_images: int = 1
    device: str | None = None
    dtype: str = "fp32"
    overwrite: bool = False
    progress: bool = True
    mask_strength: float = 0.5
    num_maps: int = 10
    threshold_ratio: float = 3.0
    mask_upsample: str = "nearest"
    mask_single_region: bool = False
    vae_tiling: bool | None = None  # None: tile the VAE above 1024 pixels a side
    warn_pixels: int = 2048 * 2048  # warn before editing an image of more pixels; 0: never
    max_pixels: int = 4096 * 4096  # refuse (from the file's header) an image of more pixels; 0: no limit
    # "auto": edit a crop around the mask at the model's training resolution when the photo is larger than it;
    # an int: always crop, with that many pixels of margin; None: edit the whole photo at its own size
    padding_mask_crop: int | str | None = "auto"


@dataclass
class Inputs:
    image: Image.Image  # RGB
    mask: Image.Image | None  # "L", white = repaint; None for mask=auto
    example: Image.Image  # RGB


@dataclass
class Outputs:
    results: list[Path]
    grid: Path | None
    mask: Path | None  # the generated mask, written for mask=auto

    def all(self) -> list[Path]:
        return [*self.results, *(p for p in (self.grid, self.mask) if p is not None)]


# ----------------------------------------------------------------------------------------------- validation


def _integer(values: Mapping, name: str, low: int, what: str, high: int | None = None) -> int:
    value = values[name]
    if (
        isinstance(value, bool)
        or not isinstance(value, int)
        or value < low
        or (high is not None and value > high)
    ):
        raise ValueError(f"{name} must be {what}, got {value!r}")
    return value


def _number(values: Mapping, name: str, ok, what: str) -> float:
    value = values[name]
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or not ok(value)
    ):
        raise ValueError(f"{name} must be {what}, got {value!r}")
    return float(value)


def _flag(values: Mapping, name: str, allow_none: bool = False) -> bool | None:
    value = values[name]
    if not isinstance(value, bool) and not (allow_none and value is None):
        raise ValueError(f"{name} must be true or false{' (or null)' if allow_none else ''}, got {value!r}")
    return value


def _path(values: Mapping, name: str, what: str) -> Path:
    value = values.get(name)
    if value is None or value == "":
        raise ValueError(f"{name} is required: pass {name}=PATH ({what})")
    if not isinstance(value, str | os.PathLike):
        raise ValueError(f"{name} must be a path ({what}), got {value!r}")
    return Path(value).expanduser()


def default_weights() -> Path | None:
    """The objects model trained by this project (pbe/assets/objects), used when no weights= is given; None if
    absent."""
    from pbe.assets import default_model_path

    try:
        return default_model_path()
    except FileNotFoundError:
        return None


def check_weights(path: Path) -> None:
    """The checkpoint path exists and looks like a layout pbe reads (no weights are read)."""
    from pbe.checkpoints.formats import detect_format

    if not path.exists():
        raise FileNotFoundError(
            f"weights: {path} does not exist; pass weights=PATH to the authors' model.ckpt, a diffusers folder "
            "(huggingface-cli download Fantasy-Studio/Paint-by-Example --local-dir PATH) or a pbe folder"
        )
    try:
        detect_format(path)
    except ValueError as e:
        raise ValueError(f"weights: {e}") from None


def parse_args(values: Mapping) -> SampleArgs:
    """Check every argument (types, ranges, that the weights path exists) and return them typed.

    `values` holds the keys of configs/sample.yaml (missing optional keys take the defaults); required ones
    (weights, image, mask, example) may be None when not given.
    """
    from pbe.diffusion import SAMPLERS
    from pbe.pipeline import MASK_UPSAMPLING, padding_mask_crop_setting

    known = {f.name for f in fields(SampleArgs)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"unknown argument(s) {unknown}; valid: {', '.join(sorted(known))}")
    defaults = {f.name: f.default for f in fields(SampleArgs) if f.name not in PATH_KEYS}
    values = {**defaults, **values}
    if values.get("weights") in (None, ""):
        values["weights"] = default_weights()
    missing = [key for key in REQUIRED if values.get(key) is None or values.get(key) == ""]
    if missing:  # all of them at once
        what = "; ".join(f"{key}=PATH ({REQUIRED[key]})" for key in missing)
        raise ValueError(f"{', '.join(missing)} {'is' if len(missing) == 1 else 'are'} required: pass {what}")

    weights = _path(values, "weights", REQUIRED["weights"])
    image = _path(values, "image", REQUIRED["image"])
    mask = None if values.get("mask") == AUTO_MASK else _path(values, "mask", REQUIRED["mask"])
    example = _path(values, "example", REQUIRED["example"])
    out = _path(values, "out", "a .png file")
    if out.suffix.lower() != ".png":
        raise ValueError(f"out must name a .png file, got {str(out)!r}")
    if out.is_dir():
        raise ValueError(
            f"out is a folder ({out}); name a .png file inside it, e.g. out={out / 'result.png'}"
        )

    sampler = values["sampler"]
    if sampler is not None and (not isinstance(sampler, str) or sampler not in SAMPLERS):
        raise ValueError(
            f"sampler={sampler!r}; valid: {', '.join(SAMPLERS)}, or null for the checkpoint's own"
        )
    if values["mask_upsample"] not in MASK_UPSAMPLING:
        raise ValueError(f"mask_upsample={values['mask_upsample']!r}; valid: {', '.join(MASK_UPSAMPLING)}")
    if values["dtype"] not in DTYPES:
        raise ValueError(f"dtype={values['dtype']!r}; valid: {', '.join(DTYPES)}")
    device = values["device"]
    if device is not None and not isinstance(device, str):
        raise ValueError(f"device must be a string such as cpu, cuda or cuda:1 (or null), got {device!r}")

    args = SampleArgs(
        weights=weights,
        image=image,
        mask=mask,
        example=example,
        out=out,
        grid=_flag(values, "grid"),
        seed=_integer(values, "seed", 0, f"an integer in [0, {MAX_SEED}] (2**64 - 1)", MAX_SEED),
        steps=_integer(values, "steps", 1, "an integer >= 1"),
        guidance=_number(values, "guidance", lambda v: v >= 0, "a number >= 0 (1 or less: no guidance)"),
        sampler=sampler,
        strength=_number(
            values, "strength", lambda v: 0 <= v <= 1, "a number in [0, 1] (1: from pure noise)"
        ),
        paste_back=_flag(values, "paste_back"),
        feather=_integer(values, "feather", 0, "an integer >= 0 (pixels)"),
        num_images=_integer(values, "num_images", 1, "an integer >= 1"),
        device=device,
        dtype=values["dtype"],
        overwrite=_flag(values, "overwrite"),
        progress=_flag(values, "progress"),
        mask_strength=_number(values, "mask_strength", lambda v: 0 < v <= 1, "a number in (0, 1]"),
        num_maps=_integer(values, "num_maps", 1, "an integer >= 1"),
        threshold_ratio=_number(values, "threshold_ratio", lambda v: v > 0, "a number > 0"),
        mask_upsample=values["mask_upsample"],
        mask_single_region=_flag(values, "mask_single_region"),
        vae_tiling=_flag(values, "vae_tiling", allow_none=True),
        warn_pixels=_integer(values, "warn_pixels", 0, "an integer >= 0 (0: never warn)"),
        max_pixels=_integer(values, "max_pixels", 0, "an integer >= 0 (0: no limit)"),
        padding_mask_crop=padding_mask_crop_setting(values["padding_mask_crop"]),
    )
    check_weights(args.weights)
    return args


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


def load_inputs(args: SampleArgs) -> Inputs:
    """Read the image, mask and exemplar (sizes checked from the headers first); the mask must have the image's
    size."""
    for path, name in ((args.image, "image"), (args.mask, "mask"), (args.example, "example")):
        if path is not None:
            check_pixels(path, name, args.max_pixels)
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


# ----------------------------------------------------------------------------------------------- outputs


def output_paths(args: SampleArgs, suffix: str = "") -> Outputs:
    """result.png (or result_0.png, result_1.png, ... for num_images > 1), result_grid.png, result_mask.png.

    `suffix` (a sweep's values, e.g. "seed1") goes after the stem: result_seed1.png, result_seed1_grid.png.
    """
    stem = args.out.stem + (f"_{suffix}" if suffix else "")
    folder, ext = args.out.parent, args.out.suffix
    if args.num_images == 1:
        results = [folder / f"{stem}{ext}"]
    else:
        results = [folder / f"{stem}_{i}{ext}" for i in range(args.num_images)]
    grid = folder / f"{stem}_grid{ext}" if args.grid else None
    mask = folder / f"{stem}_mask{ext}" if args.mask is None else None
    return Outputs(results, grid, mask)


def check_free(paths: Sequence[Path], overwrite: bool) -> None:
    """Refuse to replace existing files unless `overwrite`."""
    if overwrite:
        return
    taken = [str(p) for p in paths if p.exists()]
    if taken:
        raise FileExistsError(
            f"out: {', '.join(taken)} already exist(s); pass overwrite=true to replace, or choose another out="
        )


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


def input_paths(args: SampleArgs) -> list[Path]:
    return [p for p in (args.image, args.mask, args.example, args.weights) if p is not None]


def check_outputs(args: SampleArgs, outputs: Outputs, inputs: Inputs | None = None) -> None:
    """Before any work: no output would replace an input (even with overwrite=true) or anything but a PNG, existing
    outputs only with overwrite=true, and the output folder is writable with room for the files."""
    check_free(outputs.all(), args.overwrite)
    for path in outputs.all():
        check_new_file(
            path, overwrite=args.overwrite, inputs=input_paths(args), suffixes=OUTPUT_SUFFIXES, label="out"
        )
    needed = 0 if inputs is None else output_bytes(args, inputs.image.size, inputs.example.size)
    for folder in dict.fromkeys(p.parent for p in outputs.all()):
        check_folder_writable(folder, label="out")
        check_room(folder, needed)


def check_sweep_record(args: SampleArgs) -> None:
    """A sweep writes Hydra's record of it (multirun.yaml) beside its outputs: never over a file of the user's, and
    over an earlier sweep's record only with overwrite=true."""
    record = args.out.parent / SWEEP_RECORD
    if not record.exists() and not record.is_symlink():
        return
    if not args.overwrite:
        raise FileExistsError(
            f"out: {record} already exists and a sweep writes its record there; pass overwrite=true to replace "
            "it, or choose another out= folder"
        )
    if not is_sweep_record(record):
        raise ValueError(
            f"out: {record} is not a sweep record pbe wrote (a sweep writes its multirun.yaml beside the outputs); "
            "choose another out= folder or move the file"
        )


def is_sweep_record(path: Path) -> bool:
    """Whether `path` is a multirun.yaml that Hydra wrote for a sample.py sweep."""
    if path.is_symlink() or not path.is_file():
        return False
    try:
        record = OmegaConf.load(path)
        return OmegaConf.select(record, "hydra.mode") == "MULTIRUN" and "image" in record
    except Exception:  # noqa: BLE001 -- not YAML, not a mapping: not ours
        return False


def binary_mask(mask: Image.Image) -> Image.Image:
    """The mask as the model sees it: white where it repaints (value > 127.5), black elsewhere."""
    return mask.convert("L").point(lambda v: 255 if v >= 128 else 0)


def draw_grid(
    source: Image.Image,
    mask: Image.Image,
    exemplar: Image.Image,
    results: Sequence[Image.Image],
    labels: bool = True,
) -> Image.Image:
    """One row per result: source | mask (white = repaint) | exemplar (row height, aspect kept) | result."""
    if not results:
        raise ValueError("results: need at least one result image for the grid")
    height = source.height
    exemplar_width = max(1, round(exemplar.width * height / exemplar.height))
    cells = [
        source.convert("RGB"),
        binary_mask(mask).convert("RGB"),
        exemplar.convert("RGB").resize((exemplar_width, height), Image.Resampling.LANCZOS),
    ]
    widths = [c.width for c in cells] + [source.width]
    top = LABEL_HEIGHT if labels else 0
    grid = Image.new(
        "RGB",
        (
            sum(widths) + GRID_GAP * (len(widths) - 1),
            top + len(results) * height + GRID_GAP * (len(results) - 1),
        ),
        "white",
    )
    lefts = [sum(widths[:i]) + GRID_GAP * i for i in range(len(widths))]
    if labels:
        draw = ImageDraw.Draw(grid)
        for left, text in zip(lefts, GRID_LABELS, strict=True):
            draw.text((left + 1, 1), text, fill=(0, 0, 0))
    for row, result in enumerate(results):
        y = top + row * (height + GRID_GAP)
        for left, cell in zip(lefts, [*cells, result.convert("RGB")], strict=True):
            grid.paste(cell, (left, y))
    return grid


# ----------------------------------------------------------------------------------------------- sweeps


QUOTING_HINT = (
    "a value with characters the command line does not take bare (brackets, '=', quotes) goes in quotes inside "
    "the shell's: key=\"'my (1).png'\""
)


def quote_paths(argv: Sequence[str], keys: Sequence[str] = (*PATH_KEYS, "out")) -> list[str]:
    """Paths Hydra's override grammar cannot read bare (non-ASCII letters, ``=``, brackets), quoted for it:
    ``image=chät.png`` -> ``image='chät.png'``. Values that parse, and sweeps (a comma), are left as they are."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parser = OverridesParser.create()
    quoted = []
    for arg in argv:
        key, sep, value = arg.partition("=")
        if sep and key in keys and value and "," not in value and value[0] not in "'\"":
            try:
                parser.parse_override(arg)
            except Exception:  # noqa: BLE001 -- Hydra raises several kinds; quoting is the cure for all
                quote = "'" if "'" not in value else '"' if '"' not in value else None
                if quote is not None:
                    arg = f"{key}={quote}{value}{quote}"
        quoted.append(arg)
    return quoted


def _name_part(key: str, value) -> str:
    if key in PATH_KEYS or key == "out":
        value = Path(str(value)).stem
    text = "".join(c if c.isalnum() or c in ".-" else "-" for c in str(value))
    return f"{key}{text}" if text[:1].isdigit() or text[:1] == "-" else f"{key}-{text}"


def sweep_suffix(keys: Sequence[str], values: Mapping, job_number: int | None = None) -> str:
    """The swept values for a file name: ``seed1``, ``seed1_sampler-ddim``; ``job3`` if no key is known."""
    parts = [_name_part(k, values.get(k)) for k in keys if k in values]
    if not parts:
        return f"job{job_number}" if job_number is not None else ""
    return "_".join(parts)


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
                inputs = load_inputs(args)
                outputs = output_paths(args, sweep_suffix(keys, values, number) if multirun else "")
                check_outputs(args, outputs, inputs)
                check_against_checkpoint(args, inputs)
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


def _config_comments(config_file: Path) -> dict[str, str]:
    comments = {}
    for line in config_file.read_text().splitlines():
        if line[:1].isalpha() and ":" in line and "#" in line:
            comments[line.split(":", 1)[0].strip()] = line.split("#", 1)[1].strip()
    return comments


def usage(config_file: Path = CONFIG_DIR / "sample.yaml") -> str:
    """sample.py --help: every option with its default and a one-line description (from configs/sample.yaml)."""
    defaults = OmegaConf.to_container(OmegaConf.load(config_file), resolve=False)
    comments = _config_comments(config_file)
    lines = [
        "usage: python sample.py weights=PATH image=PATH mask=PATH|auto example=PATH [key=value ...]",
        "       python sample.py -m weights=PATH image=PATH mask=PATH example=PATH seed=1,2,3 [key=a,b ...]",
        "",
        "Paints the exemplar into the white region of the mask and writes the result and a grid (source | mask |",
        "exemplar | result). Every argument is checked before the weights load; existing files are kept unless",
        "overwrite=true, and an output never replaces an input.",
        "",
        "required:",
    ]
    for key in REQUIRED:
        lines.append(f"  {key + '=...':<24} {comments.get(key, REQUIRED[key])}")
    lines += ["", "options (default):"]
    for f in fields(SampleArgs):
        if f.name in REQUIRED:
            continue
        value = defaults.get(f.name, f.default)
        shown = "null" if value is None else str(value).lower() if isinstance(value, bool) else str(value)
        lines.append(f"  {f.name + '=' + shown:<24} {comments.get(f.name, '')}".rstrip())
    lines += [
        "",
        "sweeps (-m before or after all key=value arguments, not between them):",
        "  key=a,b,c or key=range(1,4) runs one job per value, every combination of the swept keys; e.g.",
        "  python sample.py -m ... seed=1,2 sampler=ddim,plms writes result_seed1_sampler-ddim.png, ... and",
        "  multirun.yaml beside them. Every job (arguments, inputs, output names) is checked before the first runs.",
        "",
        "Hydra's own help: python sample.py --hydra-help",
    ]
    return "\n".join(lines)


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


def check_against_checkpoint(args: SampleArgs, inputs: Inputs) -> None:
    """What depends on the checkpoint, checked before a model is built from it: the step count its schedule can
    run with the sampler, and an image of at least one latent pixel."""
    from pbe.diffusion import check_steps_for

    ckpt = read_checkpoint(args.weights)
    check_steps_for(ckpt.scheduler, args.sampler, args.steps)
    vae_scale = ckpt.config.vae.downsample_factor
    w, h = inputs.image.size
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

    from pbe.checkpoints.formats import DTYPES
    from pbe.pipeline import PaintByExamplePipeline, auto_padding_mask_crop

    inputs = load_inputs(args)
    outputs = output_paths(args, suffix)
    check_outputs(args, outputs, inputs)
    device = resolve_device(args.device)
    dtype = DTYPES[args.dtype]
    warn_if_large(args, inputs)
    _note(args, f"loading weights from {args.weights} ...")
    start = time.perf_counter()
    check_against_checkpoint(args, inputs)
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


def config_values(cfg) -> dict:
    """A Hydra / OmegaConf config as a plain dict, with unset required values (``???``) as None."""
    values = OmegaConf.to_container(cfg, resolve=True)
    return {key: None if OmegaConf.is_missing(cfg, key) else value for key, value in values.items()}


def run_hydra_job(cfg, argv: Sequence[str] | None = None) -> Outputs:
    """The body of sample.py's Hydra main: in a ``-m`` sweep each job's files carry its swept values."""
    import sys

    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    values = config_values(cfg)
    args = parse_args(values)
    suffix = ""
    if HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN:
        keys = swept_keys(sys.argv[1:] if argv is None else argv)
        suffix = sweep_suffix(keys, values, HydraConfig.get().job.num)
    return run(args, suffix)
