"""The objects model's ablations (`python -m pbe.report objects-ablation`): several models on the *same* held-out
edits (same scenes, exemplars and noise), so that each model's identity and copy-paste figures pair up trial by
trial with the first model's (the reference) and the differences come with paired standard errors.

A model is a model folder, or a recipe run's Lightning checkpoint (`<run>/checkpoints/step_*.ckpt`: exported with
that run's frozen autoencoder and tower), so an ablation stopped at step N (`bench/objects_ablations.sh`) is compared
with the full run's checkpoint at the same step on the same lr schedule.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from pbe.edit_grid import tile_grid
from pbe.pipeline import PaintByExamplePipeline
from pbe.recipes.objects.evaluate import (
    ROLES,
    EditSet,
    Settings,
    copy_paste_values,
    edit_set,
    generate,
    identity_trial_values,
    mean_se,
)

FIGURE_TILE = 128


def frozen_parts(run_dir: Path) -> tuple[Path, Path]:
    """The autoencoder and tower files a recipe run folder trained (or took from `objects.frozen_from`)."""
    for vae, vision in (
        (run_dir / "autoencoder" / "vae.safetensors", run_dir / "vision" / "vision.safetensors"),
        (run_dir / "frozen" / "vae.safetensors", run_dir / "frozen" / "vision.safetensors"),
    ):
        if vae.is_file() and vision.is_file():
            return vae, vision
    raise FileNotFoundError(
        f"{run_dir}: no autoencoder/vae.safetensors + vision/vision.safetensors (or frozen/...) beside checkpoints/"
    )


def load_model(path: str | Path) -> PaintByExamplePipeline:
    """A pipeline from a model folder or from a recipe run's `.ckpt` (see the module docstring)."""
    from pbe.recipes.stage_tools import export_run_checkpoint

    path = Path(path)
    if path.suffix != ".ckpt":
        return PaintByExamplePipeline.from_pretrained(path, torch_dtype=torch.float32)
    vae, vision = frozen_parts(path.parent.parent)
    with tempfile.TemporaryDirectory() as tmp:
        export_run_checkpoint(path, Path(tmp) / "model", vae, vision)
        return PaintByExamplePipeline.from_pretrained(Path(tmp) / "model", torch_dtype=torch.float32)


def check_models(models: dict[str, str]) -> None:
    """Before any model is loaded: each exists, and a `.ckpt` sits in a recipe run folder."""
    if len(models) < 2:
        raise ValueError("objects-ablation: give at least two --model NAME=PATH (the first is the reference)")
    for name, path in models.items():
        p = Path(path)
        if not p.exists():
            raise FileNotFoundError(f"--model {name}: not found: {path}")
        if p.suffix == ".ckpt":
            frozen_parts(p.parent.parent)


def paired(a: list, b: list) -> dict:
    """b - a trial by trial: mean ± se of the differences."""
    if len(a) != len(b):
        raise ValueError(f"paired figures need the same trials ({len(a)} vs {len(b)})")
    return mean_se(np.asarray(b, float) - np.asarray(a, float))


def model_figures(pipe, judge, edits: EditSet, settings: Settings) -> dict:
    for role in ROLES:
        edits.results[role] = generate(pipe, edits.scenes, edits.exemplars[role], settings, desc=role)
    trials = identity_trial_values(judge, edits)
    edit_sim, ref_sim = copy_paste_values(edits)
    return {
        "same_colour": trials["same_colour"],
        "other_colour": trials["other_colour"],
        "copy_paste": edit_sim,
        "copy_paste_reference": ref_sim,
    }


FIGURE_ROWS = 6


def cached_figures(cache: Path | None, name: str, key: dict) -> tuple[dict, dict] | None:
    """(raw figures per set, picture results per set) that an earlier run stored for this model and key."""
    path = None if cache is None else Path(cache) / f"{name}.npz"
    if path is None or not path.is_file():
        return None
    with np.load(path, allow_pickle=False) as z:
        if json.loads(str(z["key"])) != key:
            return None
        raw, pictures = {}, {}
        for entry in z.files:
            if "|" not in entry:
                continue
            set_name, what = entry.split("|")
            if what == "pictures":
                pictures[set_name] = z[entry]
            else:
                raw.setdefault(set_name, {})[what] = z[entry].tolist()
    return raw, pictures


def store_figures(cache: Path, name: str, key: dict, raw: dict, pictures: dict) -> None:
    from pbe.files import write_file

    arrays = {"key": np.array(json.dumps(key))}
    for set_name, figures in raw.items():
        arrays.update({f"{set_name}|{k}": np.asarray(v) for k, v in figures.items()})
        arrays[f"{set_name}|pictures"] = pictures[set_name]

    def save(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)

    write_file(Path(cache) / f"{name}.npz", save, overwrite=True)


