"""The paper's three benchmark metrics, computed as the authors' eval_tool scripts compute them.

- "FID": Frechet distance between Gaussians fitted to CLIP ViT-B/32 `encode_image` features (512-d, not normalised;
  CLIP preprocessing: bicubic resize of the short side to 224, centre crop, CLIP mean / std), not Inception features.
- QS (quality score): the same features scored by a 20-component full-covariance Gaussian mixture fitted on real
  images: per-image log-likelihood s, clip(s / 300, 0, 1), mean x 100.
- CLIP score: the result cropped to the mask's box (`pbe.eval.bench.white_bounds`), stretched to 224x224 (bilinear,
  no antialiasing, on the CLIP-normalised tensor); the reference resized to 224x224 by PIL; 100 x cosine of the
  L2-normalised embeddings, averaged.

CLIP runs through open_clip with weights from a local file (never downloaded). Mixtures are stored as plain .npz
(weights, means, covariances); the authors' scikit-learn pickle is converted once with `convert-gmm --execute-pickle`.

    python -m pbe.eval.metrics fid RESULTS_DIR REAL_DIR_OR_NPZ --clip-weights W
    python -m pbe.eval.metrics qs RESULTS_DIR --gmm coco_gmm.npz --clip-weights W
    python -m pbe.eval.metrics clip RESULTS_DIR --bench BENCH --clip-weights W
    python -m pbe.eval.metrics fit-gmm REAL_DIR_OR_NPZ OUT.npz --clip-weights W
    python -m pbe.eval.metrics features DIR OUT.npz --clip-weights W      (features, mu, sigma of a folder)
    python -m pbe.eval.metrics square-real COCO_TEST2017 OUT_DIR            (short side 512, centre crop 512)
    python -m pbe.eval.metrics convert-gmm coco2017_gmm_k20 OUT.npz --execute-pickle
    python -m pbe.eval.metrics random-clip OUT.safetensors --seed 0        (random weights: numbers not comparable)
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from scipy import linalg
from torchvision.transforms import InterpolationMode
from torchvision.transforms import functional as tvF
from tqdm import tqdm

from pbe.eval.bench import BenchItem, load_bench, read_mask, white_bounds
from pbe.files import check_new_file, write_file
from pbe.models.clip_vision import CLIP_MEAN, CLIP_STD

IMAGE_SUFFIXES = (".bmp", ".jpg", ".jpeg", ".pgm", ".png", ".ppm", ".tif", ".tiff", ".webp")
QS_SCALE = 300.0  # the authors' max_number: clip(s / 300, 0, 1)


# ----------------------------------------------------------------------------------------------- CLIP features


@dataclass
class ClipConfig:
    weights: str | None = None  # a local .safetensors / .bin / .pt state dict (full CLIP or its visual tower)
    arch: str = "ViT-B-32"  # an open_clip model name, or a path to an open_clip model-config .json
    quick_gelu: bool = True  # OpenAI's weights (the authors' clip.load("ViT-B/32")) use QuickGELU
    device: str | None = None  # None: cuda when available, else cpu
    batch_size: int = 50


def _open_clip_name(arch: str) -> str:
    import open_clip

    if arch.endswith(".json"):
        path = Path(arch).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"clip.arch: model config {path} not found")
        open_clip.add_model_config(path)
        return path.stem
    if arch not in open_clip.list_models():
        raise ValueError(f"clip.arch={arch!r} is not an open_clip model name (nor a .json model config)")
    return arch


def load_clip_visual(cfg: ClipConfig) -> torch.nn.Module:
    """open_clip's image tower for `cfg.arch` with the weights of `cfg.weights` (strict), in eval mode."""

    from pbe.checkpoints.tensor_io import read_tensors

    if not cfg.weights:
        raise ValueError(
            "clip.weights is required: a local file with CLIP ViT-B/32 weights (pbe never downloads); "
            "`python -m pbe.eval.metrics random-clip` writes random ones (numbers then not comparable)"
        )
    state, metadata = read_tensors(Path(cfg.weights).expanduser())
    name = _open_clip_name(cfg.arch)
    for key, want in (("arch", name), ("quick_gelu", str(bool(cfg.quick_gelu)))):
        if key in metadata and metadata[key] != want:
            raise ValueError(
                f"clip.weights {cfg.weights} were made for {key}={metadata[key]}, config has {want}"
            )
    visual = _create(name, bool(cfg.quick_gelu)).visual
    if any(k.startswith("visual.") for k in state):
        state = {k[len("visual.") :]: v for k, v in state.items() if k.startswith("visual.")}
    try:
        visual.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise ValueError(f"clip.weights {cfg.weights} do not fit open_clip {name}: {str(e)[:500]}") from None
    return visual.eval().requires_grad_(False)


