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

from pbe.models.attention import SPEEDUPS, TransformerBlock
from pbe.models.conv import Conv2d


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
        self.conv1 = Conv2d(cin, cout, 3, padding=1)
        self.time_proj = nn.Linear(temb_dim, cout) if temb_dim is not None else None
        self.norm2 = nn.GroupNorm(groups, cout, eps=eps)
        self.conv2 = Conv2d(cout, cout, 3, padding=1)
        self.skip = Conv2d(cin, cout, 1) if cin != cout else None

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
        self.proj_in = nn.Linear(dim, dim) if linear else Conv2d(dim, dim, 1)
        self.blocks = nn.ModuleList(
            TransformerBlock(dim, num_heads, context_dim=context_dim) for _ in range(depth)
        )
        self.proj_out = nn.Linear(dim, dim) if linear else Conv2d(dim, dim, 1)

    def forward(
        self,
        x: torch.Tensor,
        context: torch.Tensor | None,
        cross: list[torch.Tensor] | None = None,
        expand: int = 1,
    ) -> torch.Tensor:
        """`cross`: per block, its precomputed cross-attention output (UNet.prepare). `expand` > 1: x holds the
        rows shared by `expand` stacked copies of the batch; they are repeated after the first self-attention,
        the last computation that does not depend on the context."""
        b, c, hgt, wid = x.shape
        h = self.norm(x)
        if not self.linear:
            h = self.proj_in(h)
        h = h.permute(0, 2, 3, 1).reshape(b, hgt * wid, c)
        if self.linear:
            h = self.proj_in(h)
        for i, block in enumerate(self.blocks):
            h = block(h, context, None if cross is None else cross[i], expand if i == 0 else 1)
        b = h.shape[0]
        if self.linear:
            h = self.proj_out(h)
        h = h.reshape(b, hgt, wid, c).permute(0, 3, 1, 2)
        if not self.linear:
            h = self.proj_out(h)
        return (x if expand == 1 else x.repeat(expand, 1, 1, 1)) + h


