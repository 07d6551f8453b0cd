"""Safe, streaming tensor file I/O.

- `.safetensors` files are memory-mapped (copy-on-write): reading a 5 GB checkpoint costs no memory until a tensor is
  touched, and renaming keys copies nothing.
- `.ckpt` / `.pt` / `.pth` / `.bin` pickles are opened with `torch.load(weights_only=True, mmap=True)`: a pickle that
  would construct arbitrary objects (run code) is refused.
- `write_safetensors` streams one tensor at a time (converting dtype per tensor), so writing never holds a second full
  copy of the weights. Every writer goes to a temporary file first and renames it into place.
"""

from __future__ import annotations

import json
import mmap
import os
import pickle
import struct
import tempfile
import zipfile
from collections.abc import Callable, Iterable, Mapping
from contextlib import contextmanager
from pathlib import Path

import torch

SAFETENSORS_DTYPES = {
    "F64": torch.float64,
    "F32": torch.float32,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "I64": torch.int64,
    "I32": torch.int32,
    "I16": torch.int16,
    "I8": torch.int8,
    "U8": torch.uint8,
    "BOOL": torch.bool,
}
_DTYPE_NAMES = {v: k for k, v in SAFETENSORS_DTYPES.items()}
PICKLE_SUFFIXES = (".ckpt", ".pt", ".pth", ".bin")


class CheckpointError(ValueError):
    """A checkpoint file that cannot be read, or whose contents are not what was asked for."""


def read_safetensors(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Memory-map a .safetensors file; returns (tensors, metadata). Raises CheckpointError on a malformed file."""
    path = Path(path)
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise CheckpointError(f"{path}: truncated safetensors file ({size} bytes, no header)")
        (n,) = struct.unpack("<Q", head)
        if n > size - 8 or n > 100_000_000:
            raise CheckpointError(
                f"{path}: truncated or corrupt safetensors file (header of {n} bytes, file {size})"
            )
        try:
            header = json.loads(f.read(n))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise CheckpointError(f"{path}: corrupt safetensors header ({e})") from None
        data_start = 8 + n
        metadata = header.pop("__metadata__", None) or {}
        end = max((v["data_offsets"][1] for v in header.values()), default=0)
        if data_start + end > size:
            raise CheckpointError(
                f"{path}: truncated safetensors file: tensors need {data_start + end} bytes, file has {size}"
            )
        buf = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_COPY) if size > 0 else b""
    tensors = {}
    for name, info in header.items():
        dtype = SAFETENSORS_DTYPES.get(info["dtype"])
        if dtype is None:
            raise CheckpointError(f"{path}: tensor {name!r} has unsupported dtype {info['dtype']}")
        start, stop = info["data_offsets"]
        numel = 1
        for d in info["shape"]:
            numel *= d
        if numel == 0:
            tensors[name] = torch.empty(info["shape"], dtype=dtype)
            continue
        flat = torch.frombuffer(buf, dtype=torch.uint8, count=stop - start, offset=data_start + start)
        tensors[name] = flat.view(dtype).reshape(info["shape"])
    return tensors, metadata


def read_pickle(path: str | Path) -> object:
    """torch.load with weights_only=True (no arbitrary code), memory-mapped when the file is a zip checkpoint."""
    path = Path(path)
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=zipfile.is_zipfile(path))
    except pickle.UnpicklingError as e:
        raise CheckpointError(
            f"{path}: refused to unpickle: the file holds objects other than tensors and plain containers, and "
            f"loading it could run code. Convert it where you trust it, or use .safetensors. ({str(e)[:300]})"
        ) from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError) as e:
        raise CheckpointError(
            f"{path}: cannot read checkpoint (truncated or corrupt?): {str(e)[:300]}"
        ) from None


def read_tensors(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Read a flat {name: tensor} file of any supported kind. A pickle holding {"state_dict": ...} is unwrapped."""
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
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(f"{path}: expected a state dict of tensors (optionally under 'state_dict')")
    return obj, {}


@contextmanager
def atomic_path(dst: str | Path, overwrite: bool = False):
    """Yield a temporary sibling path; on success move it to `dst` (file or directory), on failure remove it.

    An existing `dst` is replaced only with overwrite=True, and only after the new content is complete.
    """
    dst = Path(dst)
    if dst.exists() and not overwrite:
        raise FileExistsError(f"{dst} exists; pass overwrite=True (--overwrite) to replace it")
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dst.name}.", suffix=".tmp", dir=dst.parent))
    target = tmp / "out"
    try:
        yield target
        if dst.exists():
            old = dst.parent / f".{dst.name}.old-{os.getpid()}"
            os.replace(dst, old)
            os.replace(target, dst)
            _remove(old)
        else:
            os.replace(target, dst)
    finally:
        _remove(tmp)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        for child in path.iterdir():
            _remove(child)
        path.rmdir()
    elif path.exists() or path.is_symlink():
        path.unlink()


def write_safetensors(
    path: str | Path,
    tensors: Mapping[str, torch.Tensor],
    metadata: Mapping[str, str] | None = None,
    dtype: torch.dtype | None = None,
    on_tensor: Callable[[int], None] | None = None,
) -> int:
    """Stream `tensors` into a .safetensors file at `path` (not atomic by itself: write into `atomic_path`).

    Floating-point tensors are cast to `dtype` one at a time. Returns the number of bytes written.
    `on_tensor(nbytes)` is called after each tensor (progress bars).
    """

    def out_dtype(t: torch.Tensor) -> torch.dtype:
        return dtype if dtype is not None and t.is_floating_point() else t.dtype

    header: dict[str, object] = {}
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    offset = 0
    names = sorted(tensors)
    for name in names:
        t = tensors[name]
        d = out_dtype(t)
        if d not in _DTYPE_NAMES:
            raise ValueError(f"tensor {name!r}: dtype {d} cannot be stored in safetensors")
        nbytes = t.numel() * torch.empty((), dtype=d).element_size()
        header[name] = {
            "dtype": _DTYPE_NAMES[d],
            "shape": list(t.shape),
            "data_offsets": [offset, offset + nbytes],
        }
        offset += nbytes
    blob = json.dumps(header, separators=(",", ":")).encode()
    blob += b" " * (-len(blob) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(blob)))
        f.write(blob)
        for name in names:
            t = tensors[name].detach().to("cpu", out_dtype(tensors[name])).contiguous()
            data = t.reshape(-1).view(torch.uint8) if t.numel() else torch.empty(0, dtype=torch.uint8)
            f.write(memoryview(data.numpy()))
            if on_tensor is not None:
                on_tensor(data.numel())
        f.flush()
        os.fsync(f.fileno())
    return 8 + len(blob) + offset


def cast(tensors: Mapping[str, torch.Tensor], dtype: torch.dtype | None) -> dict[str, torch.Tensor]:
    if dtype is None:
        return dict(tensors)
    return {k: v.to(dtype) if v.is_floating_point() else v for k, v in tensors.items()}


def total_bytes(tensors: Iterable[torch.Tensor]) -> int:
    return sum(t.numel() * t.element_size() for t in tensors)
