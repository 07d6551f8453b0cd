"""The three networks of Paint by Example, configured together."""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import nn

from pbe.models.exemplar_encoder import ExemplarEncoder, ExemplarEncoderConfig
from pbe.models.unet import UNet, UNetConfig
from pbe.models.vae import AutoencoderKL, VAEConfig


@dataclass
class PaintByExampleConfig:
    unet: UNetConfig = field(default_factory=UNetConfig)
    vae: VAEConfig = field(default_factory=VAEConfig)
    encoder: ExemplarEncoderConfig = field(default_factory=ExemplarEncoderConfig)

    def __post_init__(self):
        if self.unet.context_dim != self.encoder.context_dim:
            raise ValueError(
                f"unet.context_dim={self.unet.context_dim} must equal encoder.context_dim={self.encoder.context_dim}"
            )
        if self.unet.in_channels != 2 * self.vae.latent_channels + 1:
            raise ValueError(
                f"unet.in_channels={self.unet.in_channels}; expected 2 * vae.latent_channels + 1 = "
                f"{2 * self.vae.latent_channels + 1} (noisy latent, masked-image latent, mask)"
            )


class PaintByExample(nn.Module):
    """UNet (trained), VAE (frozen) and exemplar encoder (vision tower frozen, the rest trained)."""

    def __init__(self, config: PaintByExampleConfig | None = None):
        super().__init__()
        self.config = config or PaintByExampleConfig()
        self.unet = UNet(self.config.unet)
        self.vae = AutoencoderKL(self.config.vae)
        self.encoder = ExemplarEncoder(self.config.encoder)


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
