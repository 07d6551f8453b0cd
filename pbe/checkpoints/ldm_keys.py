"""Key mapping between pbe's native names and the original (LDM) `model.ckpt` layout of Paint by Example.

The original UNet numbers its blocks flatly (`input_blocks.{i}`, `output_blocks.{i}`), so the table depends on the
architecture: it is generated from a model's config, one entry per native parameter. Original prefixes:
`model.diffusion_model.` (UNet), `first_stage_model.` (VAE), `cond_stage_model.` (CLIP tower and mapper), and
`proj_out.` / `learnable_vector` at the top level. The mapper keeps q, k and v fused in `attn.c_qkv`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import torch

from pbe.checkpoints.diffusers_keys import ATTENTION_RULES, VISION_RULES, rename_key
from pbe.models.unet import UNetConfig
from pbe.models.vae import VAEConfig

UNET_PREFIX = "model.diffusion_model."
VAE_PREFIX = "first_stage_model."
VISION_PREFIX = "cond_stage_model.transformer.vision_model."
MAPPER_PREFIX = "cond_stage_model.mapper.resblocks."

_RES = {"norm1": "in_layers.0", "conv1": "in_layers.2", "time_proj": "emb_layers.1", "norm2": "out_layers.0"}
_RES.update({"conv2": "out_layers.3", "skip": "skip_connection"})
_TRANSFORMER = [("blocks.{}.", "transformer_blocks.{}."), *ATTENTION_RULES]


def _res(leaf: str) -> str:
    module, param = leaf.split(".", 1)
    return f"{_RES[module]}.{param}"


def _transformer(rest: str) -> str:
    return rename_key(rest, _TRANSFORMER, to_diffusers=True)


def unet_native_to_ldm(name: str, cfg: UNetConfig) -> str:
    """One native UNet parameter name -> its original name (without the model.diffusion_model. prefix)."""
    r = cfg.num_res_blocks
    levels = len(cfg.channels)
    if name.startswith("time_embed."):
        return name
    if name.startswith("conv_in."):
        return "input_blocks.0.0." + name[len("conv_in.") :]
    if name.startswith("norm_out."):
        return "out.0." + name[len("norm_out.") :]
    if name.startswith("conv_out."):
        return "out.2." + name[len("conv_out.") :]
    m = re.match(r"(down|up|mid)\.(?:(\d+)\.)?(res|attn|resample)\.(?:(\d+)\.)?(.*)", name)
    if m is None:
        raise KeyError(name)
    where, b, kind, j, rest = m.groups()
    if where == "mid":
        index = {("res", "0"): 0, ("attn", "0"): 1, ("res", "1"): 2}[(kind, j)]
        return f"middle_block.{index}." + (_res(rest) if kind == "res" else _transformer(rest))
    b = int(b)
    if where == "down":
        if kind == "resample":
            return f"input_blocks.{1 + b * (r + 1) + r}.0.op.{rest[len('conv.') :]}"
        i = 1 + b * (r + 1) + int(j)
        return (
            f"input_blocks.{i}.0.{_res(rest)}"
            if kind == "res"
            else f"input_blocks.{i}.1.{_transformer(rest)}"
        )
    has_attn = cfg.attention_levels[levels - 1 - b]
    if kind == "resample":
        return f"output_blocks.{b * (r + 1) + r}.{2 if has_attn else 1}.{rest}"
    i = b * (r + 1) + int(j)
    return (
        f"output_blocks.{i}.0.{_res(rest)}" if kind == "res" else f"output_blocks.{i}.1.{_transformer(rest)}"
    )


_VAE_RES = {"skip": "nin_shortcut"}
_VAE_MID = {"mid.res1.": "mid.block_1.", "mid.res2.": "mid.block_2.", "mid.attn.norm.": "mid.attn_1.norm."}
_VAE_MID_ATTN = {"q": "q", "k": "k", "v": "v", "out": "proj_out"}


def vae_native_to_ldm(name: str, cfg: VAEConfig) -> str:
    """One native VAE parameter name -> its original name (without the first_stage_model. prefix)."""
    levels = len(cfg.channels)
    for native, ldm in _VAE_MID.items():
        name = name.replace(native, ldm)
    m = re.search(r"mid\.attn\.attn\.(q|k|v|out)\.", name)
    if m:
        name = name.replace(m.group(0), f"mid.attn_1.{_VAE_MID_ATTN[m.group(1)]}.")
    m = re.match(r"(encoder|decoder)\.(down|up)\.(\d+)\.(res|resample)\.(?:(\d+)\.)?(.*)", name)
    if m is None:
        return name.replace(".skip.", ".nin_shortcut.")
    part, where, b, kind, j, rest = m.groups()
    level = int(b) if where == "down" else levels - 1 - int(b)
    if kind == "resample":
        return f"{part}.{where}.{level}.{'downsample' if where == 'down' else 'upsample'}.{rest}"
    module, param = rest.split(".", 1)
    return f"{part}.{where}.{level}.block.{j}.{_VAE_RES.get(module, module)}.{param}"


def is_vae_attention_weight(ldm_name: str) -> bool:
    """The original VAE's middle attention uses 1x1 convolutions: weights are (C, C, 1, 1) there, (C, C) here."""
    return ".attn_1." in ldm_name and ldm_name.endswith("weight") and ".norm." not in ldm_name


