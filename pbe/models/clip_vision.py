"""The CLIP ViT image tower (OpenAI ViT-L/14 by default), frozen in Paint by Example.

Patchify -> prepend the class token -> add position embeddings -> pre-LayerNorm -> pre-LN transformer layers with
quick-GELU MLPs. `forward` returns (tokens, pooled): all final tokens and post-LayerNorm(class token).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from pbe.models.attention import Attention

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


@dataclass
class VisionConfig:
    image_size: int = 224
    patch_size: int = 14
    width: int = 1024
    layers: int = 24
    heads: int = 16
    mlp_dim: int = 4096
    layer_norm_eps: float = 1e-5

    @property
    def num_patches(self) -> int:
        return (self.image_size // self.patch_size) ** 2


class QuickGELU(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(1.702 * x)


class MLP(nn.Module):
    def __init__(self, width: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(width, hidden)
        self.act = QuickGELU()
        self.fc2 = nn.Linear(hidden, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class EncoderLayer(nn.Module):
    def __init__(self, cfg: VisionConfig):
        super().__init__()
        self.norm1 = nn.LayerNorm(cfg.width, eps=cfg.layer_norm_eps)
        self.attn = Attention(cfg.width, cfg.heads, qkv_bias=True)
        self.norm2 = nn.LayerNorm(cfg.width, eps=cfg.layer_norm_eps)
        self.mlp = MLP(cfg.width, cfg.mlp_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class VisionTower(nn.Module):
    def __init__(self, config: VisionConfig | None = None):
        super().__init__()
        cfg = self.config = config or VisionConfig()
        self.patch_embed = nn.Conv2d(3, cfg.width, cfg.patch_size, stride=cfg.patch_size, bias=False)
        self.class_token = nn.Parameter(torch.zeros(cfg.width))
        self.pos_embed = nn.Parameter(torch.zeros(cfg.num_patches + 1, cfg.width))
        self.pre_norm = nn.LayerNorm(cfg.width, eps=cfg.layer_norm_eps)
        self.layers = nn.ModuleList(EncoderLayer(cfg) for _ in range(cfg.layers))
        self.post_norm = nn.LayerNorm(cfg.width, eps=cfg.layer_norm_eps)
        nn.init.normal_(self.class_token, std=cfg.width**-0.5)
        nn.init.normal_(self.pos_embed, std=0.02)

    def forward(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """pixels: CLIP-normalised images (B, 3, image_size, image_size) -> (tokens (B, 1 + patches, width),
        pooled (B, width))."""
        s = self.config.image_size
        if pixels.ndim != 4 or pixels.shape[1:] != (3, s, s):
            raise ValueError(f"pixels have shape {tuple(pixels.shape)}; expected (B, 3, {s}, {s})")
        x = self.patch_embed(pixels.to(self.patch_embed.weight.dtype)).flatten(2).transpose(1, 2)
        cls = self.class_token.to(x.dtype).expand(x.shape[0], 1, -1)
        x = self.pre_norm(torch.cat([cls, x], dim=1) + self.pos_embed.to(x.dtype))
        for layer in self.layers:
            x = layer(x)
        return x, self.post_norm(x[:, 0])
