"""Draw a grid of training samples: ``python -m pbe.data.preview data=<config> n=16 out=preview.png``.

Each sample is four cells: the image with the chosen box in red, the mask (white = keep, black = edit), the
masked image, and the exemplar (CLIP normalisation undone). Any Hydra override of the data config works, for
example ``data=jsonl data.source.manifest=photos.jsonl`` or ``data/augment=rect_mask_only``.
"""

from __future__ import annotations

import math
from pathlib import Path

import hydra
import torch
from omegaconf import DictConfig
from PIL import Image, ImageDraw
from torchvision.transforms.v2 import functional as TF
from tqdm import tqdm

from pbe.data.augment import CLIP_MEAN, CLIP_STD
from pbe.data.dataset import build_dataset

CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs"  # absolute: works under -m and when imported
GAP = 2  # pixels between the cells of one sample
SAMPLE_GAP = 10  # pixels between samples


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


@hydra.main(version_base=None, config_path=str(CONFIG_DIR), config_name="preview")
def main(cfg: DictConfig) -> None:
    if cfg.n < 1 or cfg.cell < 8 or cfg.per_row < 1:
        raise ValueError(
            f"n, cell and per_row must be >= 1, >= 8 and >= 1, got {cfg.n}, {cfg.cell}, {cfg.per_row}"
        )
    dataset = build_dataset(cfg.data)
    grid = render_grid(dataset, cfg.n, cfg.cell, cfg.per_row, progress=cfg.progress)
    grid.save(cfg.out, optimize=True)
    print(f"wrote {cfg.out}: {min(cfg.n, len(dataset))} samples, {dataset.skipped} skipped, grid {grid.size}")


if __name__ == "__main__":
    main()
