"""Writing outputs without losing anything a user made: the one place every pbe writer goes through.

The rule, for every command and the Python API:
- an existing file is replaced only with an explicit ``overwrite=true`` / ``--overwrite``;
- an input (a photo, a mask, a manifest, a checkpoint) is never replaced, not even then;
- a file is written to a temporary sibling first and renamed into place when complete, so a reader never sees half
  a file and a failure (a full disk, Ctrl-C) leaves the old file, or nothing, where it was;
- `write_files` writes a group of files all or none.

Checkpoints (whole folders) use `pbe.checkpoints.atomic_replace.atomic_path`, which follows the same rule.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from PIL import Image

# What can be written: an image (saved in the format its suffix names), text, bytes, or a function that writes the
# file at the temporary path it is given (np.savez, torch.save, ...).
Content = Image.Image | str | bytes | Callable[[Path], None]


def _real(path: Path) -> str:
    return os.path.realpath(path)


def check_new_file(
    path: str | Path,
    *,
    overwrite: bool = False,
    inputs: Iterable[str | Path | None] = (),
    label: str = "out",
    suffixes: Sequence[str] | None = None,
) -> None:
    """Raise before any work unless `path` may be written: never an input (even with `overwrite`), never a folder or
    a symbolic link, an existing file only with `overwrite` (and only with one of `suffixes`, when given)."""
    path = Path(path)
    real = _real(path)
    for source in inputs:
        if source is not None and _real(Path(source)) == real:
            raise ValueError(f"{label}: {path} is the input {source}; an output never replaces an input")
    if path.is_symlink():
        raise ValueError(f"{label}: {path} is a symbolic link; remove it or choose another output")
    if path.is_dir():
        raise ValueError(f"{label}: {path} is a folder; name a file")
    if path.exists():
        if not overwrite:
            raise FileExistsError(
                f"{label}: {path} already exists; pass overwrite=true (--overwrite) to replace it, or choose "
                "another output"
            )
        if suffixes is not None and not path.name.lower().endswith(tuple(s.lower() for s in suffixes)):
            raise ValueError(
                f"{label}: {path} exists and is not a {'/'.join(suffixes)} file; overwrite replaces only what "
                "pbe writes. Choose another output or remove it yourself"
            )


def check_folder_writable(folder: str | Path, label: str = "out") -> None:
    """The folder can be created (or exists) and can be written, probed with an empty file."""
    existing = Path(folder)
    while not existing.exists() and not existing.is_symlink() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise ValueError(f"{label}: cannot create the folder {folder}: {existing} is a file, not a folder")
    try:
        handle, probe = tempfile.mkstemp(prefix=".pbe-write-probe.", suffix=".tmp", dir=existing)
    except OSError as e:
        raise ValueError(f"{label}: cannot write in {existing} ({e.strerror or e})") from None
    os.close(handle)
    os.unlink(probe)


def _umask() -> int:
    current = os.umask(0o022)
    os.umask(current)
    return current


def _write_content(content: Content, temporary: Path, target: Path) -> None:
    if isinstance(content, Image.Image):
        fmt = Image.registered_extensions().get(target.suffix.lower(), "PNG")
        content.save(temporary, format=fmt)
    elif isinstance(content, str):
        temporary.write_text(content, encoding="utf-8")
    elif isinstance(content, bytes | bytearray):
        temporary.write_bytes(content)
    elif callable(content):
        content(temporary)
    else:
        raise TypeError(f"cannot write a {type(content).__name__} to {target}")


def write_files(
    items: Sequence[tuple[str | Path, Content]],
    *,
    overwrite: bool = False,
    inputs: Iterable[str | Path | None] = (),
    label: str = "out",
    suffixes: Sequence[str] | None = None,
) -> list[Path]:
    """Write every file or none. Each goes to a temporary sibling first; only when all are complete are they renamed
    into place. A failure leaves no new file, no temporary file and no folder made here. Returns the paths."""
    inputs = [p for p in inputs if p is not None]
    paths = [Path(p) for p, _ in items]
    for path in paths:
        check_new_file(path, overwrite=overwrite, inputs=inputs, label=label, suffixes=suffixes)
    staged: list[tuple[Path, Path]] = []  # (temporary, target)
    placed: list[Path] = []  # targets that did not exist before
    created: list[Path] = []  # folders made here
    mode = 0o666 & ~_umask()  # mkstemp makes 0600; give files the usual permissions
    try:
        for path, (_, content) in zip(paths, items, strict=True):
            for folder in reversed([path.parent, *path.parent.parents]):
                if not folder.exists():
                    try:
                        folder.mkdir()
                    except FileExistsError:  # another writer (e.g. an evaluation rank) made it meanwhile
                        continue
                    created.append(folder)
            handle, temporary = tempfile.mkstemp(
                prefix=f".{path.name}.", suffix=f".tmp{path.suffix}", dir=path.parent
            )
            os.close(handle)
            staged.append((Path(temporary), path))
            _write_content(content, Path(temporary), path)
            os.chmod(temporary, mode)
        for _, path in staged:
            if not overwrite and path.exists():  # appeared while we wrote: still not ours to replace
                raise FileExistsError(
                    f"{label}: {path} already exists; pass overwrite=true (--overwrite) to replace it"
                )
        for temporary, path in staged:
            existed = path.exists()
            os.replace(temporary, path)
            if not existed:
                placed.append(path)
    except BaseException as e:
        for temporary, _ in staged:
            temporary.unlink(missing_ok=True)
        for path in placed:
            path.unlink(missing_ok=True)
        for folder in reversed(created):
            if folder.is_dir() and not any(folder.iterdir()):
                folder.rmdir()
        if isinstance(e, OSError) and not isinstance(e, FileExistsError | FileNotFoundError):
            target = staged[-1][1] if staged else paths[0] if paths else "?"
            raise OSError(
                e.errno, f"{label}: cannot write {target} ({e.strerror or e}); no output was written"
            ) from e
        raise
    return paths


def write_file(
    path: str | Path,
    content: Content,
    *,
    overwrite: bool = False,
    inputs: Iterable[str | Path | None] = (),
    label: str = "out",
    suffixes: Sequence[str] | None = None,
) -> Path:
    """Write one file atomically (see `write_files`)."""
    return write_files([(path, content)], overwrite=overwrite, inputs=inputs, label=label, suffixes=suffixes)[
        0
    ]


def json_text(data) -> str:
    """`data` as indented JSON text, ending in a newline (what `write_json` writes)."""
    return json.dumps(data, indent=2) + "\n"


def write_json(path: str | Path, data, **kwargs) -> Path:
    """`data` as indented JSON, atomically (keyword arguments as `write_file`)."""
    return write_file(path, json_text(data), **kwargs)


def sha256_of(path: str | Path) -> str:
    """sha256 of a file, or of a folder's files (relative names and contents, in sorted order)."""
    path = Path(path)
    h = hashlib.sha256()
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    for f in files:
        if path.is_dir():
            h.update(str(f.relative_to(path)).encode() + b"\0")
        with open(f, "rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 22), b""):
                h.update(chunk)
    return h.hexdigest()
