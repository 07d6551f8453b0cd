"""`stage=small`: the whole small-model recipe in one run (what `make train-small` calls).

1. autoencoder (`pbe.recipes.autoencoder`), unless `small.frozen_from` names a small model to take it from;
2. vision tower (`pbe.recipes.small.tower`), same;
3. diffusion: the paper's objective (`pbe.training.run.train_diffusion`) with both of the above loaded through
   `model.init.vae` / `model.init.vision` and frozen;
4. export of the trained weights in pbe's native layout to `<run>/model` (and to `small.export` when set), the
   frozen parts taken from their stages' float32 files (training may hold them in bf16: `model.frozen_dtype`);
5. a summary: time per stage, the stages' own metrics and a colour check on `small.summary_edits` held-out edits.
"""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

from pbe.recipes.autoencoder import train_autoencoder
from pbe.recipes.small.tower import train_vision
from pbe.recipes.stage_tools import (
    diffusion_config,
    export_recipe_model,
    final_loss,
    frozen_parts_from,
    stage_metric,
    start_recipe,
)


def train_small(cfg: DictConfig | dict, run_dir: Path, callbacks: list | None = None) -> Path:
    from pbe.training.run import train_diffusion

    c, small, run_dir, clock = start_recipe(cfg, "small", run_dir)
    export = small.get("export")
    if small.get("frozen_from"):
        vae, vision = clock.run("frozen parts", frozen_parts_from, small["frozen_from"], run_dir / "frozen")
    else:
        vae = clock.run("autoencoder", train_autoencoder, c, run_dir) / "vae.safetensors"
        vision = clock.run("vision tower", train_vision, c, run_dir) / "vision.safetensors"
    clock.run("diffusion", train_diffusion, diffusion_config(c, vae, vision), run_dir, callbacks)
    model_dir = clock.run("export", export_recipe_model, c, run_dir, vae, vision, export)
    scores = None
    if small.get("summary_edits", 0):
        from pbe.recipes.small.evaluate import quick_colour_check

        scores = clock.run("summary edits", quick_colour_check, model_dir, int(small["summary_edits"]))
    print_summary(clock, run_dir, model_dir, vae, vision, export, scores)
    return run_dir


def print_summary(clock, run_dir, model_dir, vae, vision, export, scores) -> None:
    weights = model_dir / "model.safetensors"
    lines = ["", f"small model recipe: {run_dir}", f"  {'stage':<16} {'wall s':>8} {'cpu s':>8}"]
    lines += [f"  {name:<16} {wall:8.0f} {cpu:8.0f}" for name, wall, cpu in clock.rows]
    total_wall = sum(r[1] for r in clock.rows)
    total_cpu = sum(r[2] for r in clock.rows)
    lines.append(f"  {'total':<16} {total_wall:8.0f} {total_cpu:8.0f}")
    lines.append(
        f"  autoencoder held-out PSNR {stage_metric(vae, 'psnr_db')} dB; vision tower exemplar accuracy "
        f"colour {stage_metric(vision, 'colour_accuracy')}, shape {stage_metric(vision, 'shape_accuracy')}"
    )
    lines.append(f"  diffusion loss (mean of the last 50 logged steps) {final_loss(run_dir)}")
    if scores is not None:
        lines.append(
            f"  colour error on {scores['edits']} held-out edits (RGB distance, lower is better): exemplar "
            f"{scores['exemplar']:.1f}, unconditional {scores['uncond']:.1f} (ratio {scores['ratio']:.2f})"
        )
    lines.append(f"  weights: {weights} ({weights.stat().st_size / 1e6:.1f} MB)")
    if export:
        lines.append(f"  exported to {export}")
    print("\n".join(lines))
