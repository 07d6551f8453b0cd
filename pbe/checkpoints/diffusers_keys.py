"""Key mapping between pbe's native parameter names and the diffusers folder layout.

Each table is a list of (native, diffusers) name fragments; `{}` stands for an integer index. A fragment matches only
at a dotted-name boundary. Renaming applies every rule of the table once, in order, in either direction, so the tables
read as the correspondence itself. Tests check that native -> diffusers gives exactly diffusers' own key set and that
the round trip is the identity.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Mapping
from typing import Literal

import torch

Rules = list[tuple[str, str]]

ATTENTION_RULES: Rules = [
    ("self_attn.", "attn1."),
    ("cross_attn.", "attn2."),
    ("q.", "to_q."),
    ("k.", "to_k."),
    ("v.", "to_v."),
    ("out.", "to_out.0."),
    ("ff.proj_in.", "ff.net.0.proj."),
    ("ff.proj_out.", "ff.net.2."),
]

UNET_RULES: Rules = [
    ("time_embed.0.", "time_embedding.linear_1."),
    ("time_embed.2.", "time_embedding.linear_2."),
    ("norm_out.", "conv_norm_out."),
    ("down.{}.res.{}.", "down_blocks.{}.resnets.{}."),
    ("down.{}.attn.{}.", "down_blocks.{}.attentions.{}."),
    ("down.{}.resample.", "down_blocks.{}.downsamplers.0."),
    ("mid.res.{}.", "mid_block.resnets.{}."),
    ("mid.attn.{}.", "mid_block.attentions.{}."),
    ("up.{}.res.{}.", "up_blocks.{}.resnets.{}."),
    ("up.{}.attn.{}.", "up_blocks.{}.attentions.{}."),
    ("up.{}.resample.", "up_blocks.{}.upsamplers.0."),
    ("time_proj.", "time_emb_proj."),
    ("skip.", "conv_shortcut."),
    ("blocks.{}.", "transformer_blocks.{}."),
    *ATTENTION_RULES,
]

VAE_RULES: Rules = [
    ("norm_out.", "conv_norm_out."),
    ("down.{}.res.{}.", "down_blocks.{}.resnets.{}."),
    ("down.{}.resample.", "down_blocks.{}.downsamplers.0."),
    ("up.{}.res.{}.", "up_blocks.{}.resnets.{}."),
    ("up.{}.resample.", "up_blocks.{}.upsamplers.0."),
    ("mid.res1.", "mid_block.resnets.0."),
    ("mid.res2.", "mid_block.resnets.1."),
    ("mid.attn.norm.", "mid_block.attentions.0.group_norm."),
    ("mid.attn.attn.", "mid_block.attentions.0."),
    ("skip.", "conv_shortcut."),
    *ATTENTION_RULES,
]

# Attention names of VAE checkpoints saved by diffusers before 0.14; read, never written.
VAE_LEGACY_ATTENTION: Rules = [
    ("to_q.", "query."),
    ("to_k.", "key."),
    ("to_v.", "value."),
    ("to_out.0.", "proj_attn."),
]

# CLIP vision tower: native names <-> transformers' CLIPVisionModel names (without the vision_model. prefix).
VISION_RULES: Rules = [
    ("patch_embed.", "embeddings.patch_embedding."),
    ("class_token", "embeddings.class_embedding"),
    ("pos_embed", "embeddings.position_embedding.weight"),
    ("pre_norm.", "pre_layrnorm."),
    ("post_norm.", "post_layernorm."),
    ("layers.{}.", "encoder.layers.{}."),
    ("norm1.", "layer_norm1."),
    ("norm2.", "layer_norm2."),
    ("attn.q.", "self_attn.q_proj."),
    ("attn.k.", "self_attn.k_proj."),
    ("attn.v.", "self_attn.v_proj."),
    ("attn.out.", "self_attn.out_proj."),
]

# The exemplar encoder outside its vision tower.
EXEMPLAR_RULES: Rules = [
    ("mapper.{}.", "mapper.blocks.{}."),
    ("final_norm.", "final_layer_norm."),
    *ATTENTION_RULES,
]

VISION_PREFIX = {"transformers4": "model.vision_model.", "transformers5": "model."}
Layout = Literal["transformers4", "transformers5"]


def _compile(template: str) -> str:
    return r"(^|\.)" + re.escape(template).replace(r"\{\}", r"(\d+)")


def _substitute(template: str) -> str:
    count = iter(range(2, 10))
    return r"\1" + re.sub(r"\{\}", lambda _: "\\" + str(next(count)), template)


@functools.cache
def _compiled(rules: tuple[tuple[str, str], ...], to_diffusers: bool) -> list[tuple[re.Pattern, str]]:
    out = []
    for native, diffusers in rules:
        src, dst = (native, diffusers) if to_diffusers else (diffusers, native)
        out.append((re.compile(_compile(src)), _substitute(dst)))
    return out


def rename_key(key: str, rules: Rules, to_diffusers: bool) -> str:
    # Keys end in a parameter name ("weight"); a trailing "." lets fragments ending in "." match the last component.
    name = key + "."
    for pattern, repl in _compiled(tuple(rules), to_diffusers):
        name = pattern.sub(repl, name)
    return name[:-1]


def rename_all(
    state: Mapping[str, torch.Tensor], rules: Rules, to_diffusers: bool
) -> dict[str, torch.Tensor]:
    return {rename_key(k, rules, to_diffusers): v for k, v in state.items()}


def unet_to_diffusers(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return rename_all(state, UNET_RULES, to_diffusers=True)


def unet_from_diffusers(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return rename_all(state, UNET_RULES, to_diffusers=False)


def vae_to_diffusers(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return rename_all(state, VAE_RULES, to_diffusers=True)


def vae_from_diffusers(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    state = rename_all(state, VAE_LEGACY_ATTENTION, to_diffusers=False)
    state = {k: _squeeze_legacy_conv(k, v) for k, v in state.items()}
    return rename_all(state, VAE_RULES, to_diffusers=False)


def _squeeze_legacy_conv(key: str, value: torch.Tensor) -> torch.Tensor:
    # Very old VAE attention weights are 1x1 convs (C, C, 1, 1); the linear layers want (C, C).
    if ".attentions." in key and key.endswith("weight") and value.ndim == 4 and value.shape[2:] == (1, 1):
        return value[:, :, 0, 0]
    return value


def vision_to_transformers(state: Mapping[str, torch.Tensor], prefix: str = "") -> dict[str, torch.Tensor]:
    renamed = rename_all(state, VISION_RULES, to_diffusers=True)
    return {prefix + k: v for k, v in renamed.items()}


def vision_from_transformers(state: Mapping[str, torch.Tensor], prefix: str = "") -> dict[str, torch.Tensor]:
    """Take the keys under `prefix` (e.g. "vision_model."), rename them; drops transformers' `position_ids` buffer."""
    taken = {
        k[len(prefix) :]: v
        for k, v in state.items()
        if k.startswith(prefix) and not k.endswith("position_ids")
    }
    return rename_all(taken, VISION_RULES, to_diffusers=False)


