"""The small model's report: every score of `pbe.recipes.small.evaluate` on the same held-out edits, as a markdown table
(and JSON), plus a figure of the same edits across models. `python -m pbe.report small|ablation` calls this."""

from __future__ import annotations

import json
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from pbe.assets import backgrounds_dir
from pbe.edit_grid import tile_grid
from pbe.recipes.small.evaluate import (
    MASK_OPTIONS,
    GenerationSettings,
    background_change,
    colour_errors,
    generate,
    load_pipeline,
    mask_iou,
    other_exemplars,
    scene_masks,
    shape_accuracy,
    shape_hits,
    similarity_to_exemplar,
)
from pbe.recipes.small.scenes import Edit, held_out_edits, single_object_scenes
from pbe.recipes.small.shape_classifier import cached_shape_classifier


def evaluate_model(
    model_dir: str | Path,
    classifier,
    edits: list[Edit],
    copy_edits: list[Edit],
    settings: GenerationSettings,
    mask_scenes: int = 50,
    full: bool = True,
) -> tuple[dict, np.ndarray]:
    """All scores of one model; returns (scores, results of the exemplar-conditioned edits)."""
    start = time.perf_counter()
    pipe = load_pipeline(model_dir)
    results = generate(pipe, edits, settings=settings, desc="exemplar")
    uncond = generate(load_pipeline(model_dir, unconditional=True), edits, settings=settings, desc="uncond")
    copies = generate(pipe, copy_edits, settings=settings, desc="same-class")
    scores = {
        "edits": len(edits),
        "colour_error_exemplar": float(colour_errors(results, edits).mean()),
        "colour_error_uncond": float(colour_errors(uncond, edits).mean()),
        "shape_accuracy": shape_accuracy(classifier, results, edits),
        "shape_accuracy_uncond": shape_accuracy(classifier, uncond, edits),
        "background_change": background_change(results, edits),
        "copy_edits": len(copy_edits),
        "copy_similarity": similarity_to_exemplar(copies, copy_edits),
        "copy_similarity_source": similarity_to_exemplar([e.image for e in copy_edits], copy_edits),
    }
    scores["colour_ratio"] = scores["colour_error_exemplar"] / scores["colour_error_uncond"]
    if full:
        others, _ = other_exemplars(edits)
        other = generate(pipe, edits, exemplars=others, settings=settings, desc="other exemplar")
        scores["colour_error_other"] = float(colour_errors(other, edits).mean())
        scores["background_change_vae"] = vae_floor(pipe, edits)
        if mask_scenes:
            scores.update(
                {f"mask_{k}": v for k, v in mask_iou(pipe, mask_scenes, str(backgrounds_dir())).items()}
            )
    scores["seconds"] = time.perf_counter() - start
    return scores, results


@torch.no_grad()
def vae_floor(pipe, edits: list[Edit]) -> float:
    """Background change of the autoencoder round trip alone (what no edit can go below without paste-back)."""
    images = torch.stack([torch.from_numpy(e.image).permute(2, 0, 1).float() / 127.5 - 1 for e in edits])
    vae = pipe.model.vae
    decoded = torch.cat([vae.decode(vae.encode(chunk).mode()) for chunk in images.split(100)])
    recon = ((decoded / 2 + 0.5).clamp(0, 1)).permute(0, 2, 3, 1).numpy()
    return background_change(recon, edits)


CLASSIFIER_CACHE = Path("outputs/cache/shape_classifier.pt")


def shape_classifier():
    """The judge of shapes (trained once, about a minute; cached in outputs/cache/)."""
    return cached_shape_classifier(CLASSIFIER_CACHE, backgrounds=str(backgrounds_dir()))


def held_out_sets(count: int, copy_count: int) -> tuple[list[Edit], list[Edit]]:
    backgrounds = str(backgrounds_dir())
    return (
        held_out_edits(count, backgrounds=backgrounds),
        held_out_edits(copy_count, backgrounds=backgrounds, same_class=True),
    )


