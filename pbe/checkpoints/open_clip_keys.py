"""Key mapping from an open_clip ViT (`visual.*` of a CLIP checkpoint) to pbe's VisionTower.

open_clip keeps q, k and v fused in `attn.in_proj_weight` (3 * width, width); they are split here. The CLIP image
projection `proj` is not part of the tower (Paint by Example does not use it) and is returned separately.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

_RENAMES = {
    "conv1.weight": "patch_embed.weight",
    "class_embedding": "class_token",
    "positional_embedding": "pos_embed",
    "ln_pre.weight": "pre_norm.weight",
    "ln_pre.bias": "pre_norm.bias",
    "ln_post.weight": "post_norm.weight",
    "ln_post.bias": "post_norm.bias",
}
_LAYER_RENAMES = {
    "ln_1": "norm1",
    "ln_2": "norm2",
    "attn.out_proj": "attn.out",
    "mlp.c_fc": "mlp.fc1",
    "mlp.c_proj": "mlp.fc2",
}


def vision_from_open_clip(
    state: Mapping[str, torch.Tensor], prefix: str = "visual."
) -> tuple[dict[str, torch.Tensor], torch.Tensor | None]:
    """Returns (VisionTower state dict, CLIP projection matrix (width, embed_dim) or None)."""
    out: dict[str, torch.Tensor] = {}
    proj = None
    for key, value in state.items():
        if not key.startswith(prefix):
            continue
        name = key[len(prefix) :]
        if name == "proj":
            proj = value
        elif name in _RENAMES:
            out[_RENAMES[name]] = value
        elif name.startswith("transformer.resblocks."):
            index, rest = name[len("transformer.resblocks.") :].split(".", 1)
            base = f"layers.{index}."
            module, param = rest.rsplit(".", 1)
            if module == "attn" and param in ("in_proj_weight", "in_proj_bias"):
                suffix = "weight" if param == "in_proj_weight" else "bias"
                for part, chunk in zip("qkv", value.chunk(3, dim=0), strict=True):
                    out[f"{base}attn.{part}.{suffix}"] = chunk
            elif module in _LAYER_RENAMES:
                out[f"{base}{_LAYER_RENAMES[module]}.{param}"] = value
            else:
                raise ValueError(f"unexpected open_clip vision key {key!r}")
        else:
            raise ValueError(f"unexpected open_clip vision key {key!r}")
    if not out:
        raise ValueError(f"no open_clip vision keys under prefix {prefix!r}")
    return out, proj
