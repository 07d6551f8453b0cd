"""Architecture from tensor shapes, and state-dict checks that name the offending keys (and non-finite weights).

Shapes determine channels, levels, residual blocks, attention levels, transformer depth, context width, projection
type and every ViT size but its head count; heads come from defaults (SD v1: 8 per UNet level; CLIP: width / 64;
mapper: 1) or a config file the user passes.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping

import torch

from pbe.checkpoints.tensor_io import CheckpointError
from pbe.models.clip_vision import VisionConfig
from pbe.models.unet import UNetConfig
from pbe.models.vae import VAEConfig


def _need(state: Mapping[str, torch.Tensor], key: str, what: str) -> torch.Tensor:
    if key not in state:
        raise CheckpointError(f"cannot infer the {what}: key {key!r} is missing")
    return state[key]


def _indices(keys, pattern: str) -> list[int]:
    rx = re.compile(pattern)
    return sorted({int(m.group(1)) for k in keys if (m := rx.match(k))})


def unet_config_from_ldm(
    state: Mapping[str, torch.Tensor], num_heads: int | tuple[int, ...] = 8
) -> UNetConfig:
    """`state`: the original UNet keys without the model.diffusion_model. prefix."""
    conv_in = _need(state, "input_blocks.0.0.weight", "UNet input channels")
    blocks = _indices(state, r"input_blocks\.(\d+)\.")
    levels = len(_indices(state, r"input_blocks\.(\d+)\.0\.op\.weight")) + 1
    n = blocks[-1] + 1
    if (n - levels) % levels:
        raise CheckpointError(f"UNet input_blocks: {n} blocks do not fit {levels} levels of equal depth")
    r = (n - levels) // levels
    first = [1 + b * (r + 1) for b in range(levels)]
    channels = tuple(
        _need(state, f"input_blocks.{i}.0.out_layers.3.weight", "level widths").shape[0] for i in first
    )
    attention = tuple(f"input_blocks.{i}.1.proj_in.weight" in state for i in first)
    proj_in = _need(state, "middle_block.1.proj_in.weight", "spatial transformer projection")
    depth = len(_indices(state, r"middle_block\.1\.transformer_blocks\.(\d+)\."))
    context = _need(state, "middle_block.1.transformer_blocks.0.attn2.to_k.weight", "context width")
    return UNetConfig(
        in_channels=conv_in.shape[1],
        out_channels=_need(state, "out.2.weight", "UNet output channels").shape[0],
        channels=channels,
        attention_levels=attention,
        num_res_blocks=r,
        num_heads=num_heads,
        transformer_depth=depth,
        context_dim=context.shape[1],
        linear_projection=proj_in.ndim == 2,
    )


def vae_config_from_ldm(state: Mapping[str, torch.Tensor]) -> VAEConfig:
    """`state`: the original VAE keys without the first_stage_model. prefix."""
    levels = _indices(state, r"encoder\.down\.(\d+)\.")
    if not levels:
        raise CheckpointError("cannot infer the VAE: no encoder.down.* keys")
    channels = tuple(
        _need(state, f"encoder.down.{i}.block.0.conv1.weight", "VAE widths").shape[0] for i in levels
    )
    return VAEConfig(
        in_channels=_need(state, "encoder.conv_in.weight", "VAE input channels").shape[1],
        out_channels=_need(state, "decoder.conv_out.weight", "VAE output channels").shape[0],
        latent_channels=_need(state, "decoder.conv_in.weight", "latent channels").shape[1],
        channels=channels,
        num_res_blocks=len(_indices(state, r"encoder\.down\.0\.block\.(\d+)\.")),
    )


def vision_config_from_native(state: Mapping[str, torch.Tensor], heads: int | None = None) -> VisionConfig:
    """`state`: native VisionTower keys (patch_embed.weight, pos_embed, layers.{i}...)."""
    patch = _need(state, "patch_embed.weight", "ViT patch size")
    tokens = _need(state, "pos_embed", "ViT image size").shape[0]
    side = round((tokens - 1) ** 0.5)
    if side * side != tokens - 1:
        raise CheckpointError(
            f"ViT position embedding has {tokens} rows; expected 1 + a square number of patches"
        )
    width = patch.shape[0]
    return VisionConfig(
        image_size=side * patch.shape[-1],
        patch_size=patch.shape[-1],
        width=width,
        layers=len(_indices(state, r"layers\.(\d+)\.")),
        heads=heads or max(1, width // 64),
        mlp_dim=_need(state, "layers.0.mlp.fc1.weight", "ViT MLP width").shape[0],
    )


def check_state(
    expected: Mapping[str, torch.Tensor], got: Mapping[str, torch.Tensor], what: str, unused: list[str] = ()
) -> None:
    """Raise CheckpointError listing missing, unexpected and mis-shaped keys (first few of each, with counts)."""
    missing = [k for k in expected if k not in got]
    unexpected = [k for k in got if k not in expected] + list(unused)
    misshaped = [
        f"{k}: checkpoint {tuple(got[k].shape)}, model {tuple(expected[k].shape)}"
        for k in expected
        if k in got and tuple(got[k].shape) != tuple(expected[k].shape)
    ]
    if not (missing or unexpected or misshaped):
        return
    lines = [f"{what}: the checkpoint does not match the model"]
    for label, items in (("missing", missing), ("unexpected", unexpected), ("mis-shaped", misshaped)):
        if items:
            shown = "\n    ".join(items[:5])
            more = f"\n    ... and {len(items) - 5} more" if len(items) > 5 else ""
            lines.append(f"  {len(items)} {label} key(s):\n    {shown}{more}")
    raise CheckpointError("\n".join(lines))


def check_finite(
    state: Mapping[str, torch.Tensor], where: str, component: str | Callable[[str], str]
) -> None:
    """Raise CheckpointError naming the first floating-point tensor that holds NaN or infinity.

    `state`: the tensors under their names in the file; `component`: the part of the model they belong to, or a
    function of the name that says. One pass over each tensor as it loads (a memory-mapped file is read once)."""
    for name, tensor in state.items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            part = component if isinstance(component, str) else component(name)
            raise CheckpointError(
                f"{where}: tensor {name!r} ({part}) holds NaN or infinite values: the weights are "
                "corrupt (a diverged training run, or an overflow when they were saved in lower precision), "
                "and every image made with them would be black"
            )
