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

Each metric and its feature extractor is a module of its own, and every name stays importable from here:
`pbe.eval.clip_features` (CLIP image features), `pbe.eval.feature_files` (.npz feature files, output checks),
`pbe.eval.fid` (Frechet distance), `pbe.eval.quality_score` (QS and its mixture), `pbe.eval.clip_score` (CLIP
score). This module holds the command line and its two set-up commands (the squared real set, random CLIP weights).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from functools import partial
from pathlib import Path

import numpy as np
import torch
from torchvision.transforms import InterpolationMode
from torchvision.transforms import functional as tvF
from tqdm import tqdm

from pbe.eval.bench import BenchItem, load_bench
from pbe.eval.clip_features import (
    IMAGE_SUFFIXES,
    ClipConfig,
    ClipFeatures,
    _create,
    _open_clip_name,
    clip_dim,
    clip_preprocess,
    image_files,
    load_clip_visual,
    normalize,
    open_rgb_file,
)
from pbe.eval.clip_score import clip_scores, reference_pixels, region_crop
from pbe.eval.feature_files import (
    check_features,
    check_output,
    features_of,
    npz_writer,
    read_stats,
    write_features,
)
from pbe.eval.fid import frechet_distance, gaussian_stats
from pbe.eval.quality_score import (
    QS_SCALE,
    Mixture,
    convert_gmm_pickle,
    fit_gmm,
    load_gmm,
    mixture_from_sklearn,
    quality_score,
    save_gmm,
)
from pbe.files import write_file

__all__ = [
    "IMAGE_SUFFIXES",
    "QS_SCALE",
    "ClipConfig",
    "ClipFeatures",
    "Mixture",
    "bench_results",
    "check_features",
    "check_output",
    "clip_dim",
    "clip_preprocess",
    "clip_scores",
    "convert_gmm_pickle",
    "features_of",
    "fit_gmm",
    "frechet_distance",
    "gaussian_stats",
    "image_files",
    "load_clip_visual",
    "load_gmm",
    "main",
    "mixture_from_sklearn",
    "normalize",
    "npz_writer",
    "open_rgb_file",
    "quality_score",
    "random_clip_weights",
    "read_stats",
    "reference_pixels",
    "region_crop",
    "save_gmm",
    "square_real",
    "weights_metadata",
    "write_features",
]


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
