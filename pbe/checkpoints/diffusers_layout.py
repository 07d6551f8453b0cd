"""Read and write the diffusers layout: a `PaintByExamplePipeline` folder, as `save_pretrained` writes it.

`model_index.json` names the components; `unet/`, `vae/` and `image_encoder/` each hold a `config.json` and their
weights (one file or an index of shards, .safetensors or .bin), `scheduler/` the scheduler config. Key names are
mapped by `diffusers_keys`; the model config is read from, and written as, the components' diffusers configs.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import torch

from pbe.checkpoints import diffusers_keys as dk
from pbe.checkpoints.checkpoint import (
    Checkpoint,
    apply_overrides,
    expected_state,
    prefixed,
)
from pbe.checkpoints.infer import check_finite, check_state
from pbe.checkpoints.layout_io import config_errors, read_json, stream
from pbe.checkpoints.tensor_io import CheckpointError, read_tensors
from pbe.diffusion.scheduler_config import PAINT_BY_EXAMPLE_SCHEDULER
from pbe.models import PaintByExampleConfig
from pbe.models.exemplar_encoder import ExemplarEncoderConfig
from pbe.models.unet import UNetConfig
from pbe.models.vae import VAEConfig

DIFFUSERS_COMPONENTS = {"unet": "UNet", "vae": "VAE", "image_encoder": "exemplar encoder"}  # folder -> part


def _component_weights(folder: Path, stems: tuple[str, ...]) -> dict[str, torch.Tensor]:
    for stem in stems:
        for suffix in (".safetensors", ".bin"):
            single = folder / f"{stem}{suffix}"
            if single.is_file():
                return read_tensors(single)[0]
            index = folder / f"{stem}{suffix}.index.json"
            if index.is_file():
                shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
                state: dict[str, torch.Tensor] = {}
                for shard in shards:
                    state.update(read_tensors(folder / shard)[0])
                return state
    raise FileNotFoundError(f"{folder}: no weights ({', '.join(s + '.safetensors' for s in stems)} or .bin)")


def unet_config_from_diffusers(c: Mapping) -> UNetConfig:
    for key in ("addition_embed_type", "class_embed_type", "encoder_hid_dim", "time_cond_proj_dim"):
        if c.get(key) is not None:
            raise CheckpointError(f"unet/config.json: {key}={c[key]!r} is not part of the SD v1 UNet")
    depth = c.get("transformer_layers_per_block", 1)
    if isinstance(depth, list):
        if len(set(depth)) != 1:
            raise CheckpointError(f"unet/config.json: transformer_layers_per_block={depth} must be one value")
        depth = depth[0]
    heads = c.get("num_attention_heads") or c.get("attention_head_dim", 8)
    return UNetConfig(
        in_channels=c.get("in_channels", 4),
        out_channels=c.get("out_channels", 4),
        channels=tuple(c["block_out_channels"]),
        attention_levels=tuple(t.startswith("CrossAttn") for t in c["down_block_types"]),
        num_res_blocks=c.get("layers_per_block", 2),
        num_heads=tuple(heads) if isinstance(heads, list) else heads,
        transformer_depth=depth,
        context_dim=c.get("cross_attention_dim", 768),
        linear_projection=bool(c.get("use_linear_projection", False)),
        norm_groups=c.get("norm_num_groups", 32),
    )


def vae_config_from_diffusers(c: Mapping) -> VAEConfig:
    return VAEConfig(
        in_channels=c.get("in_channels", 3),
        out_channels=c.get("out_channels", 3),
        latent_channels=c.get("latent_channels", 4),
        channels=tuple(c["block_out_channels"]),
        num_res_blocks=c.get("layers_per_block", 2),
        norm_groups=c.get("norm_num_groups", 32),
        scale_factor=c.get("scaling_factor", 0.18215),
    )


def encoder_config_from_diffusers(c: Mapping, mapper_depth: int) -> ExemplarEncoderConfig:
    from pbe.models.clip_vision import VisionConfig

    if c.get("hidden_act", "quick_gelu") != "quick_gelu":
        raise CheckpointError(
            f"image_encoder/config.json: hidden_act={c['hidden_act']!r}; expected 'quick_gelu'"
        )
    vision = VisionConfig(
        image_size=c.get("image_size", 224),
        patch_size=c.get("patch_size", 14),
        width=c.get("hidden_size", 1024),
        layers=c.get("num_hidden_layers", 24),
        heads=c.get("num_attention_heads", 16),
        mlp_dim=c.get("intermediate_size", 4096),
        layer_norm_eps=c.get("layer_norm_eps", 1e-5),
    )
    return ExemplarEncoderConfig(
        vision=vision, mapper_depth=mapper_depth, context_dim=c.get("projection_dim", 768)
    )


def read_diffusers(path: Path, overrides: Mapping | None = None) -> Checkpoint:
    index = read_json(path / "model_index.json")
    for part in ("unet", "vae", "image_encoder"):
        if part not in index:
            raise CheckpointError(
                f"{path}/model_index.json has no {part!r}; is this a Paint-by-Example pipeline?"
            )
    unet_state = _component_weights(path / "unet", ("diffusion_pytorch_model",))
    vae_state = _component_weights(path / "vae", ("diffusion_pytorch_model",))
    enc_state = _component_weights(
        path / "image_encoder", ("model", "pytorch_model", "diffusion_pytorch_model")
    )
    for folder, part_state in (("unet", unet_state), ("vae", vae_state), ("image_encoder", enc_state)):
        check_finite(part_state, str(path / folder), DIFFUSERS_COMPONENTS[folder])
    mapper_depth = len({k.split(".")[2] for k in enc_state if k.startswith("mapper.blocks.")})
    files = {part: path / part / "config.json" for part in ("unet", "vae", "image_encoder")}
    with config_errors(files["unet"]):
        unet = unet_config_from_diffusers(read_json(files["unet"]))
    with config_errors(files["vae"]):
        vae = vae_config_from_diffusers(read_json(files["vae"]))
    with config_errors(files["image_encoder"]):
        encoder = encoder_config_from_diffusers(read_json(files["image_encoder"]), mapper_depth)
    with config_errors(f"{path}/{{unet,vae,image_encoder}}/config.json", overrides):
        config = apply_overrides(PaintByExampleConfig(unet=unet, vae=vae, encoder=encoder), overrides)
        expected = expected_state(config)
    layout = dk.detect_vision_layout(enc_state)
    state = {"unet." + k: v for k, v in dk.unet_from_diffusers(unet_state).items()}
    state.update({"vae." + k: v for k, v in dk.vae_from_diffusers(vae_state).items()})
    enc_state = {k: v for k, v in enc_state.items() if not k.endswith("position_ids")}
    state.update({"encoder." + k: v for k, v in dk.exemplar_from_diffusers(enc_state).items()})
    check_state(expected, state, f"{path} (diffusers folder)")
    scheduler_file = path / "scheduler" / "scheduler_config.json"
    scheduler = read_json(scheduler_file) if scheduler_file.is_file() else dict(PAINT_BY_EXAMPLE_SCHEDULER)
    return Checkpoint(config, state, scheduler=scheduler, format="diffusers", vision_layout=layout)


def _unet_diffusers_config(c: UNetConfig) -> dict:
    down = ["CrossAttnDownBlock2D" if a else "DownBlock2D" for a in c.attention_levels]
    up = ["CrossAttnUpBlock2D" if a else "UpBlock2D" for a in reversed(c.attention_levels)]
    return {
        "_class_name": "UNet2DConditionModel",
        "in_channels": c.in_channels,
        "out_channels": c.out_channels,
        "block_out_channels": list(c.channels),
        "down_block_types": down,
        "up_block_types": up,
        "layers_per_block": c.num_res_blocks,
        "attention_head_dim": list(c.num_heads) if isinstance(c.num_heads, tuple) else c.num_heads,
        "transformer_layers_per_block": c.transformer_depth,
        "cross_attention_dim": c.context_dim,
        "use_linear_projection": c.linear_projection,
        "norm_num_groups": c.norm_groups,
        "norm_eps": 1e-5,
        "act_fn": "silu",
        "flip_sin_to_cos": True,
        "freq_shift": 0,
        "downsample_padding": 1,
        "mid_block_scale_factor": 1,
        "center_input_sample": False,
        "sample_size": 64,
    }


def _vae_diffusers_config(c: VAEConfig) -> dict:
    n = len(c.channels)
    return {
        "_class_name": "AutoencoderKL",
        "in_channels": c.in_channels,
        "out_channels": c.out_channels,
        "latent_channels": c.latent_channels,
        "block_out_channels": list(c.channels),
        "down_block_types": ["DownEncoderBlock2D"] * n,
        "up_block_types": ["UpDecoderBlock2D"] * n,
        "layers_per_block": c.num_res_blocks,
        "norm_num_groups": c.norm_groups,
        "act_fn": "silu",
        "scaling_factor": c.scale_factor,
        "sample_size": 512,
    }


def _encoder_diffusers_config(c: ExemplarEncoderConfig) -> dict:
    v = c.vision
    return {
        "architectures": ["PaintByExampleImageEncoder"],
        "model_type": "clip_vision_model",
        "hidden_act": "quick_gelu",
        "hidden_size": v.width,
        "intermediate_size": v.mlp_dim,
        "num_attention_heads": v.heads,
        "num_hidden_layers": v.layers,
        "image_size": v.image_size,
        "patch_size": v.patch_size,
        "num_channels": 3,
        "layer_norm_eps": v.layer_norm_eps,
        "projection_dim": c.context_dim,
        "attention_dropout": 0.0,
        "initializer_factor": 1.0,
        "initializer_range": 0.02,
    }


def _feature_extractor_config(image_size: int) -> dict:
    return {
        "image_processor_type": "CLIPImageProcessor",
        "crop_size": {"height": image_size, "width": image_size},
        "size": {"shortest_edge": image_size},
        "do_center_crop": True,
        "do_convert_rgb": True,
        "do_normalize": True,
        "do_rescale": True,
        "do_resize": True,
        "image_mean": [0.48145466, 0.4578275, 0.40821073],
        "image_std": [0.26862954, 0.26130258, 0.27577711],
        "resample": 3,
        "rescale_factor": 1 / 255,
    }


def write_diffusers(
    ckpt: Checkpoint, dst: Path, dtype: torch.dtype | None = None, progress: bool = True
) -> list[Path]:
    cfg = ckpt.config
    if not cfg.encoder.mapper_depth or cfg.encoder.use_patch_tokens or cfg.encoder.mapper_heads != 1:
        raise ValueError(
            "diffusers' PaintByExampleImageEncoder needs a class-token encoder with a 1-head mapper"
        )
    if (cfg.encoder.vision.layers + 1) // 5 != cfg.encoder.mapper_depth:
        raise ValueError(
            f"diffusers derives the mapper depth as (CLIP layers + 1) // 5 = {(cfg.encoder.vision.layers + 1) // 5}; "
            f"this model has {cfg.encoder.mapper_depth} mapper blocks and cannot be expressed as a diffusers folder"
        )
    parts = {
        "unet": ("diffusion_pytorch_model.safetensors", _unet_diffusers_config(cfg.unet)),
        "vae": ("diffusion_pytorch_model.safetensors", _vae_diffusers_config(cfg.vae)),
        "image_encoder": ("model.safetensors", _encoder_diffusers_config(cfg.encoder)),
    }
    states = {
        "unet": dk.unet_to_diffusers(prefixed(ckpt.state, "unet.")),
        "vae": dk.vae_to_diffusers(prefixed(ckpt.state, "vae.")),
        "image_encoder": dk.exemplar_to_diffusers(prefixed(ckpt.state, "encoder."), ckpt.vision_layout),
    }
    written = []
    dst.mkdir(parents=True)
    index = {
        "_class_name": "PaintByExamplePipeline",
        "feature_extractor": ["transformers", "CLIPImageProcessor"],
        "image_encoder": ["paint_by_example", "PaintByExampleImageEncoder"],
        "requires_safety_checker": False,
        "safety_checker": [None, None],
        "scheduler": ["diffusers", ckpt.scheduler.get("_class_name", "PNDMScheduler")],
        "unet": ["diffusers", "UNet2DConditionModel"],
        "vae": ["diffusers", "AutoencoderKL"],
    }
    extra = {
        "scheduler/scheduler_config.json": ckpt.scheduler,
        "feature_extractor/preprocessor_config.json": _feature_extractor_config(
            cfg.encoder.vision.image_size
        ),
        "model_index.json": index,
    }
    for name, (weights, config) in parts.items():
        (dst / name).mkdir()
        (dst / name / "config.json").write_text(json.dumps(config, indent=2) + "\n")
        stream(dst / name / weights, states[name], dtype, progress, {"format": "pt"})
        written += [dst / name / "config.json", dst / name / weights]
    for rel, content in extra.items():
        (dst / rel).parent.mkdir(exist_ok=True)
        (dst / rel).write_text(json.dumps(content, indent=2) + "\n")
        written.append(dst / rel)
    return written
