"""The Paint-by-Example training objective as pure functions of the model, the step's random draws and the batch
(the authors' recipe: their `configs/v1.yaml` and `ldm/models/diffusion/ddpm.py`); `PaintByExampleModule` runs it.

Per step, for a batch of (image in [-1, 1], keep-mask 1 = keep, CLIP-normalised exemplar):

- z0 = s * VAE.encode(image).sample(), z_masked = s * VAE.encode(image * keep).sample(), s = the VAE config's
  scale factor (0.18215 for SD): posterior samples, VAE frozen and in eval mode;
- keep-mask resized to latent size with bilinear interpolation (soft edges, no threshold);
- t ~ U{0..T-1} per sample (`objective.timestep_power`, not in the paper, can favour the high-noise steps);
  z_t = sqrt(a_t) z0 + sqrt(1 - a_t) eps on the 4 latent channels only (the schedule of every Paint-by-Example
  model, `PAINT_BY_EXAMPLE_SCHEDULER`);
- context = exemplar encoder(exemplar), replaced by the learned unconditional vector with probability p
  (`cfg_dropout`, 0.2): one draw for the whole batch per step (the original, default) or one per sample;
- loss = plain MSE between UNet(cat[z_t, z_masked, mask], t, context) and eps, over the whole latent
  (`objective.mask_loss_weight`, not in the paper, can weight the edit region more; 1.0 is the paper's loss);
- not in the paper, only with `data.augment.recolour_p > 0`: a recoloured sample (its object in another colour than
  the exemplar's) with t >= `objective.recolour_min_t` and an exemplar is noised from the recoloured copy, and the
  target is the noise that leads from the true z0 to that z_t (`recoloured_start`).

What is trained, the optimizer and how the draws stay exact across devices and resumes: `pbe.training.module`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from pbe.training.configs import ObjectiveConfig


@dataclass
class Draws:
    """Every random number of one training step (for this rank's part of the batch)."""

    timesteps: torch.Tensor  # (B,) long
    drop: torch.Tensor  # (B,) bool: use the unconditional vector
    image_noise: torch.Tensor  # (B, C, h, w): posterior sample of z0
    masked_noise: torch.Tensor  # (B, C, h, w): posterior sample of z_masked
    noise: torch.Tensor  # (B, C, h, w): diffusion noise
    extra: dict = field(default_factory=dict)


def draw(
    g: torch.Generator,
    objective: ObjectiveConfig,
    num_train_timesteps: int,
    batch_size: int,
    latent_shape: tuple[int, int, int],
    rank: int = 0,
    world: int = 1,
) -> Draws:
    """Draws for the global batch (batch_size x world size) from ``g``, sliced to this rank."""
    n, dev = batch_size * world, g.device
    T, power = num_train_timesteps, objective.timestep_power
    if power == 1.0:
        timesteps = torch.randint(0, T, (n,), generator=g, device=dev)
    else:
        u = torch.rand(n, generator=g, device=dev, dtype=torch.float64)
        timesteps = (T * (1.0 - (1.0 - u) ** power)).long().clamp_(0, T - 1)
    u = torch.rand(n, generator=g, device=dev)
    p = objective.cfg_dropout
    drop = (u[:1] < p).expand(n) if objective.cfg_dropout_mode == "batch" else u < p
    shape = (n, *latent_shape)
    image_noise = torch.randn(shape, generator=g, device=dev)
    masked_noise = torch.randn(shape, generator=g, device=dev)
    noise = torch.randn(shape, generator=g, device=dev)
    part = slice(rank * batch_size, (rank + 1) * batch_size)
    return Draws(timesteps[part], drop[part], image_noise[part], masked_noise[part], noise[part])


def sampled_latent(vae, images: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """scale * (posterior mean + std * noise) of the frozen VAE (in its dtype: float32 or model.frozen_dtype),
    returned as float32."""
    posterior = vae.encode(images.to(vae.quant_conv.weight.dtype))
    return (
        vae.config.scale_factor * (posterior.mean + posterior.std * noise.to(posterior.mean.dtype))
    ).float()


@torch.no_grad()
def encode_latents(vae, batch: dict, draws: Draws) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(z0, z_masked, keep-mask at latent size), from posterior samples with the draws' noise."""
    image, keep = batch["image"], batch["mask"]
    z0 = sampled_latent(vae, image, draws.image_noise)
    z_masked = sampled_latent(vae, image * keep, draws.masked_noise)
    mask = F.interpolate(keep, size=z0.shape[-2:], mode="bilinear", align_corners=False)
    return z0, z_masked, mask


def exemplar_context(encoder, exemplar: torch.Tensor, drop: torch.Tensor) -> torch.Tensor:
    """Exemplar context, with the unconditional vector where `drop` (parts not used get no gradient)."""
    b = exemplar.shape[0]
    tokens = 1 + encoder.config.vision.num_patches if encoder.config.use_patch_tokens else 1
    if bool(drop.all()):
        return encoder.unconditional(b, tokens)
    cond = encoder(exemplar)
    if not bool(drop.any()):
        return cond
    uncond = encoder.unconditional(b, tokens).to(cond.dtype)
    return torch.where(drop[:, None, None], uncond, cond)


def noisy_latent(
    alphas_cumprod: torch.Tensor, z0: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor
) -> torch.Tensor:
    a = alphas_cumprod.to(z0.device)[timesteps].float()[:, None, None, None]
    return a.sqrt() * z0.float() + (1 - a).sqrt() * noise.float()


@torch.no_grad()
def recoloured_start(
    vae, objective: ObjectiveConfig, batch: dict, draws: Draws, z0: torch.Tensor
) -> torch.Tensor | None:
    """z_noisy (the latent the noise is added to) where a sample trains on its recoloured copy (see
    ObjectiveConfig.recolour_min_t), z0 elsewhere; None when no sample of the batch does."""
    if "noisy_image" not in batch:
        return None
    late = draws.timesteps >= objective.recolour_min_t
    use = batch["recoloured"].bool() & ~draws.drop.bool() & late
    if not bool(use.any()):
        return None
    start = z0.clone()
    start[use] = sampled_latent(vae, batch["noisy_image"][use], draws.image_noise[use])
    return start


def losses(
    model, alphas_cumprod: torch.Tensor, objective: ObjectiveConfig, batch: dict, draws: Draws
) -> tuple[torch.Tensor, torch.Tensor]:
    """(loss, per-sample MSE) of `model` (a `pbe.models.PaintByExample`) for one batch and its draws."""
    z0, z_masked, mask = encode_latents(model.vae, batch, draws)
    start = recoloured_start(model.vae, objective, batch, draws, z0)
    if start is None:
        z_t, target = noisy_latent(alphas_cumprod, z0, draws.noise, draws.timesteps), draws.noise.float()
    else:  # the noise that takes z0 (not the recoloured start) to z_t
        z_t = noisy_latent(alphas_cumprod, start, draws.noise, draws.timesteps)
        a = alphas_cumprod.to(z0.device)[draws.timesteps].float()[:, None, None, None]
        target = draws.noise.float() + (a / (1 - a)).sqrt() * (start - z0)
    context = exemplar_context(model.encoder, batch["exemplar"], draws.drop)
    x = torch.cat([z_t.to(z_masked.dtype), z_masked, mask.to(z_masked.dtype)], dim=1)
    eps = model.unet(x, draws.timesteps, context)
    err = (eps.float() - target) ** 2
    per_sample = err.detach().mean(dim=(1, 2, 3))
    weight = objective.mask_loss_weight
    if weight == 1.0:
        return err.mean(), per_sample
    w = 1.0 + (weight - 1.0) * (1.0 - mask.float())  # mask: 1 = keep, at latent size
    return (err * w).mean() / w.mean(), per_sample
