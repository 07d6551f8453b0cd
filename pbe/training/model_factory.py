"""Build the Paint-by-Example model to train from the Hydra `model` node.

`model.config`: overrides of `PaintByExampleConfig` fields ({"unet": {...}, "vae": {...}, "encoder": {...}}).
`model.gradient_checkpointing`: recompute UNet blocks in the backward pass.
`model.init` (every key optional; nothing = random initialisation with the run's seed):

- `checkpoint`: any Paint-by-Example checkpoint pbe reads (authors' .ckpt, diffusers folder, pbe folder, a pbe
  Lightning training checkpoint): fine-tuning. Its architecture must equal `model.config`'s.
- `sd` + `clip`: the paper's warm start (SD v1.x UNet/VAE with conv_in expanded to 9 channels, CLIP image tower).
- `vae`: a .safetensors file with `model.vae.state_dict()` keys (a separately trained autoencoder).
- `vision`: a .safetensors file with `model.encoder.vision.state_dict()` keys (a separately trained image tower).

`vae` and `vision` are applied last, on top of whichever of the above was used.
`model.frozen_dtype` (null | bf16 | fp16): store the frozen VAE and vision tower in that dtype (they are only ever
run forward; under bf16-mixed they compute in bf16 anyway) to save memory and time.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path

import torch

from pbe.checkpoints.formats import apply_overrides, config_to_dict, load_checkpoint
from pbe.checkpoints.infer import check_state
from pbe.checkpoints.tensor_io import read_safetensors
from pbe.models import PaintByExample, PaintByExampleConfig

INIT_KEYS = ("checkpoint", "sd", "clip", "vae", "vision")
MODEL_KEYS = ("config", "gradient_checkpointing", "init", "frozen_dtype")
FROZEN_DTYPES = {None: None, "fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def model_config(
    config_overrides: Mapping | None, gradient_checkpointing: bool = False
) -> PaintByExampleConfig:
    """The architecture asked for: the released model's config with `config_overrides` merged in."""
    try:
        config = apply_overrides(PaintByExampleConfig(), dict(config_overrides or {}))
    except (TypeError, ValueError) as e:
        raise ValueError(f"model.config: {e}") from None
    config.unet.gradient_checkpointing = bool(gradient_checkpointing)
    return config


def architecture_differences(a: PaintByExampleConfig, b: PaintByExampleConfig) -> list[str]:
    """Fields (dotted) where two configs give different networks (gradient checkpointing does not count)."""
    da, db = config_to_dict(a), config_to_dict(b)
    for d in (da, db):
        d["unet"].pop("gradient_checkpointing", None)
    out = []

    def walk(x, y, prefix):
        if isinstance(x, Mapping) and isinstance(y, Mapping):
            for k in sorted(set(x) | set(y)):
                walk(x.get(k), y.get(k), f"{prefix}.{k}" if prefix else k)
        elif (list(x) if isinstance(x, tuple | list) else x) != (
            list(y) if isinstance(y, tuple | list) else y
        ):
            out.append(f"{prefix}: {x!r} vs {y!r}")

    walk(da, db, "")
    return out


def check_init(init: Mapping) -> dict:
    init = {k: v for k, v in dict(init or {}).items() if v is not None}
    unknown = sorted(set(init) - set(INIT_KEYS))
    if unknown:
        raise ValueError(f"model.init: unknown keys {unknown}; valid keys are {list(INIT_KEYS)}")
    if "checkpoint" in init and ("sd" in init or "clip" in init):
        raise ValueError(
            "model.init: give either checkpoint (fine-tuning) or sd + clip (warm start), not both"
        )
    if ("sd" in init) != ("clip" in init):
        raise ValueError(
            "model.init: the warm start needs both sd (SD v1.x checkpoint) and clip (CLIP weights)"
        )
    for key, path in init.items():
        if not Path(path).exists():
            raise FileNotFoundError(f"model.init.{key}: not found: {path}")
    return init


