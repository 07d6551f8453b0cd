"""Tiny reference models (diffusers / transformers) and their pbe twins, for parity tests."""

from __future__ import annotations

import torch


def randomize_(module: torch.nn.Module, seed: int = 0, std: float = 0.2) -> torch.nn.Module:
    """Random weights everywhere (including norms and the zero-initialised layers), so parity is not trivial."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            if "norm" in name and name.endswith("weight"):
                p.copy_(1.0 + std * torch.randn(p.shape, generator=g))
            else:
                p.copy_(std * torch.randn(p.shape, generator=g))
    return module


def tiny_clip_config(layers: int = 5):
    from transformers import CLIPVisionConfig

    return CLIPVisionConfig(
        hidden_size=32,
        intermediate_size=37,
        num_attention_heads=4,
        num_hidden_layers=layers,
        image_size=32,
        patch_size=4,
        projection_dim=32,
        layer_norm_eps=1e-5,
    )


def native_vision_config(clip_config):
    from pbe.models import VisionConfig

    return VisionConfig(
        image_size=clip_config.image_size,
        patch_size=clip_config.patch_size,
        width=clip_config.hidden_size,
        layers=clip_config.num_hidden_layers,
        heads=clip_config.num_attention_heads,
        mlp_dim=clip_config.intermediate_size,
        layer_norm_eps=clip_config.layer_norm_eps,
    )
