"""File handling that the layout readers and writers share.

Reading: JSON files and model configs whose errors name the file they came from, and any other unexpected content
turned into a `CheckpointError` naming the checkpoint. Writing: a state dict streamed to .safetensors tensor by
tensor (cast on the way, with a progress bar), so converting never holds two copies of the weights.
"""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import contextmanager
from pathlib import Path

import torch
from tqdm import tqdm

from pbe.checkpoints.tensor_io import CheckpointError, cast_dtype, total_bytes, write_safetensors
from pbe.diffusion.scheduler_config import read_json_object


def read_json(path: Path) -> dict:
    """A JSON object from `path`; CheckpointError naming the file when it is not one."""
    if not path.is_file():
        raise FileNotFoundError(f"missing {path}")
    return read_json_object(path, CheckpointError)


@contextmanager
def config_errors(config_file: Path | str, overrides: Mapping | None = None):
    """Turn a config that builds no model (wrong types, impossible values) into an error naming its file."""
    try:
        yield
    except (KeyError, IndexError, TypeError, AttributeError, ValueError, RuntimeError) as e:
        if isinstance(e, CheckpointError) and str(config_file) in str(e):
            raise
        also = " (with the --config overrides)" if overrides else ""
        detail = f"missing key {e}" if isinstance(e, KeyError) else f"{type(e).__name__}: {str(e)[:300]}"
        raise CheckpointError(f"{config_file}: invalid model config{also}: {detail}") from None


@contextmanager
def unreadable_as_checkpoint_error(path: str | Path):
    """Contents of an unexpected shape that no explicit check caught end as CheckpointError naming `path`."""
    try:
        yield
    except (KeyError, IndexError, TypeError, AttributeError, RuntimeError, UnicodeDecodeError) as e:
        raise CheckpointError(
            f"{path}: not a readable Paint-by-Example checkpoint ({type(e).__name__}: {str(e)[:300]})"
        ) from None


def stream(
    path: Path, state: Mapping[str, torch.Tensor], dtype, progress: bool, metadata: dict, keep=()
) -> None:
    """Write `state` as .safetensors, floating-point tensors but those named in `keep` cast to `dtype`."""
    total = total_bytes(cast_meta(state, dtype, keep).values())
    with tqdm(
        total=total, unit="B", unit_scale=True, desc=path.name, disable=not progress, leave=False
    ) as bar:
        write_safetensors(path, state, metadata, dtype, on_tensor=bar.update, keep=keep)


def cast_meta(
    state: Mapping[str, torch.Tensor], dtype: torch.dtype | None, keep=()
) -> dict[str, torch.Tensor]:
    """Shape-and-dtype stand-ins of `state` after `cast(state, dtype, keep)`, for sizing without touching the data."""
    return {
        k: torch.empty(v.shape, dtype=cast_dtype(k, v, dtype, keep), device="meta") for k, v in state.items()
    }