def exemplar_to_diffusers(
    state: Mapping[str, torch.Tensor], layout: Layout = "transformers4"
) -> dict[str, torch.Tensor]:
    """Native ExemplarEncoder state -> diffusers PaintByExampleImageEncoder state, vision keys in `layout`."""
    if layout not in VISION_PREFIX:
        raise ValueError(f"layout={layout!r}; expected one of {sorted(VISION_PREFIX)}")
    vision = {k[len("vision.") :]: v for k, v in state.items() if k.startswith("vision.")}
    rest = {k: v for k, v in state.items() if not k.startswith("vision.")}
    out = vision_to_transformers(vision, VISION_PREFIX[layout])
    out.update(rename_all(rest, EXEMPLAR_RULES, to_diffusers=True))
    return out


def detect_vision_layout(keys: Iterable[str]) -> Layout:
    """transformers 4 nests the tower under model.vision_model.*, transformers 5 directly under model.*."""
    keys = list(keys)
    if any(k.startswith(VISION_PREFIX["transformers4"]) for k in keys):
        return "transformers4"
    if any(k.startswith("model.embeddings.") or k.startswith("model.encoder.") for k in keys):
        return "transformers5"
    raise ValueError(
        "no CLIP vision tower keys found; expected keys under 'model.vision_model.' (transformers 4) "
        "or 'model.' (transformers 5)"
    )


def exemplar_from_diffusers(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """diffusers PaintByExampleImageEncoder state (either transformers layout) -> native ExemplarEncoder state."""
    prefix = VISION_PREFIX[detect_vision_layout(state)]
    out = {"vision." + k: v for k, v in vision_from_transformers(state, prefix).items()}
    rest = {k: v for k, v in state.items() if not k.startswith("model.")}
    out.update(rename_all(rest, EXEMPLAR_RULES, to_diffusers=False))
    return out
