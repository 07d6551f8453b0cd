"""Shared plumbing of the recipes trained here (`pbe.recipes.small`, `pbe.recipes.objects`): config sections, an
endless batch stream over a seeded dataset, atomic safetensors writes, a clock per stage, the frozen parts, the
diffusion stage's config and the export of the trained model with its training resolution."""

from __future__ import annotations

import csv
import time
from collections.abc import Iterator
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

from pbe.checkpoints.formats import load_checkpoint, save_checkpoint, set_train_resolution
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


class StageClock:
    """Wall-clock and this process's CPU seconds per stage (CPU time says what the stage costs on a quiet machine)."""

    def __init__(self):
        self.rows: list[tuple[str, float, float]] = []

    def run(self, name: str, fn, *args):
        wall, cpu = time.perf_counter(), time.process_time()
        out = fn(*args)
        self.rows.append((name, time.perf_counter() - wall, time.process_time() - cpu))
        return out


def frozen_parts_from(folder: str | Path, out: Path) -> tuple[Path, Path]:
    """The autoencoder and vision-tower weights as `model.init` files: those of an earlier recipe run folder
    (`<run>/autoencoder/vae.safetensors`, `<run>/vision/vision.safetensors`), or extracted from a model folder."""
    folder = Path(folder)
    vae, vision = folder / "autoencoder" / "vae.safetensors", folder / "vision" / "vision.safetensors"
    if vae.is_file() and vision.is_file():
        return vae, vision
    ckpt = load_checkpoint(folder)
    out.mkdir(parents=True, exist_ok=True)
    parts = []
    for name, prefix in (("vae", "vae."), ("vision", "encoder.vision.")):
        state = {k[len(prefix) :]: v for k, v in ckpt.state.items() if k.startswith(prefix)}
        parts.append(save_tensors(out / f"{name}.safetensors", state, {"from": str(folder)}))
    return parts[0], parts[1]


def diffusion_config(cfg: dict, vae: Path, vision: Path) -> DictConfig:
    """The run's config for `train_diffusion`: the `small` section removed, the frozen parts as `model.init`."""
    c = {k: v for k, v in cfg.items() if k != "small"}
    c["stage"] = "diffusion"
    c["model"] = dict(c["model"])
    c["model"]["init"] = {**(c["model"].get("init") or {}), "vae": str(vae), "vision": str(vision)}
    return OmegaConf.create(c)


def export_run_checkpoint(lightning_ckpt: Path, dst: str | Path, vae: Path, vision: Path) -> list[Path]:
    """The run's weights in the native layout, with the autoencoder and vision tower exactly as their stages wrote
    them (float32), whatever dtype the diffusion stage held them in."""
    from pbe.checkpoints.lightning_ckpt import read_lightning

    ckpt = read_lightning(Path(lightning_ckpt))
    for prefix, path in (("vae.", vae), ("encoder.vision.", vision)):
        for key, value in load_tensors(path).items():
            if prefix + key not in ckpt.state:
                raise KeyError(f"{path}: {key!r} is not a weight of the trained model's {prefix[:-1]}")
            ckpt.state[prefix + key] = value
    return save_checkpoint(ckpt, dst, "native", overwrite=True, progress=False)


def stage_metric(path: Path, key: str) -> str:
    _, meta = read_safetensors(path)
    value = meta.get(key)
    return "-" if value is None else f"{float(value):.3g}"


def final_loss(run_dir: Path) -> str:
    """The mean of the last 50 logged training losses (<run>/csv/metrics.csv)."""
    path = run_dir / "csv" / "metrics.csv"
    if not path.is_file():
        return "-"
    with open(path) as f:
        rows = [r for r in csv.DictReader(f) if r.get("train/loss")]
    values = [float(r["train/loss"]) for r in rows[-50:]]
    return f"{sum(values) / len(values):.4f}" if values else "-"


def export_recipe_model(c: dict, run_dir: Path, vae: Path, vision: Path, export: str | None) -> Path:
    """The diffusion stage's last checkpoint in the native layout at `<run>/model` (and at ``export`` when set),
    with the training resolution (``data.augment.image_size``) in pbe_config.json; returns `<run>/model`."""
    last = Path(run_dir) / "checkpoints" / "last.ckpt"
    resolution = int(c["data"]["augment"]["image_size"])
    model_dir = Path(run_dir) / "model"
    for dst in [model_dir] + ([Path(export)] if export else []):
        export_run_checkpoint(last, dst, vae, vision)
        set_train_resolution(dst, resolution)
    return model_dir


def start_recipe(cfg, section: str, run_dir) -> tuple[dict, dict, Path, StageClock]:
    """A recipe's plain config, its ``section`` options (``small`` / ``objects``), the run folder and a stage clock;
    refuses an existing ``<section>.export`` without ``<section>.overwrite`` before any stage runs."""
    c = OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else dict(cfg)
    opts = c.get(section) or {}
    export = opts.get("export")
    if export and Path(export).exists() and not opts.get("overwrite"):
        raise FileExistsError(
            f"{section}.export={export} exists; pass {section}.overwrite=true to replace it"
        )
    torch.set_num_threads(max(1, torch.get_num_threads()))
    return c, opts, Path(run_dir), StageClock()
