"""Read and write the original LDM layout: the authors' `model.ckpt`, or a .safetensors with the same keys.

The key names are mapped by `ldm_keys`; the architecture is inferred from tensor shapes (`infer`), except in a file
pbe wrote, which also carries its model and scheduler configs as JSON strings that the authors' loader ignores. The
noise schedule travels as the original buffers (`ldm_schedule`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import torch

from pbe.checkpoints import diffusers_keys as dk
from pbe.checkpoints import ldm_keys
from pbe.checkpoints.checkpoint import (
    Checkpoint,
    apply_overrides,
    checked_train_resolution,
    config_from_dict,
    config_to_dict,
    expected_state,
    prefixed,
)
from pbe.checkpoints.infer import (
    check_finite,
    check_state,
    unet_config_from_ldm,
    vae_config_from_ldm,
    vision_config_from_native,
)
from pbe.checkpoints.layout_io import config_errors, stream
from pbe.checkpoints.ldm_schedule import (
    LDM_SCHEDULE_BUFFERS,
    betas_from_scheduler,
    ldm_schedule_buffers,
    same_betas,
    scheduler_from_betas,
)
from pbe.checkpoints.tensor_io import CheckpointError, cast, read_tensors
from pbe.models import PaintByExampleConfig
from pbe.models.exemplar_encoder import ExemplarEncoderConfig

# Non-tensor entries of an original-layout file written by pbe, JSON strings (in a .ckpt next to "state_dict"; in a
# .safetensors in the header metadata) that the authors' loader ignores: the full scheduler config, and the model
# config (what shapes cannot tell: head counts, norm groups, the VAE's scale factor, ...).
LDM_SCHEDULER_KEY = "pbe_scheduler_config"
LDM_CONFIG_KEY = "pbe_model_config"
LDM_RESOLUTION_KEY = (
    "pbe_train_resolution"  # the pixel size a model trained by pbe was trained at, when known
)
# Where a file pbe did not write leaves the model config to the tensor shapes:
LDM_INFERRED_CONFIG = (
    "model config inferred from tensor shapes; the original layout does not record head counts or norm groups: "
    "give them with --config FILE or from_pretrained(..., config=)"
)
LDM_COMPONENTS = {
    ldm_keys.UNET_PREFIX: "UNet",
    ldm_keys.VAE_PREFIX: "VAE",
    "cond_stage_model.": "exemplar encoder",
    "proj_out.": "exemplar encoder",
    "learnable_vector": "exemplar encoder",
}


def ldm_component(name: str) -> str:
    """The part of the model an original-layout tensor name belongs to."""
    return next(
        (part for prefix, part in LDM_COMPONENTS.items() if name.startswith(prefix)), "not part of the model"
    )


def _is_ignorable_ldm_key(key: str) -> bool:
    return (
        key in LDM_SCHEDULE_BUFFERS
        or key in ("scale_factor", "logvar")
        or key.startswith("model_ema.")
        or key.endswith("position_ids")
    )


def describe_ldm(state: Mapping[str, torch.Tensor]) -> str:
    """What kind of original-layout checkpoint this is: 'paint_by_example', 'stable_diffusion' or 'unknown'."""
    if any(k.startswith(ldm_keys.MAPPER_PREFIX) for k in state) or "learnable_vector" in state:
        return "paint_by_example"
    if any(k.startswith(ldm_keys.UNET_PREFIX) for k in state) and any(
        k.startswith("cond_stage_model.transformer.text_model.") for k in state
    ):
        return "stable_diffusion"
    return "unknown"


def read_ldm(
    path: Path,
    overrides: Mapping | None = None,
    state: Mapping[str, torch.Tensor] | None = None,
    metadata: Mapping[str, str] | None = None,
) -> Checkpoint:
    """`state`, `metadata`: the file's tensors and string entries when the caller has already read them."""
    if state is None:
        state, metadata = read_tensors(path)
    kind = describe_ldm(state)
    if kind == "stable_diffusion":
        raise CheckpointError(
            f"{path} is a Stable Diffusion text-to-image checkpoint (text-encoder keys, no exemplar mapper), not "
            "Paint by Example. To start training from it, warm-start: `python -m pbe.convert SD.ckpt DST "
            "--to native --clip CLIP_PATH` (conv_in is expanded to 9 input channels)."
        )
    if kind == "unknown":
        prefixes = sorted({k.split(".")[0] for k in state})[:8]
        raise CheckpointError(
            f"{path} is not a Paint-by-Example checkpoint: no cond_stage_model.mapper.* / learnable_vector keys "
            f"(top-level names found: {prefixes}, {len(state)} tensors in all)"
        )
    stored = stored_config(metadata or {}, path)
    config = apply_overrides(stored or config_from_ldm(state), overrides)
    with config_errors(path if stored else f"{path} ({LDM_INFERRED_CONFIG})", overrides):
        expected = expected_state(config)
    mapper_heads = config.encoder.mapper_heads
    native, unused = ldm_keys.ldm_to_native(state, list(expected), config.unet, config.vae, mapper_heads)
    unused = [k for k in unused if not _is_ignorable_ldm_key(k)]
    layout = "original layout, with the model config pbe stored in it" if stored else "original layout"
    check_state(expected, native, f"{path} ({layout})", unused)
    check_finite({k: v for k, v in state.items() if not _is_ignorable_ldm_key(k)}, str(path), ldm_component)
    if "scale_factor" in state:
        config.vae.scale_factor = float(state["scale_factor"])
    scheduler = stored_scheduler(metadata or {}, state.get("betas"), path)
    return Checkpoint(
        config,
        native,
        scheduler=scheduler,
        format="ldm",
        train_resolution=stored_resolution(metadata or {}, path),
    )


