"""`stage=small`: the whole small-model recipe in one run (what `make train-small` calls).

1. autoencoder (`pbe.training.autoencoder`), unless `small.frozen_from` names a small model to take it from;
2. vision tower (`pbe.training.vision_pretrain`), same;
3. diffusion: the paper's objective (`pbe.training.run.train_diffusion`) with both of the above loaded through
   `model.init.vae` / `model.init.vision` and frozen;
4. export of the trained weights in pbe's native layout to `<run>/model` (and to `small.export` when set), the
   frozen parts taken from their stages' float32 files (training may hold them in bf16: `model.frozen_dtype`);
5. a summary: time per stage, the stages' own metrics and a colour check on `small.summary_edits` held-out edits.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

from pbe.checkpoints.formats import load_checkpoint, save_checkpoint, set_train_resolution
from pbe.checkpoints.tensor_io import read_safetensors
from pbe.training.autoencoder import train_autoencoder
from pbe.training.stage_utils import load_tensors, save_tensors
from pbe.training.vision_pretrain import train_vision


class StageClock:
    """Wall-clock and this process's CPU seconds per stage (CPU time says what the stage costs on a quiet machine)."""

    def __init__(self):
        self.rows: list[tuple[str, float, float]] = []

    def run(self, name: str, fn, *args):
        wall, cpu = time.perf_counter(), time.process_time()
        out = fn(*args)
        self.rows.append((name, time.perf_counter() - wall, time.process_time() - cpu))
        return out


def frozen_parts_from(folder: str | Path, out: Path) -> tuple[Path, Path]:
    """The autoencoder and vision-tower weights as `model.init` files: those of an earlier recipe run folder
    (`<run>/autoencoder/vae.safetensors`, `<run>/vision/vision.safetensors`), or extracted from a model folder."""
    folder = Path(folder)
    vae, vision = folder / "autoencoder" / "vae.safetensors", folder / "vision" / "vision.safetensors"
    if vae.is_file() and vision.is_file():
        return vae, vision
    ckpt = load_checkpoint(folder)
    out.mkdir(parents=True, exist_ok=True)
    parts = []
    for name, prefix in (("vae", "vae."), ("vision", "encoder.vision.")):
        state = {k[len(prefix) :]: v for k, v in ckpt.state.items() if k.startswith(prefix)}
        parts.append(save_tensors(out / f"{name}.safetensors", state, {"from": str(folder)}))
    return parts[0], parts[1]


def diffusion_config(cfg: dict, vae: Path, vision: Path) -> DictConfig:
    """The run's config for `train_diffusion`: the `small` section removed, the frozen parts as `model.init`."""
    c = {k: v for k, v in cfg.items() if k != "small"}
    c["stage"] = "diffusion"
    c["model"] = dict(c["model"])
    c["model"]["init"] = {**(c["model"].get("init") or {}), "vae": str(vae), "vision": str(vision)}
    return OmegaConf.create(c)


def export_small(lightning_ckpt: Path, dst: str | Path, vae: Path, vision: Path) -> list[Path]:
    """The run's weights in the native layout, with the autoencoder and vision tower exactly as their stages wrote
    them (float32), whatever dtype the diffusion stage held them in."""
    from pbe.checkpoints.lightning_ckpt import read_lightning

    ckpt = read_lightning(Path(lightning_ckpt))
    for prefix, path in (("vae.", vae), ("encoder.vision.", vision)):
        for key, value in load_tensors(path).items():
            if prefix + key not in ckpt.state:
                raise KeyError(f"{path}: {key!r} is not a weight of the trained model's {prefix[:-1]}")
            ckpt.state[prefix + key] = value
    return save_checkpoint(ckpt, dst, "native", overwrite=True, progress=False)


def stage_metric(path: Path, key: str) -> str:
    _, meta = read_safetensors(path)
    value = meta.get(key)
    return "-" if value is None else f"{float(value):.3g}"


def final_loss(run_dir: Path) -> str:
    """The mean of the last 50 logged training losses (<run>/csv/metrics.csv)."""
    import csv

    path = run_dir / "csv" / "metrics.csv"
    if not path.is_file():
        return "-"
    with open(path) as f:
        rows = [r for r in csv.DictReader(f) if r.get("train/loss")]
    values = [float(r["train/loss"]) for r in rows[-50:]]
    return f"{sum(values) / len(values):.4f}" if values else "-"


def train_small(cfg: DictConfig | dict, run_dir: Path, callbacks: list | None = None) -> Path:
    from pbe.training.run import train_diffusion

    c = OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else dict(cfg)
    small = c.get("small") or {}
    export = small.get("export")
    if export and Path(export).exists() and not small.get("overwrite"):
        raise FileExistsError(f"small.export={export} exists; pass small.overwrite=true to replace it")
    run_dir = Path(run_dir)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    clock = StageClock()
    if small.get("frozen_from"):
        vae, vision = clock.run("frozen parts", frozen_parts_from, small["frozen_from"], run_dir / "frozen")
    else:
        vae = clock.run("autoencoder", train_autoencoder, c, run_dir) / "vae.safetensors"
        vision = clock.run("vision tower", train_vision, c, run_dir) / "vision.safetensors"
    clock.run("diffusion", train_diffusion, diffusion_config(c, vae, vision), run_dir, callbacks)
    last = run_dir / "checkpoints" / "last.ckpt"
    model_dir = run_dir / "model"
    clock.run("export", export_small, last, model_dir, vae, vision)
    resolution = int(c["data"]["augment"]["image_size"])
    set_train_resolution(model_dir, resolution)
    if export:
        export_small(last, export, vae, vision)
        set_train_resolution(Path(export), resolution)
    scores = None
    if small.get("summary_edits", 0):
        from pbe.small.evaluate import quick_colour_check

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
