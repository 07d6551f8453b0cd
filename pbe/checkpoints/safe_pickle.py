"""Reading torch pickles (`.ckpt` / `.pt` / `.pth` / `.bin`) without running code.

`read_pickle` opens them with `torch.load(weights_only=True, mmap=True)`: a pickle that would construct arbitrary
objects (run code) is refused with a "could run code" CheckpointError, and anything that is not a torch checkpoint at
all (text, random bytes, a zip of other files, a corrupt pickle) with a "not a checkpoint" one. `pickle_globals` reads
the globals a pickle would import with pickletools, executing nothing.
"""

from __future__ import annotations

import importlib.util
import pickle
import pickletools
import re
import sys
import warnings
import zipfile
from pathlib import Path

import torch

from pbe.checkpoints.errors import CheckpointError

PICKLE_SUFFIXES = (".ckpt", ".pt", ".pth", ".bin")

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
