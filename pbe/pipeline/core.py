"""The model parts of `PaintByExamplePipeline`: loading, the VAE and exemplar encoder, the guided denoiser, outputs."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from pbe.checkpoints.formats import Checkpoint, load_checkpoint
from pbe.diffusion import (
    SAMPLERS,
    from_scheduler_config,
)
from pbe.diffusion.guidance import guided_denoiser
from pbe.diffusion.scheduler_config import PAINT_BY_EXAMPLE_SCHEDULER
from pbe.models import PaintByExample
from pbe.models.vae_tiling import needs_tiling, tiled_decode, tiled_encode
from pbe.pipeline.checks import (
    LARGE_IMAGE_PIXELS,
    USUAL_GUIDANCE,
    VAE_TILE,
    VAE_TILE_OVERLAP,
    VAE_TILING_THRESHOLD,
    NonFiniteResultError,
    _count,
    _load_options,
)
from pbe.pipeline.inputs import _Inputs


@dataclass
class PipelineOutput:
    images: list[Image.Image] | np.ndarray | torch.Tensor
    nsfw_content_detected: None = None  # diffusers' field; pbe has no safety checker


class PipelineBase:
    """Loading and model steps shared by editing, automatic masks and inversion."""

    def __init__(
        self,
        model: PaintByExample,
        scheduler_config: dict | None = None,
        device: str | torch.device | None = None,
        dtype: torch.dtype | None = None,
        channels_last: bool = False,
        autocast: bool = False,
        train_resolution: int | None = None,
    ):
        dtype, device, channels_last, autocast = _load_options(dtype, device, channels_last, autocast)
        # The pixel size the model was trained at (None: unknown; pbe's native folders record it): the size that
        # padding_mask_crop resizes the crop around the mask to.
        self.train_resolution = (
            None if train_resolution is None else _count(train_resolution, "train_resolution (pixels)")
        )
        self.model = model.eval().requires_grad_(False)
        self.device = device if device is not None else next(model.parameters()).device
        self.dtype = dtype or next(model.parameters()).dtype
        self.model.to(device=self.device, dtype=self.dtype)
        # channels_last=True: the UNet's and the VAE's convolutions in NHWC memory layout, the same arithmetic in
        # another order (outputs equal up to float rounding). Off by default: on CPU it measured slower than NCHW
        # (the small-conv matmul path needs contiguous weights; docs/performance.md, bench/unet_step.py).
        self.channels_last = channels_last
        if self.channels_last:
            for part in (self.model.unet, self.model.vae):
                part.to(memory_format=torch.channels_last)
        # autocast=True: float32 weights, the UNet computing in bf16 under torch.autocast (prepare and every step); the
        # sampler's arithmetic, the VAE and the exemplar encoder stay float32. Not exact: the noise prediction moves by
        # bf16 rounding, for a faster UNet (figures in docs/performance.md).
        if autocast and self.dtype != torch.float32:
            raise ValueError(
                f"autocast=True expects float32 weights (torch_dtype=None or torch.float32), got {self.dtype}; "
                "with bf16 weights the UNet computes in bf16 already"
            )
        self.autocast = autocast
        # The checkpoint's own sampler; without one, the schedule every Paint-by-Example model is trained with
        # (PLMS on scaled_linear betas, steps_offset 1), not the PNDM class defaults.
        self.scheduler_config = dict(scheduler_config or PAINT_BY_EXAMPLE_SCHEDULER)
        self.vae_tiling: bool | None = None
        self.vae_tiling_threshold = VAE_TILING_THRESHOLD
        self.vae_tile, self.vae_tile_overlap = VAE_TILE, VAE_TILE_OVERLAP
        self.large_image_pixels: int | None = LARGE_IMAGE_PIXELS
        self.default_sampler, self.schedule, self.sampler_options = from_scheduler_config(
            self.scheduler_config
        )

    @classmethod
    def from_pretrained(
        cls,
        path: str | Path,
        torch_dtype: torch.dtype | None = None,
        device: str | torch.device | None = None,
        config: dict | None = None,
        channels_last: bool = False,
        autocast: bool = False,
    ) -> PaintByExamplePipeline:  # noqa: F821 (the class in pbe.pipeline)
        """Load the authors' model.ckpt, a diffusers folder or a pbe folder. `config`: what shapes cannot tell."""
        if not isinstance(path, str | os.PathLike):
            raise TypeError(f"path must be a checkpoint file or folder (str or Path), got {path!r}")
        torch_dtype, device, channels_last, autocast = _load_options(
            torch_dtype, device, channels_last, autocast
        )
        ckpt = load_checkpoint(path, config)
        if channels_last:
            # the conv weights in NHWC before the model takes them, each replacing its NCHW original at once: the
            # layout change costs no second copy of the weights (this function owns `ckpt`; a later dtype
            # conversion keeps the layout)
            for name, tensor in ckpt.state.items():
                if tensor.ndim == 4 and name.startswith(("unet.", "vae.")):
                    ckpt.state[name] = tensor.contiguous(memory_format=torch.channels_last)
        return cls.from_checkpoint(ckpt, torch_dtype, device, channels_last, autocast)

    @classmethod
    def from_checkpoint(
        cls,
        ckpt: Checkpoint,
        torch_dtype=None,
        device=None,
        channels_last: bool = False,
        autocast: bool = False,
    ) -> PaintByExamplePipeline:  # noqa: F821 (the class in pbe.pipeline)
        if not isinstance(ckpt, Checkpoint):
            raise TypeError(f"ckpt must be a pbe.checkpoints.formats.Checkpoint, got {type(ckpt).__name__}")
        torch_dtype, device, channels_last, autocast = _load_options(
            torch_dtype, device, channels_last, autocast
        )
        model = ckpt.model(dtype=torch_dtype, device=device)
        return cls(model, ckpt.scheduler, device, torch_dtype, channels_last, autocast, ckpt.train_resolution)

    # ----------------------------------------------------------------------------------------------- helpers

    @property
    def vae_scale(self) -> int:
        return self.model.vae.config.downsample_factor

    @property
    def size_multiple(self) -> int:
        return self.vae_scale * self.model.unet.config.downsample_factor

    def _sampler(self, name: str | None) -> tuple[str, dict]:
        if name is None:
            return self.default_sampler, dict(self.sampler_options)
        if name not in SAMPLERS:
            raise ValueError(f"sampler={name!r}; valid: {', '.join(SAMPLERS)}")
        return name, {}

    def _encode_exemplars(self, exemplars: torch.Tensor) -> torch.Tensor:
        return self.model.encoder(exemplars.to(self.device, self.dtype))

    def _draw(self, shape, generator: torch.Generator | None) -> torch.Tensor:
        device = generator.device if generator is not None else self.device
        return torch.randn(shape, generator=generator, device=device, dtype=self.dtype).to(self.device)

    def _tile_vae(self, height: int, width: int) -> bool:
        if self.vae_tiling is None:
            return needs_tiling(height, width, tile=self.vae_tiling_threshold)
        return self.vae_tiling

    def enable_vae_tiling(self) -> None:
        """Always run the VAE on overlapping tiles (bounded memory, Ctrl-C between tiles; not bit-exact)."""
        self.vae_tiling = True

    def disable_vae_tiling(self) -> None:
        """Never tile the VAE. `pipe.vae_tiling = None` restores the default: tile above the threshold."""
        self.vae_tiling = False

    def _encode_images(
        self, images: torch.Tensor, generator, sample: bool, progress: bool = False
    ) -> torch.Tensor:
        images = images.to(self.device, self.dtype)
        if self._tile_vae(*images.shape[-2:]):
            posterior = tiled_encode(
                self.model.vae, images, tile=self.vae_tile, overlap=self.vae_tile_overlap, progress=progress
            )
        else:
            posterior = self.model.vae.encode(images)
        latents = posterior.sample(generator) if sample else posterior.mode()
        return self.model.vae.config.scale_factor * latents

    def _decode_latents(self, latents: torch.Tensor, progress: bool = False) -> torch.Tensor:
        z = latents / self.model.vae.config.scale_factor
        if self._tile_vae(*(s * self.vae_scale for s in z.shape[-2:])):
            tile, overlap = self.vae_tile // self.vae_scale, self.vae_tile_overlap // self.vae_scale
            return tiled_decode(
                self.model.vae, z, tile_latent=tile, overlap_latent=overlap, progress=progress
            )
        return self.model.vae.decode(z)

    def _denoiser(self, context: torch.Tensor, cond_latents: torch.Tensor, guidance_scale: float):
        """eps(x, t) with classifier-free guidance; context is [uncond; cond] when guidance is on."""
        unet = self.model.unet
        # per-edit constants (conv_in's share of cond_latents, cross-attention outputs); under guidance one copy of
        # x serves both halves (UNet.prepare, exact up to float rounding)
        with self._unet_autocast():
            prepared = unet.prepare(cond_latents, context)

        def eps_of(inp: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            with self._unet_autocast():
                return unet(inp.to(self.dtype), t, prepared=prepared).to(self.dtype)

        return guided_denoiser(eps_of, guidance_scale, double_input=prepared.copies == 1)

    def _unet_autocast(self):
        """bf16 autocast around UNet work when the pipeline was made with autocast=True; otherwise a no-op."""
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.autocast)

    def _context(self, exemplars: torch.Tensor, n: int, guidance_scale: float) -> torch.Tensor:
        cond = self._encode_exemplars(exemplars).repeat_interleave(n, dim=0)
        if guidance_scale <= 1.0:
            return cond
        uncond = self.model.encoder.unconditional(cond.shape[0], cond.shape[1]).to(cond.dtype)
        return torch.cat([uncond, cond])

    def _cond_latents(
        self, inputs: _Inputs, n: int, guided: bool, generator, sample: bool = True, progress: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(masked-image latents and mask at latent size, CFG-doubled; latent keep mask (B*n, 1, h, w)).

        sample=True draws the masked-image latent from the VAE posterior with `generator` (diffusers' order of
        draws); False takes the posterior mean (deterministic, for inversion)."""
        h, w = (s // self.vae_scale for s in inputs.images.shape[-2:])
        mask = F.interpolate(inputs.keep, size=(h, w)).to(self.device, self.dtype)
        masked = self._encode_images(inputs.images * inputs.keep, generator, sample=sample, progress=progress)
        mask, masked = mask.repeat_interleave(n, dim=0), masked.repeat_interleave(n, dim=0)
        cond = torch.cat([masked, mask], dim=1)
        return (torch.cat([cond, cond]) if guided else cond), mask

    # ----------------------------------------------------------------------------------------------- editing

    def _check_finite(self, values: torch.Tensor, what: str, guidance_scale: float = 1.0) -> None:
        """NonFiniteResultError naming `what` and the likely causes when `values` hold NaN or infinity."""
        if bool(torch.isfinite(values).all()):
            return
        causes = []
        if guidance_scale > USUAL_GUIDANCE:
            causes.append(
                f"guidance_scale={guidance_scale:g} is far above the usual 1 to {USUAL_GUIDANCE:g}: it multiplies "
                "the difference between the guided and unguided noise predictions, which overflowed; use a "
                "smaller guidance_scale"
            )
        if self.dtype == torch.float16:
            causes.append("float16 arithmetic overflowed; load with torch_dtype=torch.float32 (or bfloat16)")
        generic = (
            "the model's weights (non-finite, or overflowing: a diverged training run?) or latents / image_latents "
            "far outside the model's scale"
        )
        raise NonFiniteResultError(
            f"{what} hold NaN or infinite values (the result would be a black image). Likely cause: "
            + ("; or ".join(causes) or generic)
        )

    def _to_output(self, images: torch.Tensor, output_type: str):
        if output_type == "pt":
            return images
        array = images.permute(0, 2, 3, 1).numpy()
        if output_type == "np":
            return array
        return [Image.fromarray(a) for a in (array * 255).round().astype(np.uint8)]

    # ----------------------------------------------------------------------------------------------- DiffEdit
