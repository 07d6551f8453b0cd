"""Read and write Paint-by-Example checkpoints in three layouts.

- `ldm`: the authors' `model.ckpt` (or a .safetensors with the same keys), architecture inferred from shapes;
- `diffusers`: a `PaintByExamplePipeline` folder (`model_index.json`, per-component `config.json` and weights);
- `native`: pbe's own folder, `pbe_config.json` + `model.safetensors` with native names.

Everything is read into a `Checkpoint`: a `PaintByExampleConfig`, a state dict with native keys prefixed `unet.`,
`vae.` and `encoder.`, and a diffusers-style scheduler config (so a checkpoint's own sampler is honoured).
Tensors stay memory-mapped where the file allows, and writers stream them, so converting never holds two copies.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import torch
from tqdm import tqdm

from pbe.checkpoints import diffusers_keys as dk
from pbe.checkpoints import ldm_keys
from pbe.checkpoints.infer import (
    check_finite,
    check_state,
    unet_config_from_ldm,
    vae_config_from_ldm,
    vision_config_from_native,
)
from pbe.checkpoints.tensor_io import (
    CheckpointError,
    atomic_path,
    cast,
    cast_dtype,
    read_safetensors,
    read_tensors,
    total_bytes,
    write_safetensors,
)
from pbe.diffusion.scheduler_config import PAINT_BY_EXAMPLE_SCHEDULER, read_json_object
from pbe.models import PaintByExample, PaintByExampleConfig
from pbe.models.exemplar_encoder import ExemplarEncoderConfig
from pbe.models.unet import UNetConfig
from pbe.models.vae import VAEConfig

Format = Literal["native", "diffusers", "ldm"]
FORMATS: tuple[str, ...] = ("native", "diffusers", "ldm")
NATIVE_CONFIG = "pbe_config.json"
NATIVE_WEIGHTS = "model.safetensors"
DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}

# What the released model ships as its scheduler; every Paint-by-Example model is trained on this schedule.
DEFAULT_SCHEDULER = PAINT_BY_EXAMPLE_SCHEDULER
# Non-tensor entries of an original-layout file written by pbe, JSON strings (in a .ckpt next to "state_dict"; in a
# .safetensors in the header metadata) that the authors' loader ignores: the full scheduler config, and the model
# config (what shapes cannot tell: head counts, norm groups, the VAE's scale factor, ...).
LDM_SCHEDULER_KEY = "pbe_scheduler_config"
LDM_CONFIG_KEY = "pbe_model_config"
# Where a file pbe did not write leaves the model config to the tensor shapes:
LDM_INFERRED_CONFIG = (
    "model config inferred from tensor shapes; the original layout does not record head counts or norm groups: "
    "give them with --config FILE or from_pretrained(..., config=)"
)
LDM_SCHEDULE_BUFFERS = (
    "betas",
    "alphas_cumprod",
    "alphas_cumprod_prev",
    "sqrt_alphas_cumprod",
    "sqrt_one_minus_alphas_cumprod",
    "log_one_minus_alphas_cumprod",
    "sqrt_recip_alphas_cumprod",
    "sqrt_recipm1_alphas_cumprod",
    "posterior_variance",
    "posterior_log_variance_clipped",
    "posterior_mean_coef1",
    "posterior_mean_coef2",
)


NATIVE_COMPONENTS = {"unet": "UNet", "vae": "VAE", "encoder": "exemplar encoder"}  # native key prefix -> part
LDM_COMPONENTS = {
    ldm_keys.UNET_PREFIX: "UNet",
    ldm_keys.VAE_PREFIX: "VAE",
    "cond_stage_model.": "exemplar encoder",
    "proj_out.": "exemplar encoder",
    "learnable_vector": "exemplar encoder",
}
DIFFUSERS_COMPONENTS = {"unet": "UNet", "vae": "VAE", "image_encoder": "exemplar encoder"}  # folder -> part


def native_component(name: str) -> str:
    """The part of the model a native tensor name (unet.*, vae.*, encoder.*) belongs to."""
    return NATIVE_COMPONENTS.get(name.split(".", 1)[0], "not part of the model")


def ldm_component(name: str) -> str:
    """The part of the model an original-layout tensor name belongs to."""
    return next(
        (part for prefix, part in LDM_COMPONENTS.items() if name.startswith(prefix)), "not part of the model"
    )


@dataclass
class Checkpoint:
    config: PaintByExampleConfig
    state: dict[str, torch.Tensor]  # native keys: unet.*, vae.*, encoder.*
    scheduler: dict = field(default_factory=lambda: dict(DEFAULT_SCHEDULER))
    format: str = "native"
    vision_layout: dk.Layout = "transformers4"  # how a diffusers image_encoder stores its CLIP tower
    train_resolution: int | None = None  # the pixel size the model was trained at (native layout only)

    def model(
        self, dtype: torch.dtype | None = None, device: str | torch.device | None = None
    ) -> PaintByExample:
        """Instantiate the model (without random initialisation work) and load the weights strictly."""
        with torch.device("meta"):
            model = PaintByExample(self.config)
        model.load_state_dict(self.state, strict=True, assign=True)
        return model.to(device=device, dtype=dtype)


# --------------------------------------------------------------------------------------------------- configs


def config_to_dict(config: PaintByExampleConfig) -> dict:
    return dataclasses.asdict(config)


def config_from_dict(data: Mapping) -> PaintByExampleConfig:
    unknown = set(data) - {"unet", "vae", "encoder"}
    if unknown:
        raise ValueError(f"config has unknown sections {sorted(unknown)}; expected unet, vae, encoder")
    try:
        return PaintByExampleConfig(
            unet=UNetConfig(**data.get("unet", {})),
            vae=VAEConfig(**data.get("vae", {})),
            encoder=ExemplarEncoderConfig(**data.get("encoder", {})),
        )
    except TypeError as e:
        raise ValueError(f"config: {e}") from None


def apply_overrides(config: PaintByExampleConfig, overrides: Mapping | None) -> PaintByExampleConfig:
    """Merge a (partial) nested dict, e.g. {"unet": {"num_heads": 8}}, into a config."""
    if not overrides:
        return config
    merged = config_to_dict(config)
    for section, values in overrides.items():
        if section not in merged or not isinstance(values, Mapping):
            raise ValueError(
                f"config override section {section!r}; expected one of {sorted(merged)} with a mapping"
            )
        for key, value in values.items():
            if key == "vision" and isinstance(value, Mapping):
                merged[section][key].update(value)
            else:
                merged[section][key] = value
    return config_from_dict(merged)


def load_config_file(path: str | Path | None) -> dict | None:
    """A JSON or YAML file with (partial) model config sections: unet, vae, encoder."""
    if path is None:
        return None
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file not found: {path}")
    try:
        text = path.read_text()
        if path.suffix in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(text)
        else:
            data = json.loads(text)
    except UnicodeDecodeError as e:
        raise ValueError(f"config file {path}: not a text file ({e})") from None
    except ValueError as e:  # json.JSONDecodeError
        raise ValueError(f"config file {path}: not valid JSON ({e})") from None
    except Exception as e:  # yaml.YAMLError
        raise ValueError(f"config file {path}: not valid YAML ({' '.join(str(e).split())[:300]})") from None
    if not isinstance(data, dict):
        raise ValueError(f"config file {path}: expected a mapping with sections unet / vae / encoder")
    data = data.get("model", data)
    try:
        apply_overrides(PaintByExampleConfig(), data)  # section and field names (values are checked on use)
    except (ValueError, TypeError, AttributeError) as e:
        raise ValueError(f"config file {path}: {e}") from None
    return data


# --------------------------------------------------------------------------------------------------- detection


def detect_format(path: str | Path) -> Format:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    if path.is_dir():
        if (path / NATIVE_CONFIG).is_file():
            return "native"
        if (path / "model_index.json").is_file():
            return "diffusers"
        raise CheckpointError(
            f"{path}: a folder without {NATIVE_CONFIG} (pbe format) or model_index.json (diffusers format)"
        )
    # a pbe training run's .ckpt (read only)
    from pbe.checkpoints.lightning_ckpt import is_lightning_checkpoint

    if is_lightning_checkpoint(path):
        return "lightning"
    return "ldm"


def load_checkpoint(path: str | Path, overrides: Mapping | None = None) -> Checkpoint:
    """Read any supported layout. `overrides`: partial config for what shapes cannot tell (e.g. heads).

    Raises FileNotFoundError for a missing path or file, and CheckpointError (a ValueError) naming the file
    for anything that is not a readable Paint-by-Example checkpoint."""
    fmt = detect_format(path)
    if fmt == "lightning":
        from pbe.checkpoints.lightning_ckpt import read_lightning

        return read_lightning(Path(path), overrides)
    reader = {"native": read_native, "diffusers": read_diffusers, "ldm": read_ldm}[fmt]
    with unreadable_as_checkpoint_error(path):
        return reader(Path(path), overrides)


@contextmanager
def unreadable_as_checkpoint_error(path: str | Path):
    """Contents of an unexpected shape that no explicit check caught end as CheckpointError naming `path`."""
    try:
        yield
    except (KeyError, IndexError, TypeError, AttributeError, RuntimeError, UnicodeDecodeError) as e:
        raise CheckpointError(
            f"{path}: not a readable Paint-by-Example checkpoint ({type(e).__name__}: {str(e)[:300]})"
        ) from None


def expected_state(config: PaintByExampleConfig) -> dict[str, torch.Tensor]:
    with torch.device("meta"):
        return PaintByExample(config).state_dict()


# --------------------------------------------------------------------------------------------------- native


def read_native(path: Path, overrides: Mapping | None = None) -> Checkpoint:
    config_file = path / NATIVE_CONFIG
    meta = _read_json(config_file)
    if not isinstance(meta.get("model"), dict):
        raise CheckpointError(f"{config_file}: no 'model' section (a mapping with unet / vae / encoder)")
    with _config_errors(config_file):
        config = config_from_dict(meta["model"])
    config = apply_overrides(config, overrides)
    with _config_errors(config_file, overrides):
        expected = expected_state(config)
    if meta.get("scheduler") is not None and not isinstance(meta["scheduler"], dict):
        raise CheckpointError(f"{config_file}: 'scheduler' must be a mapping (a diffusers scheduler config)")
    weights = path / NATIVE_WEIGHTS
    if not weights.is_file():
        raise FileNotFoundError(f"{path}: missing {NATIVE_WEIGHTS}")
    state, _ = read_safetensors(weights)
    check_state(expected, state, f"{path} (pbe format)")
    check_finite(state, str(weights), native_component)
    resolution = meta.get("train_resolution")
    if resolution is not None and not (
        isinstance(resolution, int) and not isinstance(resolution, bool) and resolution >= 8
    ):
        raise CheckpointError(
            f"{config_file}: 'train_resolution' must be an int >= 8 (pixels), got {resolution!r}"
        )
    return Checkpoint(
        config,
        state,
        scheduler=meta.get("scheduler") or dict(DEFAULT_SCHEDULER),
        format="native",
        vision_layout=meta.get("vision_layout", "transformers4"),
        train_resolution=resolution,
    )


def set_train_resolution(folder: Path, resolution: int) -> None:
    """Record ``resolution`` as ``train_resolution`` in a native folder's ``pbe_config.json`` (atomically)."""
    from pbe.files import write_json

    config_file = Path(folder) / NATIVE_CONFIG
    meta = _read_json(config_file)
    meta["train_resolution"] = int(resolution)
    write_json(config_file, meta, overwrite=True)


