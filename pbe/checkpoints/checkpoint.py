"""The in-memory checkpoint that every layout is read into and written from, and its model config as plain data.

A `Checkpoint` holds a `PaintByExampleConfig`, a state dict with native keys prefixed `unet.`, `vae.` and
`encoder.`, and a diffusers-style scheduler config (so a checkpoint's own sampler is honoured). The config helpers
turn the config into nested dicts and back, and merge partial overrides (what tensor shapes cannot tell) into it.
The layout modules (`native`, `diffusers_layout`, `ldm_layout`, `lightning_ckpt`) import this one; it imports none
of them.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import torch

from pbe.checkpoints import diffusers_keys as dk
from pbe.diffusion.scheduler_config import PAINT_BY_EXAMPLE_SCHEDULER
from pbe.models import PaintByExample, PaintByExampleConfig
from pbe.models.exemplar_encoder import ExemplarEncoderConfig
from pbe.models.unet import UNetConfig
from pbe.models.vae import VAEConfig

Format = Literal["native", "diffusers", "ldm"]
FORMATS: tuple[str, ...] = ("native", "diffusers", "ldm")
DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


@dataclass
class Checkpoint:
    config: PaintByExampleConfig
    state: dict[str, torch.Tensor]  # native keys: unet.*, vae.*, encoder.*
    scheduler: dict = field(default_factory=lambda: dict(PAINT_BY_EXAMPLE_SCHEDULER))  # the released model's
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


def expected_state(config: PaintByExampleConfig) -> dict[str, torch.Tensor]:
    """The state dict `config` builds, as shape-and-dtype stand-ins on the meta device."""
    with torch.device("meta"):
        return PaintByExample(config).state_dict()


def prefixed(state: Mapping[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """The entries of `state` whose names start with `prefix`, with the prefix taken off."""
    return {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}


def parameter_counts(ckpt: Checkpoint) -> dict[str, int]:
    counts = {"unet": 0, "vae": 0, "encoder": 0}
    for k, v in ckpt.state.items():
        counts[k.split(".", 1)[0]] += v.numel()
    return counts


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


def checked_train_resolution(value, where: str) -> int | None:
    """A stored `train_resolution`: None, or an int >= 8 (pixels); CheckpointError naming ``where`` otherwise."""
    from pbe.checkpoints.tensor_io import CheckpointError

    if value is None or (isinstance(value, int) and not isinstance(value, bool) and value >= 8):
        return value
    raise CheckpointError(f"{where}: 'train_resolution' must be an int >= 8 (pixels), got {value!r}")
