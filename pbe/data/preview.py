"""Draw a grid of training samples: ``python -m pbe.data.preview data=<config> n=16 out=preview.png``.

Each sample is four cells: the image with the chosen box in red, the mask (white = keep, black = edit), the
masked image, and the exemplar (CLIP normalisation undone). Any Hydra override of the data config works, for
example ``data=jsonl data.source.manifest=photos.jsonl`` or ``data/augment=rect_mask_only``.

Bad arguments end in one ``error: ...`` line (exit code 1) before any sample is drawn. An existing ``out`` is replaced
only with ``overwrite=true``, never when it is one of the data's own files; the grid is written atomically.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import hydra
import torch
from omegaconf import DictConfig, OmegaConf
from PIL import Image, ImageDraw
from torchvision.transforms.v2 import functional as TF
from tqdm import tqdm

from pbe.data.augment import CLIP_MEAN, CLIP_STD
from pbe.data.dataset import ExemplarEditDataset, build_dataset
from pbe.data.objects import MANIFEST, ObjectsSource, read_manifest
from pbe.data.sources import CocoSource, JsonlSource, OpenImagesSource
from pbe.data.synthetic import SyntheticSource
from pbe.files import check_folder_writable, check_new_file, write_file

CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs"  # absolute: works under -m and when imported
GAP = 2  # pixels between the cells of one sample
SAMPLE_GAP = 10  # pixels between samples
OUTPUT_FORMATS = {
    ".png": "PNG",
    ".jpg": "JPEG",
    ".jpeg": "JPEG",
    ".webp": "WEBP",
    ".bmp": "BMP",
    ".tif": "TIFF",
    ".tiff": "TIFF",
}
# FileNotFoundError, FileExistsError, a full disk: a message, not a traceback
BAD_INPUT = (ValueError, OSError)
SOURCE_FILE_KEYS = ("manifest", "annotations", "box_csv", "class_names")  # data.source options naming files


def to_cell(image: torch.Tensor, cell: int) -> Image.Image:
    """Float (3, H, W) in [0, 1] -> a ``cell x cell`` RGB image."""
    small = TF.resize(image.clamp(0, 1), [cell, cell], antialias=True)
    return Image.fromarray((small * 255).round().byte().permute(1, 2, 0).numpy())


def sample_cells(sample: dict, cell: int) -> list[Image.Image]:
    """The four preview cells of one sample: image with box, mask, masked image, exemplar."""
    size = sample["image"].shape[-1]
    image = to_cell((sample["image"] + 1) / 2, cell)
    box = (sample["box"] * cell / size).tolist()
    ImageDraw.Draw(image).rectangle(box, outline=(255, 0, 0), width=max(1, cell // 64))
    mask = to_cell(sample["mask"].expand(3, -1, -1), cell)
    masked = to_cell((sample["masked_image"] + 1) / 2, cell)
    exemplar = sample["exemplar"] * torch.tensor(CLIP_STD).view(3, 1, 1) + torch.tensor(CLIP_MEAN).view(
        3, 1, 1
    )
    return [image, mask, masked, to_cell(exemplar, cell)]


def render_grid(dataset, n: int, cell: int = 128, per_row: int = 4, progress: bool = True) -> Image.Image:
    """Samples ``0 .. n-1`` of ``dataset`` laid out ``per_row`` to a row, four cells each."""
    if n < 1 or cell < 8 or per_row < 1:
        raise ValueError(f"n, cell and per_row must be >= 1, >= 8 and >= 1, got {n}, {cell}, {per_row}")
    n = min(n, len(dataset))
    per_row = min(per_row, n)
    sample_width = 4 * cell + 3 * GAP
    rows = math.ceil(n / per_row)
    grid = Image.new(
        "RGB",
        (per_row * sample_width + (per_row - 1) * SAMPLE_GAP, rows * cell + (rows - 1) * SAMPLE_GAP),
        "white",
    )
    for i in tqdm(range(n), desc="preview", disable=not progress):
        left = (i % per_row) * (sample_width + SAMPLE_GAP)
        top = (i // per_row) * (cell + SAMPLE_GAP)
        for j, image in enumerate(sample_cells(dataset[i], cell)):
            grid.paste(image, (left + j * (cell + GAP), top))
    return grid


@dataclass
class PreviewArgs:
    n: int
    cell: int
    per_row: int
    out: Path
    overwrite: bool
    progress: bool


def _integer(values: Mapping, name: str, low: int) -> int:
    value = values[name]
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    return value


def _flag(values: Mapping, name: str) -> bool:
    if not isinstance(values[name], bool):
        raise ValueError(f"{name} must be true or false, got {values[name]!r}")
    return values[name]


def output_format(out: Path) -> str:
    """The image format `out`'s extension names."""
    fmt = OUTPUT_FORMATS.get(out.suffix.lower())
    if fmt is None:
        raise ValueError(f"out must name an image file ({', '.join(OUTPUT_FORMATS)}), got {str(out)!r}")
    return fmt


