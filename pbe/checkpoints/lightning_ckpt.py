"""Read pbe's Lightning training checkpoints (`<run>/checkpoints/*.ckpt`) safely, for export and resume checks.

A fourth layout, read only: `read_lightning` turns one into a `Checkpoint` (as `load_checkpoint` does for any
`.ckpt` that `is_lightning_checkpoint` recognises); `read_lightning_checkpoint` also gives the step and the
hyperparameters.

The file is opened with `torch.load(weights_only=True)`: pbe's training module stores its hyperparameters, RNG
states and data position as plain containers and tensors, so nothing in it needs unpickling of code. The model's
weights sit under `state_dict` as `model.unet.*`, `model.vae.*`, `model.encoder.*`; an EMA of the trained weights, if
the run kept one, under `ema_weights.<name with . as __>`; the architecture under `hyper_parameters.pbe_config`.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

from pbe.checkpoints.checkpoint import (
    Checkpoint,
    apply_overrides,
    config_from_dict,
    expected_state,
)
from pbe.checkpoints.infer import check_finite, check_state
from pbe.checkpoints.native import native_component
from pbe.checkpoints.tensor_io import CheckpointError, read_pickle
from pbe.diffusion.scheduler_config import PAINT_BY_EXAMPLE_SCHEDULER

MODEL_PREFIX = "model."
EMA_PREFIX = "ema_weights."


def _load(path: Path) -> dict:
    obj = read_pickle(path)
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path}: not a Lightning checkpoint (no dict at the top level)")
    return obj


def is_lightning_checkpoint(path: str | Path) -> bool:
    """A .ckpt written by pbe's trainer. Looks at the pickle's bytes only (no unpickling, no tensor data read):
    Lightning's version key and pbe's `pbe_config` hyperparameter must both be there."""
    path = Path(path)
    if not (path.is_file() and path.suffix == ".ckpt" and zipfile.is_zipfile(path)):
        return False
    try:
        with zipfile.ZipFile(path) as archive:
            names = [n for n in archive.namelist() if n.endswith("/data.pkl") or n == "data.pkl"]
            if not names:
                return False
            info = archive.getinfo(names[0])
            if info.file_size > 256 * 2**20:
                return False
            data = archive.read(info)
    except (zipfile.BadZipFile, OSError):
        return False
    return b"pytorch-lightning_version" in data and b"pbe_config" in data


def read_lightning_checkpoint(path: str | Path, with_state: bool = True, ema: bool = False) -> dict:
    """{"config": PaintByExampleConfig, "state": native state dict, "global_step", "hyper_parameters"}.

    `ema=True` takes the trained weights from the run's EMA (an error if the run kept none)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Lightning checkpoint not found: {path}")
    obj = _load(path)
    hparams = obj.get("hyper_parameters") or {}
    if "pytorch-lightning_version" not in obj or "pbe_config" not in hparams:
        raise CheckpointError(
            f"{path}: not a pbe Lightning training checkpoint (no hyper_parameters.pbe_config)"
        )
    out = {
        "config": config_from_dict(hparams["pbe_config"]),
        "global_step": int(obj.get("global_step", 0)),
        "hyper_parameters": hparams,
    }
    if not with_state:
        return out
    full = obj.get("state_dict") or {}
    state = {k[len(MODEL_PREFIX) :]: v for k, v in full.items() if k.startswith(MODEL_PREFIX)}
    if ema:
        shadow = {
            k[len(EMA_PREFIX) :].replace("__", "."): v for k, v in full.items() if k.startswith(EMA_PREFIX)
        }
        if not shadow:
            raise CheckpointError(f"{path}: the run kept no EMA weights (ema.decay was not set)")
        state.update({k: v.to(state[k].dtype) for k, v in shadow.items()})
    out["state"] = state
    return out


def read_lightning(path: Path, overrides=None, ema: bool = False) -> Checkpoint:
    """A `Checkpoint` from a Lightning training checkpoint (what `load_checkpoint` reads a `.ckpt` of a run with)."""
    data = read_lightning_checkpoint(path, ema=ema)
    config = apply_overrides(data["config"], overrides)
    config.unet.gradient_checkpointing = False
    check_state(expected_state(config), data["state"], f"{path} (pbe Lightning checkpoint)")
    in_file = {MODEL_PREFIX + k: v for k, v in data["state"].items()}  # as named under state_dict
    where = f"{path} (EMA weights)" if ema else str(path)
    check_finite(in_file, where, lambda name: native_component(name[len(MODEL_PREFIX) :]))
    return Checkpoint(config, data["state"], scheduler=dict(PAINT_BY_EXAMPLE_SCHEDULER), format="lightning")