def run_objects_ablation(
    models: dict[str, str], root, judge_path, out, n: int, settings: Settings, cache=None
) -> dict:
    """Every model on the same edit sets (training styles and the reserved style); figures + paired differences
    against the first model; writes objects_ablation.md / .json and objects_ablation_edits.png to ``out``.
    ``cache``: a folder keeping each model's per-trial figures (``<name>.npz``, keyed by its path, the edit count,
    the settings and the judge), so that models can be scored in several runs (e.g. while others still train)."""
    from pbe.files import write_file, write_json
    from pbe.recipes.objects.judge import load_judge
    from pbe.recipes.objects.scorecard import style_sets

    check_models(models)
    if not Path(judge_path).is_file():
        raise FileNotFoundError(
            f"--judge: not found: {judge_path} (train it with `python -m pbe.report objects`)"
        )
    judge, _ = load_judge(judge_path)
    sets: dict[str, EditSet] = {}
    raw: dict[str, dict] = {}
    pictures: dict[str, dict] = {}
    for name, path in models.items():
        print(f"{name}: {path}")
        pipe = load_model(path)
        if not sets:  # the reference model's resolution; scenes, exemplars and noise are then shared by all
            size = getattr(pipe, "train_resolution", None) or 64
            for k, (set_name, styles) in enumerate(style_sets(root)):
                edits = edit_set(root, n, styles, size, seed=101 + k)
                if edits.scenes:
                    sets[set_name] = edits
        key = {"path": str(path), "edits": n, "settings": vars(settings), "judge": str(judge_path)}
        found = cached_figures(cache, name, key)
        if found is not None:
            print(f"{name}: figures from {cache}")
            raw[name], shown = found
        else:
            raw[name], shown = {}, {}
            for set_name, edits in sets.items():
                raw[name][set_name] = model_figures(pipe, judge, edits, settings)
                shown[set_name] = edits.results["same_object"][:FIGURE_ROWS].copy()
            if cache is not None:
                store_figures(cache, name, key, raw[name], shown)
        for set_name in sets:
            pictures.setdefault(set_name, {})[name] = shown[set_name]
    reference = next(iter(models))
    report = {
        "models": dict(models),
        "reference": reference,
        "edits": n,
        "settings": vars(settings),
        "sets": {},
    }
    for set_name in sets:
        rows = {}
        for name in models:
            r, ref = raw[name][set_name], raw[reference][set_name]
            rows[name] = {k: mean_se(v) for k, v in r.items()}
            if name != reference:
                rows[name]["vs_reference"] = {
                    k: paired(ref[k], r[k]) for k in ("same_colour", "other_colour", "copy_paste")
                }
        report["sets"][set_name] = rows
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "objects_ablation.json", report, overwrite=True)
    write_file(out / "objects_ablation.md", ablation_table(report), overwrite=True)
    first = next(iter(sets))
    write_file(
        out / "objects_ablation_edits.png",
        ablation_figure(sets[first], pictures[first], FIGURE_ROWS),
        overwrite=True,
    )
    return report


def fmt(x: dict, digits: int = 3, sign: bool = False) -> str:
    if x.get("n", 0) == 0:
        return "-"
    return f"{x['mean']:{'+' if sign else ''}.{digits}f} ± {x['se']:.{digits}f}"


def ablation_table(report: dict) -> str:
    ref = report["reference"]
    lines = []
    for set_name, rows in report["sets"].items():
        lines += [
            f"### {set_name} ({report['edits']} edits; differences are paired, vs `{ref}`)",
            "",
            "| model | identity, same colour | Δ | identity, other colour | Δ | copy-paste (edit vs exemplar) | Δ |",
            "|---|---|---|---|---|---|---|",
        ]
        for name, r in rows.items():
            d = r.get("vs_reference", {})
            cells = []
            for k in ("same_colour", "other_colour", "copy_paste"):
                cells += [fmt(r[k]), fmt(d[k], sign=True) if k in d else "-"]
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
        refsim = next(iter(rows.values()))["copy_paste_reference"]
        lines += [
            "",
            f"Copy-paste reference (another drawing of the object vs the exemplar): {fmt(refsim)}",
            "",
        ]
    return "\n".join(lines)


def ablation_figure(edits: EditSet, results: dict[str, np.ndarray], rows: int) -> Image.Image:
    """source | mask | exemplar | one result column per model (own-exemplar edits, same noise)."""
    tiles = []
    for i, scene in enumerate(edits.scenes[:rows]):
        row = [
            scene.image.permute(1, 2, 0).numpy(),
            ((1 - scene.mask.numpy()) * 255).astype(np.uint8),
            edits.exemplars["same_object"][i].permute(1, 2, 0).numpy(),
        ]
        tiles.append(row + [(r[i] * 255).round().astype(np.uint8) for r in results.values()])
    return tile_grid(
        tiles + [[]] * (rows - len(tiles)),  # a figure of `rows` rows, blank where the set has fewer scenes
        [label[:20] for label in ["source", "mask", "exemplar", *results]],
        size=FIGURE_TILE,
        label_height=16,
        label_at=(4, 2),
    )
