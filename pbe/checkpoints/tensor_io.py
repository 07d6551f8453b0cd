"""Safe, streaming tensor file I/O.

- `.safetensors` files are memory-mapped (copy-on-write): reading a 5 GB checkpoint costs no memory until a tensor is
  touched, and renaming keys copies nothing.
- `.ckpt` / `.pt` / `.pth` / `.bin` pickles are opened with `torch.load(weights_only=True, mmap=True)`: a pickle that
  would construct arbitrary objects (run code) is refused.
- `write_safetensors` streams one tensor at a time (converting dtype per tensor), so writing never holds a second full
  copy of the weights. Every writer goes to a temporary file first and renames it into place.
"""

from __future__ import annotations

import importlib.util
import json
import mmap
import os
import pickle
import pickletools
import re
import struct
import sys
import tempfile
import warnings
import zipfile
from collections.abc import Callable, Collection, Iterable, Mapping
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


# torch's weights-only unpickler messages that mean the pickle references code (a global, a call, an object)
_CODE_MARKERS = ("GLOBAL", "global", "reduce", "create new object", "persistent_load")
_STRING_OPS = (
    "SHORT_BINUNICODE",
    "BINUNICODE",
    "BINUNICODE8",
    "UNICODE",
    "SHORT_BINSTRING",
    "BINSTRING",
    "STRING",
)


def _allowed_globals() -> set[str]:
    try:
        from torch._weights_only_unpickler import _get_allowed_globals

        return set(_get_allowed_globals())
    except (ImportError, AttributeError):  # private API; fall back to torch's own names
        return set()


def _is_code(name: str) -> bool:
    """Whether a pickle global names something that exists (so unpickling it could run code), checked without
    importing anything: in a module already loaded the name must exist; otherwise the module's top-level
    package must be installed. A name that resolves to nothing (a cut or flipped byte) is corruption."""
    module, _, attr = name.rpartition(".")
    if not module:
        return False
    loaded = sys.modules.get(module)
    if loaded is not None:  # e.g. a file cut inside "collections\nOrderedDict": names nothing that exists
        return hasattr(loaded, attr)
    if module == "torch" or module.startswith("torch."):
        return False
    try:
        return importlib.util.find_spec(module.split(".")[0]) is not None
    except (ImportError, ValueError):
        return False


def pickle_globals(path: str | Path, max_pickles: int = 8) -> list[str]:
    """The globals (``module.name``) the pickles at the start of a file would import, read without executing
    anything (pickletools). A raw pickle that torch's loader gives up on early (e.g. at protocol 4 framing)
    may still reference code; this says whether it does. Stops quietly at the first malformed byte."""
    names: list[str] = []
    with open(path, "rb") as f:
        for _ in range(max_pickles):
            recent: list[str | None] = []  # values pushed, strings kept (for STACK_GLOBAL)
            memo: dict[int, str | None] = {}
            try:
                for op, arg, _pos in pickletools.genops(f):
                    if op.name in ("GLOBAL", "INST"):
                        names.append(str(arg).replace(" ", "."))
                    elif op.name == "STACK_GLOBAL":
                        module, name = recent[-2:] if len(recent) >= 2 else [None, None]
                        names.append(f"{module}.{name}")
                    elif op.name in _STRING_OPS:
                        recent.append(arg if isinstance(arg, str) else arg.decode("latin-1"))
                    elif op.name == "MEMOIZE":
                        memo[len(memo)] = recent[-1] if recent else None
                    elif op.name in ("BINPUT", "LONG_BINPUT", "PUT"):
                        memo[int(arg)] = recent[-1] if recent else None
                    elif op.name in ("BINGET", "LONG_BINGET", "GET"):
                        recent.append(memo.get(int(arg)))
                    elif op.name not in ("FRAME", "PROTO"):
                        recent.append(None)
            except Exception:  # malformed or truncated: what was read so far is the answer
                break
    return names


