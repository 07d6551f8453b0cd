"""The objects model's report (`python -m pbe.report objects`): every figure of `pbe.recipes.objects.evaluate`
on held-out edits in the training styles and in the reserved style, the tower's retrieval, optionally the same
identity figures along the training run's checkpoints, and pictures; written as markdown + JSON + PNGs."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from pbe.edit_grid import tile_grid
from pbe.files import write_file, write_json
from pbe.pipeline import PaintByExamplePipeline
from pbe.recipes.objects.contrastive import retrieval_top1
from pbe.recipes.objects.evaluate import EditSet, Settings, edit_set, score

FIGURE_TILE = 192  # pixels per tile in the pictures (64-px edits are shown 3x)


def fmt(x: dict, digits: int = 3) -> str:
    """mean ± se"""
    if x.get("n", 0) == 0:
        return "-"
    return f"{x['mean']:.{digits}f} ± {x['se']:.{digits}f}"


def tower_figures(pipe: PaintByExamplePipeline, root) -> dict:
    """Held-out retrieval top-1 with the model's own frozen tower (its pooled token)."""
    from pbe.data.objects import read_manifest

    tower = pipe.model.encoder.vision
    size = tower.config.image_size

    def embed(x):
        return tower(x)[1]

    manifest = read_manifest(root, key="--data")
    styles = manifest.training_styles()
    figures = {"training styles": retrieval_top1(embed, root, size, styles, styles)}
    for style in manifest.reserved_styles():
        figures[f"{style} (unseen style) -> training styles"] = retrieval_top1(
            embed, root, size, [style], styles
        )
    return figures


def style_sets(root) -> list[tuple[str, list[str] | None]]:
    """The edit sets: held-out code points in the training styles, then in each reserved (unseen) style."""
    from pbe.data.objects import read_manifest

    return [("training styles", None)] + [
        (s, [s]) for s in read_manifest(root, key="--data").reserved_styles()
    ]


def edits_figure(edits: EditSet, rows: int, title: str) -> Image.Image:
    """source | mask | exemplar | result for the first ``rows`` scenes, with the own-code-point exemplar, and
    the same scene edited with the same-colour and other-colour exemplars (exemplar | result each)."""
    labels = ["source", "mask", "exemplar", "result", "same colour", "result", "other colour", "result"]
    tiles, names = [], []
    for i, scene in enumerate(edits.scenes[:rows]):
        source = scene.image.permute(1, 2, 0).numpy()
        mask = ((1 - scene.mask.numpy()) * 255).astype(np.uint8)
        row = [source, mask]
        for role in ("same_object", "same_colour", "other_colour"):
            row.append(edits.exemplars[role][i].permute(1, 2, 0).numpy())
            row.append((edits.results[role][i] * 255).round().astype(np.uint8))
        tiles.append(row)
        names.append(f"{scene.meta['name']} ({scene.meta['style']})")
    return tile_grid(
        tiles + [[]] * (rows - len(tiles)),  # a figure of `rows` rows, blank where the set has fewer scenes
        labels,
        size=FIGURE_TILE,
        label_height=16,
        label_at=(4, 2),
        captions=names,
        caption_column=2,
        footer=title,
    )


def checkpoint_curve(
    run_dir: Path, root, judge, n: int, settings: Settings, size: int, every: int = 1
) -> list[dict]:
    """Identity (training styles and the reserved style) of every `step_*.ckpt` of a recipe run folder whose step
    is a multiple of ``every``."""
    from pbe.recipes.stage_tools import export_run_checkpoint

    run_dir = Path(run_dir)
    vae, vision = run_dir / "autoencoder" / "vae.safetensors", run_dir / "vision" / "vision.safetensors"
    sets = {
        name: edit_set(root, n, styles, size, seed=11 + k)
        for k, (name, styles) in enumerate(style_sets(root))
    }
    sets = {name: edits for name, edits in sets.items() if edits.scenes}
    curve = []
    for ckpt in sorted((run_dir / "checkpoints").glob("step_*.ckpt")):
        step = int(ckpt.stem.split("_")[1])
        if step % every:
            continue
        with tempfile.TemporaryDirectory() as tmp:
            export_run_checkpoint(ckpt, Path(tmp) / "model", vae, vision)
            pipe = PaintByExamplePipeline.from_pretrained(Path(tmp) / "model", torch_dtype=torch.float32)
        row = {"step": step}
        for name, edits in sets.items():
            row[name] = score(pipe, judge, edits, settings, full=False)["identity"]
        shown = "; ".join(
            f"{name}: same colour {fmt(r['same_colour'])}, other colour {fmt(r['other_colour'])}"
            for name, r in row.items()
            if name != "step"
        )
        print(f"step {step}: identity {shown}")
        curve.append(row)
    return curve


