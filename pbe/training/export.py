"""Export the trained weights of a Lightning training checkpoint to the native, diffusers or original layout."""

from __future__ import annotations

from pathlib import Path

import torch

from pbe.checkpoints.formats import FORMATS, save_checkpoint
from pbe.checkpoints.lightning_ckpt import read_lightning


def export_weights(
    lightning_ckpt_path: str | Path,
    dst: str | Path,
    to: str = "native",
    ema: bool = False,
    dtype: torch.dtype | None = None,
    overwrite: bool = False,
    progress: bool = False,
) -> list[Path]:
    """Write the model of `lightning_ckpt_path` (a pbe run's checkpoints/*.ckpt) to `dst` in layout `to`.

    `ema=True` exports the run's EMA of the trained weights instead of the raw ones. Returns the files written."""
    if to not in FORMATS:
        raise ValueError(f"to={to!r}; expected one of {FORMATS}")
    ckpt = read_lightning(Path(lightning_ckpt_path), ema=ema)
    return save_checkpoint(ckpt, dst, to, dtype=dtype, overwrite=overwrite, progress=progress)