def read_pickle(path: str | Path) -> object:
    """torch.load with weights_only=True (no arbitrary code), memory-mapped when the file is a zip checkpoint.

    Anything that is not a torch checkpoint (text, random bytes, an empty file, a zip of other files, a pickle
    of something else) raises CheckpointError "not a checkpoint"; only a pickle that references code (a
    global outside torch's weights-only allowlist) gets the "could run code" refusal.
    """
    path = Path(path)
    with open(path, "rb") as f:
        head = f.read(2)
    is_zip = zipfile.is_zipfile(path)
    if not is_zip and (len(head) < 2 or head[0] != 0x80):  # torch files are zips or pickles (protocol >= 2)
        what = "an empty file" if not head else f"starts with {head!r}"
        raise CheckpointError(
            f"{path}: not a checkpoint: neither a zip-format torch checkpoint nor a pickle ({what})"
        )
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            return torch.load(path, map_location="cpu", weights_only=True, mmap=is_zip)
    except pickle.UnpicklingError as e:
        detail = str(e).rsplit("WeightsUnpickler error:", 1)[-1].strip()  # the unpickler's own reason
        named = re.search(r"GLOBAL (\S+)", detail)
        code = any(marker in detail for marker in _CODE_MARKERS)
        if named and not _is_code(named.group(1)):
            code, detail = False, f"corrupt: it names {named.group(1)}, which does not exist"
    except Exception as e:  # torch.load's many ways of failing on bytes that are not a checkpoint
        detail, code = f"{type(e).__name__}: {str(e)}", False
    if not code and not is_zip:
        allowed = _allowed_globals()
        foreign = sorted({n for n in pickle_globals(path) if n not in allowed and _is_code(n)})
        if foreign:
            code, detail = True, f"it imports {', '.join(foreign[:5])}"
    if code:
        raise CheckpointError(
            f"{path}: refused to unpickle: the file holds objects other than tensors and plain containers, "
            f"and loading it could run code. Convert it where you trust it, or use .safetensors. ({detail[:300]})"
        ) from None
    raise CheckpointError(f"{path}: not a checkpoint, or a truncated or corrupt one ({detail[:300]})")


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


# What pbe itself writes, and so what an explicit overwrite may replace (and nothing else):
CHECKPOINT_FILE_SUFFIXES = (".safetensors", *PICKLE_SUFFIXES)  # a single checkpoint file
NATIVE_FOLDER_FILES = ("pbe_config.json", "model.safetensors")  # pbe's own folder (pbe_config.json required)
# a diffusers PaintByExamplePipeline folder: model_index.json plus these component folders, each holding only
# config/weights files
DIFFUSERS_FOLDER_COMPONENTS = ("unet", "vae", "image_encoder", "scheduler", "feature_extractor")
DIFFUSERS_COMPONENT_SUFFIXES = (".json", ".safetensors", ".bin")


def _real(path: Path) -> Path:
    return Path(os.path.realpath(path))