def run_objects_report(
    model,
    root,
    out,
    judge_path,
    n: int = 200,
    settings: Settings | None = None,
    mask_scenes: int = 50,
    run_dir=None,
    curve_edits: int = 100,
    curve_every: int = 1,
) -> dict:
    from pbe.recipes.objects.judge import load_judge, train_judge

    settings = settings or Settings()
    out = Path(out)
    start = time.perf_counter()
    judge_path = Path(judge_path)
    if not judge_path.is_file():
        print(f"training the judge ({judge_path} is not there yet)")
        train_judge(root, judge_path)
    judge, judge_meta = load_judge(judge_path)
    pipe = PaintByExamplePipeline.from_pretrained(model, torch_dtype=torch.float32)
    size = getattr(pipe, "train_resolution", None) or 64
    report = {
        "model": str(model),
        "data": str(root),
        "settings": vars(settings),
        "judge": {"path": str(judge_path), **judge_meta},
        "tower_retrieval": tower_figures(pipe, root),
        "sets": {},
    }
    figures = []
    for seed, (name, styles) in enumerate(style_sets(root)):
        edits = edit_set(root, n, styles, size, seed)
        if not edits.scenes:
            print(f"{name}: no held-out scene has candidates of both the same and another colour; not scored")
            continue
        report["sets"][name] = score(pipe, judge, edits, settings, mask_scenes if styles is None else 0)
        figures.append(edits_figure(edits, 6, f"held-out code points, {name}"))
    if run_dir is not None:
        report["curve"] = checkpoint_curve(
            Path(run_dir), root, judge, curve_edits, settings, size, curve_every
        )
    report["seconds"] = time.perf_counter() - start
    out.mkdir(parents=True, exist_ok=True)
    for k, figure in enumerate(figures):
        write_file(out / f"heldout_edits_{k}.png", figure, overwrite=True)
    write_json(out / "objects_report.json", report, overwrite=True)
    write_file(out / "objects_table.md", objects_table(report), overwrite=True)
    return report


def objects_table(report: dict) -> str:
    lines = ["| figure | " + " | ".join(report["sets"]) + " |", "|---|" + "---|" * len(report["sets"])]

    def row(label, get):
        lines.append(f"| {label} | " + " | ".join(get(s) for s in report["sets"].values()) + " |")

    row("edits", lambda s: str(s["edits"]))
    row("identity, same-colour candidates (target >= 0.75)", lambda s: fmt(s["identity"]["same_colour"]))
    row("identity, other-colour candidates (target >= 0.95)", lambda s: fmt(s["identity"]["other_colour"]))
    row(
        "judge's ceiling on the unedited scene, same colour",
        lambda s: fmt(s["identity"]["ceiling_same_colour"]),
    )
    row("judge's ceiling, other colour", lambda s: fmt(s["identity"]["ceiling_other_colour"]))
    row("colour error with the exemplar (RGB)", lambda s: fmt(s["colour"]["exemplar"], 1))
    row("colour error, unconditional (RGB)", lambda s: fmt(s["colour"]["unconditional"], 1))
    row("colour error ratio (lower: the exemplar decides)", lambda s: f"{s['colour']['ratio']:.2f}")
    row("copy-paste: edit vs exemplar similarity", lambda s: fmt(s["copy_paste"]["edit"]))
    row("copy-paste reference: another drawing vs exemplar", lambda s: fmt(s["copy_paste"]["other_drawing"]))
    row("background PSNR outside the mask, no paste-back (dB)", lambda s: fmt(s["background_psnr"], 1))
    row("generate_mask IoU with the object", lambda s: fmt(s["mask_iou"]) if "mask_iou" in s else "-")
    lines += [
        "",
        "| tower retrieval top-1 (held-out code points) | top-1 | chance | queries |",
        "|---|---|---|---|",
    ]
    for name, r in report["tower_retrieval"].items():
        lines.append(f"| {name} | {r['top1']:.3f} ± {r['se']:.3f} | {r['chance']:.3f} | {r['n']} |")
    judge = report["judge"].get("retrieval", {})
    for name, r in judge.items():
        lines.append(
            f"| judge (not the model), {name} | {r['top1']:.3f} ± {r['se']:.3f} | {r['chance']:.3f} | {r['n']} |"
        )
    if report.get("curve"):
        names = [k for k in report["curve"][0] if k != "step"]
        head = " | ".join(f"{n}: same colour | {n}: other colour" for n in names)
        lines += ["", f"| step | {head} |", "|---|" + "---|---|" * len(names)]
        for r in report["curve"]:
            cells = " | ".join(f"{fmt(r[n]['same_colour'])} | {fmt(r[n]['other_colour'])}" for n in names)
            lines.append(f"| {r['step']} | {cells} |")
    return "\n".join(lines) + "\n"
