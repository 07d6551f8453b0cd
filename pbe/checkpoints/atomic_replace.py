"""Writing a checkpoint file or folder in place, replacing only what pbe itself wrote.

`check_replaceable` says, before anything is written, whether a destination may be replaced (never a source, the
working directory, a symbolic link, or a file or folder pbe did not write); `atomic_path` writes into a temporary
sibling and moves it into place only once it is complete.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable
from contextlib import contextmanager
from pathlib import Path

from pbe.checkpoints.safe_pickle import PICKLE_SUFFIXES

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
