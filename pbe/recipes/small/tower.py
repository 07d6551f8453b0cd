"""`stage=vision`: pre-train the small model's vision tower on synthetic exemplars, to be frozen afterwards.

The paper freezes CLIP; nothing like CLIP can be fetched here, so the small tower is pre-trained on what the
exemplars of the synthetic scenes show: two linear heads on the pooled class token (post-LayerNorm, the very vector
the exemplar encoder passes through its bottleneck) classify the object's colour and shape. The exemplars are the
training exemplars with the paper's augmentations (flip, rotation, blur, elastic), so the tower learns features that
survive them. The heads are thrown away.

Writes `<run>/vision/vision.safetensors` (keys of `model.encoder.vision.state_dict()`, what `model.init.vision`
reads) and returns that folder.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from omegaconf import DictConfig
from torch import nn
from tqdm import tqdm

from pbe.data.synthetic import COLOURS, SHAPES
from pbe.models import ExemplarEncoderConfig, VisionTower
from pbe.recipes.stage_tools import batches, dataset_for, model_section, save_tensors, stage_options

DEFAULTS = {"steps": 300, "batch_size": 64, "lr": 1e-3, "num_workers": 0, "seed": 23}
COLOUR_NAMES, SHAPE_NAMES = sorted(COLOURS), sorted(SHAPES)


def label_targets(labels: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """'<colour> <shape>' strings -> (colour index, shape index) tensors."""
    pairs = [label.split(" ", 1) for label in labels]
    colours = torch.tensor([COLOUR_NAMES.index(c) for c, _ in pairs])
    shapes = torch.tensor([SHAPE_NAMES.index(s) for _, s in pairs])
    return colours, shapes


class TowerWithHeads(nn.Module):
    def __init__(self, tower: VisionTower):
        super().__init__()
        self.tower = tower
        width = tower.config.width
        self.colour = nn.Linear(width, len(COLOUR_NAMES))
        self.shape = nn.Linear(width, len(SHAPE_NAMES))

    def forward(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        _, pooled = self.tower(pixels)
        return self.colour(pooled), self.shape(pooled)


@torch.no_grad()
def accuracy(model: TowerWithHeads, batch: dict) -> tuple[float, float]:
    model.eval()
    colour_logits, shape_logits = model(batch["exemplar"])
    colours, shapes = label_targets(batch["label"])
    return (
        (colour_logits.argmax(1) == colours).float().mean().item(),
        (shape_logits.argmax(1) == shapes).float().mean().item(),
    )


def fit_vision(model: TowerWithHeads, stream, steps: int, lr: float) -> dict:
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    warmup = max(1, steps // 20)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min(1.0, (s + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * min(s / steps, 1.0)))
    )
    model.train()
    bar = tqdm(range(steps), desc="vision tower", unit="step", dynamic_ncols=True)
    loss = torch.tensor(0.0)
    for _ in bar:
        batch = next(stream)
        colours, shapes = label_targets(batch["label"])
        colour_logits, shape_logits = model(batch["exemplar"])
        loss = F.cross_entropy(colour_logits, colours) + F.cross_entropy(shape_logits, shapes)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        bar.set_postfix(loss=f"{loss.item():.3f}")
    model.eval()
    return {"loss": loss.item()}


def train_vision(cfg: DictConfig, run_dir: Path, callbacks: list | None = None) -> Path:
    opts = {**DEFAULTS, **stage_options(cfg, "vision")}
    torch.manual_seed(opts["seed"])
    encoder_cfg = ExemplarEncoderConfig(**model_section(cfg, "encoder"))
    model = TowerWithHeads(VisionTower(encoder_cfg.vision))
    dataset = dataset_for(cfg, seed_offset=202)
    start = time.perf_counter()
    fit_vision(
        model,
        batches(dataset, opts["batch_size"], opts["seed"], opts["num_workers"]),
        opts["steps"],
        opts["lr"],
    )
    held_out_set = dataset_for(cfg, seed_offset=909, held_out=True)
    held_out = next(batches(held_out_set, min(256, len(held_out_set)), seed=909))
    colour_acc, shape_acc = accuracy(model, held_out)
    out = Path(run_dir) / "vision"
    out.mkdir(parents=True, exist_ok=True)
    metrics = {"colour_accuracy": colour_acc, "shape_accuracy": shape_acc}
    save_tensors(
        out / "vision.safetensors", model.tower.state_dict(), {k: str(v) for k, v in metrics.items()}
    )
    print(
        f"vision tower: {opts['steps']} steps in {time.perf_counter() - start:.0f} s, held-out exemplar accuracy "
        f"colour {colour_acc:.1%}, shape {shape_acc:.1%} -> {out / 'vision.safetensors'}"
    )
    return out
