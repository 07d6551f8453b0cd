"""`stage=autoencoder`: train the small model's own KL autoencoder (no pretrained VAE can be fetched here).

Loss: L1 + MSE reconstruction of a posterior sample + `kl_weight` x KL to N(0, I) per latent element, the posterior's
log-variance starting low (see `start_with_small_posterior_std`). Half of each batch is
the masked image (`image * keep`), which the diffusion stage also encodes. After training, the latent scale is
calibrated so that `scale_factor * z` has unit standard deviation with the usual `scale_factor` (0.18215): the
mean/log-variance convolution and the decoder's first 1x1 convolution are rescaled, which changes no reconstruction.

Writes `<run>/autoencoder/vae.safetensors` (keys of `model.vae.state_dict()`, what `model.init.vae` reads) and
returns that folder.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import torch
from omegaconf import DictConfig
from tqdm import tqdm

from pbe.models import AutoencoderKL, VAEConfig
from pbe.recipes.stage_tools import batches, dataset_for, model_section, save_tensors, stage_options

DEFAULTS = {
    "steps": 300,
    "batch_size": 32,
    "crop": 32,
    "lr": 2e-3,
    "kl_weight": 1e-4,
    "num_workers": 0,
    "seed": 23,
}


def autoencoder_loss(vae: AutoencoderKL, x: torch.Tensor, kl_weight: float) -> tuple[torch.Tensor, dict]:
    """L1 + MSE of the reconstruction of a posterior sample, + kl_weight x KL per latent element."""
    posterior = vae.encode(x)
    error = vae.decode(posterior.sample()) - x
    l1 = error.abs().mean()
    kl = posterior.kl().mean() / posterior.mean[0].numel()
    return l1 + error.pow(2).mean() + kl_weight * kl, {"l1": l1.item(), "kl": kl.item()}


@torch.no_grad()
def start_with_small_posterior_std(vae: AutoencoderKL, log_variance: float = -8.0) -> None:
    """Start the posterior's log-variance low: with std ~1 at initialisation the decoder first learns to average
    over the sampling noise, which desaturates colours for hundreds of steps; the KL term raises it as needed."""
    c = vae.config.latent_channels
    vae.quant_conv.weight[c:] = 0.0
    vae.quant_conv.bias[c:] = log_variance


@torch.no_grad()
def calibrate_latent_scale(vae: AutoencoderKL, images: torch.Tensor) -> float:
    """Rescale latents in place so that scale_factor * z has unit std on `images`; returns the factor applied."""
    z = vae.encode(images).sample()
    k = 1.0 / (vae.config.scale_factor * z.std().item())
    c = vae.config.latent_channels
    vae.quant_conv.weight[:c] *= k
    vae.quant_conv.bias[:c] *= k
    vae.quant_conv.bias[c:] += 2 * math.log(k)  # std scales by k too: logvar + log k^2
    vae.post_quant_conv.weight /= k  # (out, in, 1, 1): divide along the input channels
    return k


@torch.no_grad()
def psnr(vae: AutoencoderKL, images: torch.Tensor) -> float:
    recon = vae.decode(vae.encode(images).mode()).clamp(-1, 1)
    mse = ((recon - images) / 2).pow(2).mean().item()
    return 10 * math.log10(1.0 / max(mse, 1e-10))


def random_crops(x: torch.Tensor, size: int, generator: torch.Generator) -> torch.Tensor:
    """One random ``size`` x ``size`` window per image (the networks are convolutional: crops train them cheaply)."""
    h, w = x.shape[-2:]
    if size >= min(h, w):
        return x
    tops = torch.randint(0, h - size + 1, (x.shape[0],), generator=generator).tolist()
    lefts = torch.randint(0, w - size + 1, (x.shape[0],), generator=generator).tolist()
    return torch.stack([img[:, t : t + size, s : s + size] for img, t, s in zip(x, tops, lefts)])


def fit_autoencoder(
    vae: AutoencoderKL, stream, steps: int, lr: float, kl_weight: float, crop: int = 0, seed: int = 0
) -> dict:
    optimizer = torch.optim.AdamW(vae.parameters(), lr=lr, weight_decay=0.0)
    warmup = max(1, steps // 20)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min(1.0, (s + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * min(s / steps, 1.0)))
    )
    vae.train()
    bar = tqdm(range(steps), desc="autoencoder", unit="step", dynamic_ncols=True)
    stats, generator = {}, torch.Generator().manual_seed(seed)
    for _ in bar:
        batch = next(stream)
        half = batch["image"].shape[0] // 2
        x = torch.cat([batch["image"][:half], batch["masked_image"][half:]])
        if crop:
            x = random_crops(x, crop, generator)
        loss, stats = autoencoder_loss(vae, x, kl_weight)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(vae.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        bar.set_postfix(l1=f"{stats['l1']:.4f}", kl=f"{stats['kl']:.2f}")
    vae.eval()
    return stats


def train_autoencoder(cfg: DictConfig, run_dir: Path, callbacks: list | None = None) -> Path:
    opts = {**DEFAULTS, **stage_options(cfg, "autoencoder")}
    torch.manual_seed(opts["seed"])
    vae = AutoencoderKL(VAEConfig(**model_section(cfg, "vae")))
    start_with_small_posterior_std(vae)
    dataset = dataset_for(cfg, seed_offset=101, images_only=True)
    stream = batches(dataset, opts["batch_size"], opts["seed"], opts["num_workers"])
    start = time.perf_counter()
    last = fit_autoencoder(
        vae, stream, opts["steps"], opts["lr"], opts["kl_weight"], opts["crop"], opts["seed"]
    )
    held_out_set = dataset_for(cfg, seed_offset=909, held_out=True, images_only=True)
    held_out = next(batches(held_out_set, min(64, len(held_out_set)), seed=909))["image"]
    scale = calibrate_latent_scale(vae, held_out)
    quality = psnr(vae, held_out)
    out = Path(run_dir) / "autoencoder"
    out.mkdir(parents=True, exist_ok=True)
    metrics = {"l1": last.get("l1"), "psnr_db": quality, "latent_rescale": scale}
    save_tensors(out / "vae.safetensors", vae.state_dict(), {k: str(v) for k, v in metrics.items()})
    print(
        f"autoencoder: {opts['steps']} steps in {time.perf_counter() - start:.0f} s, held-out PSNR {quality:.1f} dB, "
        f"latents rescaled by {scale:.3f} -> {out / 'vae.safetensors'}"
    )
    return out
