"""Training callbacks: sample grids, throughput, and the epoch handed to the dataset.

(The non-finite loss guard lives in `PaintByExampleModule.training_step`, which must return None to skip a step.)
"""

from __future__ import annotations

import time
from pathlib import Path

import lightning as L
import torch
import torch.nn.functional as F
from PIL import Image

from pbe.edit_grid import tile_grid
from pbe.files import write_file
from pbe.models.clip_vision import CLIP_MEAN, CLIP_STD


class DatasetEpoch(L.Callback):
    """Tell the dataset the epoch at the start of every epoch (its augmentations depend on it).

    The loader's sampler does this too, before the epoch's iterator is made; this keeps datasets reached some other
    way (e.g. a user's own loader) in step."""

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        loader = trainer.train_dataloader
        dataset = getattr(loader, "dataset", None)
        if hasattr(dataset, "set_epoch") and getattr(dataset, "epoch", None) != trainer.current_epoch:
            dataset.set_epoch(trainer.current_epoch)


class Throughput(L.Callback):
    """Logs train/samples_per_s (global: all devices) and train/images_per_s (scene images + exemplars read)."""

    def __init__(self):
        self.start = None

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.start = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self.start is None:
            return
        seconds = max(time.perf_counter() - self.start, 1e-9)
        samples = batch["image"].shape[0] * trainer.world_size
        pl_module.log("train/samples_per_s", samples / seconds)
        pl_module.log("train/images_per_s", 2 * samples / seconds)


def to_unit(images: torch.Tensor) -> torch.Tensor:
    return ((images.float() + 1) / 2).clamp(0, 1)


def exemplar_pixels(exemplar: torch.Tensor) -> torch.Tensor:
    mean = torch.tensor(CLIP_MEAN, device=exemplar.device)[:, None, None]
    std = torch.tensor(CLIP_STD, device=exemplar.device)[:, None, None]
    return (exemplar.float() * std + mean).clamp(0, 1)


def grid_image(batch: dict, results: torch.Tensor) -> Image.Image:
    """One row per item: source | mask (white = repaint) | exemplar | result, 2 white pixels around every cell."""
    source = to_unit(batch["image"]).cpu()
    size = source.shape[-2:]
    repaint = (1 - batch["mask"].float()).clamp(0, 1).expand(-1, 3, -1, -1).cpu()
    exemplar = F.interpolate(
        exemplar_pixels(batch["exemplar"]).cpu(), size=size, mode="bilinear", antialias=True
    )
    result = to_unit(results).cpu()
    columns = [source, repaint, exemplar.clamp(0, 1), result]
    rows = [[c[i].permute(1, 2, 0).numpy() for c in columns] for i in range(len(source))]
    return tile_grid(rows, gap=2, margin=2)


class SampleGrid(L.Callback):
    """Every `every_n_steps` optimizer steps (and at the end): edit fixed items with a fixed seed and write
    `<run_dir>/samples/step_XXXXXXX.png`, also to the logger when it takes images (wandb)."""

    def __init__(
        self,
        out_dir: str | Path,
        every_n_steps: int = 1000,
        num_items: int = 4,
        steps: int = 20,
        guidance: float = 5.0,
        seed: int = 0,
    ):
        if every_n_steps < 1:
            raise ValueError(f"callbacks.sample_grid.every_n_steps must be >= 1, got {every_n_steps}")
        self.out_dir = Path(out_dir)
        self.every_n_steps, self.num_items, self.steps = every_n_steps, num_items, steps
        self.guidance, self.seed = guidance, seed
        self.items = None
        self.last_step = -1
        self.written: list[Path] = []

    def on_fit_start(self, trainer, pl_module) -> None:
        datamodule = trainer.datamodule
        if datamodule is not None and hasattr(datamodule, "fixed_items"):
            self.items = datamodule.fixed_items(self.num_items)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        step = trainer.global_step
        if step > 0 and step % self.every_n_steps == 0 and step != self.last_step:
            self.write(trainer, pl_module)

    def on_train_end(self, trainer, pl_module) -> None:
        if trainer.global_step != self.last_step:
            self.write(trainer, pl_module)

    def write(self, trainer, pl_module) -> None:
        if self.items is None:
            return
        self.last_step = trainer.global_step
        results = pl_module.generate(self.items, steps=self.steps, guidance=self.guidance, seed=self.seed)
        if not trainer.is_global_zero:  # every rank samples (sharded weights need all of them); rank 0 writes
            return
        image = grid_image(self.items, results)
        path = self.out_dir / f"step_{trainer.global_step:07d}.png"
        write_file(path, image, overwrite=True)  # the run's own folder; a resumed run redraws its step
        self.written.append(path)
        for logger in trainer.loggers:
            if hasattr(logger, "log_image"):
                logger.log_image("samples", [image], step=trainer.global_step, caption=[path.name])