def load_component(module: torch.nn.Module, path: str | Path, what: str) -> None:
    """Load a .safetensors state dict into `module` strictly (clear error on any mismatch)."""
    path = Path(path)
    if path.suffix != ".safetensors":
        raise ValueError(f"model.init.{what}: expected a .safetensors file, got {path}")
    state, _ = read_safetensors(path)
    check_state(module.state_dict(), state, f"model.init.{what} ({path})")
    module.load_state_dict(state, strict=True)


def build_model(model_cfg: Mapping, seed: int = 23) -> PaintByExample:
    """The PaintByExample to train (fp32, CPU), initialised as `model_cfg.init` says (module docstring)."""
    model_cfg = dict(model_cfg)
    unknown = sorted(set(model_cfg) - set(MODEL_KEYS))
    if unknown:
        raise ValueError(f"model: unknown keys {unknown}; valid keys are {list(MODEL_KEYS)}")
    frozen_dtype = model_cfg.get("frozen_dtype")
    if frozen_dtype not in FROZEN_DTYPES:
        raise ValueError(f"model.frozen_dtype must be one of {list(FROZEN_DTYPES)}, got {frozen_dtype!r}")
    overrides = dict(model_cfg.get("config") or {})
    checkpointing = bool(model_cfg.get("gradient_checkpointing", False))
    config = model_config(overrides, checkpointing)
    init = check_init(model_cfg.get("init") or {})

    if "checkpoint" in init:
        ckpt = load_checkpoint(init["checkpoint"])
        diff = architecture_differences(ckpt.config, config)
        if diff:
            raise ValueError(
                f"model.init.checkpoint {init['checkpoint']} is another architecture than model.config "
                f"({len(diff)} differences: {'; '.join(diff[:4])}); pick the matching model preset or set "
                "model.config to the checkpoint's architecture"
            )
        model = ckpt.model(dtype=torch.float32, device="cpu")
    elif "sd" in init:
        from pbe.checkpoints.warm_start import warm_start

        ckpt = warm_start(init["sd"], init["clip"], overrides=overrides or None, seed=seed)
        diff = architecture_differences(ckpt.config, config)
        if diff:
            raise ValueError(
                f"model.init.sd / clip give another architecture than model.config ({'; '.join(diff[:4])})"
            )
        model = ckpt.model(dtype=torch.float32, device="cpu")
    else:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = PaintByExample(config)
    model.config.unet.gradient_checkpointing = checkpointing
    model.unet.config.gradient_checkpointing = checkpointing
    if "vae" in init:
        load_component(model.vae, init["vae"], "vae")
    if "vision" in init:
        load_component(model.encoder.vision, init["vision"], "vision")
    if FROZEN_DTYPES[frozen_dtype] is not None:
        cast_frozen(model, FROZEN_DTYPES[frozen_dtype])
    return model


def cast_frozen(model: PaintByExample, dtype: torch.dtype) -> None:
    """Keep the frozen VAE and vision tower in `dtype`; the vision tower takes and returns float32 as before, and so
    does its final LayerNorm, which the encoder also applies on its own to the patch tokens (no bottleneck)."""
    model.vae.to(dtype)
    vision = model.encoder.vision.to(dtype)
    vision.register_forward_pre_hook(lambda module, args: tuple(a.to(dtype) for a in args))
    vision.register_forward_hook(lambda module, args, out: tuple(o.float() for o in out))
    vision.post_norm.register_forward_pre_hook(lambda module, args: tuple(a.to(dtype) for a in args))
    vision.post_norm.register_forward_hook(lambda module, args, out: out.float())


def plain_config(config: PaintByExampleConfig) -> dict:
    """The config as nested plain dicts/lists (safe for torch.load(weights_only=True) and JSON)."""

    def plain(x):
        if isinstance(x, Mapping):
            return {k: plain(v) for k, v in x.items()}
        if isinstance(x, tuple | list):
            return [plain(v) for v in x]
        return x

    return plain(dataclasses.asdict(config))
