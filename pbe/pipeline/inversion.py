"""DDIM inversion: `PaintByExamplePipeline.invert` and its output."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from pbe.diffusion import (
    img2img_start_step,
    invert_ddim,
)
from pbe.pipeline.checks import _count, _finite_tensor, _flag


def _inversion_trajectory(image_latents, num_inference_steps: int) -> tuple[torch.Tensor, int]:
    """(trajectory, start step) of `image_latents` (invert's output or its trajectory), checked."""
    what = "the InversionOutput of invert() or its trajectory tensor (B, n + 1, 4, h, w)"
    trajectory = image_latents.trajectory if isinstance(image_latents, InversionOutput) else image_latents
    trajectory = _finite_tensor(trajectory, "image_latents", what)
    steps = trajectory.shape[1] - 1 if trajectory.ndim == 5 else -1
    if not 1 <= steps <= num_inference_steps:
        raise ValueError(
            f"image_latents has shape {tuple(trajectory.shape)}; expected (B, n + 1, 4, h, w) from "
            f"invert(..., num_inference_steps={num_inference_steps}) with 1 <= n <= {num_inference_steps}"
        )
    return trajectory, num_inference_steps - steps


@dataclass
class InversionOutput:
    """DDIM inversion of a batch of images.

    trajectory: (B, n + 1, 4, h, w), index 0 the most noisy latent (where editing starts), index n the clean latent;
    entry k is the latent before sampling step `start_step + k` of a `num_inference_steps`-step DDIM run.
    """

    trajectory: torch.Tensor
    num_inference_steps: int
    start_step: int

    @property
    def latents(self) -> torch.Tensor:
        return self.trajectory[:, 0]


class InversionMixin:
    """`invert`, for `PaintByExamplePipeline`."""

    @torch.no_grad()
    def invert(
        self,
        image,
        example_image=None,
        num_inference_steps: int = 50,
        strength: float = 1.0,
        mask_image=None,
        progress: bool = True,
    ) -> InversionOutput:
        """DDIM-invert `image` under the source conditioning (`example_image`, or the unconditional vector).

        `strength` < 1 inverts only part of the way (the edit then starts at the matching step). The UNet sees
        `mask_image` (white = repaint; default: repaint everything), as the edit will.
        """
        num_inference_steps = _count(num_inference_steps, "num_inference_steps")
        progress = _flag(progress, "progress")
        self.schedule.check_steps(num_inference_steps)
        start = img2img_start_step(num_inference_steps, strength)
        if start >= num_inference_steps:
            raise ValueError(f"strength={strength} inverts no step; use strength > 0")
        inputs = self._prepare(image, mask_image, example_image, need_exemplar=example_image is not None)
        batch = inputs.images.shape[0]
        if inputs.exemplars is not None:
            context = self._encode_exemplars(inputs.exemplars)
        else:
            context = self.model.encoder.unconditional(batch).to(self.dtype)
        cond_latents, _ = self._cond_latents(inputs, 1, False, None, sample=False, progress=progress)
        source = self._encode_images(inputs.images, None, sample=False, progress=progress)
        states = [source]
        denoise = self._denoiser(context, cond_latents, 1.0)

        def keep_state(i, t, x):
            states.append(x)

        invert_ddim(
            denoise,
            source,
            self.schedule,
            num_inference_steps,
            callback=keep_state,
            progress=progress,
            start_step=start,
        )
        trajectory = torch.stack(states[::-1], dim=1)
        self._check_finite(trajectory, "the inverted latents")
        return InversionOutput(
            trajectory=trajectory, num_inference_steps=num_inference_steps, start_step=start
        )
