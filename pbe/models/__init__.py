"""Native networks: UNet, KL autoencoder, CLIP vision tower and the exemplar encoder."""

from pbe.models.clip_vision import VisionConfig, VisionTower
from pbe.models.exemplar_encoder import ExemplarEncoder, ExemplarEncoderConfig
from pbe.models.paint_by_example import PaintByExample, PaintByExampleConfig, count_parameters
from pbe.models.unet import UNet, UNetConfig
from pbe.models.vae import AutoencoderKL, DiagonalGaussian, VAEConfig

__all__ = [
    "AutoencoderKL",
    "DiagonalGaussian",
    "ExemplarEncoder",
    "ExemplarEncoderConfig",
    "PaintByExample",
    "PaintByExampleConfig",
    "UNet",
    "UNetConfig",
    "VAEConfig",
    "VisionConfig",
    "VisionTower",
    "count_parameters",
]
