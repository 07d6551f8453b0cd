"""DiffEdit-style automatic masks: `PaintByExamplePipeline.generate_mask`, joint bilateral upsampling, region selection."""

from __future__ import annotations

import math
import numbers

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from tqdm.auto import tqdm

from pbe.diffusion import (
    img2img_start_step,
)
from pbe.pipeline.checks import _count, _flag, _generator, _real

MASK_UPSAMPLING = ("nearest", "bilinear", "guided")  # generate_mask(upsample=...)


def guided_upsample(
    values: torch.Tensor,
    guide: torch.Tensor,
    scale: int,
    sigma_space: float = 3.0,
    sigma_colour: float = 0.1,
    radius: int = 3,
) -> torch.Tensor:
    """Joint bilateral upsampling (Kopf et al., 2007): (B, C, h, w) `values` to (B, C, h * scale, w * scale), steered
    by the full-size `guide` image (B, 3, h * scale, w * scale) in [0, 1].

    Each output pixel is a weighted mean of the (2 radius + 1)^2 low-resolution values around it: a Gaussian of the
    distance to each one's centre (`sigma_space`, in low-resolution pixels) times a Gaussian of the colour distance
    between the pixel's guide colour and the mean guide colour over that low-resolution pixel (`sigma_colour`). So a
    coarse map takes the outlines of the image: across an edge of the guide, values of the other side barely count.
    Borders repeat the edge values. Memory: a few full-size planes (one neighbour at a time)."""
    if not (isinstance(scale, int) and scale >= 1):
        raise ValueError(f"scale must be an integer >= 1, got {scale!r}")
    if not (isinstance(radius, int) and radius >= 0):
        raise ValueError(f"radius must be an integer >= 0 (low-resolution pixels), got {radius!r}")
    for name, sigma in (("sigma_space", sigma_space), ("sigma_colour", sigma_colour)):
        if not (isinstance(sigma, numbers.Real) and math.isfinite(sigma) and sigma > 0):
            raise ValueError(f"{name} must be a finite number > 0, got {sigma!r}")
    batch, _, h, w = values.shape
    if guide.shape[0] != batch or guide.shape[-2:] != (h * scale, w * scale):
        raise ValueError(f"guide must be ({batch}, 3, {h * scale}, {w * scale}), got {tuple(guide.shape)}")
    values, guide = values.float(), guide.float()
    cell_colour = F.avg_pool2d(guide, scale)  # the guide's mean colour over each low-resolution pixel
    pad = (radius,) * 4
    padded_values = F.pad(values, pad, mode="replicate")
    padded_colour = F.pad(cell_colour, pad, mode="replicate")

    def offset_in_cell(n: int) -> torch.Tensor:
        """Each output pixel's centre minus its own low-resolution pixel's centre, in low-resolution pixels."""
        centre = (torch.arange(n * scale, device=values.device) + 0.5) / scale - 0.5
        return centre - torch.arange(n, device=values.device).repeat_interleave(scale)

    fy, fx = offset_in_cell(h)[:, None], offset_in_cell(w)[None, :]
    offsets = [(dy, dx) for dy in range(-radius, radius + 1) for dx in range(-radius, radius + 1)]

    def near(padded: torch.Tensor, dy: int, dx: int) -> torch.Tensor:  # the neighbour (dy, dx) at full size
        window = padded[..., radius + dy : radius + dy + h, radius + dx : radius + dx + w]
        return window.repeat_interleave(scale, -2).repeat_interleave(scale, -1)

    def colour_distance(dy: int, dx: int) -> torch.Tensor:
        return (near(padded_colour, dy, dx) - guide).pow(2).sum(1, keepdim=True)

    # colour weights relative to the closest neighbour's, so that one of them is 1 (no underflow to 0 / 0); the
    # distances are computed again in the second pass rather than held (49 full-size planes at radius 3)
    closest = colour_distance(*offsets[0])
    for dy, dx in offsets[1:]:
        closest = torch.minimum(closest, colour_distance(dy, dx))
    total = torch.zeros(batch, values.shape[1], h * scale, w * scale, device=values.device)
    weights = torch.zeros(batch, 1, h * scale, w * scale, device=values.device)
    for dy, dx in offsets:
        space = torch.exp(-((dy - fy) ** 2 + (dx - fx) ** 2) / (2 * sigma_space**2))
        weight = space * torch.exp(-(colour_distance(dy, dx) - closest) / (2 * sigma_colour**2))
        total += weight * near(padded_values, dy, dx)
        weights += weight
    return total / weights


def strongest_region(mask: torch.Tensor, score: torch.Tensor) -> torch.Tensor:
    """(1, H, W) binary `mask` reduced to its 4-connected region that holds the highest `score`."""
    from scipy import ndimage

    labels, count = ndimage.label(mask[0].cpu().numpy() > 0.5)
    if count <= 1:
        return mask
    values = np.where(labels > 0, score[0].float().cpu().numpy(), -np.inf)
    keep = labels.flat[int(np.argmax(values))]
    return torch.from_numpy(labels == keep).to(mask)[None]