def tile_sheet(names: list[str], rows: list[list[np.ndarray]], path: Path, scale: int = 2) -> Path:
    """A figure of equal square tiles (nearest-neighbour, `scale` x): one labelled column per name, one row per
    list of arrays."""
    size = rows[0][0].shape[0] * scale
    sheet = tile_grid(
        rows, [name[: size // 6] for name in names], size=size, resample=Image.Resampling.NEAREST
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path)
    return path


def edits_figure(edits: list[Edit], columns: dict[str, np.ndarray], path: Path, scale: int = 2) -> Path:
    """Rows = edits; columns = source | mask | exemplar | one result per model (no paste-back)."""
    rows = [
        [edit.image, edit.mask, edit.exemplar] + [results[i] for results in columns.values()]
        for i, edit in enumerate(edits)
    ]
    return tile_sheet(["source", "mask", "exemplar", *columns], rows, path, scale)


@torch.no_grad()
def masks_figure(model_dir, path: Path, count: int = 8, seed: int = 0, scale: int = 2) -> Path:
    """The first `count` scenes of the automatic-mask score (same scenes and noise draws as `mask_iou`): source |
    exemplar | the object | generate_mask's default | each of MASK_OPTIONS."""
    pipe = load_pipeline(model_dir)
    rows = []
    for k, (scene, exemplar) in enumerate(
        single_object_scenes(count, backgrounds=str(backgrounds_dir()), seed=seed)
    ):
        masks = scene_masks(pipe, scene, exemplar, seed + k)
        object_mask = (scene.objects[0].alpha > 0.5).astype(np.float32)
        rows.append([scene.pixels, exemplar, object_mask, *(m.astype(np.float32) for m in masks.values())])
    names = [
        "source",
        "exemplar",
        "object",
        "DiffEdit rule",
        *(n.replace("_one_region", "+1") for n in MASK_OPTIONS),
    ]
    return tile_sheet(names, rows, path, scale)


SMALL_ROWS = [
    ("colour error, exemplar (RGB distance, lower is better)", "colour_error_exemplar", "{:.1f}"),
    ("colour error, unconditional vector", "colour_error_uncond", "{:.1f}"),
    ("colour error, a random other exemplar", "colour_error_other", "{:.1f}"),
    ("exemplar / unconditional colour error (target <= 0.33)", "colour_ratio", "{:.2f}"),
    ("shape accuracy, exemplar (chance 0.167, target >= 0.333)", "shape_accuracy", "{:.3f}"),
    ("shape accuracy, unconditional vector", "shape_accuracy_uncond", "{:.3f}"),
    ("shape classifier's own accuracy on real crops", "classifier_accuracy", "{:.3f}"),
    ("background change outside the mask, no paste-back (0-255)", "background_change", "{:.2f}"),
    ("  the same for the autoencoder round trip alone", "background_change_vae", "{:.2f}"),
    ("copy-paste similarity to the exemplar crop (same-class edits)", "copy_similarity", "{:.3f}"),
    ("  the same for the untouched source (another instance)", "copy_similarity_source", "{:.3f}"),
    ("generate_mask mean IoU with the object, DiffEdit's rule (the default)", "mask_iou_object", "{:.3f}"),
    ("  the same with the object's box", "mask_iou_box", "{:.3f}"),
    (
        "  IoU with the object, upsample='bilinear', single_region=True",
        "mask_iou_object_bilinear_one_region",
        "{:.3f}",
    ),
    ("  IoU with the object, upsample='guided'", "mask_iou_object_guided", "{:.3f}"),
    (
        "  IoU with the object, upsample='guided', single_region=True (target >= 0.5)",
        "mask_iou_object_guided_one_region",
        "{:.3f}",
    ),
]


def small_table(scores: dict) -> str:
    lines = ["| metric | value |", "| --- | --- |"]
    for label, key, fmt in SMALL_ROWS:
        if key in scores:
            lines.append(f"| {label} | {fmt.format(scores[key])} |")
    return "\n".join(lines)


ABLATION_COLUMNS = [
    ("colour error (exemplar)", "colour_error_exemplar", "{:.1f}"),
    ("colour error (uncond)", "colour_error_uncond", "{:.1f}"),
    ("ratio", "colour_ratio", "{:.2f}"),
    ("shape acc.", "shape_accuracy", "{:.3f}"),
    ("copy-paste sim.", "copy_similarity", "{:.3f}"),
    ("bg change", "background_change", "{:.2f}"),
]


def ablation_table(all_scores: dict[str, dict]) -> str:
    lines = [
        "| model | " + " | ".join(c[0] for c in ABLATION_COLUMNS) + " |",
        "| --- |" + " --- |" * len(ABLATION_COLUMNS),
    ]
    for name, scores in all_scores.items():
        cells = [fmt.format(scores[key]) if key in scores else "-" for _, key, fmt in ABLATION_COLUMNS]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def paired_difference(base: np.ndarray, other: np.ndarray) -> dict:
    """Mean of `other - base` over the same edits and its standard error (paired: per-edit differences)."""
    base, other = np.asarray(base, dtype=np.float64), np.asarray(other, dtype=np.float64)
    if base.shape != other.shape or base.ndim != 1 or len(base) < 2:
        raise ValueError(
            f"paired scores need two 1-D arrays of the same length >= 2, got shapes {base.shape} and {other.shape}"
        )
    diff = other - base
    return {"mean": float(diff.mean()), "se": float(diff.std(ddof=1) / np.sqrt(len(diff)))}


def paired_table(all_scores: dict[str, dict]) -> str:
    """Differences of every model from the first one, paired over the same edits (mean +- standard error)."""
    names = list(all_scores)
    lines = [
        f"| vs {names[0]} | colour error (exemplar) | shape acc. |",
        "| --- | ---: | ---: |",
    ]
    for name in names[1:]:
        paired = all_scores[name]["paired_vs_first"]
        colour, shape = paired["colour_error_exemplar"], paired["shape_accuracy"]
        lines.append(
            f"| {name} | {colour['mean']:+.1f} +- {colour['se']:.1f} | {shape['mean']:+.3f} +- {shape['se']:.3f} |"
        )
    return "\n".join(lines)


def shown_path(path) -> str:
    """`path` relative to the working directory when inside it (no machine paths in committed reports)."""
    try:
        return str(Path(path).resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def run_small_report(
    model_dir, out_dir: Path, count: int, copy_count: int, settings: GenerationSettings, mask_scenes: int = 50
) -> dict:
    classifier, classifier_accuracy = shape_classifier()
    edits, copy_edits = held_out_sets(count, copy_count)
    scores, results = evaluate_model(model_dir, classifier, edits, copy_edits, settings, mask_scenes)
    scores["classifier_accuracy"] = classifier_accuracy
    scores["settings"] = asdict(settings)
    scores["model"] = shown_path(model_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "small_report.json").write_text(json.dumps(scores, indent=2) + "\n")
    (out_dir / "small_report.md").write_text(small_table(scores) + "\n")
    edits_figure(edits[:8], {"result": results[:8]}, out_dir / "small_edits.png")
    if mask_scenes:
        masks_figure(model_dir, out_dir / "small_masks.png", count=min(8, mask_scenes))
    return scores


def run_ablation_report(
    models: dict[str, str], out_dir: Path, count: int, copy_count: int, settings: GenerationSettings
) -> dict:
    classifier, classifier_accuracy = shape_classifier()
    edits, copy_edits = held_out_sets(count, copy_count)
    all_scores, columns, copy_columns, per_edit = {}, {}, {}, {}
    for name, model_dir in models.items():
        scores, results = evaluate_model(model_dir, classifier, edits, copy_edits, settings, full=False)
        scores["model"] = shown_path(model_dir)
        all_scores[name], columns[name] = scores, results[:8]
        per_edit[name] = {
            "colour_error_exemplar": colour_errors(results, edits),
            "shape_accuracy": shape_hits(classifier, results, edits),
        }
        copy_columns[name] = generate(
            load_pipeline(model_dir), copy_edits[:8], settings=settings, desc="figure"
        )
    first = next(iter(models))
    for name in list(models)[1:]:
        all_scores[name]["paired_vs_first"] = {
            key: paired_difference(per_edit[first][key], values) for key, values in per_edit[name].items()
        }
    out_dir.mkdir(parents=True, exist_ok=True)
    payload = {"classifier_accuracy": classifier_accuracy, "settings": asdict(settings), "models": all_scores}
    (out_dir / "ablation.json").write_text(json.dumps(payload, indent=2) + "\n")
    tables = ablation_table(all_scores)
    if len(models) > 1:
        tables += (
            "\n\nPaired over the same edits (mean difference +- its standard error):\n\n"
            + paired_table(all_scores)
        )
    (out_dir / "ablation.md").write_text(tables + "\n")
    edits_figure(edits[:8], columns, out_dir / "ablation_edits.png")
    edits_figure(copy_edits[:8], copy_columns, out_dir / "ablation_copy_paste.png")
    return payload
