"""The exemplar encoder: Paint by Example's information bottleneck.

CLIP image tower -> pooled class token only (B, 1, width) -> mapper (pre-LN transformer blocks, 1 head, GELU MLP)
-> final LayerNorm -> linear projection to the UNet's context width (B, 1, context_dim).
`uncond_vector` (1, 1, context_dim) is the learned unconditional embedding used for classifier-free guidance; it lives
in context space and bypasses the projection.

`use_patch_tokens=True` keeps every token of the tower instead of the class token: the paper's "no bottleneck"
ablation, giving (B, 1 + patches, context_dim).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from pbe.models.attention import TransformerBlock
from pbe.models.clip_vision import VisionConfig, VisionTower


@dataclass
class ExemplarEncoderConfig:
    vision: VisionConfig = field(default_factory=VisionConfig)
    mapper_depth: int = 5
    mapper_heads: int = 1
    context_dim: int = 768
    use_patch_tokens: bool = False

    def __post_init__(self):
        if isinstance(self.vision, dict):
            self.vision = VisionConfig(**self.vision)


class ExemplarEncoder(nn.Module):
    def __init__(self, config: ExemplarEncoderConfig | None = None):
        super().__init__()
        cfg = self.config = config or ExemplarEncoderConfig()
        width = cfg.vision.width
        self.vision = VisionTower(cfg.vision)
        self.mapper = nn.ModuleList(
            TransformerBlock(width, cfg.mapper_heads, qkv_bias=True, gated_ff=False)
            for _ in range(cfg.mapper_depth)
        )
        self.final_norm = nn.LayerNorm(width)
        self.proj_out = nn.Linear(width, cfg.context_dim)
        self.uncond_vector = nn.Parameter(torch.randn(1, 1, cfg.context_dim))

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        """pixels: CLIP-normalised exemplars (B, 3, 224, 224) -> context (B, tokens, context_dim)."""
        tokens, pooled = self.vision(pixels)
        x = self.vision.post_norm(tokens) if self.config.use_patch_tokens else pooled[:, None]
        for block in self.mapper:
            x = block(x)
        return self.proj_out(self.final_norm(x))

    def unconditional(self, batch_size: int, tokens: int = 1) -> torch.Tensor:
        """The learned unconditional context, repeated to (batch_size, tokens, context_dim)."""
        return self.uncond_vector.expand(batch_size, tokens, -1)