class AutoMaskMixin:
    """`generate_mask`, for `PaintByExamplePipeline`."""

    @torch.no_grad()
    def generate_mask(
        self,
        image,
        example_image,
        reference_image=None,
        strength: float = 0.5,
        num_maps: int = 10,
        threshold_ratio: float = 3.0,
        generator: torch.Generator | None = None,
        num_inference_steps: int = 50,
        output_type: str = "pil",
        progress: bool = True,
        upsample: str = "nearest",
        single_region: bool = False,
    ):
        """DiffEdit-style mask of where `example_image` would change `image` (white = repaint).

        The image latent is noised to `strength`; the UNet (asked to repaint everything) predicts noise under the
        exemplar and under the unconditional vector (or `reference_image`, an exemplar of what is there now);
        |difference| averaged over `num_maps` noise draws and channels, clamped at `threshold_ratio` x its mean,
        normalised and thresholded at 0.5. Returns one mask per image: PIL "L" images, or a (B, 1, H, W) tensor
        for output_type="pt".

        Options, off by default (DiffEdit's rule): `upsample` brings the map to pixel size before the threshold:
        "nearest" (DiffEdit: latent-pixel blocks), "bilinear" (smooth outlines) or "guided" (joint bilateral
        upsampling steered by `image`, `guided_upsample`: the map takes the image's own outlines, so the mask follows
        the object's edges instead of a blob the size of the UNet's receptive field); `single_region=True` keeps only
        the connected region that holds the strongest response (an exemplar is one object; other regions are places
        that merely look like it).
        """
        strength = _real(strength, "strength", lambda v: 0 < v <= 1, "in (0, 1]")
        num_maps = _count(num_maps, "num_maps")
        threshold_ratio = _real(threshold_ratio, "threshold_ratio", lambda v: v > 0, "> 0 and finite")
        if output_type not in ("pil", "pt"):
            raise ValueError(f"output_type={output_type!r}; valid: ('pil', 'pt')")
        if upsample not in MASK_UPSAMPLING:
            raise ValueError(f"upsample={upsample!r}; valid: {MASK_UPSAMPLING}")
        single_region, progress = _flag(single_region, "single_region"), _flag(progress, "progress")
        generator = _generator(generator)
        num_inference_steps = _count(num_inference_steps, "num_inference_steps")
        self.schedule.check_steps(num_inference_steps)
        inputs = self._prepare(image, None, example_image)
        batch = inputs.images.shape[0]
        reference = (
            None
            if reference_image is None
            else self._exemplar_batch(reference_image, batch, "reference_image")
        )
        source = self._encode_images(inputs.images, generator, sample=False, progress=progress)
        start = min(img2img_start_step(num_inference_steps, strength), num_inference_steps - 1)
        t = self.schedule.timesteps(num_inference_steps)[start].to(self.device)
        target = self._encode_exemplars(inputs.exemplars)
        other = (
            self._encode_exemplars(reference)
            if reference is not None
            else self.model.encoder.unconditional(batch, target.shape[1]).to(target.dtype)
        )
        # keep = 0 everywhere: repaint all
        cond_latents, _ = self._cond_latents(inputs, 1, False, generator, progress=progress)
        total = torch.zeros_like(source[:, :1])
        for _ in tqdm(range(num_maps), desc="automatic mask", disable=not progress, leave=False):
            noise = self._draw(source.shape, generator)
            a = self.schedule.alpha_list[int(t)]
            x = a**0.5 * source + (1 - a) ** 0.5 * noise
            inp = torch.cat([torch.cat([x, x]), torch.cat([cond_latents, cond_latents])], dim=1)
            with self._unet_autocast():
                eps = self.model.unet(inp, t, torch.cat([target, other])).to(self.dtype)
            e_target, e_other = eps.chunk(2)
            total += (e_target - e_other).abs().mean(dim=1, keepdim=True)
        guidance = total / num_maps
        self._check_finite(guidance, "the automatic mask's noise differences")
        clamp = guidance.flatten(1).mean(dim=1).view(-1, 1, 1, 1) * threshold_ratio
        # the map at pixel size (nearest: DiffEdit's latent-pixel blocks), thresholded there
        if upsample == "guided":
            guide = (inputs.images.float().to(guidance.device) + 1) / 2
            guidance = guided_upsample(guidance, guide, self.vae_scale)
        else:
            guidance = F.interpolate(guidance, scale_factor=self.vae_scale, mode=upsample)
        crop = (..., slice(0, inputs.height), slice(0, inputs.width))
        guidance = guidance[crop]
        mask = (torch.minimum(guidance, clamp) / clamp > 0.5).float()
        if single_region:
            mask = torch.stack([strongest_region(m, g) for m, g in zip(mask, guidance)])
        if output_type == "pt":
            return mask.cpu()
        return [Image.fromarray((m[0].cpu().numpy() * 255).astype(np.uint8), mode="L") for m in mask]
