"""`stage=objects`: the objects model's whole recipe in one run (what `make train-objects` calls).

1. autoencoder (`pbe.recipes.autoencoder`) on the objects scenes;
2. vision tower, contrastive on code points (`pbe.recipes.objects.tower`);
3. diffusion: the paper's objective (`pbe.training.run.train_diffusion`) with both of the above frozen;
4. export in pbe's native layout to `<run>/model` (and to `objects.export` when set), recording the training
   resolution as `train_resolution` in `pbe_config.json`.

Resumable after a kill: run it again with the same `run_dir` and a finished stage is not run again (its output file
is there), the diffusion stage goes on from `<run>/checkpoints/last.ckpt` (written every
`callbacks.checkpoint.every_n_steps`).
"""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

from pbe.recipes.autoencoder import train_autoencoder
from pbe.recipes.objects.tower import train_object_tower
from pbe.recipes.stage_tools import (
    StageClock,
    diffusion_config,
    export_recipe_model,
    final_loss,
    frozen_parts_from,
    stage_metric,
    start_recipe,
)


def done_or_run(clock: StageClock, name: str, output: Path, fn, *args) -> Path:
    """``output`` when an earlier run of this recipe wrote it, else run the stage (which writes it)."""
    if output.is_file():
        print(f"{name}: done in an earlier run ({output}), not run again")
        return output
    clock.run(name, fn, *args)
    return output


def train_objects(cfg: DictConfig | dict, run_dir: Path, callbacks: list | None = None) -> Path:
    from pbe.training.run import train_diffusion

    c, opts, run_dir, clock = start_recipe(cfg, "objects", run_dir)
    export = opts.get("export")
    if opts.get(
        "frozen_from"
    ):  # the ablations: the committed model's autoencoder and tower, as SD's are shared
        vae, vision = clock.run("frozen parts", frozen_parts_from, opts["frozen_from"], run_dir / "frozen")
    else:
        vae = done_or_run(
            clock, "autoencoder", run_dir / "autoencoder" / "vae.safetensors", train_autoencoder, c, run_dir
        )
        vision = done_or_run(
            clock, "vision tower", run_dir / "vision" / "vision.safetensors", train_object_tower, c, run_dir
        )
    diffusion = diffusion_config(c, vae, vision)
    last = run_dir / "checkpoints" / "last.ckpt"
    if last.is_file() and not diffusion.get("ckpt_path"):
        print(f"diffusion: resuming from {last}")
        diffusion.ckpt_path = str(last)
    diffusion.pop("objects", None)
    clock.run("diffusion", train_diffusion, diffusion, run_dir, callbacks)
    model_dir = clock.run("export", export_recipe_model, c, run_dir, vae, vision, export)
    print_summary(clock, run_dir, model_dir, vae, vision, export)
    return run_dir


def print_summary(clock, run_dir, model_dir, vae, vision, export) -> None:
    import json

    from pbe.checkpoints.tensor_io import read_safetensors

    weights = model_dir / "model.safetensors"
    lines = ["", f"objects model recipe: {run_dir}", f"  {'stage':<16} {'wall s':>8} {'cpu s':>8}"]
    lines += [f"  {name:<16} {wall:8.0f} {cpu:8.0f}" for name, wall, cpu in clock.rows]
    lines.append(f"  autoencoder held-out PSNR {stage_metric(vae, 'psnr_db')} dB")
    retrieval = json.loads(read_safetensors(vision)[1].get("retrieval") or "{}")
    for key, v in retrieval.items():
        lines.append(
            f"  vision tower held-out retrieval top-1, {key}: {v['top1']:.1%} (chance {v['chance']:.1%})"
        )
    lines.append(f"  diffusion loss (mean of the last 50 logged steps) {final_loss(run_dir)}")
    lines.append(f"  weights: {weights} ({weights.stat().st_size / 1e6:.1f} MB)")
    if export:
        lines.append(f"  exported to {export}")
    print("\n".join(lines))
