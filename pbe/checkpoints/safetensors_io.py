"""`.safetensors` files, read and written by pbe itself (no safetensors package).

- `read_safetensors` memory-maps the file (copy-on-write): reading a 5 GB checkpoint costs no memory until a tensor is
  touched, and renaming keys copies nothing. Every header field is checked before a tensor is made.
- `write_safetensors` streams one tensor at a time (converting dtype per tensor), so writing never holds a second full
  copy of the weights. It is not atomic by itself: write into `pbe.checkpoints.atomic_replace.atomic_path`.
- `cast_dtype` / `cast_tensor` / `cast`: the dtype a tensor is stored in, refusing casts that would make finite values
  infinite.
"""

from __future__ import annotations

import json
import mmap
import os
import struct
from collections.abc import Callable, Collection, Iterable, Mapping
from pathlib import Path

import torch

from pbe.checkpoints.errors import CheckpointError

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


def read_safetensors(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Memory-map a .safetensors file; returns (tensors, metadata). Raises CheckpointError on a malformed file."""
    path = Path(path)
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise CheckpointError(
                f"{path}: not a checkpoint: truncated safetensors file ({size} bytes, no header)"
            )
        (n,) = struct.unpack("<Q", head)
        if n > size - 8 or n > 100_000_000:
            raise CheckpointError(
                f"{path}: not a checkpoint, or a truncated or corrupt safetensors file "
                f"(header of {n} bytes, file {size})"
            )
        try:
            header = json.loads(f.read(n))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise CheckpointError(f"{path}: not a checkpoint: corrupt safetensors header ({e})") from None
        layout = _safetensors_layout(header, size - 8 - n)
        if isinstance(layout, str):
            raise CheckpointError(f"{path}: not a checkpoint: corrupt safetensors header ({layout})")
        data_start = 8 + n
        metadata = header.get("__metadata__") or {}
        buf = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_COPY) if size > 0 else b""
    tensors = {}
    for name, (dtype, shape, start, stop) in layout.items():
        if start == stop:
            tensors[name] = torch.empty(shape, dtype=dtype)
            continue
        flat = torch.frombuffer(buf, dtype=torch.uint8, count=stop - start, offset=data_start + start)
        tensors[name] = flat.view(dtype).reshape(shape)
    return tensors, metadata


def _safetensors_layout(header: object, data_size: int) -> dict[str, tuple] | str:
    """{name: (dtype, shape, start, stop)} from a parsed safetensors header, or what is wrong with it."""
    if not isinstance(header, dict):
        return f"the header is a {type(header).__name__}, not a mapping"
    metadata = header.get("__metadata__")
    if metadata is not None and not isinstance(metadata, dict):
        return "__metadata__ is not a mapping"
    layout = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        if not isinstance(info, dict) or not {"dtype", "shape", "data_offsets"} <= set(info):
            return f"entry {name!r} lacks dtype / shape / data_offsets"
        dtype = SAFETENSORS_DTYPES.get(info["dtype"]) if isinstance(info["dtype"], str) else None
        if dtype is None:
            return f"tensor {name!r} has unsupported dtype {info['dtype']!r}"
        shape, offsets = info["shape"], info["data_offsets"]
        if not isinstance(shape, list) or not all(type(d) is int and d >= 0 for d in shape):
            return f"tensor {name!r} has shape {shape!r}"
        if not (isinstance(offsets, list) and len(offsets) == 2 and all(type(o) is int for o in offsets)):
            return f"tensor {name!r} has data_offsets {offsets!r}"
        start, stop = offsets
        numel = 1
        for d in shape:
            numel *= d
        if not 0 <= start <= stop or stop - start != numel * torch.empty((), dtype=dtype).element_size():
            return f"tensor {name!r}: data_offsets {offsets} do not fit shape {shape} of {info['dtype']}"
        if stop > data_size:
            return f"truncated: tensor {name!r} needs {stop} bytes of data, the file has {data_size}"
        layout[name] = (dtype, shape, start, stop)
    return layout


def write_safetensors(
    path: str | Path,
    tensors: Mapping[str, torch.Tensor],
    metadata: Mapping[str, str] | None = None,
    dtype: torch.dtype | None = None,
    on_tensor: Callable[[int], None] | None = None,
    keep: Collection[str] = (),
) -> int:
    """Stream `tensors` into a .safetensors file at `path` (not atomic by itself: write into `atomic_path`).

    Floating-point tensors are cast to `dtype` one at a time, except those named in `keep`. Returns the number of
    bytes written. `on_tensor(nbytes)` is called after each tensor (progress bars).
    """

    def out_dtype(name: str) -> torch.dtype:
        return cast_dtype(name, tensors[name], dtype, keep)

    header: dict[str, object] = {}
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    offset = 0
    names = sorted(tensors)
    for name in names:
        t = tensors[name]
        d = out_dtype(name)
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
            t = cast_tensor(name, tensors[name].detach().to("cpu"), dtype, keep).contiguous()
            data = t.reshape(-1).view(torch.uint8) if t.numel() else torch.empty(0, dtype=torch.uint8)
            f.write(memoryview(data.numpy()))
            if on_tensor is not None:
                on_tensor(data.numel())
        f.flush()
        os.fsync(f.fileno())
    return 8 + len(blob) + offset


def cast_dtype(
    name: str, tensor: torch.Tensor, dtype: torch.dtype | None, keep: Collection[str] = ()
) -> torch.dtype:
    """The dtype `tensor` is written in: `dtype` for floating-point tensors not named in `keep`, else its own."""
    return dtype if dtype is not None and tensor.is_floating_point() and name not in keep else tensor.dtype


def cast_tensor(
    name: str, tensor: torch.Tensor, dtype: torch.dtype | None, keep: Collection[str] = ()
) -> torch.Tensor:
    """`tensor` in the dtype it is written in (`cast_dtype`); ValueError naming it when finite values would turn
    infinite (float16 ends at 65504), as pbe refuses to load non-finite weights."""
    out = tensor.to(cast_dtype(name, tensor, dtype, keep))
    if (
        out.dtype != tensor.dtype
        and not bool(torch.isfinite(out).all())
        and bool(torch.isfinite(tensor).all())
    ):
        largest = tensor.abs().max().item()
        raise ValueError(
            f"tensor {name!r} holds values up to {largest:g}, beyond {out.dtype}'s largest "
            f"({torch.finfo(out.dtype).max:g}); cast to bfloat16 or keep float32 instead"
        )
    return out


def cast(
    tensors: Mapping[str, torch.Tensor], dtype: torch.dtype | None, keep: Collection[str] = ()
) -> dict[str, torch.Tensor]:
    """`tensors` with floating-point ones (except those named in `keep`) cast to `dtype` (see `cast_tensor`)."""
    return {k: cast_tensor(k, v, dtype, keep) for k, v in tensors.items()}


def total_bytes(tensors: Iterable[torch.Tensor]) -> int:
    return sum(t.numel() * t.element_size() for t in tensors)
