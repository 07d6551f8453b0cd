"""Editing: `PaintByExamplePipeline.__call__` (the diffusers call, plus strength, paste-back and padding_mask_crop)."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

from pbe.diffusion import (
    SAMPLERS,
    add_noise,
    img2img_start_step,
    init_noise_sigma,
)
from pbe.pipeline.checks import (
    OUTPUT_TYPES,
    _count,
    _finite_tensor,
    _flag,
    _generator,
    _real,
    _warn_at_caller,
)
from pbe.pipeline.core import PipelineOutput
from pbe.pipeline.inputs import _Inputs
from pbe.pipeline.inversion import InversionOutput, _inversion_trajectory
from pbe.pipeline.mask_crop import _crop_margin, mask_crop_box
from pbe.preprocess import (
    feathered_alpha,
)


def _resize(images: torch.Tensor, size: int) -> torch.Tensor:
    """(B, C, h, w) float images to (B, C, size, size): bicubic, antialiased when shrinking."""
    if tuple(images.shape[-2:]) == (size, size):
        return images
    return F.interpolate(images, size=(size, size), mode="bicubic", align_corners=False, antialias=True)


class EditingMixin:
    """`__call__` and its crops / paste-back, for `PaintByExamplePipeline`."""

    @torch.no_grad()
    def __call__(
        self,
        image,
        mask_image,
        example_image,
        num_inference_steps: int = 50,
        guidance_scale: float = 5.0,
        num_images_per_prompt: int = 1,
        eta: float = 0.0,
        generator: torch.Generator | None = None,
        latents: torch.Tensor | None = None,
        output_type: str = "pil",
        strength: float = 1.0,
        paste_back: bool = False,
        sampler: str | None = None,
        callback: Callable[[int, torch.Tensor, torch.Tensor], None] | None = None,
        image_latents: InversionOutput | torch.Tensor | None = None,
        feather: int = 0,
        progress: bool = True,
        padding_mask_crop: int | None = None,
    ) -> PipelineOutput:
        """Paint `example_image` into the white region of `mask_image` on `image`.

        Lists of images / masks / exemplars batch (a single mask or exemplar is shared). `latents`: the initial noise
        (B * num_images_per_prompt, 4, h, w) instead of drawing it. `image_latents`: the output of `invert` (or its
        trajectory) to edit from; it implies DDIM. `feather`: paste-back edge width in pixels (into the edited
        region only, so kept pixels stay exact; without paste_back=True it does nothing, and warns).

        `padding_mask_crop` (pixels, diffusers' inpainting option; default None: the whole image is edited at its own
        size): edit only the region around each image's mask, `mask_crop_box`: the mask's bounding box grown by
        `padding_mask_crop` on every side, then to a square, moved inside the image. The crop (padded to that square
        with its edge pixels, kept by the mask, where the image is smaller than the square) is resized to the
        generation size, `pipe.train_resolution` when the checkpoint recorded it, else the largest crop of the batch
        rounded up to a multiple of the VAE's downsampling (8 for Stable Diffusion's); that is edited, resized back
        and pasted into the photo where the mask repaints: outside the mask every pixel is the input's exactly (as
        with paste_back=True, which the crop implies; `feather` applies). `latents` then have the generation size.
        Not with output_type="latent" (no photo to paste into) nor with `image_latents` (an inversion of the whole
        image, not of the resized crop).
        """
        if output_type not in OUTPUT_TYPES:
            raise ValueError(f"output_type={output_type!r}; valid: {OUTPUT_TYPES}")
        padding_mask_crop = _crop_margin(padding_mask_crop)
        if padding_mask_crop is not None and output_type == "latent":
            raise ValueError(
                f"padding_mask_crop={padding_mask_crop} cannot give output_type='latent': the edited crop is pasted "
                "back into the photo in pixels, and latents of the crop have no photo to go into; use "
                "output_type='pil', 'np' or 'pt', or padding_mask_crop=None"
            )
        if padding_mask_crop is not None and image_latents is not None:
            raise ValueError(
                f"padding_mask_crop={padding_mask_crop} cannot be combined with image_latents: they invert the whole "
                "image at its own size, while padding_mask_crop edits a resized crop around the mask; pass "
                "padding_mask_crop=None (or invert the crop and edit it without padding_mask_crop)"
            )
        if padding_mask_crop is not None and self.train_resolution is not None:
            _count(self.train_resolution, "pipe.train_resolution (pixels)")
        paste_back, progress = _flag(paste_back, "paste_back"), _flag(progress, "progress")
        generator = _generator(generator)
        latents = _finite_tensor(latents, "latents", "a torch.Tensor (the initial noise) or None")
        guidance_scale = _real(
            guidance_scale, "guidance_scale", lambda v: v >= 0, ">= 0 and finite (1 disables guidance)"
        )
        num_images_per_prompt = _count(num_images_per_prompt, "num_images_per_prompt")
        num_inference_steps = _count(num_inference_steps, "num_inference_steps")
        strength = _real(strength, "strength", lambda v: 0 <= v <= 1, "in [0, 1] (1: from pure noise)")
        start_step = img2img_start_step(num_inference_steps, strength)
        eta = _real(eta, "eta", lambda v: v >= 0, ">= 0 and finite")
        feather = _count(feather, "feather (pixels)", low=0)
        if feather and not paste_back and padding_mask_crop is None:
            _warn_at_caller(
                f"feather={feather} has no effect without paste_back=True (it softens the edge of the pasted-back "
                "original); pass paste_back=True, or leave feather out"
            )
        if mask_image is None:
            raise ValueError("mask_image is required (white = the region to repaint)")
        name, options = self._sampler(sampler)
        trajectory = None
        if image_latents is not None:
            if sampler not in (None, "ddim"):
                raise ValueError(
                    f"image_latents come from DDIM inversion; sampler={sampler!r} cannot use them"
                )
            name, options = "ddim", {}
            trajectory, start_step = _inversion_trajectory(image_latents, num_inference_steps)
        # Which step counts work depends on the sampler (LMS and Euler a take 1..T; DDIM/PNDM/PLMS may not).
        self.schedule.check_steps(num_inference_steps, name, **options)
        if name == "ddim":
            options["eta"] = eta
        if padding_mask_crop is not None:
            inputs = self._prepare(image, mask_image, example_image, crop_padding=padding_mask_crop)
            edit = dict(
                num_inference_steps=num_inference_steps,
                guidance_scale=guidance_scale,
                num_images_per_prompt=num_images_per_prompt,
                eta=eta,
                generator=generator,
                latents=latents,
                strength=strength,
                sampler=sampler,
                callback=callback,
                progress=progress,
            )
            images = self._edit_crops(inputs, padding_mask_crop, feather, edit)
            return PipelineOutput(images=self._to_output(images, output_type))

        inputs = self._prepare(image, mask_image, example_image)
        batch, n = inputs.images.shape[0], num_images_per_prompt
        lat_h, lat_w = (s // self.vae_scale for s in inputs.images.shape[-2:])
        shape = (batch * n, self.model.vae.config.latent_channels, lat_h, lat_w)
        if latents is not None and tuple(latents.shape) != shape:
            raise ValueError(f"latents have shape {tuple(latents.shape)}; expected {shape}")
        if trajectory is not None and tuple(trajectory.shape[:1]) + tuple(trajectory.shape[2:]) != (
            batch,
            *shape[1:],
        ):
            raise ValueError(
                f"image_latents batch / latent shape {tuple(trajectory.shape)} does not match the images"
            )

        guided = guidance_scale > 1.0
        context = self._context(inputs.exemplars, n, guidance_scale)
        noise = latents.to(self.device, self.dtype) if latents is not None else self._draw(shape, generator)
        cond_latents, latent_keep = self._cond_latents(inputs, n, guided, generator, progress=progress)
        if trajectory is not None:
            x = trajectory[:, 0].to(self.device, self.dtype).repeat_interleave(n, dim=0)
        elif start_step == 0:
            x = noise * init_noise_sigma(name, self.schedule, num_inference_steps, **options)
        else:
            source = self._encode_images(inputs.images, generator, sample=False, progress=progress)
            source = source.repeat_interleave(n, dim=0)
            x = add_noise(name, self.schedule, num_inference_steps, source, noise, start_step, **options)

        def step_callback(i: int, t: torch.Tensor, x: torch.Tensor):
            if trajectory is not None:
                k = i - start_step + 1
                kept = trajectory[:, k].to(x.device, x.dtype).repeat_interleave(n, dim=0)
                x = latent_keep * kept + (1 - latent_keep) * x
            if callback is not None:
                callback(i, t, x)
            return x if trajectory is not None else None

        x = SAMPLERS[name](
            self._denoiser(context, cond_latents, guidance_scale),
            x,
            self.schedule,
            num_inference_steps,
            generator=generator,
            callback=step_callback,
            progress=progress,
            start_step=start_step,
            **options,
        )
        self._check_finite(x, "the denoised latents", guidance_scale)
        if output_type == "latent":
            return PipelineOutput(images=x)
        decoded = self._decode_latents(x, progress=progress)
        self._check_finite(decoded, "the decoded image", guidance_scale)
        images = (decoded / 2 + 0.5).clamp(0, 1).float().cpu()[..., : inputs.height, : inputs.width]
        if paste_back:
            images = self._paste_back(images, inputs, n, feather)
        return PipelineOutput(images=self._to_output(images, output_type))

    def crop_generation_size(self, sides: list[int]) -> int:
        """The side of the square the crops of padding_mask_crop are edited at: `train_resolution` when known, else the
        largest crop side (`sides`) rounded up to a multiple of the VAE's downsampling."""
        if self.train_resolution is not None:
            return self.train_resolution
        return math.ceil(max(sides) / self.vae_scale) * self.vae_scale

    def _edit_crops(self, inputs: _Inputs, padding: int, feather: int, edit: dict) -> torch.Tensor:
        """padding_mask_crop: each image's crop around its mask edited at the generation size, resized back and pasted
        into the image; (B * n, 3, H, W) in [0, 1], the input's pixels exactly outside the mask."""
        h, w, n = inputs.height, inputs.width, edit["num_images_per_prompt"]
        keep = inputs.keep[..., :h, :w]
        boxes = [mask_crop_box(k[0] < 0.5, padding) for k in keep]
        sides = [max(right - left, bottom - top) for left, top, right, bottom in boxes]
        size = self.crop_generation_size(sides)
        crops, masks = [], []
        for i, ((left, top, right, bottom), side) in enumerate(zip(boxes, sides, strict=True)):
            # padded to the square (edge pixels, kept) where the image is smaller than it
            square = (0, side - (right - left), 0, side - (bottom - top))
            crop = F.pad(
                inputs.images[i : i + 1, :, top:bottom, left:right].float(), square, mode="replicate"
            )
            repaint = F.pad(1 - keep[i : i + 1, :, top:bottom, left:right].float(), square, value=0.0)
            crops.append(_resize(crop, size).clamp(-1, 1)[0])
            # a generation-size pixel repaints if any pixel it covers does: the model edits all of the mask
            masks.append(F.adaptive_max_pool2d(repaint, size)[0, 0].numpy())
        edited = self(
            torch.stack(crops),
            masks,
            list(inputs.exemplars),
            output_type="pt",
            paste_back=False,
            **edit,
        ).images
        images = ((inputs.images[..., :h, :w].float() + 1) / 2).repeat_interleave(n, dim=0)
        for j, result in enumerate(edited):
            (left, top, right, bottom), side = boxes[j // n], sides[j // n]
            back = _resize(result[None], side).clamp(0, 1)[0, :, : bottom - top, : right - left]
            images[j, :, top:bottom, left:right] = back
        return self._paste_back(images, inputs, n, feather)

    def _paste_back(self, images: torch.Tensor, inputs: _Inputs, n: int, feather: int) -> torch.Tensor:
        """Original pixels where the mask keeps them (exactly: from the uint8 input where there was one)."""
        keep = inputs.keep[..., : inputs.height, : inputs.width].float()
        alpha = feathered_alpha(keep, feather)
        source = (inputs.images[..., : inputs.height, : inputs.width].float() + 1) / 2
        for i, pixels in enumerate(inputs.pixels):
            if pixels is not None:
                source[i] = torch.from_numpy(pixels.transpose(2, 0, 1).astype(np.float32) / 255.0)
        alpha, source = alpha.repeat_interleave(n, dim=0), source.repeat_interleave(n, dim=0)
        return torch.where(alpha == 1, source, alpha * source + (1 - alpha) * images)