class Downsample(nn.Module):
    def __init__(self, channels: int, pad_asymmetric: bool = False):
        super().__init__()
        # The UNet pads 1 on every side; the VAE encoder pads right/bottom only (padding=0 after F.pad).
        self.pad_asymmetric = pad_asymmetric
        self.conv = Conv2d(channels, channels, 3, stride=2, padding=0 if pad_asymmetric else 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.pad_asymmetric:
            x = F.pad(x, (0, 1, 0, 1))
        return self.conv(x)


# Nearest 2x upsampling then a 3x3 conv (padding 1) is, for each of the four output phases (row parity a, column
# parity b), a 2x2 conv of the low-resolution input: along rows, phase 0 sees x[i-1] with w0 and x[i] with w1 + w2,
# phase 1 sees x[i] with w0 + w1 and x[i+1] with w2 (zero padding matches); columns likewise.


def phase_kernels(weight: torch.Tensor) -> torch.Tensor:
    """(C_out, C_in, 3, 3) -> (4 * C_out, C_in, 2, 2): the 2x2 kernels of phases (0,0), (0,1), (1,0), (1,1).

    Taps are summed in float32 by slice assignments into preallocated tensors (rows, then columns): about 2.5x faster
    than one einsum over 0/1 tap matrices, and autograd follows them."""
    w = weight.float()
    c_out, c_in = w.shape[:2]
    rows_ = w.new_empty(2, c_out, c_in, 2, 3)  # [row phase, ..., merged row tap, column tap]
    rows_[0, :, :, 0] = w[:, :, 0]
    rows_[0, :, :, 1] = w[:, :, 1] + w[:, :, 2]
    rows_[1, :, :, 0] = w[:, :, 0] + w[:, :, 1]
    rows_[1, :, :, 1] = w[:, :, 2]
    k = w.new_empty(2, 2, c_out, c_in, 2, 2)  # [row phase, column phase, ..., row tap, column tap]
    k[:, 0, ..., 0] = rows_[..., 0]
    k[:, 0, ..., 1] = rows_[..., 1] + rows_[..., 2]
    k[:, 1, ..., 0] = rows_[..., 0] + rows_[..., 1]
    k[:, 1, ..., 1] = rows_[..., 2]
    return k.reshape(4 * c_out, c_in, 2, 2).to(weight.dtype)


# Below this many low-resolution pixels per call (batch x height x width) Upsample runs the plain conv: rebuilding
# the phase kernels costs time in proportion to the weight, the conv's saving in proportion to the pixels too, and
# measured on the 2-core CPU (fp32 and bf16, 640 and 1280 channels) the saving only wins from about 1024 on (batch 2
# at 16x16 with 1280 channels: 254 ms subpixel vs 276 ms plain in fp32, 209 vs 147 in bf16; at 32x32 with 640: 143 vs
# 283 and 78 vs 150; at 8x8 the subpixel path took twice the plain conv's time).
SUBPIXEL_MIN_PIXELS = 1024


class Upsample(nn.Module):
    """Nearest 2x upsampling and a 3x3 conv. With `SPEEDUPS.subpixel_upsample` (default), on inputs of at least
    `SUBPIXEL_MIN_PIXELS` low-resolution pixels, the conv runs as four 2x2 convs on the low-resolution input (one conv
    with 4x the output channels), 16 instead of 36 multiply-adds per input-output channel pair and low-resolution
    pixel, and the phases are interleaved: the same result up to float rounding (the taps are summed first)."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        if not SPEEDUPS.subpixel_upsample or b * h * w < SUBPIXEL_MIN_PIXELS:
            return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))
        bias = None if self.conv.bias is None else self.conv.bias.repeat(4)
        # the phase kernels are rebuilt per call (about 100 ms for 1280 channels, 25 for 640): cached, they would add
        # 16/9 of the conv's weight memory
        y = F.conv2d(F.pad(x, (1, 1, 1, 1)), phase_kernels(self.conv.weight), bias)  # (B, 4 C, h + 1, w + 1)
        out = x.new_empty(b, self.conv.out_channels, 2 * h, 2 * w)
        n = self.conv.out_channels
        for a in (0, 1):
            for col in (0, 1):
                phase = 2 * a + col
                out[:, :, a::2, col::2] = y[:, phase * n : (phase + 1) * n, a : a + h, col : col + w]
        return out


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
        self.conv_in = Conv2d(cfg.in_channels, ch[0], 3, padding=1)

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
        self.conv_out = Conv2d(ch[0], cfg.out_channels, 3, padding=1)

    def check_input(self, x: torch.Tensor) -> None:
        cfg = self.config
        f = cfg.downsample_factor
        if x.ndim != 4 or x.shape[1] != cfg.in_channels or x.shape[2] % f or x.shape[3] % f:
            raise ValueError(
                f"UNet input x has shape {tuple(x.shape)}; expected (B, {cfg.in_channels}, H, W) with H and W "
                f"multiples of {f} (the UNet downsamples {len(cfg.channels) - 1} times)"
            )

    def _run(self, module: nn.Module, *args) -> torch.Tensor:
        if self.config.gradient_checkpointing and self.training and torch.is_grad_enabled():
            return checkpoint(module, *args, use_reentrant=False)
        return module(*args)

    def transformers(self) -> list[SpatialTransformer]:
        """The spatial transformers in the order forward runs them."""
        levels = [*self.down, self.mid, *self.up]
        return [attn for level in levels if level.attn is not None for attn in level.attn]

    def prepare(self, cond: torch.Tensor, context: torch.Tensor) -> Prepared:
        """Per-edit constants for `forward(x, t, prepared=...)`, where x then holds only the noisy latent.

        cond: the input channels that stay fixed over sampling (masked-image latent and mask: (B, 5, H, W)), the
        trailing channels of the UNet input; context: (B, tokens, context_dim). Exact up to float rounding, each
        part behind its `SPEEDUPS` switch: conv_in's response to cond (plus bias) is computed once
        (`precomputed_conditioning`); with a one-token context, each transformer block's cross-attention output,
        which is the same at every position and every step, is computed once (`precomputed_conditioning` and
        `single_token_attention`; for classifier-free guidance this covers the unconditional vector's share too).
        When the batch is two stacked copies of the same rows (cond = cat([c, c]), as under guidance), forward
        also takes x for one copy and runs everything before the first cross-attention once for both
        (`shared_guidance_prefix`; the copies must have equal timesteps)."""
        cfg = self.config
        f = cfg.downsample_factor
        constant = cond.shape[1] if cond.ndim == 4 else 0
        if cond.ndim != 4 or not 0 < constant < cfg.in_channels or cond.shape[2] % f or cond.shape[3] % f:
            raise ValueError(
                f"prepare: cond has shape {tuple(cond.shape)}; expected (B, c, H, W) with 0 < c < "
                f"{cfg.in_channels} and H, W multiples of {f}"
            )
        if context.ndim != 3 or context.shape[0] != cond.shape[0] or context.shape[2] != cfg.context_dim:
            raise ValueError(
                f"prepare: context has shape {tuple(context.shape)}; expected ({cond.shape[0]}, tokens, "
                f"{cfg.context_dim})"
            )
        b = cond.shape[0]
        copies = 2 if b % 2 == 0 and torch.equal(cond[: b // 2], cond[b // 2 :]) else 1
        cond = cond[: b // copies]
        conv_in_cond = cross = None
        if SPEEDUPS.precomputed_conditioning:
            # in float32 whatever the model's dtype: the sum with the latent's share is rounded once, as in conv_in
            conv = self.conv_in
            weight = conv.weight[:, cfg.in_channels - cond.shape[1] :].float()
            conv_in_cond = F.conv2d(cond.float(), weight, conv.bias.float(), conv.stride, conv.padding)
            if SPEEDUPS.single_token_attention and context.shape[1] == 1:
                cross = {
                    st: [block.cross_output(context) for block in st.blocks] for st in self.transformers()
                }
        return Prepared(cond, context, copies, conv_in_cond, cross)

    def _prepared_input(self, x: torch.Tensor, t: torch.Tensor, p: Prepared) -> torch.Tensor:
        """conv_in's output for the noisy latent x and the prepared constant channels; the batch stays x's."""
        n_var = self.config.in_channels - p.cond.shape[1]
        good_rows = x.ndim == 4 and x.shape[0] in (p.batch, p.cond.shape[0])
        if not good_rows or x.shape[1] != n_var or x.shape[2:] != p.cond.shape[2:]:
            rows_ = f"{p.batch}" if p.copies == 1 else f"{p.batch} or {p.cond.shape[0]} (one copy)"
            raise ValueError(
                f"UNet input x has shape {tuple(x.shape)}; with prepared conditioning expected "
                f"({rows_}, {n_var}, {p.cond.shape[2]}, {p.cond.shape[3]})"
            )
        if x.shape[0] < p.batch:
            same_t = bool((t.reshape(p.copies, -1) == t[: x.shape[0]]).all())
            if not (SPEEDUPS.shared_guidance_prefix and same_t):
                x = x.repeat(p.copies, 1, 1, 1)
        if p.conv_in_cond is None:
            return self.conv_in(torch.cat([x, rows(p.cond, x.shape[0])], dim=1))
        conv = self.conv_in
        h = F.conv2d(x.float(), conv.weight[:, :n_var].float(), None, conv.stride, conv.padding)
        return (h + rows(p.conv_in_cond, x.shape[0])).to(x.dtype)

    def _attention(self, st: SpatialTransformer, h, context, prepared: Prepared | None, batch: int):
        cross = prepared.cross[st] if prepared is not None and prepared.cross is not None else None
        expand = batch // h.shape[0]
        if cross is None and expand == 1:
            return self._run(st, h, context)
        return self._run(st, h, context, cross, expand)

    def forward(
        self,
        x: torch.Tensor,
        t: torch.Tensor | float,
        context: torch.Tensor | None = None,
        prepared: Prepared | None = None,
    ) -> torch.Tensor:
        """x: (B, in_channels, H, W); t: training timesteps, scalar or (B,); context: (B, tokens, context_dim).

        With `prepared` (from `prepare(cond, context)`): x is only the noisy latent, (B, in_channels - c, H, W), or
        one copy of it when the prepared batch is stacked copies; the context is the prepared one."""
        if prepared is None:
            self.check_input(x)
            if context is None or (
                context.ndim != 3
                or context.shape[0] != x.shape[0]
                or context.shape[2] != self.config.context_dim
            ):
                shape = None if context is None else tuple(context.shape)
                raise ValueError(
                    f"context has shape {shape}; expected ({x.shape[0]}, tokens, {self.config.context_dim})"
                )
            batch = x.shape[0]
        else:
            context, batch = prepared.context, prepared.batch
        t = torch.as_tensor(t, device=x.device)
        if t.ndim == 0:
            t = t[None]
        t = t.expand(batch)
        emb = self.time_embed(timestep_embedding(t, self.config.channels[0]).to(x.dtype))

        if prepared is not None:
            h = self._prepared_input(x, t, prepared)
        elif SPEEDUPS.shared_guidance_prefix and batch % 2 == 0 and stacked_copies(x, t):
            h = self.conv_in(x[: batch // 2])  # run until the first cross-attention once for both halves
        else:
            h = self.conv_in(x)
        skips = [h]
        for level in self.down:
            for j, res in enumerate(level.res):
                h = self._run(res, h, emb[: h.shape[0]])
                if level.attn is not None:
                    h = self._attention(level.attn[j], h, context, prepared, batch)
                skips.append(h)
            if level.resample is not None:
                h = level.resample(h)
                skips.append(h)

        h = self._run(self.mid.res[0], h, emb[: h.shape[0]])
        h = self._attention(self.mid.attn[0], h, context, prepared, batch)
        h = self._run(self.mid.res[1], h, emb)

        for level in self.up:
            for j, res in enumerate(level.res):
                h = self._run(res, torch.cat([h, rows(skips.pop(), batch)], dim=1), emb)
                if level.attn is not None:
                    h = self._attention(level.attn[j], h, context, prepared, batch)
            if level.resample is not None:
                h = level.resample(h)

        return self.conv_out(F.silu(self.norm_out(h)))


def stacked_copies(x: torch.Tensor, t: torch.Tensor) -> bool:
    """Whether the batch is two stacked copies of the same inputs and timesteps ([x; x]: the guidance batch, whose
    halves differ only in the context)."""
    half = x.shape[0] // 2
    return torch.equal(t[:half], t[half:]) and torch.equal(x[:half], x[half:])


def rows(t: torch.Tensor, n: int) -> torch.Tensor:
    """t (whose rows are one copy of a batch of n) repeated to n rows, as torch.cat([t] * copies)."""
    return t if t.shape[0] == n else t.repeat(n // t.shape[0], *([1] * (t.ndim - 1)))


@dataclass
class Prepared:
    """Per-edit constants for UNet.forward, from UNet.prepare."""

    cond: torch.Tensor  # the constant input channels, one copy: (B / copies, c, H, W)
    context: torch.Tensor  # (B, tokens, context_dim)
    copies: int  # the batch is `copies` stacked copies of cond's rows
    conv_in_cond: torch.Tensor | None  # conv_in's response to cond, bias included (float32)
    cross: dict[SpatialTransformer, list[torch.Tensor]] | None  # per transformer, per block: (B, 1, dim)

    @property
    def batch(self) -> int:
        return self.context.shape[0]
