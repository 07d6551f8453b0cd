"""Safe, streaming tensor file I/O: `read_tensors` reads a flat {name: tensor} file of any supported kind.

The parts live in modules of their own; their names stay importable from here, where callers have always found them:

- `pbe.checkpoints.safetensors_io`: `.safetensors` files, memory-mapped when read and streamed one tensor at a time
  when written (`read_safetensors`, `write_safetensors`, `cast_dtype`, `cast_tensor`, `cast`, `total_bytes`).
- `pbe.checkpoints.safe_pickle`: `.ckpt` / `.pt` / `.pth` / `.bin` pickles opened with
  `torch.load(weights_only=True, mmap=True)`; a pickle that would construct arbitrary objects (run code) is refused
  (`read_pickle`, `pickle_globals`).
- `pbe.checkpoints.atomic_replace`: every writer goes to a temporary file first and renames it into place, replacing
  only what pbe wrote (`atomic_path`, `check_replaceable`).
- `pbe.checkpoints.errors`: `CheckpointError`.
"""

from __future__ import annotations

from pathlib import Path

import torch

from pbe.checkpoints.atomic_replace import (
    CHECKPOINT_FILE_SUFFIXES,
    DIFFUSERS_COMPONENT_SUFFIXES,
    DIFFUSERS_FOLDER_COMPONENTS,
    NATIVE_FOLDER_FILES,
    atomic_path,
    check_replaceable,
)
from pbe.checkpoints.errors import CheckpointError
from pbe.checkpoints.safe_pickle import PICKLE_SUFFIXES, pickle_globals, read_pickle
from pbe.checkpoints.safetensors_io import (
    SAFETENSORS_DTYPES,
    cast,
    cast_dtype,
    cast_tensor,
    read_safetensors,
    total_bytes,
    write_safetensors,
)

__all__ = [
    "CHECKPOINT_FILE_SUFFIXES",
    "DIFFUSERS_COMPONENT_SUFFIXES",
    "DIFFUSERS_FOLDER_COMPONENTS",
    "NATIVE_FOLDER_FILES",
    "PICKLE_SUFFIXES",
    "SAFETENSORS_DTYPES",
    "CheckpointError",
    "atomic_path",
    "cast",
    "cast_dtype",
    "cast_tensor",
    "check_replaceable",
    "pickle_globals",
    "read_pickle",
    "read_safetensors",
    "read_tensors",
    "total_bytes",
    "write_safetensors",
]


def read_tensors(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Read a flat {name: tensor} file of any supported kind; returns (tensors, metadata).

    A pickle holding {"state_dict": ...} is unwrapped, and its other top-level string entries are the metadata
    (a .safetensors file's metadata is its header's)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint file not found: {path}")
    if path.suffix == ".safetensors":
        return read_safetensors(path)
    if path.suffix not in PICKLE_SUFFIXES:
        raise CheckpointError(
            f"{path}: unknown checkpoint file type {path.suffix!r}; expected .safetensors or one of {PICKLE_SUFFIXES}"
        )
    obj = read_pickle(path)
    metadata: dict[str, str] = {}
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        metadata = {k: v for k, v in obj.items() if isinstance(k, str) and isinstance(v, str)}
        obj = obj["state_dict"]
    if not isinstance(obj, dict):
        raise CheckpointError(
            f"{path}: not a checkpoint: it holds a {type(obj).__name__}, not a state dict of tensors"
        )
    bad = [k for k, v in obj.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)]
    if bad:
        raise CheckpointError(
            f"{path}: not a checkpoint: expected a state dict of named tensors (optionally under 'state_dict'); "
            f"entry {bad[0]!r} is a {type(obj[bad[0]]).__name__}"
        )
    return obj, metadata
