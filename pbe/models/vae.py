"""The SD v1 KL autoencoder (f = 8, 4 latent channels), frozen in Paint by Example.

`encode` returns a diagonal Gaussian posterior over latents; multiply a sample by `config.scale_factor` (0.18215)
to get the diffusion latent, and divide by it before `decode`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from pbe.models.attention import Attention
from pbe.models.conv import Conv2d
from pbe.models.unet import Downsample, ResBlock, Upsample


@dataclass
class VAEConfig:
    in_channels: int = 3
    out_channels: int = 3
    latent_channels: int = 4
    channels: tuple[int, ...] = (128, 256, 512, 512)
    num_res_blocks: int = 2
    norm_groups: int = 32
    scale_factor: float = 0.18215

    def __post_init__(self):
        self.channels = tuple(self.channels)

    @property
    def downsample_factor(self) -> int:
        return 2 ** (len(self.channels) - 1)


class DiagonalGaussian:
    """Posterior N(mean, exp(logvar)) over latents, with logvar clamped to [-30, 20]."""

    def __init__(self, moments: torch.Tensor):
        self.mean, logvar = moments.chunk(2, dim=1)
        self.logvar = logvar.clamp(-30.0, 20.0)
        self.std = torch.exp(0.5 * self.logvar)

    def sample(self, generator: torch.Generator | None = None) -> torch.Tensor:
        device = generator.device if generator is not None else self.mean.device
        noise = torch.randn(self.mean.shape, generator=generator, device=device, dtype=self.mean.dtype)
        return self.mean + self.std * noise.to(self.mean.device)

    def mode(self) -> torch.Tensor:
        return self.mean

    def kl(self) -> torch.Tensor:
        """KL divergence to N(0, I), summed over latent dimensions, one value per sample."""
        return 0.5 * torch.sum(self.mean.pow(2) + self.std.pow(2) - 1.0 - self.logvar, dim=(1, 2, 3))


class SpatialSelfAttention(nn.Module):
    """Single-head self-attention over all pixels, with a residual (the VAE's middle block)."""

    def __init__(self, channels: int, groups: int = 32):
        super().__init__()
        self.norm = nn.GroupNorm(groups, channels, eps=1e-6)
        self.attn = Attention(channels, num_heads=1, qkv_bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        y = self.norm(x).permute(0, 2, 3, 1).reshape(b, h * w, c)  # a view when x is channels_last
        y = self.attn(y).reshape(b, h, w, c).permute(0, 3, 1, 2)
        return x + y


class Middle(nn.Module):
    def __init__(self, channels: int, groups: int):
        super().__init__()
        self.res1 = ResBlock(channels, channels, groups=groups, eps=1e-6)
        self.attn = SpatialSelfAttention(channels, groups)
        self.res2 = ResBlock(channels, channels, groups=groups, eps=1e-6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.res2(self.attn(self.res1(x)))


class VAELevel(nn.Module):
    def __init__(self, res: list[ResBlock], resample: nn.Module | None):
        super().__init__()
        self.res = nn.ModuleList(res)
        self.resample = resample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.res:
            x = block(x)
        return x if self.resample is None else self.resample(x)


class Encoder(nn.Module):
    def __init__(self, cfg: VAEConfig):
        super().__init__()
        ch, g = cfg.channels, cfg.norm_groups
        self.conv_in = Conv2d(cfg.in_channels, ch[0], 3, padding=1)
        self.down = nn.ModuleList()
        cin = ch[0]
        for i, cout in enumerate(ch):
            res = [
                ResBlock(cin if j == 0 else cout, cout, groups=g, eps=1e-6) for j in range(cfg.num_res_blocks)
            ]
            last = i == len(ch) - 1
            self.down.append(VAELevel(res, None if last else Downsample(cout, pad_asymmetric=True)))
            cin = cout
        self.mid = Middle(cin, g)
        self.norm_out = nn.GroupNorm(g, cin, eps=1e-6)
        self.conv_out = Conv2d(cin, 2 * cfg.latent_channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv_in(x)
        for level in self.down:
            h = level(h)
        return self.conv_out(F.silu(self.norm_out(self.mid(h))))


class Decoder(nn.Module):
    def __init__(self, cfg: VAEConfig):
        super().__init__()
        ch, g = cfg.channels, cfg.norm_groups
        cin = ch[-1]
        self.conv_in = Conv2d(cfg.latent_channels, cin, 3, padding=1)
        self.mid = Middle(cin, g)
        self.up = nn.ModuleList()
        for i, cout in reversed(list(enumerate(ch))):
            res = [
                ResBlock(cin if j == 0 else cout, cout, groups=g, eps=1e-6)
                for j in range(cfg.num_res_blocks + 1)
            ]
            self.up.append(VAELevel(res, Upsample(cout) if i > 0 else None))
            cin = cout
        self.norm_out = nn.GroupNorm(g, cin, eps=1e-6)
        self.conv_out = Conv2d(cin, cfg.out_channels, 3, padding=1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.mid(self.conv_in(z))
        for level in self.up:
            h = level(h)
        return self.conv_out(F.silu(self.norm_out(h)))


class AutoencoderKL(nn.Module):
    def __init__(self, config: VAEConfig | None = None):
        super().__init__()
        cfg = self.config = config or VAEConfig()
        self.encoder = Encoder(cfg)
        self.quant_conv = Conv2d(2 * cfg.latent_channels, 2 * cfg.latent_channels, 1)
        self.post_quant_conv = Conv2d(cfg.latent_channels, cfg.latent_channels, 1)
        self.decoder = Decoder(cfg)

    def encode(self, x: torch.Tensor) -> DiagonalGaussian:
        """x: images in [-1, 1], (B, 3, H, W) with H, W multiples of the downsample factor (8 for SD)."""
        f = self.config.downsample_factor
        if x.ndim != 4 or x.shape[1] != self.config.in_channels or x.shape[2] % f or x.shape[3] % f:
            raise ValueError(
                f"VAE encode input has shape {tuple(x.shape)}; expected (B, {self.config.in_channels}, H, W) "
                f"with H and W multiples of {f}"
            )
        return DiagonalGaussian(self.quant_conv(self.encoder(x)))

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """z: unscaled latents (B, latent_channels, h, w) -> images, nominally in [-1, 1]."""
        if z.ndim != 4 or z.shape[1] != self.config.latent_channels:
            raise ValueError(
                f"VAE decode input has shape {tuple(z.shape)}; expected (B, {self.config.latent_channels}, h, w)"
            )
        return self.decoder(self.post_quant_conv(z))

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        return self.decode(self.encode(x).sample(generator))
