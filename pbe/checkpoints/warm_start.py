"""Initialise Paint by Example for training, as the paper does: UNet and VAE from Stable Diffusion v1.x, the image tower
from CLIP ViT-L/14, the rest (mapper, final LayerNorm, projection, unconditional vector) freshly initialised.

The SD UNet's `conv_in` takes 4 channels; it is expanded to 9 ([z_t, z_masked, mask]) with the 5 new input channels
zero, so the warm-started model starts out computing exactly what SD computes on z_t.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import torch

from pbe.checkpoints import diffusers_keys as dk
from pbe.checkpoints import ldm_keys
from pbe.checkpoints.checkpoint import Checkpoint, apply_overrides, expected_state, prefixed
from pbe.checkpoints.infer import (
    check_state,
    unet_config_from_ldm,
    vae_config_from_ldm,
    vision_config_from_native,
)
from pbe.checkpoints.ldm_layout import describe_ldm
from pbe.checkpoints.ldm_schedule import scheduler_from_betas
from pbe.checkpoints.open_clip_keys import vision_from_open_clip
from pbe.checkpoints.tensor_io import CheckpointError, read_tensors
from pbe.models import ExemplarEncoder, PaintByExampleConfig, VisionTower
from pbe.models.clip_vision import VisionConfig
from pbe.models.exemplar_encoder import ExemplarEncoderConfig

_TRANSFORMERS_PREFIXES = ("vision_model.", "model.vision_model.", "", "model.")


def is_stable_diffusion(state: Mapping[str, torch.Tensor]) -> bool:
    return describe_ldm(state) == "stable_diffusion"


def expand_conv_in(weight: torch.Tensor, in_channels: int = 9) -> torch.Tensor:
    """[C, 4, k, k] -> [C, in_channels, k, k]: the original channels first, the new ones zero."""
    out = torch.zeros(weight.shape[0], in_channels, *weight.shape[2:], dtype=weight.dtype)
    out[:, : weight.shape[1]] = weight
    return out


def vision_from_clip(
    path: str | Path, heads: int | None = None
) -> tuple[VisionConfig, dict[str, torch.Tensor]]:
    """CLIP image-tower weights from a transformers folder (CLIPModel or CLIPVisionModel) or an open_clip file."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"CLIP weights not found: {path}")
    if path.is_dir():
        config_file = path / "config.json"
        config = json.loads(config_file.read_text()) if config_file.is_file() else {}
        config = config.get("vision_config", config)
        for name in ("model.safetensors", "pytorch_model.bin"):
            if (path / name).is_file():
                state, _ = read_tensors(path / name)
                break
        else:
            raise FileNotFoundError(f"{path}: no model.safetensors or pytorch_model.bin")
        prefix = next((p for p in _TRANSFORMERS_PREFIXES if f"{p}embeddings.class_embedding" in state), None)
        if prefix is None:
            raise CheckpointError(f"{path}: no CLIP vision tower keys (…embeddings.class_embedding)")
        native = dk.vision_from_transformers(state, prefix)
        heads = heads or config.get("num_attention_heads")
    else:
        state, _ = read_tensors(path)
        native, _ = vision_from_open_clip(state, "visual.")
    cfg = vision_config_from_native(native, heads)
    with torch.device("meta"):
        expected = VisionTower(cfg).state_dict()
    check_state(expected, native, f"{path} (CLIP vision tower)")
    return cfg, native


def warm_start(
    sd_path: str | Path,
    clip_path: str | Path,
    overrides: Mapping | None = None,
    seed: int = 23,
    state: Mapping[str, torch.Tensor] | None = None,
) -> Checkpoint:
    """A Paint-by-Example checkpoint built from an SD v1.x checkpoint (LDM layout) and CLIP image-tower weights.

    `state`: the SD file's tensors when the caller has already read them."""
    if state is None:
        state, _ = read_tensors(sd_path)
    if not is_stable_diffusion(state):
        raise CheckpointError(
            f"{sd_path}: not a Stable Diffusion v1.x checkpoint (expected model.diffusion_model.* and "
            "cond_stage_model.transformer.text_model.* keys)"
        )
    unet_cfg = unet_config_from_ldm(prefixed(state, ldm_keys.UNET_PREFIX))
    if unet_cfg.in_channels != 4:
        raise CheckpointError(
            f"{sd_path}: the UNet takes {unet_cfg.in_channels} input channels; expected SD's 4"
        )
    unet_cfg.in_channels = 9
    vae_cfg = vae_config_from_ldm(prefixed(state, ldm_keys.VAE_PREFIX))
    vision_cfg, vision_state = vision_from_clip(clip_path)
    config = PaintByExampleConfig(
        unet=unet_cfg,
        vae=vae_cfg,
        encoder=ExemplarEncoderConfig(vision=vision_cfg, context_dim=unet_cfg.context_dim),
    )
    config = apply_overrides(config, overrides)

    expected = expected_state(config)
    sd_keys = [k for k in expected if k.startswith(("unet.", "vae."))]
    conv_in = ldm_keys.UNET_PREFIX + "input_blocks.0.0.weight"
    state = {**state, conv_in: expand_conv_in(state[conv_in], config.unet.in_channels)}
    native, _ = ldm_keys.ldm_to_native(state, sd_keys, config.unet, config.vae)
    native.update({"encoder.vision." + k: v for k, v in vision_state.items()})
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        fresh = ExemplarEncoder(config.encoder)
    for k, v in fresh.state_dict().items():
        if not k.startswith("vision."):
            native["encoder." + k] = v
    check_state(expected, native, f"{sd_path} + {clip_path} (warm start)")
    return Checkpoint(config, native, scheduler=scheduler_from_betas(state.get("betas")), format="warm_start")
