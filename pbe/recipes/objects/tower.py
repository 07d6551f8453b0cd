"""`stage=objects_tower`: pre-train the objects model's vision tower contrastively, to be frozen afterwards (CLIP's
role in the paper; nothing like CLIP can be fetched here).

Two renderings of one code point are a positive pair (`pbe.recipes.objects.contrastive`): the exemplar the data
gives and the object as pasted into the scene. The embedding is a linear projection of the pooled class token
(post-LayerNorm: the very vector the exemplar encoder passes through its bottleneck); the projection is thrown away.
Retrieval top-1 on held-out code points is measured in the training styles and, where the fetched folder has it,
in the reserved style (an unseen style: evaluation only).

Writes `<run>/vision/vision.safetensors` (keys of `model.encoder.vision.state_dict()`, what `model.init.vision`
reads), with the retrieval figures in its metadata, and returns that folder.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch
from omegaconf import DictConfig
from torch import nn

from pbe.models import ExemplarEncoderConfig, VisionTower
from pbe.recipes.objects.contrastive import fit_contrastive, retrieval_top1
from pbe.recipes.stage_tools import (
    as_config,
    batches,
    dataset_for,
    model_section,
    save_tensors,
    stage_options,
)

DEFAULTS = {"steps": 1500, "batch_size": 128, "lr": 1e-3, "temperature": 0.1, "num_workers": 0, "seed": 23}


class TowerEmbedding(nn.Module):
    """The tower's pooled token through a linear projection (discarded after training)."""

    def __init__(self, tower: VisionTower, dim: int = 128):
        super().__init__()
        self.tower = tower
        self.projection = nn.Linear(tower.config.width, dim)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.projection(self.tower(pixels)[1])


def tower_retrieval(embed: nn.Module, root, size: int) -> dict:
    """Held-out retrieval top-1 in the training styles and in the reserved style (query) -> training styles."""
    from pbe.data.objects import read_manifest

    manifest = read_manifest(root, key="data.source.root")
    train_styles = manifest.training_styles()
    figures = {"training_styles": retrieval_top1(embed, root, size, train_styles, train_styles)}
    for style in manifest.reserved_styles():
        figures[style] = retrieval_top1(embed, root, size, [style], train_styles)
    return figures


def train_object_tower(cfg: DictConfig, run_dir: Path, callbacks: list | None = None) -> Path:
    opts = {**DEFAULTS, **stage_options(cfg, "tower")}
    torch.manual_seed(opts["seed"])
    encoder_cfg = ExemplarEncoderConfig(**model_section(cfg, "encoder"))
    size = encoder_cfg.vision.image_size
    embed = TowerEmbedding(VisionTower(encoder_cfg.vision))
    dataset = dataset_for(cfg, seed_offset=202)
    start = time.perf_counter()
    loss = fit_contrastive(
        embed,
        batches(dataset, opts["batch_size"], opts["seed"], opts["num_workers"]),
        opts["steps"],
        opts["lr"],
        size,
        opts["temperature"],
        desc="vision tower",
    )
    figures = tower_retrieval(embed, as_config(cfg).data.source.root, size)
    out = Path(run_dir) / "vision"
    out.mkdir(parents=True, exist_ok=True)
    metrics = {"loss": str(loss), "retrieval": json.dumps(figures)}
    save_tensors(out / "vision.safetensors", embed.tower.state_dict(), metrics)
    shown = ", ".join(
        f"{k} {v['top1']:.1%} (n={v['n']}, chance {v['chance']:.1%})" for k, v in figures.items()
    )
    print(
        f"vision tower: {opts['steps']} steps in {time.perf_counter() - start:.0f} s, held-out retrieval top-1: "
        f"{shown} -> {out / 'vision.safetensors'}"
    )
    return out