def _create(name: str, quick_gelu: bool) -> torch.nn.Module:
    """open_clip.create_model(name, pretrained=None): random init, without its "no pretrained weights" warning."""
    import logging

    import open_clip

    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        return open_clip.create_model(name, pretrained=None, force_quick_gelu=quick_gelu)
    finally:
        root.setLevel(level)


def clip_dim(cfg: ClipConfig) -> int:
    """Width of `cfg.arch`'s image embedding, from open_clip's model config (no model is built)."""
    import open_clip

    return int(open_clip.get_model_config(_open_clip_name(cfg.arch))["embed_dim"])


def clip_preprocess(image: Image.Image, size: int) -> torch.Tensor:
    """CLIP's own preprocessing: short side to `size` (bicubic), centre crop, RGB, [0, 1], CLIP mean / std."""
    image = tvF.center_crop(tvF.resize(image, size, interpolation=InterpolationMode.BICUBIC), size)
    return normalize(tvF.to_tensor(image.convert("RGB")))


def normalize(pixels: torch.Tensor) -> torch.Tensor:
    """(3, H, W) in [0, 1] -> CLIP-normalised."""
    mean, std = torch.tensor(CLIP_MEAN)[:, None, None], torch.tensor(CLIP_STD)[:, None, None]
    return (pixels - mean) / std


def open_rgb_file(path: Path) -> Image.Image:
    if not path.is_file():
        raise FileNotFoundError(f"image not found: {path}")
    with Image.open(path) as img:
        img.load()
        return img.copy()


class ClipFeatures:
    """CLIP image embeddings (encode_image, not normalised), float64 numpy rows."""

    def __init__(self, cfg: ClipConfig):
        self.cfg = cfg
        self.device = torch.device(cfg.device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.visual = load_clip_visual(cfg).to(self.device)
        size = self.visual.image_size
        self.image_size = int(size[0] if isinstance(size, tuple | list) else size)
        self.dim = int(self.visual.output_dim)

    @torch.no_grad()
    def encode(self, pixels: torch.Tensor) -> np.ndarray:
        """(N, 3, S, S) CLIP-normalised pixels -> (N, dim) float64, in batches of cfg.batch_size."""
        out = []
        for start in range(0, pixels.shape[0], self.cfg.batch_size):
            batch = pixels[start : start + self.cfg.batch_size].to(self.device, torch.float32)
            out.append(self.visual(batch).double().cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, self.dim))

    def images(
        self, paths: Sequence[Path], progress: bool = False, desc: str = "CLIP features"
    ) -> np.ndarray:
        rows = []
        bs = self.cfg.batch_size
        for start in tqdm(range(0, len(paths), bs), desc=desc, disable=not progress):
            chunk = paths[start : start + bs]
            pixels = torch.stack([clip_preprocess(open_rgb_file(Path(p)), self.image_size) for p in chunk])
            rows.append(self.encode(pixels))
        return np.concatenate(rows) if rows else np.zeros((0, self.dim))


def image_files(folder: str | Path) -> list[Path]:
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise FileNotFoundError(f"image folder not found: {folder}")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not files:
        raise ValueError(f"{folder} holds no image ({', '.join(IMAGE_SUFFIXES)})")
    return files


# ----------------------------------------------------------------------------------------------- output files


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


# ----------------------------------------------------------------------------------------------- Frechet distance


