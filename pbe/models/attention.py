"""Attention building blocks shared by the UNet, the VAE and the exemplar encoder.

All attention goes through `torch.nn.functional.scaled_dot_product_attention`, which picks a fused kernel
(flash / memory-efficient) where the device has one.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class Attention(nn.Module):
    """Multi-head attention with separate q, k, v and output projections.

    `context_dim=None` makes it self-attention. `qkv_bias` is False in the SD UNet and True in CLIP,
    the exemplar mapper and the VAE.
    """

    def __init__(self, dim: int, num_heads: int, context_dim: int | None = None, qkv_bias: bool = False):
        super().__init__()
        if dim % num_heads != 0:
            raise ValueError(f"num_heads={num_heads} must divide the attention width dim={dim}")
        context_dim = dim if context_dim is None else context_dim
        self.num_heads = num_heads
        self.q = nn.Linear(dim, dim, bias=qkv_bias)
        self.k = nn.Linear(context_dim, dim, bias=qkv_bias)
        self.v = nn.Linear(context_dim, dim, bias=qkv_bias)
        self.out = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        context = x if context is None else context
        b, n, d = x.shape
        h = self.num_heads

        def heads(t: torch.Tensor) -> torch.Tensor:
            return t.view(b, -1, h, d // h).transpose(1, 2)

        y = F.scaled_dot_product_attention(heads(self.q(x)), heads(self.k(context)), heads(self.v(context)))
        return self.out(y.transpose(1, 2).reshape(b, n, d))


class FeedForward(nn.Module):
    """Two-layer MLP. `gated=True` is GEGLU (SD UNet); otherwise a plain GELU MLP (exemplar mapper)."""

    def __init__(self, dim: int, mult: int = 4, gated: bool = True):
        super().__init__()
        inner = dim * mult
        self.gated = gated
        self.proj_in = nn.Linear(dim, inner * 2 if gated else inner)
        self.proj_out = nn.Linear(inner, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.gated:
            x, gate = self.proj_in(x).chunk(2, dim=-1)
            x = x * F.gelu(gate)
        else:
            x = F.gelu(self.proj_in(x))
        return self.proj_out(x)


class TransformerBlock(nn.Module):
    """Pre-LayerNorm block: self-attention, optional cross-attention on `context`, feed-forward."""

    def __init__(
        self,
        dim: int,
        num_heads: int,
        context_dim: int | None = None,
        qkv_bias: bool = False,
        gated_ff: bool = True,
    ):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.self_attn = Attention(dim, num_heads, qkv_bias=qkv_bias)
        self.has_cross = context_dim is not None
        if self.has_cross:
            self.norm2 = nn.LayerNorm(dim)
            self.cross_attn = Attention(dim, num_heads, context_dim=context_dim, qkv_bias=qkv_bias)
        self.norm3 = nn.LayerNorm(dim)
        self.ff = FeedForward(dim, gated=gated_ff)

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        x = x + self.self_attn(self.norm1(x))
        if self.has_cross:
            x = x + self.cross_attn(self.norm2(x), context)
        return x + self.ff(self.norm3(x))
