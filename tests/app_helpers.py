"""A tiny random Paint-by-Example model for the web app's tests, fast enough for a browser round trip on a CPU.

VAE with downsampling 4 and a UNet with attention on its lower level only, so a 128x128 edit of a few steps runs in
well under a second (the 2-level test config used elsewhere attends over 64x64 latents and takes ~10 s a step).
"""

from pathlib import Path

import torch

from pbe.checkpoints.formats import Checkpoint, save_checkpoint
from pbe.models import PaintByExample, PaintByExampleConfig
from pbe.models.clip_vision import VisionConfig
from pbe.models.exemplar_encoder import ExemplarEncoderConfig
from pbe.models.unet import UNetConfig
from pbe.models.vae import VAEConfig


def tiny_app_config() -> PaintByExampleConfig:
    vision = VisionConfig(image_size=32, patch_size=8, width=32, layers=1, heads=2, mlp_dim=32)
    return PaintByExampleConfig(
        unet=UNetConfig(
            channels=(32, 32), attention_levels=(False, True), num_res_blocks=1, num_heads=2, context_dim=32
        ),
        vae=VAEConfig(channels=(32, 32, 32), num_res_blocks=1),
        encoder=ExemplarEncoderConfig(vision=vision, mapper_depth=1, context_dim=32),
    )


def save_tiny_model(folder: Path, seed: int = 0) -> Path:
    """Random weights in pbe's native layout (what `python -m pbe.app model=FOLDER` loads)."""
    torch.manual_seed(seed)
    config = tiny_app_config()
    model = PaintByExample(config)
    save_checkpoint(Checkpoint(config=config, state=model.state_dict()), folder, "native", progress=False)
    return folder