def gaussian_stats(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    features = np.asarray(features, dtype=np.float64)
    if features.ndim != 2 or features.shape[0] < 2:
        raise ValueError(f"need at least 2 feature rows for a covariance, got shape {features.shape}")
    return features.mean(axis=0), np.cov(features, rowvar=False)


def frechet_distance(mu1, sigma1, mu2, sigma2, eps: float = 1e-6) -> float:
    """|mu1 - mu2|^2 + tr(S1 + S2 - 2 (S1 S2)^(1/2)), the standard FID formula (with its singular-product fallback)."""
    mu1, mu2 = np.atleast_1d(mu1).astype(np.float64), np.atleast_1d(mu2).astype(np.float64)
    sigma1, sigma2 = np.atleast_2d(sigma1).astype(np.float64), np.atleast_2d(sigma2).astype(np.float64)
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape:
        raise ValueError(
            f"Frechet distance of {mu1.shape[0]}-d and {mu2.shape[0]}-d statistics: features of different widths"
        )
    diff = mu1 - mu2
    covmean = linalg.sqrtm(sigma1 @ sigma2)
    if not np.isfinite(covmean).all():
        offset = np.eye(sigma1.shape[0]) * eps
        covmean = linalg.sqrtm((sigma1 + offset) @ (sigma2 + offset))
    if np.iscomplexobj(covmean):
        if not np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3):
            raise ValueError(f"Frechet distance: imaginary component {np.abs(covmean.imag).max():.3g}")
        covmean = covmean.real
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean))


# ----------------------------------------------------------------------------------------------- quality score


@dataclass
class Mixture:
    """A Gaussian mixture with full covariances (what the authors' coco2017_gmm_k20 is)."""

    weights: np.ndarray  # (K,)
    means: np.ndarray  # (K, D)
    covariances: np.ndarray  # (K, D, D)

    def __post_init__(self):
        k = self.weights.shape[0]
        if self.weights.ndim != 1 or self.means.ndim != 2 or self.means.shape[0] != k:
            raise ValueError(
                f"mixture: weights {self.weights.shape} and means {self.means.shape} do not agree"
            )
        d = self.means.shape[1]
        if self.covariances.shape != (k, d, d):
            raise ValueError(f"mixture: covariances {self.covariances.shape}; expected {(k, d, d)}")

    @property
    def dim(self) -> int:
        return self.means.shape[1]

    def log_likelihood(self, x: np.ndarray) -> np.ndarray:
        """Per-row log p(x) = logsumexp_k [log w_k + log N(x; mu_k, S_k)] (scikit-learn's score_samples)."""
        x = check_features(x, self.dim, "quality score", "the mixture")
        d = self.dim
        per_component = np.empty((x.shape[0], self.weights.shape[0]))
        for k, (w, mu, cov) in enumerate(zip(self.weights, self.means, self.covariances, strict=True)):
            chol = linalg.cholesky(cov, lower=True)
            y = linalg.solve_triangular(chol, (x - mu).T, lower=True)
            log_det = 2.0 * np.log(np.diag(chol)).sum()
            per_component[:, k] = np.log(w) - 0.5 * (d * np.log(2 * np.pi) + log_det + (y * y).sum(axis=0))
        top = per_component.max(axis=1, keepdims=True)
        return (top + np.log(np.exp(per_component - top).sum(axis=1, keepdims=True)))[:, 0]


def quality_score(log_likelihood: np.ndarray) -> float:
    """The authors' QS: mean of clip(s / 300, 0, 1), times 100."""
    return float(np.clip(np.asarray(log_likelihood) / QS_SCALE, 0, 1).mean() * 100)


def fit_gmm(features: np.ndarray, n_components: int = 20, seed: int = 0) -> Mixture:
    """scikit-learn GaussianMixture (full covariance, as the authors' GIQA-style fit), deterministic for `seed`."""
    from sklearn.mixture import GaussianMixture

    features = check_features(features, None, "fit-gmm")
    if features.shape[0] < n_components:
        raise ValueError(f"fit-gmm: {features.shape[0]} feature rows for {n_components} components")
    gmm = GaussianMixture(n_components=n_components, covariance_type="full", random_state=seed)
    gmm.fit(features)
    return Mixture(gmm.weights_.copy(), gmm.means_.copy(), gmm.covariances_.copy())


def save_gmm(mixture: Mixture, path: str | Path, overwrite: bool = False) -> None:
    content = npz_writer(weights=mixture.weights, means=mixture.means, covariances=mixture.covariances)
    write_file(path, content, overwrite=overwrite, suffixes=(".npz",))