def parse_args(cfg: DictConfig) -> PreviewArgs:
    """Check the options before any data is read: sizes, an image extension, a writable folder, and an existing
    out only with overwrite=true."""
    values = OmegaConf.to_container(cfg, resolve=True)
    values.pop("data", None)
    values = {"overwrite": False, "progress": True, **values}
    if not values.get("out") or not isinstance(values["out"], str):
        raise ValueError(f"out must name an image file, e.g. out=preview.png; got {values.get('out')!r}")
    args = PreviewArgs(
        n=_integer(values, "n", 1),
        cell=_integer(values, "cell", 8),
        per_row=_integer(values, "per_row", 1),
        out=Path(values["out"]).expanduser(),
        overwrite=_flag(values, "overwrite"),
        progress=_flag(values, "progress"),
    )
    output_format(args.out)
    check_folder_writable(args.out.parent)
    check_new_file(args.out, overwrite=args.overwrite)
    return args


def source_files(source) -> Iterator[Path]:
    """The image files a data source reads."""
    if isinstance(source, JsonlSource):
        yield from (path for path, _, _ in source.entries)
    elif isinstance(source, CocoSource):
        yield from (source.image_dir / name for name, *_ in source.entries)
    elif isinstance(source, OpenImagesSource):
        yield from (source.image_dir / f"{image_id}{source.image_ext}" for image_id in source.image_ids)
    elif isinstance(source, SyntheticSource):
        yield from source.backgrounds
    elif isinstance(source, ObjectsSource):  # every file of the fetched folder, held-out ones too
        manifest = read_manifest(source.root)
        yield source.root / MANIFEST
        yield from (source.root / entry.path for entry in [*manifest.objects, *manifest.backgrounds])


def data_files(data_cfg: DictConfig, dataset: ExemplarEditDataset) -> list[Path]:
    """Every file the data config reads: its manifest / annotation / CSV files and its source's images."""
    source_cfg = OmegaConf.to_container(data_cfg, resolve=True).get("source") or {}
    named = []
    for key in SOURCE_FILE_KEYS:
        value = source_cfg.get(key)
        named += value if isinstance(value, list) else [value] if value else []
    return [Path(p).expanduser() for p in named] + list(source_files(dataset.source))


def preview(cfg: DictConfig) -> None:
    """Check the options, build the dataset, draw the grid and write it (atomically; never over a data file)."""
    args = parse_args(cfg)
    dataset = build_dataset(cfg.data)
    # an out that does not exist yet cannot be an input: look the data's files up only when it does
    inputs = data_files(cfg.data, dataset) if args.out.exists() else []
    check_new_file(args.out, overwrite=args.overwrite, inputs=inputs)
    grid = render_grid(dataset, args.n, args.cell, args.per_row, progress=args.progress)
    write_file(
        args.out,
        partial(grid.save, format=output_format(args.out), optimize=True),
        overwrite=args.overwrite,
        inputs=inputs,
    )
    print(
        f"wrote {args.out}: {min(args.n, len(dataset))} samples, {dataset.skipped} skipped, grid {grid.size}"
    )


def fail(message: str, code: int = 1):
    print(message, file=sys.stderr)
    sys.exit(code)


@hydra.main(version_base=None, config_path=str(CONFIG_DIR), config_name="preview")
def main(cfg: DictConfig) -> None:
    try:
        preview(cfg)
    except BAD_INPUT as e:
        fail(f"error: {e}")
    except KeyboardInterrupt:
        fail("interrupted: no output was written", 130)


if __name__ == "__main__":
    main()
