"""Read and write Paint-by-Example checkpoints in any layout: detect which one a path holds and hand it on.

- `ldm`: the authors' `model.ckpt` (or a .safetensors with the same keys), architecture inferred from shapes
  (`ldm_layout`);
- `diffusers`: a `PaintByExamplePipeline` folder, `model_index.json` and per-component config and weights
  (`diffusers_layout`);
- `native`: pbe's own folder, `pbe_config.json` + `model.safetensors` with native names (`native`);
- `lightning`, read only: a pbe training run's `.ckpt` (`lightning_ckpt`).

Everything is read into a `Checkpoint` (`checkpoint`). Tensors stay memory-mapped where the file allows, and writers
stream them, so converting never holds two copies. The names the layout modules define are importable from here too.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch

from pbe.checkpoints.checkpoint import (
    DTYPES,
    FORMATS,
    Checkpoint,
    Format,
    apply_overrides,
    config_from_dict,
    config_to_dict,
    expected_state,
    load_config_file,
    parameter_counts,
    prefixed,
)
from pbe.checkpoints.diffusers_layout import (
    DIFFUSERS_COMPONENTS,
    encoder_config_from_diffusers,
    read_diffusers,
    unet_config_from_diffusers,
    vae_config_from_diffusers,
    write_diffusers,
)
from pbe.checkpoints.layout_io import cast_meta, unreadable_as_checkpoint_error
from pbe.checkpoints.ldm_layout import (
    LDM_COMPONENTS,
    LDM_CONFIG_KEY,
    LDM_INFERRED_CONFIG,
    LDM_SCHEDULER_KEY,
    config_from_ldm,
    describe_ldm,
    ldm_component,
    read_ldm,
    stored_config,
    stored_scheduler,
    write_ldm,
)
from pbe.checkpoints.ldm_schedule import (
    LDM_SCHEDULE_BUFFERS,
    betas_from_scheduler,
    ldm_schedule_buffers,
    same_betas,
    scheduler_from_betas,
)
from pbe.checkpoints.lightning_ckpt import is_lightning_checkpoint, read_lightning
from pbe.checkpoints.native import (
    NATIVE_COMPONENTS,
    NATIVE_CONFIG,
    NATIVE_WEIGHTS,
    native_component,
    read_native,
    set_train_resolution,
    write_native,
)
from pbe.checkpoints.tensor_io import CheckpointError, atomic_path

__all__ = [
    "check_weights",
    "DIFFUSERS_COMPONENTS",
    "DTYPES",
    "FORMATS",
    "LDM_COMPONENTS",
    "LDM_CONFIG_KEY",
    "LDM_INFERRED_CONFIG",
    "LDM_SCHEDULER_KEY",
    "LDM_SCHEDULE_BUFFERS",
    "NATIVE_COMPONENTS",
    "NATIVE_CONFIG",
    "NATIVE_WEIGHTS",
    "Checkpoint",
    "Format",
    "apply_overrides",
    "betas_from_scheduler",
    "cast_meta",
    "config_from_dict",
    "config_from_ldm",
    "config_to_dict",
    "describe_ldm",
    "detect_format",
    "encoder_config_from_diffusers",
    "expected_state",
    "ldm_component",
    "ldm_schedule_buffers",
    "load_checkpoint",
    "load_config_file",
    "native_component",
    "parameter_counts",
    "prefixed",
    "read_diffusers",
    "read_ldm",
    "read_native",
    "same_betas",
    "save_checkpoint",
    "scheduler_from_betas",
    "set_train_resolution",
    "stored_config",
    "stored_scheduler",
    "unet_config_from_diffusers",
    "unreadable_as_checkpoint_error",
    "vae_config_from_diffusers",
    "write_diffusers",
    "write_ldm",
    "write_native",
]


def detect_format(path: str | Path) -> Format:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    if path.is_dir():
        if (path / NATIVE_CONFIG).is_file():
            return "native"
        if (path / "model_index.json").is_file():
            return "diffusers"
        raise CheckpointError(
            f"{path}: a folder without {NATIVE_CONFIG} (pbe format) or model_index.json (diffusers format)"
        )
    if is_lightning_checkpoint(path):  # a pbe training run's .ckpt (read only)
        return "lightning"
    return "ldm"


def check_weights(path: Path) -> None:
    """The `weights=` argument of sample.py and the app: the path exists and looks like a layout pbe reads (no
    weights are read)."""
    if not path.exists():
        raise FileNotFoundError(
            f"weights: {path} does not exist; pass weights=PATH to the authors' model.ckpt, a diffusers folder "
            "(huggingface-cli download Fantasy-Studio/Paint-by-Example --local-dir PATH) or a pbe folder"
        )
    try:
        detect_format(path)
    except ValueError as e:
        raise ValueError(f"weights: {e}") from None


def load_checkpoint(path: str | Path, overrides: Mapping | None = None) -> Checkpoint:
    """Read any supported layout. `overrides`: partial config for what shapes cannot tell (e.g. heads).

    Raises FileNotFoundError for a missing path or file, and CheckpointError (a ValueError) naming the file
    for anything that is not a readable Paint-by-Example checkpoint."""
    fmt = detect_format(path)
    if fmt == "lightning":
        return read_lightning(Path(path), overrides)
    reader = {"native": read_native, "diffusers": read_diffusers, "ldm": read_ldm}[fmt]
    with unreadable_as_checkpoint_error(path):
        return reader(Path(path), overrides)


def save_checkpoint(
    ckpt: Checkpoint,
    dst: str | Path,
    to: Format,
    dtype: torch.dtype | None = None,
    overwrite: bool = False,
    progress: bool = True,
    src: str | Path | None = None,
) -> list[Path]:
    """Write `ckpt` in format `to` at `dst`, atomically: on any failure nothing is left at `dst`.

    An existing `dst` is replaced only with `overwrite` and only if it is a checkpoint pbe wrote (a folder in
    the native or diffusers layout, or one checkpoint file), never `src` (the checkpoint read) or a folder
    holding it, nor the working directory (`tensor_io.check_replaceable`). Returns the files written.
    """
    if to not in FORMATS:
        raise ValueError(f"to={to!r}; expected one of {FORMATS}")
    dst = Path(dst)
    if to == "ldm" and dst.suffix not in (".ckpt", ".safetensors"):
        raise ValueError(
            f"DST {dst}: an original-layout checkpoint is one file ending in .ckpt or .safetensors"
        )
    with atomic_path(dst, overwrite=overwrite, src=src) as tmp:
        if to == "ldm":
            write_ldm(ckpt, tmp, dtype, progress, safetensors=dst.suffix == ".safetensors")
            return [dst]
        writer = write_native if to == "native" else write_diffusers
        files = writer(ckpt, tmp, dtype, progress)
    return [dst / f.relative_to(tmp) for f in files]
