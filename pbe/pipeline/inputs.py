"""Checked, preprocessed inputs of an edit, a mask or an inversion (`_prepare`), padded to a size the UNet takes."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from pbe.pipeline.checks import _warn_at_caller
from pbe.preprocess import (
    as_list,
    empty_mask_message,
    exemplar_tensor,
    image_tensor,
    keep_mask,
    pad_to_multiple,
    to_mask_float,
)


@dataclass
class _Inputs:
    """Validated, preprocessed inputs (padded to a size the UNet takes)."""

    images: torch.Tensor  # (B, 3, H, W) in [-1, 1]
    keep: torch.Tensor  # (B, 1, H, W), 1 = keep
    pixels: list[np.ndarray | None]  # original uint8 pixels, for exact paste-back
    exemplars: torch.Tensor | None  # (B, 3, 224, 224)
    height: int  # before padding
    width: int


class InputsMixin:
    """`_prepare` and the exemplar batch, for `PaintByExamplePipeline`."""

    def _prepare(
        self, image, mask_image, example_image, need_exemplar: bool = True, crop_padding: int | None = None
    ) -> _Inputs:
        """Checked, preprocessed inputs. `crop_padding` (padding_mask_crop): the model sees a crop, not the whole
        image, so a large image is not warned about (the crop's generation size is, later), and an empty mask is
        refused (there is nothing to crop around)."""
        images = as_list(image, "image")
        masks = as_list(mask_image, "mask_image") if mask_image is not None else None
        if masks is not None and len(masks) not in (1, len(images)):
            raise ValueError(
                f"mask_image: {len(masks)} masks for {len(images)} images; give one, or one per image"
            )
        tensors, pixels = zip(
            *(image_tensor(img, f"image[{i}]") for i, img in enumerate(images)), strict=True
        )
        shape = tensors[0].shape
        if any(t.shape != shape for t in tensors):
            raise ValueError(
                f"image: all images in a batch must have one size; got {[tuple(t.shape) for t in tensors]}"
            )
        h, w = shape[1:]
        if h < self.vae_scale or w < self.vae_scale:
            raise ValueError(
                f"image is {w}x{h} pixels; it must be at least {self.vae_scale}x{self.vae_scale} (one latent pixel)"
            )
        if crop_padding is None and self.large_image_pixels is not None and h * w > self.large_image_pixels:
            _warn_at_caller(
                f"image is {w}x{h} = {h * w:,} pixels, more than pipe.large_image_pixels={self.large_image_pixels:,}: "
                "the edit will be slow and memory-hungry (the model was trained at 512x512)"
            )
        if masks is None:
            keep = torch.zeros(len(images), 1, h, w)  # everything may change
        else:
            floats = [to_mask_float(m, f"mask_image[{i}]") for i, m in enumerate(masks)]
            for i, m in enumerate(floats):
                if m.shape != (h, w):
                    raise ValueError(
                        f"mask_image[{i}] is {m.shape[1]}x{m.shape[0]} but image is {w}x{h}; they must match"
                    )
            keep = torch.stack([keep_mask(m)[None] for m in floats])
            empty = [i for i in range(len(floats)) if bool((keep[i] == 1).all())]
            if empty and crop_padding is not None:
                i = empty[0]
                name = "mask_image" if len(masks) == 1 else f"mask_image[{i}]"
                raise ValueError(
                    f"padding_mask_crop={crop_padding} crops around the mask, but {name} marks nothing to repaint "
                    "(no pixel is white: white = repaint, values binarised at 0.5); paint the region to edit, or "
                    "pass padding_mask_crop=None"
                )
            if empty:  # diffusers runs the model anyway; so does pbe, but says why the result may surprise
                i = empty[0]
                name = "mask_image" if len(masks) == 1 else f"mask_image[{i}]"
                _warn_at_caller(empty_mask_message(name, masks[i], floats[i]))
            if len(floats) == 1 and len(images) > 1:
                keep = keep.expand(len(images), -1, -1, -1)
        exemplars = (
            self._exemplar_batch(example_image, len(images), "example_image") if need_exemplar else None
        )
        images_t = torch.stack(tensors)
        images_t, _, _ = pad_to_multiple(images_t, self.size_multiple)
        keep, _, _ = pad_to_multiple(keep, self.size_multiple, value=1.0)  # padding is never edited
        return _Inputs(images_t, keep, list(pixels), exemplars, h, w)

    def _exemplar_batch(self, example_image, batch: int, name: str) -> torch.Tensor:
        examples = as_list(example_image, name)
        if len(examples) not in (1, batch):
            raise ValueError(
                f"{name}: {len(examples)} exemplars for {batch} images; give one, or one per image"
            )
        size = self.model.encoder.config.vision.image_size
        exemplars = torch.stack([exemplar_tensor(e, f"{name}[{i}]", size) for i, e in enumerate(examples)])
        return exemplars.expand(batch, -1, -1, -1) if len(examples) == 1 else exemplars
