"""What sample.py writes: the output file names (with a sweep's values in them), that none replaces an existing file
unless asked, and a sweep's record (Hydra's multirun.yaml) beside them."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from omegaconf import OmegaConf

from pbe.sample_args import PATH_KEYS, SampleArgs

SWEEP_RECORD = "multirun.yaml"  # what Hydra writes beside a sweep's outputs
OUTPUT_SUFFIXES = (".png",)  # what sample.py writes, and so the only kind of file overwrite=true may replace


@dataclass
class Outputs:
    results: list[Path]
    grid: Path | None
    mask: Path | None  # the generated mask, written for mask=auto

    def all(self) -> list[Path]:
        return [*self.results, *(p for p in (self.grid, self.mask) if p is not None)]


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


def check_free(paths: Sequence[Path], overwrite: bool) -> None:
    """Refuse to replace existing files unless `overwrite`."""
    if overwrite:
        return
    taken = [str(p) for p in paths if p.exists()]
    if taken:
        raise FileExistsError(
            f"out: {', '.join(taken)} already exist(s); pass overwrite=true to replace, or choose another out="
        )


def input_paths(args: SampleArgs) -> list[Path]:
    return [p for p in (args.image, args.mask, args.example, args.weights) if p is not None]


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