def stored_resolution(metadata: Mapping[str, str], path: Path) -> int | None:
    """The training resolution pbe stored next to the weights; None in a file without one."""
    text = metadata.get(LDM_RESOLUTION_KEY)
    if text is None:
        return None
    try:
        value = json.loads(text)
    except (TypeError, json.JSONDecodeError):
        value = text
    return checked_train_resolution(value, f"{path}: entry {LDM_RESOLUTION_KEY!r}")


def stored_config(metadata: Mapping[str, str], path: Path) -> PaintByExampleConfig | None:
    """The model config pbe stored next to the weights; None in a file pbe did not write."""
    text = metadata.get(LDM_CONFIG_KEY)
    if text is None:
        return None
    with config_errors(f"{path}: entry {LDM_CONFIG_KEY!r}"):
        return config_from_dict(json.loads(text))


def stored_scheduler(metadata: Mapping[str, str], betas: torch.Tensor | None, path: Path) -> dict:
    """The scheduler pbe stored next to the betas (if it still describes them), else one recognised from them."""
    recognised = scheduler_from_betas(betas)
    text = metadata.get(LDM_SCHEDULER_KEY)
    if text is None:
        return recognised
    try:
        stored = json.loads(text)
    except (TypeError, json.JSONDecodeError):
        stored = None
    if not isinstance(stored, dict):
        raise CheckpointError(f"{path}: entry {LDM_SCHEDULER_KEY!r} is not a JSON scheduler config")
    try:
        same = betas is None or same_betas(betas_from_scheduler(stored), betas)
    except (ValueError, TypeError, RuntimeError):
        same = False
    return stored if same else recognised  # betas edited by another tool: trust the betas


def config_from_ldm(state: Mapping[str, torch.Tensor]) -> PaintByExampleConfig:
    unet = unet_config_from_ldm(prefixed(state, ldm_keys.UNET_PREFIX))
    vae = vae_config_from_ldm(prefixed(state, ldm_keys.VAE_PREFIX))
    vision_state = dk.vision_from_transformers(state, ldm_keys.VISION_PREFIX)
    vision = vision_config_from_native(vision_state)
    mapper = {
        int(k[len(ldm_keys.MAPPER_PREFIX) :].split(".")[0])
        for k in state
        if k.startswith(ldm_keys.MAPPER_PREFIX)
    }
    if "proj_out.weight" not in state:
        raise CheckpointError("cannot infer the context width: key 'proj_out.weight' is missing")
    encoder = ExemplarEncoderConfig(
        vision=vision, mapper_depth=len(mapper), context_dim=state["proj_out.weight"].shape[0]
    )
    return PaintByExampleConfig(unet=unet, vae=vae, encoder=encoder)


def write_ldm(
    ckpt: Checkpoint,
    dst: Path,
    dtype: torch.dtype | None = None,
    progress: bool = True,
    safetensors: bool = False,
) -> list[Path]:
    cfg = ckpt.config
    state = ldm_keys.native_to_ldm(ckpt.state, cfg.unet, cfg.vae, cfg.encoder.mapper_heads)
    tokens = cfg.encoder.vision.num_patches + 1
    state[ldm_keys.VISION_PREFIX + "embeddings.position_ids"] = torch.arange(tokens)[None]
    # the noise schedule stays float32 (as the original LatentDiffusion registers it) whatever the weights' dtype
    state.update(ldm_schedule_buffers(ckpt.scheduler))
    # The original layout keeps only the betas and what shapes tell; the rest of the scheduler (class, steps_offset,
    # spacing, ...) and of the model config (heads, norm groups, ...) ride along as JSON strings that the original
    # code ignores and read_ldm reads back.
    extra = {
        LDM_SCHEDULER_KEY: json.dumps(ckpt.scheduler, sort_keys=True),
        LDM_CONFIG_KEY: json.dumps(config_to_dict(cfg), sort_keys=True),
    }
    if ckpt.train_resolution is not None:
        extra[LDM_RESOLUTION_KEY] = json.dumps(int(ckpt.train_resolution))
    if safetensors:
        stream(dst, state, dtype, progress, {"format": "pt", **extra}, keep=LDM_SCHEDULE_BUFFERS)
    else:
        torch.save({"state_dict": cast(state, dtype, keep=LDM_SCHEDULE_BUFFERS), **extra}, dst)
    return [dst]
