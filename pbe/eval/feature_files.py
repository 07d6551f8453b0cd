"""Feature files: CLIP features of a set of images kept as .npz, and the checks on what the metrics write.

A feature file holds `features` (N, D) and/or their Gaussian statistics `mu` (D,) and `sigma` (D, D); a file whose
width is not the extractor's comes from another feature extractor and is refused. `check_output` checks, before any
work, that an output file may be written; `npz_writer` is the content `pbe.files.write_file` writes atomically.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np

from pbe.eval.clip_features import ClipFeatures, image_files
from pbe.eval.fid import gaussian_stats
from pbe.files import check_new_file, write_file


def check_output(
    path: str | Path, suffix: str, overwrite: bool = False, inputs: Iterable[str | Path | None] = ()
) -> None:
    """Before any work: `path` names a `suffix` file that may be written (an existing one only with overwrite, and
    only if it is a `suffix` file; never an input)."""
    if not str(path).lower().endswith(suffix):
        raise ValueError(f"out: {path} must name a {suffix} file")
    check_new_file(path, overwrite=overwrite, inputs=inputs, suffixes=(suffix,))


def npz_writer(**arrays: np.ndarray) -> Callable[[Path], None]:
    """A `pbe.files` content: np.savez of `arrays` into the path it is given."""

    def write(path: Path) -> None:
        with open(path, "wb") as f:
            np.savez(f, **arrays)

    return write


# ----------------------------------------------------------------------------------------------- feature files


def check_features(
    features: np.ndarray, dim: int | None, name: str, expected: str = "the CLIP model's output"
) -> np.ndarray:
    features = np.asarray(features, dtype=np.float64)
    if features.ndim != 2:
        raise ValueError(f"{name}: features must be (N, D), got shape {features.shape}")
    if dim is not None and features.shape[1] != dim:
        raise ValueError(
            f"{name}: features are {features.shape[1]}-d but {expected} is {dim}-d; they come from another "
            "feature extractor"
        )
    if not np.isfinite(features).all():
        raise ValueError(f"{name}: features contain NaN or infinity")
    return features


def write_features(path: str | Path, features: np.ndarray, overwrite: bool = False, **extra) -> None:
    """features, mu, sigma (and extra arrays) to an .npz, atomically."""
    mu, sigma = gaussian_stats(features)
    content = npz_writer(features=features, mu=mu, sigma=sigma, **extra)
    write_file(path, content, overwrite=overwrite, suffixes=(".npz",))


def read_stats(path: Path, dim: int | None) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """(mu, sigma, features or None) from an .npz holding `features` (N, D) and/or `mu` (D,) + `sigma` (D, D)."""
    if path.suffix != ".npz":
        raise ValueError(f"{path}: a feature file must be .npz (features, or mu and sigma)")
    if not path.is_file():
        raise FileNotFoundError(f"feature file not found: {path}")
    with np.load(path, allow_pickle=False) as f:
        keys = set(f.files)
        if "features" in keys:
            features = check_features(f["features"], dim, str(path))
            mu, sigma = gaussian_stats(features)
            return mu, sigma, features
        if not {"mu", "sigma"} <= keys:
            raise ValueError(f"{path}: holds {sorted(keys)}; expected 'features', or 'mu' and 'sigma'")
        mu, sigma = np.asarray(f["mu"], np.float64), np.asarray(f["sigma"], np.float64)
    d = dim if dim is not None else mu.shape[0]
    if mu.shape != (d,) or sigma.shape != (d, d):
        raise ValueError(
            f"{path}: mu {mu.shape} / sigma {sigma.shape} do not fit {d}-d CLIP features; they come from "
            "another feature extractor"
        )
    return mu, sigma, None


def features_of(source: str | Path, extractor: ClipFeatures | None, progress: bool = False) -> np.ndarray:
    """Features of an image folder (through `extractor`) or of an .npz holding `features`."""
    source = Path(source).expanduser()
    dim = extractor.dim if extractor is not None else None
    if source.suffix == ".npz":
        _, _, features = read_stats(source, dim)
        if features is None:
            raise ValueError(f"{source}: holds only mu / sigma; per-image features are needed here")
        return features
    if extractor is None:
        raise ValueError(f"{source}: an image folder needs CLIP weights (--clip-weights)")
    return extractor.images(image_files(source), progress=progress, desc=f"CLIP features of {source.name}")
