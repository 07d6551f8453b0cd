"""Edits made during training (the sample-grid callback): the model in eval mode, DDIM with classifier-free
guidance from a fixed seed, the masked image's posterior mode as the conditioning latent."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from pbe.diffusion import SAMPLERS
from pbe.diffusion.guidance import guided_denoiser


@torch.no_grad()
def preview_edits(
    model, schedule, batch: dict, device, steps: int = 20, guidance: float = 5.0, seed: int = 0
) -> torch.Tensor:
    """Edited images in [-1, 1] for a batch of (image, mask 1 = keep, exemplar) with `model` (a
    `pbe.models.PaintByExample`, put in eval mode by the caller)."""
    image = batch["image"].to(device)
    keep = batch["mask"].to(device)
    g = torch.Generator(device="cpu").manual_seed(seed)
    f = model.vae.config.downsample_factor
    c, h, w = model.vae.config.latent_channels, image.shape[-2] // f, image.shape[-1] // f
    keep_bin = (keep >= 0.5).to(image.dtype)
    vae_dtype = model.vae.quant_conv.weight.dtype
    posterior = model.vae.encode((image * keep_bin).to(vae_dtype))
    z_masked = model.vae.config.scale_factor * posterior.mode().float()
    mask = F.interpolate(keep_bin, size=(h, w))
    cond = model.encoder(batch["exemplar"].to(device))
    guided = guidance > 1.0
    context = (
        torch.cat([model.encoder.unconditional(*cond.shape[:2]).to(cond.dtype), cond]) if guided else cond
    )
    extra = torch.cat([z_masked, mask], dim=1)
    extra = torch.cat([extra, extra]) if guided else extra
    denoise = guided_denoiser(lambda inp, t: model.unet(torch.cat([inp, extra], dim=1), t, context), guidance)
    x = torch.randn((image.shape[0], c, h, w), generator=g).to(device)
    z = SAMPLERS["ddim"](denoise, x, schedule, steps)
    return model.vae.decode((z / model.vae.config.scale_factor).to(vae_dtype)).float().clamp(-1, 1)
