"""Read and write pbe's own checkpoint layout: a folder holding `pbe_config.json` and `model.safetensors`.

`pbe_config.json` records the full model config, the scheduler config, how the CLIP tower was stored when the
weights came from a diffusers folder, and (optionally) the pixel size the model was trained at; `model.safetensors`
holds the weights under their native names (unet.*, vae.*, encoder.*), so no key map is needed.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import torch

from pbe.checkpoints.checkpoint import (
    Checkpoint,
    apply_overrides,
    checked_train_resolution,
    config_from_dict,
    config_to_dict,
    expected_state,
)
from pbe.checkpoints.infer import check_finite, check_state
from pbe.checkpoints.layout_io import config_errors, read_json, stream
from pbe.checkpoints.tensor_io import CheckpointError, read_safetensors
from pbe.diffusion.scheduler_config import PAINT_BY_EXAMPLE_SCHEDULER

NATIVE_CONFIG = "pbe_config.json"
NATIVE_WEIGHTS = "model.safetensors"
NATIVE_COMPONENTS = {"unet": "UNet", "vae": "VAE", "encoder": "exemplar encoder"}  # native key prefix -> part


def native_component(name: str) -> str:
    """The part of the model a native tensor name (unet.*, vae.*, encoder.*) belongs to."""
    return NATIVE_COMPONENTS.get(name.split(".", 1)[0], "not part of the model")


def read_native(path: Path, overrides: Mapping | None = None) -> Checkpoint:
    config_file = path / NATIVE_CONFIG
    meta = read_json(config_file)
    if not isinstance(meta.get("model"), dict):
        raise CheckpointError(f"{config_file}: no 'model' section (a mapping with unet / vae / encoder)")
    with config_errors(config_file):
        config = config_from_dict(meta["model"])
    config = apply_overrides(config, overrides)
    with config_errors(config_file, overrides):
        expected = expected_state(config)
    if meta.get("scheduler") is not None and not isinstance(meta["scheduler"], dict):
        raise CheckpointError(f"{config_file}: 'scheduler' must be a mapping (a diffusers scheduler config)")
    weights = path / NATIVE_WEIGHTS
    if not weights.is_file():
        raise FileNotFoundError(f"{path}: missing {NATIVE_WEIGHTS}")
    state, _ = read_safetensors(weights)
    check_state(expected, state, f"{path} (pbe format)")
    check_finite(state, str(weights), native_component)
    resolution = checked_train_resolution(meta.get("train_resolution"), str(config_file))
    return Checkpoint(
        config,
        state,
        scheduler=meta.get("scheduler") or dict(PAINT_BY_EXAMPLE_SCHEDULER),
        format="native",
        vision_layout=meta.get("vision_layout", "transformers4"),
        train_resolution=resolution,
    )


def set_train_resolution(folder: Path, resolution: int) -> None:
    """Record ``resolution`` as ``train_resolution`` in a native folder's ``pbe_config.json`` (atomically)."""
    from pbe.files import write_json

    config_file = Path(folder) / NATIVE_CONFIG
    meta = read_json(config_file)
    meta["train_resolution"] = int(resolution)
    write_json(config_file, meta, overwrite=True)


def write_native(
    ckpt: Checkpoint, dst: Path, dtype: torch.dtype | None = None, progress: bool = True
) -> list[Path]:
    dst.mkdir(parents=True)
    meta = {
        "format": "pbe",
        "version": 1,
        "model": config_to_dict(ckpt.config),
        "scheduler": ckpt.scheduler,
        "vision_layout": ckpt.vision_layout,
    }
    if ckpt.train_resolution is not None:
        meta["train_resolution"] = int(ckpt.train_resolution)
    (dst / NATIVE_CONFIG).write_text(json.dumps(meta, indent=2) + "\n")
    stream(dst / NATIVE_WEIGHTS, ckpt.state, dtype, progress, {"format": "pt"})
    return [dst / NATIVE_CONFIG, dst / NATIVE_WEIGHTS]