_MAPPER = {"norm1": "ln_1", "norm3": "ln_2", "self_attn.out": "attn.c_proj"}
_MAPPER.update({"ff.proj_in": "mlp.c_fc", "ff.proj_out": "mlp.c_proj"})


def exemplar_native_to_ldm(name: str) -> str:
    """One native exemplar-encoder name -> original full name (q/k/v map to the fused c_qkv, see fuse_qkv)."""
    if name.startswith("vision."):
        return VISION_PREFIX + rename_key(name[len("vision.") :], VISION_RULES, to_diffusers=True)
    if name.startswith("final_norm."):
        return "cond_stage_model.final_ln." + name[len("final_norm.") :]
    if name.startswith("proj_out."):
        return name
    if name == "uncond_vector":
        return "learnable_vector"
    m = re.match(r"mapper\.(\d+)\.(.*)\.(weight|bias)$", name)
    if m is None:
        raise KeyError(name)
    i, module, param = m.groups()
    if module in ("self_attn.q", "self_attn.k", "self_attn.v"):
        return f"{MAPPER_PREFIX}{i}.attn.c_qkv.{param}"
    return f"{MAPPER_PREFIX}{i}.{_MAPPER[module]}.{param}"


def split_qkv(fused: torch.Tensor, heads: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The original mapper's c_qkv packs, per head, [q_h, k_h, v_h] along the output dimension."""
    width = fused.shape[0] // 3
    per_head = fused.reshape(heads, 3, width // heads, *fused.shape[1:])
    return tuple(per_head[:, i].reshape(width, *fused.shape[1:]) for i in range(3))


def fuse_qkv(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, heads: int) -> torch.Tensor:
    width = q.shape[0]
    parts = [t.reshape(heads, 1, width // heads, *t.shape[1:]) for t in (q, k, v)]
    return torch.cat(parts, dim=1).reshape(3 * width, *q.shape[1:])


def native_to_ldm(
    state: Mapping[str, torch.Tensor], unet: UNetConfig, vae: VAEConfig, mapper_heads: int = 1
) -> dict[str, torch.Tensor]:
    """Native full state (keys prefixed unet. / vae. / encoder.) -> original layout (weights only)."""
    out: dict[str, torch.Tensor] = {}
    fused: dict[str, dict[str, torch.Tensor]] = {}
    for key, value in state.items():
        part, name = key.split(".", 1)
        if part == "unet":
            out[UNET_PREFIX + unet_native_to_ldm(name, unet)] = value
        elif part == "vae":
            ldm = VAE_PREFIX + vae_native_to_ldm(name, vae)
            out[ldm] = value[:, :, None, None] if is_vae_attention_weight(ldm) else value
        elif part == "encoder":
            ldm = exemplar_native_to_ldm(name)
            if ".attn.c_qkv." in ldm:
                fused.setdefault(ldm, {})[name.split(".")[3]] = value
            else:
                out[ldm] = value
        else:
            raise KeyError(key)
    for ldm, parts in fused.items():
        out[ldm] = fuse_qkv(parts["q"], parts["k"], parts["v"], mapper_heads)
    return out


def ldm_names(native_keys: list[str], unet: UNetConfig, vae: VAEConfig) -> dict[str, list[str]]:
    """original name -> the native names it feeds (several for a fused c_qkv)."""
    table: dict[str, list[str]] = {}
    for key in native_keys:
        part, name = key.split(".", 1)
        if part == "unet":
            ldm = UNET_PREFIX + unet_native_to_ldm(name, unet)
        elif part == "vae":
            ldm = VAE_PREFIX + vae_native_to_ldm(name, vae)
        else:
            ldm = exemplar_native_to_ldm(name)
        table.setdefault(ldm, []).append(key)
    return table


def ldm_to_native(
    state: Mapping[str, torch.Tensor],
    native_keys: list[str],
    unet: UNetConfig,
    vae: VAEConfig,
    mapper_heads: int = 1,
) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Original layout -> native state for the given native keys. Returns (state, original keys left unused).

    A native key with no original counterpart is simply absent from the result (the caller reports it).
    """
    out: dict[str, torch.Tensor] = {}
    used = set()
    for ldm, natives in ldm_names(native_keys, unet, vae).items():
        if ldm not in state:
            continue
        used.add(ldm)
        value = state[ldm]
        if len(natives) == 3:  # fused q, k, v
            for native, part in zip(
                sorted(natives, key=_qkv_order), split_qkv(value, mapper_heads), strict=True
            ):
                out[native] = part
        elif is_vae_attention_weight(ldm) and value.ndim == 4:
            out[natives[0]] = value[:, :, 0, 0]
        else:
            out[natives[0]] = value
    return out, [k for k in state if k not in used]


def _qkv_order(native: str) -> int:
    return "qkv".index(native.split(".")[-2])
