"""Training data for Lightning: the `pbe.data` datasets behind a resumable, rank-aware loader.

Order: each epoch is a permutation of the dataset drawn from (seed, epoch). Global step s takes the positions
[s * G, (s + 1) * G) of that permutation (G = batch size x world size) and rank r the r-th slice of it, so a run on
N devices sees exactly the samples a single-device run with an N-times larger batch sees, in the same order.
The epoch is passed to the dataset (whose augmentations are a function of seed, epoch and index) before each
epoch's iterator is made. The loader's state (epoch, batches consumed) is saved in Lightning checkpoints, so a run
resumed mid-epoch continues with the next unseen batch.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import lightning as L
import torch
from torch.utils.data import DataLoader, Sampler

from pbe.data import build_dataset

BATCH_KEYS = ("image", "mask", "masked_image", "exemplar")
OPTIONAL_BATCH_KEYS = ("noisy_image", "recoloured")  # data.augment.recolour_p > 0


@dataclass
class LoaderConfig:
    batch_size: int = 4  # per device
    num_workers: int = 2
    shuffle: bool = True
    drop_last: bool = True
    pin_memory: bool = False
    global_batch_size: int | None = None  # if set: batch_size = global / (devices x nodes x accumulation)

    def __post_init__(self):
        if not (isinstance(self.batch_size, int) and self.batch_size >= 1):
            raise ValueError(f"loader.batch_size must be an integer >= 1, got {self.batch_size!r}")
        if not (isinstance(self.num_workers, int) and self.num_workers >= 0):
            raise ValueError(f"loader.num_workers must be an integer >= 0, got {self.num_workers!r}")


def per_device_batch(loader: LoaderConfig, world_size: int, accumulate: int = 1) -> int:
    """The per-device batch size; with `global_batch_size` set it must divide evenly."""
    if loader.global_batch_size is None:
        return loader.batch_size
    parts = world_size * accumulate
    if loader.global_batch_size % parts:
        raise ValueError(
            f"loader.global_batch_size={loader.global_batch_size} does not divide over {world_size} device(s) x "
            f"{accumulate} accumulation step(s); pick a multiple of {parts}"
        )
    return loader.global_batch_size // parts


def collate(samples: list[dict]) -> dict:
    """Stack the tensors the model needs; keep the dataset index (for debugging) and drop the rest of meta."""
    keys = BATCH_KEYS + tuple(k for k in OPTIONAL_BATCH_KEYS if k in samples[0])
    batch = {k: torch.stack([s[k] for s in samples]) for k in keys}
    batch["index"] = torch.tensor([s["meta"]["index"] for s in samples])
    return batch


def one_thread_worker(worker_id: int) -> None:
    """DataLoader workers compute with one torch thread each (the training process keeps the cores)."""
    torch.set_num_threads(1)


class EpochSampler(Sampler[int]):
    """Deterministic per-epoch order, sharded by global step across ranks, resumable mid-epoch (module doc)."""

    def __init__(
        self,
        dataset,
        batch_size: int,
        rank: int = 0,
        world_size: int = 1,
        seed: int = 0,
        shuffle: bool = True,
    ):
        self.dataset, self.batch_size, self.rank, self.world_size = dataset, batch_size, rank, world_size
        self.seed, self.shuffle = seed, shuffle
        self.epoch = 0
        self.start_batch = 0  # batches of this epoch consumed before a resume
        self.consumed = 0  # batches of this epoch that entered a training step since (advanced by the module)
        global_batch = batch_size * world_size
        self.num_batches = len(dataset) // global_batch
        if self.num_batches == 0:
            raise ValueError(
                f"the dataset has {len(dataset)} samples, fewer than one global batch ({batch_size} x "
                f"{world_size} device(s) = {global_batch}); lower loader.batch_size or use more data"
            )

    def set_epoch(self, epoch: int) -> None:
        if epoch != self.epoch:
            self.start_batch = self.consumed = 0
        self.epoch = epoch
        if hasattr(self.dataset, "set_epoch"):
            self.dataset.set_epoch(epoch)

    def order(self) -> torch.Tensor:
        n = len(self.dataset)
        if not self.shuffle:
            return torch.arange(n)
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        return torch.randperm(n, generator=g)

    def __len__(self) -> int:  # the whole epoch, also when resuming (Lightning counts the consumed batches)
        return self.num_batches * self.batch_size

    def position(self) -> int:
        return self.start_batch + self.consumed

    def __iter__(self):
        order = self.order().tolist()
        b, gb = self.batch_size, self.batch_size * self.world_size
        for step in range(self.start_batch, self.num_batches):
            first = step * gb + self.rank * b
            yield from order[first : first + b]


class ResumableLoader(DataLoader):
    """A DataLoader whose (epoch, consumed batches) Lightning saves and restores (the `_Stateful` protocol).

    The sampler's `consumed` is advanced by the module for every batch that enters a training step."""

    def state_dict(self) -> dict:
        return {"epoch": int(self.sampler.epoch), "consumed": int(self.sampler.position())}

    def load_state_dict(self, state: dict) -> None:
        epoch, consumed = int(state["epoch"]), int(state["consumed"])
        if consumed >= self.sampler.num_batches:  # saved at the end of an epoch: continue with the next one
            epoch, consumed = epoch + 1, 0
        self.sampler.set_epoch(epoch)
        self.sampler.start_batch, self.sampler.consumed = consumed, 0


class ExemplarDataModule(L.LightningDataModule):
    """`pbe.data.build_dataset(data_cfg)` for training, plus a few fixed items for sample grids."""

    def __init__(self, data_cfg: Mapping, loader_cfg: Mapping | None = None, seed: int = 23):
        super().__init__()
        self.data_cfg = dict(data_cfg)
        try:
            self.loader_cfg = LoaderConfig(**dict(loader_cfg or {}))
        except TypeError as e:
            raise ValueError(f"loader: {e}") from None
        self.seed = seed
        self.dataset = None
        self.loader = None
        self.batch_size = self.loader_cfg.batch_size

    def prepare(self) -> None:
        """Build the dataset now (checks paths and keys before any training work)."""
        if self.dataset is None:
            self.dataset = build_dataset(self.data_cfg)

    def setup(self, stage: str | None = None) -> None:
        self.prepare()

    def world(self) -> tuple[int, int]:
        trainer = getattr(self, "trainer", None)
        if trainer is None:
            return 0, 1
        return trainer.global_rank, trainer.world_size

    def train_dataloader(self) -> ResumableLoader:
        self.prepare()
        rank, world_size = self.world()
        sampler = EpochSampler(
            self.dataset, self.batch_size, rank, world_size, seed=self.seed, shuffle=self.loader_cfg.shuffle
        )
        workers = self.loader_cfg.num_workers
        self.loader = ResumableLoader(
            self.dataset,
            batch_size=self.batch_size,
            sampler=sampler,
            num_workers=workers,
            collate_fn=collate,
            drop_last=True,
            pin_memory=self.loader_cfg.pin_memory,
            worker_init_fn=one_thread_worker if workers > 0 else None,
            persistent_workers=False,  # workers must see the dataset's new epoch
        )
        return self.loader

    def fixed_items(self, n: int) -> dict:
        """The first `n` samples of epoch 0 (the sample grid's validation items), as a batch."""
        self.prepare()
        n = min(n, len(self.dataset))
        saved = self.dataset.epoch
        self.dataset.set_epoch(0)
        try:
            return collate([self.dataset[i] for i in range(n)])
        finally:
            self.dataset.set_epoch(saved)
