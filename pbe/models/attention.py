"""Attention building blocks shared by the UNet, the VAE and the exemplar encoder.

All attention goes through `torch.nn.functional.scaled_dot_product_attention`, which picks a fused kernel
(flash / memory-efficient) where the device has one.

Exact speedups (`SPEEDUPS`, all on by default; `with speedups(single_token_attention=False): ...` turns one off):
attention over a single key (Paint by Example's one-token exemplar context, and the mapper's self-attention over that
token) has softmax weights exactly 1, so its output is `out(v(context))` at every query position: the query and key
projections, the attention and the output projection over every position are skipped. Outputs and gradients agree
with the full computation up to float rounding (q and k stay in the graph with exactly zero gradients, as in the
full computation, so optimisers and DDP see the same parameters).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, fields

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class Speedups:
    """Switches for the exact (output-preserving up to float rounding) shortcuts; all on by default.

    single_token_attention: attention over one key is out(v(context)) at every position.
    precomputed_conditioning: UNet.prepare computes conv_in's share of the constant channels and (one-token
        context) every cross-attention output once per edit.
    shared_guidance_prefix: a batch of two stacked copies ([x; x] under guidance) runs everything before the first
        cross-attention once (detected in plain calls, declared by UNet.prepare).
    subpixel_upsample: nearest 2x upsampling + 3x3 conv (UNet and VAE decoder) as four 2x2 convs on the
        low-resolution input (pbe.models.unet.Upsample).
    small_conv_gemm: CPU float32 convolutions with few output pixels as unfold + one matrix product, which skips
        oneDNN's per-call weight reorder (pbe.models.conv.Conv2d).
    """

    single_token_attention: bool = True
    precomputed_conditioning: bool = True
    shared_guidance_prefix: bool = True
    subpixel_upsample: bool = True
    small_conv_gemm: bool = True


SPEEDUPS = Speedups()


def keep_in_graph(y: torch.Tensor, *unused: nn.Module) -> torch.Tensor:
    """y, with the parameters of `unused` modules attached with exactly zero gradient when autograd records.

    A shortcut that skips work whose gradient is exactly zero (the query and key of attention over one key) must
    still give those parameters a zero gradient rather than none: AdamW decays weights with a zero gradient but skips
    weights without one, and DDP expects a gradient for every parameter."""
    params = [p for m in unused for p in m.parameters() if p.requires_grad]
    if not params or not torch.is_grad_enabled():
        return y
    return y + 0.0 * sum(p.sum() for p in params).to(y.dtype)


@contextlib.contextmanager
def speedups(**flags: bool):
    """Temporarily set fields of `SPEEDUPS`, e.g. `with speedups(single_token_attention=False): ...`."""
    names = {f.name for f in fields(Speedups)}
    unknown = set(flags) - names
    if unknown:
        raise ValueError(f"unknown speedups {sorted(unknown)}; valid: {sorted(names)}")
    saved = {name: getattr(SPEEDUPS, name) for name in flags}
    for name, value in flags.items():
        setattr(SPEEDUPS, name, bool(value))
    try:
        yield SPEEDUPS
    finally:
        for name, value in saved.items():
            setattr(SPEEDUPS, name, value)


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

    def single_token(self, context: torch.Tensor) -> torch.Tensor:
        """The output for a one-token context, (B, 1, dim): softmax over one key is 1, so it is out(v(context))."""
        return keep_in_graph(self.out(self.v(context)), self.q, self.k)

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        context = x if context is None else context
        b, n, d = x.shape
        if context.shape[1] == 1 and SPEEDUPS.single_token_attention:
            return self.single_token(context).expand(b, n, d)
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

    def forward(
        self,
        x: torch.Tensor,
        context: torch.Tensor | None = None,
        cross: torch.Tensor | None = None,
        expand: int = 1,
    ) -> torch.Tensor:
        """`cross`: this block's cross-attention output (B, 1, dim) for a one-token context, precomputed by
        `cross_output` (UNet.prepare); it replaces the cross-attention and makes `context` unused.
        `expand` > 1: x holds rows shared by `expand` stacked copies of the batch (context has them all); they are
        repeated after the self-attention, which does not depend on the context."""
        x = x + self.self_attn(self.norm1(x))
        if expand > 1:
            x = x.repeat(expand, 1, 1)
        if self.has_cross:
            if cross is None and context.shape[1] == 1 and SPEEDUPS.single_token_attention:
                cross = self.cross_output(context)
            x = x + (self.cross_attn(self.norm2(x), context) if cross is None else cross)
        return x + self.ff(self.norm3(x))

    def cross_output(self, context: torch.Tensor) -> torch.Tensor:
        """Cross-attention output for a one-token context (B, 1, context_dim) -> (B, 1, dim), the same at every
        position (the normalised input only feeds the query, whose weight in a one-key softmax is exactly 1)."""
        return keep_in_graph(self.cross_attn.single_token(context), self.norm2)
