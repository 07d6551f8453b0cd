"""The SD v1 latent UNet, with the 9-channel inpainting input Paint by Example uses.

Input per step: cat([z_t (4), z_masked (4), mask (1)], dim=1); output: predicted noise (4 channels).
Structure (per level: `num_res_blocks` residual blocks, each followed by a spatial transformer where the level has
attention, then a 2x downsample except on the last level; a middle of res / transformer / res; the mirrored up path
with skip connections and nearest-neighbour 2x upsampling).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from pbe.models.attention import TransformerBlock


@dataclass
class UNetConfig:
    in_channels: int = 9
    out_channels: int = 4
    channels: tuple[int, ...] = (320, 640, 1280, 1280)  # width of each level
    attention_levels: tuple[bool, ...] = (True, True, True, False)
    num_res_blocks: int = 2
    num_heads: int | tuple[int, ...] = 8  # heads per level (an int applies to every level)
    transformer_depth: int = 1
    context_dim: int = 768
    linear_projection: bool = False  # SD v1: 1x1 conv in/out of the spatial transformer; SD v2: linear
    norm_groups: int = 32
    gradient_checkpointing: bool = False

    def __post_init__(self):
        self.channels = tuple(self.channels)
        self.attention_levels = tuple(bool(a) for a in self.attention_levels)
        if len(self.attention_levels) != len(self.channels):
            raise ValueError(
                f"attention_levels has {len(self.attention_levels)} entries; expected one per level "
                f"(channels has {len(self.channels)})"
            )
        if isinstance(self.num_heads, list | tuple):
            self.num_heads = tuple(self.num_heads)
            if len(self.num_heads) != len(self.channels):
                raise ValueError(
                    f"num_heads has {len(self.num_heads)} entries; expected {len(self.channels)}"
                )

    def heads(self, level: int) -> int:
        return self.num_heads[level] if isinstance(self.num_heads, tuple) else self.num_heads

    @property
    def downsample_factor(self) -> int:
        return 2 ** (len(self.channels) - 1)


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal embedding [cos, sin] of (possibly fractional) timesteps, shape (B, dim)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    args = t[:, None].float() * freqs[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    if dim % 2:
        emb = F.pad(emb, (0, 1))
    return emb


class ResBlock(nn.Module):
    """GroupNorm-SiLU-conv twice, with an optional time embedding added in between (the VAE has none)."""

    def __init__(self, cin: int, cout: int, temb_dim: int | None = None, groups: int = 32, eps: float = 1e-5):
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, cin, eps=eps)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.time_proj = nn.Linear(temb_dim, cout) if temb_dim is not None else None
        self.norm2 = nn.GroupNorm(groups, cout, eps=eps)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else None

    def forward(self, x: torch.Tensor, temb: torch.Tensor | None = None) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        if self.time_proj is not None:
            h = h + self.time_proj(F.silu(temb))[:, :, None, None]
        h = self.conv2(F.silu(self.norm2(h)))
        return (x if self.skip is None else self.skip(x)) + h


class SpatialTransformer(nn.Module):
    """GroupNorm, project in, `depth` transformer blocks over the H*W tokens (cross-attending to context), project out."""

    def __init__(
        self,
        dim: int,
        num_heads: int,
        context_dim: int,
        depth: int = 1,
        linear: bool = False,
        groups: int = 32,
    ):
        super().__init__()
        self.linear = linear
        self.norm = nn.GroupNorm(groups, dim, eps=1e-6)
        self.proj_in = nn.Linear(dim, dim) if linear else nn.Conv2d(dim, dim, 1)
        self.blocks = nn.ModuleList(
            TransformerBlock(dim, num_heads, context_dim=context_dim) for _ in range(depth)
        )
        self.proj_out = nn.Linear(dim, dim) if linear else nn.Conv2d(dim, dim, 1)

    def forward(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        b, c, hgt, wid = x.shape
        h = self.norm(x)
        if not self.linear:
            h = self.proj_in(h)
        h = h.permute(0, 2, 3, 1).reshape(b, hgt * wid, c)
        if self.linear:
            h = self.proj_in(h)
        for block in self.blocks:
            h = block(h, context)
        if self.linear:
            h = self.proj_out(h)
        h = h.reshape(b, hgt, wid, c).permute(0, 3, 1, 2)
        if not self.linear:
            h = self.proj_out(h)
        return x + h


class Downsample(nn.Module):
    def __init__(self, channels: int, pad_asymmetric: bool = False):
        super().__init__()
        # The UNet pads 1 on every side; the VAE encoder pads right/bottom only (padding=0 after F.pad).
        self.pad_asymmetric = pad_asymmetric
        self.conv = nn.Conv2d(channels, channels, 3, stride=2, padding=0 if pad_asymmetric else 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.pad_asymmetric:
            x = F.pad(x, (0, 1, 0, 1))
        return self.conv(x)


class Upsample(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class Level(nn.Module):
    """One resolution level of the UNet: residual blocks, each optionally followed by a spatial transformer."""

    def __init__(
        self, res: list[ResBlock], attn: list[SpatialTransformer] | None, resample: nn.Module | None
    ):
        super().__init__()
        self.res = nn.ModuleList(res)
        self.attn = nn.ModuleList(attn) if attn else None
        self.resample = resample


class UNet(nn.Module):
    def __init__(self, config: UNetConfig | None = None):
        super().__init__()
        cfg = self.config = config or UNetConfig()
        ch = cfg.channels
        temb = ch[0] * 4
        groups = cfg.norm_groups

        def transformer(level: int, dim: int) -> SpatialTransformer:
            return SpatialTransformer(
                dim, cfg.heads(level), cfg.context_dim, cfg.transformer_depth, cfg.linear_projection, groups
            )

        self.time_embed = nn.Sequential(nn.Linear(ch[0], temb), nn.SiLU(), nn.Linear(temb, temb))
        self.conv_in = nn.Conv2d(cfg.in_channels, ch[0], 3, padding=1)

        skip_channels = [ch[0]]
        self.down = nn.ModuleList()
        cin = ch[0]
        for i, cout in enumerate(ch):
            res, attn = [], []
            for _ in range(cfg.num_res_blocks):
                res.append(ResBlock(cin, cout, temb, groups))
                if cfg.attention_levels[i]:
                    attn.append(transformer(i, cout))
                cin = cout
                skip_channels.append(cout)
            last = i == len(ch) - 1
            self.down.append(Level(res, attn, None if last else Downsample(cout)))
            if not last:
                skip_channels.append(cout)

        self.mid = Level(
            [ResBlock(cin, cin, temb, groups), ResBlock(cin, cin, temb, groups)],
            [transformer(len(ch) - 1, cin)],
            None,
        )

        self.up = nn.ModuleList()
        for i, cout in reversed(list(enumerate(ch))):
            res, attn = [], []
            for _ in range(cfg.num_res_blocks + 1):
                res.append(ResBlock(cin + skip_channels.pop(), cout, temb, groups))
                if cfg.attention_levels[i]:
                    attn.append(transformer(i, cout))
                cin = cout
            self.up.append(Level(res, attn, Upsample(cout) if i > 0 else None))

        self.norm_out = nn.GroupNorm(groups, ch[0])
        self.conv_out = nn.Conv2d(ch[0], cfg.out_channels, 3, padding=1)

    def check_input(self, x: torch.Tensor) -> None:
        cfg = self.config
        f = cfg.downsample_factor
        if x.ndim != 4 or x.shape[1] != cfg.in_channels or x.shape[2] % f or x.shape[3] % f:
            raise ValueError(
                f"UNet input x has shape {tuple(x.shape)}; expected (B, {cfg.in_channels}, H, W) with H and W "
                f"multiples of {f} (the UNet downsamples {len(cfg.channels) - 1} times)"
            )

    def _run(self, module: nn.Module, *args: torch.Tensor) -> torch.Tensor:
        if self.config.gradient_checkpointing and self.training and torch.is_grad_enabled():
            return checkpoint(module, *args, use_reentrant=False)
        return module(*args)

    def forward(self, x: torch.Tensor, t: torch.Tensor | float, context: torch.Tensor) -> torch.Tensor:
        """x: (B, in_channels, H, W); t: training timesteps, scalar or (B,); context: (B, tokens, context_dim)."""
        self.check_input(x)
        if context.ndim != 3 or context.shape[0] != x.shape[0] or context.shape[2] != self.config.context_dim:
            raise ValueError(
                f"context has shape {tuple(context.shape)}; expected ({x.shape[0]}, tokens, {self.config.context_dim})"
            )
        t = torch.as_tensor(t, device=x.device)
        if t.ndim == 0:
            t = t[None]
        t = t.expand(x.shape[0])
        emb = self.time_embed(timestep_embedding(t, self.config.channels[0]).to(x.dtype))

        h = self.conv_in(x)
        skips = [h]
        for level in self.down:
            for j, res in enumerate(level.res):
                h = self._run(res, h, emb)
                if level.attn is not None:
                    h = self._run(level.attn[j], h, context)
                skips.append(h)
            if level.resample is not None:
                h = level.resample(h)
                skips.append(h)

        h = self._run(self.mid.res[0], h, emb)
        h = self._run(self.mid.attn[0], h, context)
        h = self._run(self.mid.res[1], h, emb)

        for level in self.up:
            for j, res in enumerate(level.res):
                h = self._run(res, torch.cat([h, skips.pop()], dim=1), emb)
                if level.attn is not None:
                    h = self._run(level.attn[j], h, context)
            if level.resample is not None:
                h = level.resample(h)

        return self.conv_out(F.silu(self.norm_out(h)))