def _is_within(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def _foreign_entries(folder: Path) -> list[str]:
    """Entries of `folder` that are not part of a pbe-written checkpoint folder (native or diffusers layout)."""
    entries = list(folder.iterdir())
    names = {e.name for e in entries}
    if not entries:
        return []
    if NATIVE_FOLDER_FILES[0] in names:
        return sorted(
            e.name for e in entries if e.name not in NATIVE_FOLDER_FILES or e.is_symlink() or not e.is_file()
        )
    if "model_index.json" in names:
        foreign = []
        for e in entries:
            if e.name == "model_index.json" and e.is_file() and not e.is_symlink():
                continue
            if e.name not in DIFFUSERS_FOLDER_COMPONENTS or e.is_symlink() or not e.is_dir():
                foreign.append(e.name)
                continue
            foreign += [
                f"{e.name}/{f.name}"
                for f in e.iterdir()
                if f.is_symlink() or not f.is_file() or not f.name.endswith(DIFFUSERS_COMPONENT_SUFFIXES)
            ]
        return sorted(foreign)
    return sorted(names)


def check_replaceable(
    dst: str | Path,
    src: str | Path | Iterable[str | Path] | None = None,
    *,
    label: str = "DST",
    file_suffixes: tuple[str, ...] = CHECKPOINT_FILE_SUFFIXES,
    folders: bool = True,
) -> None:
    """Raise ValueError unless writing `dst` (replacing what is there) can only lose what pbe itself wrote.

    Refused, whether or not `dst` exists: `dst` equal to or containing a source (`src`: one path or several),
    and `dst` equal to or containing the working directory. Refused when `dst` exists: a symbolic link; a file
    whose name does not end in one of `file_suffixes`; a folder (with `folders=False`, any folder) that holds
    anything besides a pbe-written checkpoint folder (native: pbe_config.json + model.safetensors; diffusers:
    model_index.json + unet/vae/image_encoder/scheduler/feature_extractor folders of .json/.safetensors/.bin
    files). An empty folder may be replaced. Checked before anything is written; nothing is touched.
    """
    dst = Path(dst)
    real = _real(dst)
    sources = [] if src is None else [src] if isinstance(src, str | os.PathLike) else list(src)
    for source in sources:
        source_real = _real(Path(source))
        if source_real == real:
            raise ValueError(f"{label} {dst} is the source {source}; write somewhere else")
        if _is_within(source_real, real):
            raise ValueError(
                f"{label} {dst} contains the source {source}; replacing it would delete the source"
            )
    cwd = _real(Path.cwd())
    if _is_within(cwd, real):
        raise ValueError(
            f"{label} {dst} is the working directory or one of its parents; "
            "name a new file or folder inside it instead"
        )
    if dst.is_symlink():
        raise ValueError(f"{label} {dst} is a symbolic link; remove it or name another destination")
    if not dst.exists():
        return
    if dst.is_dir():
        foreign = _foreign_entries(dst) if folders else ["(a folder)"]
        if foreign:
            shown = ", ".join(foreign[:5]) + (f" and {len(foreign) - 5} more" if len(foreign) > 5 else "")
            raise ValueError(
                f"{label} {dst} is a folder with files pbe did not write ({shown}); "
                "--overwrite replaces only a checkpoint folder pbe wrote (native or diffusers layout) or a "
                "single checkpoint file. Choose a new destination or remove it yourself."
                if folders
                else f"{label} {dst} is a folder; name a file"
            )
        return
    if not dst.is_file() or not dst.name.endswith(file_suffixes):
        raise ValueError(
            f"{label} {dst} exists and is not a {'/'.join(file_suffixes)} file; --overwrite replaces only "
            "what pbe writes. Choose a new destination or remove it yourself."
        )


@contextmanager
def atomic_path(
    dst: str | Path,
    overwrite: bool = False,
    src: str | Path | Iterable[str | Path] | None = None,
    **replaceable,
):
    """Yield a temporary sibling path; on success move it to `dst` (file or directory), on failure remove it.

    An existing `dst` is replaced only with overwrite=True, only when `check_replaceable(dst, src,
    **replaceable)` allows it (never a source, the working directory or files pbe did not write), and only
    after the new content is complete.
    """
    dst = Path(dst)
    check_replaceable(dst, src, **replaceable)
    if (dst.exists() or dst.is_symlink()) and not overwrite:
        raise FileExistsError(f"{dst} exists; pass overwrite=True (--overwrite) to replace it")
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dst.name}.", suffix=".tmp", dir=dst.parent))
    target = tmp / "out"
    try:
        yield target
        if dst.exists():
            old = tmp / "old"  # removed with tmp once the new content is in place
            os.replace(dst, old)
            try:
                os.replace(target, dst)
            except BaseException:
                os.replace(old, dst)
                raise
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
