"""Shared plumbing of the small model's pre-training stages (autoencoder, vision tower): config sections, an
endless batch stream over a seeded dataset, and atomic safetensors writes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

from pbe.checkpoints.tensor_io import atomic_path, read_safetensors, write_safetensors
from pbe.data import build_dataset


def as_config(cfg) -> DictConfig:
    return cfg if isinstance(cfg, DictConfig) else OmegaConf.create(cfg)


RECIPE_SECTIONS = ("small", "objects")  # the config sections of the recipes trained here


def stage_options(cfg: DictConfig, stage: str) -> dict:
    """``cfg.<recipe>.<stage>`` as a plain dict (steps, batch_size, lr, ...), the recipe being ``small`` or
    ``objects`` (whichever the config has); a clear error when it is missing."""
    config = as_config(cfg)
    found = [r for r in RECIPE_SECTIONS if OmegaConf.select(config, f"{r}.{stage}") is not None]
    if len(found) != 1:
        where = " and ".join(f"'{r}.{stage}'" for r in found) or f"no '<recipe>.{stage}' section"
        raise ValueError(
            f"stage={stage}: the config has {where} (steps, batch_size, lr; one of "
            f"{', '.join(RECIPE_SECTIONS)}); use experiment=small or experiment=objects, or give it as overrides"
        )
    return OmegaConf.to_container(OmegaConf.select(config, f"{found[0]}.{stage}"), resolve=True)


def model_section(cfg: DictConfig, section: str) -> dict:
    """``cfg.model.config.<section>`` (overrides of the dataclass defaults) as a plain dict."""
    node = OmegaConf.select(as_config(cfg), f"model.config.{section}")
    return {} if node is None else OmegaConf.to_container(node, resolve=True)


def dataset_for(cfg: DictConfig, seed_offset: int = 0, held_out: bool = False, images_only: bool = False):
    """The training dataset of ``cfg.data`` with its augmentation seed shifted (each stage sees other samples);
    ``held_out``: synthetic scenes of another seed too (for the stages' own held-out scores); ``images_only``: skip
    the exemplar augmentation and the recoloured copy (the images and masks stay the same: each stage of the data
    pipeline draws from its own generator), for a stage that uses only ``image`` and ``masked_image``."""
    data = OmegaConf.to_container(as_config(cfg).data, resolve=True)
    data["seed"] = int(data.get("seed", 0)) + seed_offset
    if images_only:
        data["augment"] = {**data.get("augment", {}), "exemplar_aug": False, "recolour_p": 0.0}
    if held_out and data["source"].get("kind") == "synthetic":
        data["source"]["seed"] = int(data["source"].get("seed", 0)) + 1_000_003
    return build_dataset(data)


def collate(samples: list[dict]) -> dict:
    """Stack the tensors of a list of samples; keep the labels (the rest of ``meta`` is not needed here)."""
    keys = ("image", "mask", "masked_image", "exemplar", "box")
    batch = {k: torch.stack([s[k] for s in samples]) for k in keys}
    batch["label"] = [s["meta"]["label"] for s in samples]
    return batch


def batches(dataset, batch_size: int, seed: int, num_workers: int = 0) -> Iterator[dict]:
    """Endless shuffled batches; every pass over the data is a new epoch (fresh augmentations)."""
    if not 1 <= batch_size <= len(dataset):
        raise ValueError(f"batch_size must be in [1, {len(dataset)}] (the dataset's size), got {batch_size}")
    epoch = 0
    while True:
        dataset.set_epoch(epoch)
        order = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(seed + epoch)).tolist()
        loader = torch.utils.data.DataLoader(
            torch.utils.data.Subset(dataset, order),
            batch_size=batch_size,
            num_workers=num_workers,
            collate_fn=collate,
            drop_last=True,
            worker_init_fn=lambda _: torch.set_num_threads(1),
        )
        yield from loader
        epoch += 1


def save_tensors(path: Path, state: dict[str, torch.Tensor], metadata: dict | None = None) -> Path:
    """Atomically write ``state`` (float32 copies) to a .safetensors file, replacing an earlier one of this run."""
    with atomic_path(path, overwrite=True) as tmp:
        write_safetensors(tmp, {k: v.detach().float() for k, v in state.items()}, metadata)
    return path


def load_tensors(path: str | Path) -> dict[str, torch.Tensor]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights file not found: {path}")
    state, _ = read_safetensors(path)
    return {k: v.clone() for k, v in state.items()}
