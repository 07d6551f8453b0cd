"""Score a finished run and write results.json, table.md (the paper's Table 1 layout) and contact_sheet.png."""

from __future__ import annotations

import json
import platform
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

import pbe
from pbe.edit_grid import tile_grid
from pbe.eval.bench import BenchItem
from pbe.eval.metrics import (
    ClipFeatures,
    clip_scores,
    frechet_distance,
    gaussian_stats,
    image_files,
    load_gmm,
    quality_score,
    read_stats,
    weights_metadata,
)
from pbe.files import write_files

# The paper's Table 1 row for Paint by Example (arXiv 2211.13227, Table 1).
PAPER_ROW = {"method": "Paint by Example (paper, Table 1)", "fid": 3.18, "qs": 77.80, "clip_score": 84.97}
SHEET_CELL = 160


def score(args, items: list[BenchItem], results: list[Path]) -> tuple[dict, dict, dict, dict]:
    """(metrics, notes saying why a metric is missing, per-item values, what was used), from the files on disk."""
    from pbe.files import sha256_of

    m = args.metrics
    metrics = {"fid": None, "qs": None, "clip_score": None}
    notes, per_item, inputs = {}, {}, {}
    if not m.compute:
        return metrics, {"all": "metrics.compute=false"}, per_item, inputs
    extractor = ClipFeatures(m.clip)
    meta = weights_metadata(m.clip.weights)
    inputs["clip"] = {
        "arch": m.clip.arch,
        "quick_gelu": m.clip.quick_gelu,
        "weights": str(m.clip.weights),
        "sha256": sha256_of(m.clip.weights),
        "random_init": meta.get("random_init"),
        "dim": extractor.dim,
    }
    generated = extractor.images(results, progress=args.progress, desc="CLIP features of the results")
    if m.real is None:
        notes["fid"] = "not computed: metrics.real (real images or their CLIP statistics) not given"
    elif len(results) < 2:
        notes["fid"] = "not computed: a covariance needs at least 2 results"
    else:
        real = Path(m.real).expanduser()
        if real.suffix == ".npz":
            mu, sigma, _ = read_stats(real, extractor.dim)
            n_real = None
        else:
            files = image_files(real)
            real_features = extractor.images(
                files, progress=args.progress, desc="CLIP features of the real set"
            )
            mu, sigma = gaussian_stats(real_features)
            n_real = len(files)
        metrics["fid"] = frechet_distance(*gaussian_stats(generated), mu, sigma)
        inputs["real"] = {"path": str(real), "images": n_real}
    if m.gmm is None:
        notes["qs"] = "not computed: metrics.gmm (a mixture .npz) not given"
    else:
        mixture = load_gmm(m.gmm)
        if mixture.dim != extractor.dim:
            raise ValueError(f"metrics.gmm: a {mixture.dim}-d mixture for {extractor.dim}-d CLIP features")
        log_likelihood = mixture.log_likelihood(generated)
        metrics["qs"] = quality_score(log_likelihood)
        per_item["qs_log_likelihood"] = log_likelihood.tolist()
        inputs["gmm"] = {"path": str(m.gmm), "sha256": sha256_of(m.gmm), "components": len(mixture.weights)}
    scores = clip_scores(extractor, results, items, progress=args.progress)
    metrics["clip_score"] = float(scores.mean())
    per_item["clip_score"] = scores.tolist()
    return metrics, notes, per_item, inputs


def seconds_per_edit(out: Path, items: list[BenchItem]) -> float | None:
    values = []
    for item in items:
        path = out / "meta" / f"{item.id}.json"
        if path.is_file():
            values.append(json.loads(path.read_text())["seconds"])
    return float(np.mean(values)) if values else None


def markdown_table(results: dict) -> str:
    def cell(v, digits=2):
        return "-" if v is None else f"{v:.{digits}f}"

    m = results["metrics"]
    name = f"pbe: {Path(results['model']['weights']).name} ({results['counts']['items']} items)"
    lines = [
        "| Method | FID ↓ | QS ↑ | CLIP score ↑ |",
        "| --- | ---: | ---: | ---: |",
        f"| {PAPER_ROW['method']} | {PAPER_ROW['fid']:.2f} | {PAPER_ROW['qs']:.2f} | {PAPER_ROW['clip_score']:.2f} |",
        f"| {name} | {cell(m['fid'])} | {cell(m['qs'])} | {cell(m['clip_score'])} |",
        "",
    ]
    clip = results["inputs"].get("clip") or {}
    if clip:
        lines.append(
            f"FID and QS use CLIP {clip['arch']} image features, as the authors' scripts do (not Inception)."
        )
    if clip.get("random_init"):
        lines.append(
            f"**The CLIP weights are a random initialisation ({clip['random_init']}): these numbers are not "
            "comparable with the paper's.**"
        )
    for key, note in results["notes"].items():
        lines.append(f"{key}: {note}")
    return "\n".join(lines) + "\n"


def loaded(path: Path) -> Image.Image:
    with Image.open(path) as image:
        return image.convert("RGB")


def contact_sheet(items: list[BenchItem], results: list[Path], count: int) -> Image.Image | None:
    """Rows of source | mask | reference | result for `count` items spread evenly over the bench."""
    if count <= 0 or not items:
        return None
    picks = sorted(set(np.linspace(0, len(items) - 1, min(count, len(items))).round().astype(int).tolist()))
    return tile_grid(
        [[loaded(p) for p in (items[k].image, items[k].mask, items[k].reference, results[k])] for k in picks],
        ["source", "mask", "reference", "result"],
        size=SHEET_CELL,
        resample=Image.Resampling.BICUBIC,
        gap=4,
        captions=[items[k].id for k in picks],
        caption_column=3,
        caption_at=(3, 2),
        caption_fill="white",
    )


def score_and_report(args, items, cfg, model_sha: str, counts: dict, world: int, device: str, started: float):
    from omegaconf import OmegaConf

    from pbe.eval.bench import result_path
    from pbe.files import json_text

    results_paths = [result_path(args.out, i) for i in items]
    metrics, notes, per_item, inputs = score(args, items, results_paths)
    config = OmegaConf.to_container(cfg, resolve=True) if not isinstance(cfg, dict) else dict(cfg)
    results = {
        "metrics": metrics,
        "notes": notes,
        "counts": counts,
        "model": {"weights": str(args.weights), "sha256": model_sha},
        "bench": str(args.bench),
        "inputs": inputs,
        "timing": {
            "seconds_per_edit": seconds_per_edit(args.out, items),
            "world_size": world,
            "device": device,
            "wall_seconds_this_run": time.perf_counter() - started,
        },
        "pbe_version": pbe.__version__,
        "torch_version": torch.__version__,
        "python": platform.python_version(),
        "config": config,
    }
    files = [
        (args.out / "results.json", json_text(results)),
        (args.out / "per_item.json", json_text({"ids": [i.id for i in items], **per_item})),
        (args.out / "table.md", markdown_table(results)),
    ]
    sheet = contact_sheet(items, results_paths, args.contact_sheet)
    if sheet is not None:
        files.append((args.out / "contact_sheet.png", sheet))
    # all or none; replacing is safe here: runner.check_out allowed it before the model loaded
    write_files(files, overwrite=True)
    return results
