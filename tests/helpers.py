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


def tiny_diffusers_pipeline(seed: int = 0, scheduler=None):
    """A tiny diffusers PaintByExamplePipeline with random (non-trivial) weights."""
    from diffusers import AutoencoderKL, PaintByExamplePipeline, PNDMScheduler, UNet2DConditionModel
    from diffusers.pipelines.deprecated.paint_by_example.image_encoder import PaintByExampleImageEncoder
    from transformers import CLIPImageProcessor

    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        block_out_channels=(32, 64),
        layers_per_block=2,
        sample_size=16,
        in_channels=9,
        out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=32,
    )
    vae = AutoencoderKL(
        block_out_channels=[32, 64],
        in_channels=3,
        out_channels=3,
        down_block_types=["DownEncoderBlock2D"] * 2,
        up_block_types=["UpDecoderBlock2D"] * 2,
        latent_channels=4,
    )
    encoder = PaintByExampleImageEncoder(tiny_clip_config(layers=4), proj_size=32)
    for i, module in enumerate((unet, vae, encoder)):
        randomize_(module, seed=seed + i, std=0.05)
    scheduler = scheduler or PNDMScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", skip_prk_steps=True, steps_offset=1
    )
    return PaintByExamplePipeline(
        unet=unet.eval(),
        vae=vae.eval(),
        image_encoder=encoder.eval(),
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=CLIPImageProcessor(crop_size=32, size=32),
        requires_safety_checker=False,
    )