def load_gmm(path: str | Path) -> Mixture:
    """A mixture from .npz only (weights, means, covariances); pickles are refused (see convert-gmm)."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"mixture file not found: {path}")
    if path.suffix != ".npz":
        raise ValueError(
            f"{path}: mixtures are read from .npz only; convert a scikit-learn pickle once with "
            "`python -m pbe.eval.metrics convert-gmm PICKLE OUT.npz --execute-pickle`"
        )
    with np.load(path, allow_pickle=False) as f:
        missing = {"weights", "means", "covariances"} - set(f.files)
        if missing:
            raise ValueError(f"{path}: lacks {sorted(missing)} (expected weights, means, covariances)")
        return Mixture(*(np.asarray(f[k], np.float64) for k in ("weights", "means", "covariances")))


def mixture_from_sklearn(gmm) -> Mixture:
    """Full covariances from a fitted scikit-learn GaussianMixture of any covariance_type."""
    kind = getattr(gmm, "covariance_type", None)
    weights, means, cov = (
        np.asarray(getattr(gmm, a), np.float64) for a in ("weights_", "means_", "covariances_")
    )
    k, d = means.shape
    if kind == "full":
        full = cov
    elif kind == "tied":
        full = np.broadcast_to(cov, (k, d, d)).copy()
    elif kind == "diag":
        full = np.stack([np.diag(c) for c in cov])
    elif kind == "spherical":
        full = np.stack([c * np.eye(d) for c in cov])
    else:
        raise ValueError(f"not a fitted scikit-learn GaussianMixture (covariance_type={kind!r})")
    return Mixture(weights, means, full)


def convert_gmm_pickle(
    src: str | Path, dst: str | Path, execute_pickle: bool, overwrite: bool = False
) -> Mixture:
    """One-time conversion of the authors' pickled GaussianMixture to .npz. Unpickling runs code from the file:
    it is done only with execute_pickle=True, for a file you trust."""
    if not execute_pickle:
        raise ValueError(
            "convert-gmm unpickles SRC, which executes code stored in the file; pass --execute-pickle to confirm "
            "you trust it"
        )
    import pickle

    src = Path(src).expanduser()
    if not src.is_file():
        raise FileNotFoundError(f"convert-gmm: {src} not found")
    check_output(dst, ".npz", overwrite, inputs=[src])
    with open(src, "rb") as f:
        gmm = pickle.load(f)  # noqa: S301 -- explicit, flagged opt-in
    mixture = mixture_from_sklearn(gmm)
    save_gmm(mixture, dst, overwrite=overwrite)
    return mixture


# ----------------------------------------------------------------------------------------------- CLIP score


def region_crop(result: torch.Tensor, mask: np.ndarray, size: int) -> torch.Tensor:
    """The authors' crop of a CLIP-normalised result (3, H, W) to the mask's box, stretched to size x size
    (bilinear, no antialiasing: torchvision's tensor Resize of their environment)."""
    if tuple(result.shape[-2:]) != tuple(mask.shape):
        raise ValueError(
            f"result is {result.shape[-1]}x{result.shape[-2]} but its mask is {mask.shape[1]}x{mask.shape[0]}"
        )
    top, bottom, left, right = white_bounds(mask)
    crop = result[:, top:bottom, left:right]
    return F.interpolate(
        crop[None], size=(size, size), mode="bilinear", align_corners=False, antialias=False
    )[0]


def reference_pixels(path: Path, size: int) -> torch.Tensor:
    """The authors' reference: PIL resize to size x size (PIL's default filter), RGB, CLIP-normalised."""
    return normalize(tvF.to_tensor(open_rgb_file(path).resize((size, size)).convert("RGB")))


def clip_scores(
    extractor: ClipFeatures, results: Sequence[Path], items: Sequence[BenchItem], progress: bool = False
) -> np.ndarray:
    """100 x cosine(result crop, reference) per item (float64)."""
    if len(results) != len(items):
        raise ValueError(f"{len(results)} results for {len(items)} items")
    size, scores = extractor.image_size, []
    bs = extractor.cfg.batch_size
    for start in tqdm(range(0, len(items), bs), desc="CLIP score", disable=not progress):
        crops, refs = [], []
        for path, item in zip(results[start : start + bs], items[start : start + bs], strict=True):
            result = normalize(tvF.to_tensor(open_rgb_file(Path(path)).convert("RGB")))
            try:
                crops.append(region_crop(result, read_mask(item.mask), size))
            except ValueError as e:
                raise ValueError(f"CLIP score of item {item.id} ({path}): {e}") from None
            refs.append(reference_pixels(item.reference, size))
        a, b = extractor.encode(torch.stack(crops)), extractor.encode(torch.stack(refs))
        a /= np.linalg.norm(a, axis=1, keepdims=True)
        b /= np.linalg.norm(b, axis=1, keepdims=True)
        scores.append(100.0 * (a * b).sum(axis=1))
    return np.concatenate(scores) if scores else np.zeros(0)


# ----------------------------------------------------------------------------------------------- real set, weights


def square_real(src: str | Path, dst: str | Path, size: int = 512, progress: bool = True) -> int:
    """The authors' real set: short side resized to `size` (bilinear), centre crop, PNG, into a folder of its own.
    Existing files are kept (an interrupted run resumes)."""
    dst = Path(dst).expanduser()
    files = image_files(src)
    if os.path.realpath(dst) == os.path.realpath(Path(src).expanduser()):
        raise ValueError(
            f"square-real: OUT {dst} is the source folder; the squared images need a folder of their own"
        )
    written = 0
    for path in tqdm(files, desc="square real images", disable=not progress):
        out = dst / f"{path.stem}.png"
        if out.exists():
            continue
        img = open_rgb_file(path)
        square = tvF.center_crop(tvF.resize(img, size, interpolation=InterpolationMode.BILINEAR), size)
        write_file(out, square, inputs=[path])
        written += 1
    return written


def random_clip_weights(
    path: str | Path, arch: str = "ViT-B-32", quick_gelu: bool = True, seed: int = 0, overwrite: bool = False
) -> None:
    """open_clip's random initialisation of `arch`'s image tower (torch.manual_seed(seed)) to a .safetensors file,
    marked `random_init` in its metadata. Only for running the protocol without real CLIP weights."""

    from pbe.checkpoints.tensor_io import write_safetensors

    check_output(path, ".safetensors", overwrite)
    name = _open_clip_name(arch)
    torch.manual_seed(seed)
    visual = _create(name, quick_gelu).visual
    meta = {"arch": name, "quick_gelu": str(bool(quick_gelu)), "random_init": f"seed={seed}"}
    content = partial(write_safetensors, tensors=visual.state_dict(), metadata=meta)
    write_file(path, content, overwrite=overwrite, suffixes=(".safetensors",))


def weights_metadata(path: str | Path) -> dict:
    from pbe.checkpoints.tensor_io import read_safetensors

    path = Path(path)
    return read_safetensors(path)[1] if path.suffix == ".safetensors" else {}


# ----------------------------------------------------------------------------------------------- command line


def _clip_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--clip-weights", help="local CLIP weights file (.safetensors / .bin / .pt state dict)")
    p.add_argument("--clip-arch", default="ViT-B-32", help="open_clip model name or model-config .json")
    p.add_argument("--no-quick-gelu", action="store_true", help="GELU instead of OpenAI's QuickGELU")
    p.add_argument("--device", default=None)
    p.add_argument("--batch-size", type=int, default=50)


def _extractor(args) -> ClipFeatures:
    return ClipFeatures(
        ClipConfig(args.clip_weights, args.clip_arch, not args.no_quick_gelu, args.device, args.batch_size)
    )


def _maybe_extractor(args, *sources) -> ClipFeatures | None:
    need = args.clip_weights or any(Path(s).suffix != ".npz" for s in sources)
    return _extractor(args) if need else None


def _stats(source: str, extractor: ClipFeatures | None) -> tuple[np.ndarray, np.ndarray]:
    path = Path(source).expanduser()
    if path.suffix == ".npz":
        mu, sigma, _ = read_stats(path, extractor.dim if extractor else None)
        return mu, sigma
    return gaussian_stats(features_of(path, extractor, progress=True))


def bench_results(results_dir: str | Path, bench: str | Path) -> tuple[list[Path], list[BenchItem]]:
    """Result files `{id}.png` of every bench item, in bench order; a missing result is an error."""
    items = load_bench(bench)
    folder = Path(results_dir).expanduser()
    if not folder.is_dir():
        raise FileNotFoundError(f"results folder not found: {folder}")
    paths = [folder / f"{item.id}.png" for item in items]
    missing = [p.name for p in paths if not p.is_file()]
    if missing:
        raise FileNotFoundError(
            f"{folder}: {len(missing)} of {len(items)} results missing, e.g. {missing[:3]}"
        )
    return paths, items


def main(argv: Sequence[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m pbe.eval.metrics", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("fid", help="Frechet distance of CLIP features of two folders (or .npz feature files)")
    p.add_argument("a")
    p.add_argument("b")
    _clip_args(p)
    p = sub.add_parser("qs", help="quality score of a folder (or .npz features) under a mixture .npz")
    p.add_argument("source")
    p.add_argument("--gmm", required=True)
    _clip_args(p)
    p = sub.add_parser("clip", help="region CLIP score of results {id}.png against a benchmark's references")
    p.add_argument("results")
    p.add_argument("--bench", required=True, help="COCOEE-layout folder or JSONL manifest")
    _clip_args(p)
    p = sub.add_parser(
        "fit-gmm", help="fit the quality-score mixture on a real-image folder (or .npz features)"
    )
    p.add_argument("source")
    p.add_argument("out")
    p.add_argument("--components", type=int, default=20)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--overwrite", action="store_true")
    _clip_args(p)
    p = sub.add_parser("features", help="CLIP features (and mu, sigma) of an image folder to .npz")
    p.add_argument("source")
    p.add_argument("out")
    p.add_argument("--overwrite", action="store_true")
    _clip_args(p)
    p = sub.add_parser("square-real", help="the authors' real set: short side 512, centre crop 512, PNG")
    p.add_argument("source")
    p.add_argument("out")
    p.add_argument("--size", type=int, default=512)
    p = sub.add_parser("convert-gmm", help="pickled scikit-learn GaussianMixture -> .npz (runs the pickle!)")
    p.add_argument("source")
    p.add_argument("out")
    p.add_argument(
        "--execute-pickle", action="store_true", help="confirm: unpickling executes code in SOURCE"
    )
    p.add_argument("--overwrite", action="store_true")
    p = sub.add_parser("random-clip", help="randomly initialised CLIP image tower (numbers not comparable)")
    p.add_argument("out")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--clip-arch", default="ViT-B-32")
    p.add_argument("--no-quick-gelu", action="store_true")
    p.add_argument("--overwrite", action="store_true")
    args = parser.parse_args(argv)

    if args.command == "fid":
        extractor = _maybe_extractor(args, args.a, args.b)
        out = {"fid": frechet_distance(*_stats(args.a, extractor), *_stats(args.b, extractor))}
    elif args.command == "qs":
        mixture = load_gmm(args.gmm)
        extractor = _maybe_extractor(args, args.source)
        features = features_of(args.source, extractor, progress=True)
        check_features(features, mixture.dim, str(args.source), f"the mixture {args.gmm}")
        out = {"qs": quality_score(mixture.log_likelihood(features)), "n": len(features)}
    elif args.command == "clip":
        paths, items = bench_results(args.results, args.bench)
        scores = clip_scores(_extractor(args), paths, items, progress=True)
        out = {"clip_score": float(scores.mean()), "n": len(scores)}
    elif args.command == "fit-gmm":
        check_output(args.out, ".npz", args.overwrite, inputs=[args.source])
        features = features_of(args.source, _maybe_extractor(args, args.source), progress=True)
        save_gmm(fit_gmm(features, args.components, args.seed), args.out, overwrite=args.overwrite)
        out = {"gmm": args.out, "n": len(features), "components": args.components}
    elif args.command == "features":
        check_output(args.out, ".npz", args.overwrite, inputs=[args.source])
        extractor = _extractor(args)
        features = features_of(args.source, extractor, progress=True)
        write_features(args.out, features, overwrite=args.overwrite)
        out = {"features": args.out, "n": len(features), "dim": extractor.dim}
    elif args.command == "square-real":
        out = {"written": square_real(args.source, args.out, args.size)}
    elif args.command == "convert-gmm":
        mixture = convert_gmm_pickle(args.source, args.out, args.execute_pickle, args.overwrite)
        out = {"gmm": args.out, "components": int(mixture.weights.shape[0]), "dim": mixture.dim}
    else:
        random_clip_weights(args.out, args.clip_arch, not args.no_quick_gelu, args.seed, args.overwrite)
        out = {"weights": args.out, "random_init": f"seed={args.seed}"}
    print(json.dumps(out, indent=2))
    return out


if __name__ == "__main__":
    try:
        main()
    except (ValueError, OSError) as e:  # FileNotFoundError, FileExistsError, a full disk: a message
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