def write_native(
    ckpt: Checkpoint, dst: Path, dtype: torch.dtype | None = None, progress: bool = True
) -> list[Path]:
    dst.mkdir(parents=True)
    meta = {
        "format": "pbe",
        "version": 1,
        "model": config_to_dict(ckpt.config),
        "scheduler": ckpt.scheduler,
        "vision_layout": ckpt.vision_layout,
    }
    if ckpt.train_resolution is not None:
        meta["train_resolution"] = int(ckpt.train_resolution)
    (dst / NATIVE_CONFIG).write_text(json.dumps(meta, indent=2) + "\n")
    _stream(dst / NATIVE_WEIGHTS, ckpt.state, dtype, progress, {"format": "pt"})
    return [dst / NATIVE_CONFIG, dst / NATIVE_WEIGHTS]


# --------------------------------------------------------------------------------------------------- ldm


def prefixed(state: Mapping[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}


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
    with _config_errors(path if stored else f"{path} ({LDM_INFERRED_CONFIG})", overrides):
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
    return Checkpoint(config, native, scheduler=scheduler, format="ldm")


def stored_config(metadata: Mapping[str, str], path: Path) -> PaintByExampleConfig | None:
    """The model config pbe stored next to the weights; None in a file pbe did not write."""
    text = metadata.get(LDM_CONFIG_KEY)
    if text is None:
        return None
    with _config_errors(f"{path}: entry {LDM_CONFIG_KEY!r}"):
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


def ldm_schedule_buffers(scheduler: Mapping) -> dict[str, torch.Tensor]:
    """The noise-schedule buffers the original LatentDiffusion stores (computed as it does: float64, then float32)."""
    betas = betas_from_scheduler(scheduler).double()
    alphas = 1.0 - betas
    ac = torch.cumprod(alphas, 0)
    ac_prev = torch.cat([torch.ones(1, dtype=torch.float64), ac[:-1]])
    posterior_variance = betas * (1.0 - ac_prev) / (1.0 - ac)
    buffers = {
        "betas": betas,
        "alphas_cumprod": ac,
        "alphas_cumprod_prev": ac_prev,
        "sqrt_alphas_cumprod": ac.sqrt(),
        "sqrt_one_minus_alphas_cumprod": (1.0 - ac).sqrt(),
        "log_one_minus_alphas_cumprod": (1.0 - ac).log(),
        "sqrt_recip_alphas_cumprod": (1.0 / ac).sqrt(),
        "sqrt_recipm1_alphas_cumprod": (1.0 / ac - 1).sqrt(),
        "posterior_variance": posterior_variance,
        "posterior_log_variance_clipped": posterior_variance.clamp(min=1e-20).log(),
        "posterior_mean_coef1": betas * ac_prev.sqrt() / (1.0 - ac),
        "posterior_mean_coef2": (1.0 - ac_prev) * alphas.sqrt() / (1.0 - ac),
    }
    return {k: v.float() for k, v in buffers.items()}


def betas_from_scheduler(scheduler: Mapping) -> torch.Tensor:
    t = int(scheduler.get("num_train_timesteps", 1000))
    start, end = float(scheduler.get("beta_start", 0.00085)), float(scheduler.get("beta_end", 0.012))
    kind = scheduler.get("beta_schedule", "scaled_linear")
    if scheduler.get("trained_betas") is not None:
        return torch.tensor(scheduler["trained_betas"], dtype=torch.float64)
    if kind == "scaled_linear":
        return torch.linspace(start**0.5, end**0.5, t, dtype=torch.float64) ** 2
    if kind == "linear":
        return torch.linspace(start, end, t, dtype=torch.float64)
    raise ValueError(f"beta_schedule={kind!r}; the original layout can store 'scaled_linear' or 'linear'")


def scheduler_from_betas(betas: torch.Tensor | None) -> dict:
    """Recognise the schedule of stored betas (scaled_linear or linear); default to the released model's."""
    scheduler = dict(DEFAULT_SCHEDULER)
    if betas is None:
        return scheduler
    if betas.ndim != 1 or not ((betas > 0) & (betas < 1)).all():
        raise CheckpointError(
            "the checkpoint's 'betas' buffer is not a noise schedule (values must lie in (0, 1))"
        )
    if same_betas(betas_from_scheduler(scheduler), betas):  # also when stored in float16 / bfloat16
        return scheduler
    betas = betas.double()
    for kind in ("scaled_linear", "linear"):
        candidate = {
            **scheduler,
            "beta_schedule": kind,
            "num_train_timesteps": len(betas),
            "beta_start": float(betas[0]),
            "beta_end": float(betas[-1]),
        }
        if torch.allclose(betas_from_scheduler(candidate), betas, rtol=1e-5, atol=1e-9):
            candidate["beta_start"] = _round_sig(candidate["beta_start"])
            candidate["beta_end"] = _round_sig(candidate["beta_end"])
            return candidate
    return {**scheduler, "num_train_timesteps": len(betas), "trained_betas": betas.tolist()}


def same_betas(expected: torch.Tensor, stored: torch.Tensor) -> bool:
    """Whether `stored` betas are the `expected` schedule, up to the rounding of the dtype they were stored in."""
    rtol = max(1e-5, torch.finfo(stored.dtype).eps)
    return expected.shape == stored.shape and torch.allclose(expected, stored.double(), rtol=rtol, atol=1e-9)


def _round_sig(x: float, digits: int = 6) -> float:
    return float(f"{x:.{digits}g}") if x else x


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
    if safetensors:
        _stream(dst, state, dtype, progress, {"format": "pt", **extra}, keep=LDM_SCHEDULE_BUFFERS)
    else:
        torch.save({"state_dict": cast(state, dtype, keep=LDM_SCHEDULE_BUFFERS), **extra}, dst)
    return [dst]


# --------------------------------------------------------------------------------------------------- diffusers


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


def _read_json(path: Path) -> dict:
    """A JSON object from `path`; CheckpointError naming the file when it is not one."""
    if not path.is_file():
        raise FileNotFoundError(f"missing {path}")
    return read_json_object(path, CheckpointError)


@contextmanager
def _config_errors(config_file: Path | str, overrides: Mapping | None = None):
    """Turn a config that builds no model (wrong types, impossible values) into an error naming its file."""
    try:
        yield
    except (KeyError, IndexError, TypeError, AttributeError, ValueError, RuntimeError) as e:
        if isinstance(e, CheckpointError) and str(config_file) in str(e):
            raise
        also = " (with the --config overrides)" if overrides else ""
        detail = f"missing key {e}" if isinstance(e, KeyError) else f"{type(e).__name__}: {str(e)[:300]}"
        raise CheckpointError(f"{config_file}: invalid model config{also}: {detail}") from None


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
    index = _read_json(path / "model_index.json")
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
    with _config_errors(files["unet"]):
        unet = unet_config_from_diffusers(_read_json(files["unet"]))
    with _config_errors(files["vae"]):
        vae = vae_config_from_diffusers(_read_json(files["vae"]))
    with _config_errors(files["image_encoder"]):
        encoder = encoder_config_from_diffusers(_read_json(files["image_encoder"]), mapper_depth)
    with _config_errors(f"{path}/{{unet,vae,image_encoder}}/config.json", overrides):
        config = apply_overrides(PaintByExampleConfig(unet=unet, vae=vae, encoder=encoder), overrides)
        expected = expected_state(config)
    layout = dk.detect_vision_layout(enc_state)
    state = {"unet." + k: v for k, v in dk.unet_from_diffusers(unet_state).items()}
    state.update({"vae." + k: v for k, v in dk.vae_from_diffusers(vae_state).items()})
    enc_state = {k: v for k, v in enc_state.items() if not k.endswith("position_ids")}
    state.update({"encoder." + k: v for k, v in dk.exemplar_from_diffusers(enc_state).items()})
    check_state(expected, state, f"{path} (diffusers folder)")
    scheduler_file = path / "scheduler" / "scheduler_config.json"
    scheduler = _read_json(scheduler_file) if scheduler_file.is_file() else dict(DEFAULT_SCHEDULER)
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
        _stream(dst / name / weights, states[name], dtype, progress, {"format": "pt"})
        written += [dst / name / "config.json", dst / name / weights]
    for rel, content in extra.items():
        (dst / rel).parent.mkdir(exist_ok=True)
        (dst / rel).write_text(json.dumps(content, indent=2) + "\n")
        written.append(dst / rel)
    return written


# --------------------------------------------------------------------------------------------------- writing


def _stream(
    path: Path, state: Mapping[str, torch.Tensor], dtype, progress: bool, metadata: dict, keep=()
) -> None:
    """Write `state` as .safetensors, floating-point tensors but those named in `keep` cast to `dtype`."""
    total = total_bytes(cast_meta(state, dtype, keep).values())
    with tqdm(
        total=total, unit="B", unit_scale=True, desc=path.name, disable=not progress, leave=False
    ) as bar:
        write_safetensors(path, state, metadata, dtype, on_tensor=bar.update, keep=keep)


def cast_meta(
    state: Mapping[str, torch.Tensor], dtype: torch.dtype | None, keep=()
) -> dict[str, torch.Tensor]:
    """Shape-and-dtype stand-ins of `state` after `cast(state, dtype, keep)`, for sizing without touching the data."""
    return {
        k: torch.empty(v.shape, dtype=cast_dtype(k, v, dtype, keep), device="meta") for k, v in state.items()
    }


def save_checkpoint(
    ckpt: Checkpoint,
    dst: str | Path,
    to: Format,
    dtype: torch.dtype | None = None,
    overwrite: bool = False,
    progress: bool = True,
    src: str | Path | None = None,
) -> list[Path]:
    """Write `ckpt` in format `to` at `dst`, atomically: on any failure nothing is left at `dst`.

    An existing `dst` is replaced only with `overwrite` and only if it is a checkpoint pbe wrote (a folder in
    the native or diffusers layout, or one checkpoint file), never `src` (the checkpoint read) or a folder
    holding it, nor the working directory (`tensor_io.check_replaceable`). Returns the files written.
    """
    if to not in FORMATS:
        raise ValueError(f"to={to!r}; expected one of {FORMATS}")
    dst = Path(dst)
    if to == "ldm" and dst.suffix not in (".ckpt", ".safetensors"):
        raise ValueError(
            f"DST {dst}: an original-layout checkpoint is one file ending in .ckpt or .safetensors"
        )
    with atomic_path(dst, overwrite=overwrite, src=src) as tmp:
        if to == "ldm":
            write_ldm(ckpt, tmp, dtype, progress, safetensors=dst.suffix == ".safetensors")
            return [dst]
        writer = write_native if to == "native" else write_diffusers
        files = writer(ckpt, tmp, dtype, progress)
    return [dst / f.relative_to(tmp) for f in files]


def parameter_counts(ckpt: Checkpoint) -> dict[str, int]:
    counts = {"unet": 0, "vae": 0, "encoder": 0}
    for k, v in ckpt.state.items():
        counts[k.split(".", 1)[0]] += v.numel()
    return counts
