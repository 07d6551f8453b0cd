"""Exemplar-guided image editing: a drop-in for diffusers' PaintByExamplePipeline, and more.

    pipe = PaintByExamplePipeline.from_pretrained("model.ckpt")     # any layout pbe reads
    result = pipe(image, mask_image, example_image, generator=torch.Generator().manual_seed(0)).images[0]

Same call, same preprocessing, same order of random draws as diffusers (initial noise first, then the VAE posterior
sample of the masked image), so the same weights and seed give the same image. Beyond diffusers:
- `strength < 1` starts from the source latent noised to the matching step (image-to-image) instead of pure noise;
- `paste_back=True` puts the original pixels back outside the mask (bit-identical), optionally with a feathered edge;
- any image size: sizes the UNet cannot take are padded (edge pixels repeated, kept by the mask) and cropped back;
- `generate_mask` (DiffEdit-style automatic mask), `invert` (DDIM inversion) and `image_latents=` (edit from an
  inversion, keeping the inverted trajectory outside the mask at every step);
- `padding_mask_crop=N` (diffusers' inpainting option): edit only a square around the mask (N pixels of margin),
  resized to the model's training resolution (`pipe.train_resolution`, from the checkpoint), and paste the result
  back into the photo; default None, as in diffusers: the whole image is edited at its own size;
- large images: the VAE runs on overlapping tiles above `pipe.vae_tiling_threshold` pixels a side (progress bar,
  Ctrl-C honoured between tiles; `pipe.enable_vae_tiling()` / `disable_vae_tiling()` force it), and an image of more
  than `pipe.large_image_pixels` pixels gets a warning before any work.

Arguments are checked before any model work, each error naming the argument (booleans must be bools: the string
"false" is refused, not taken as true; `feather` without `paste_back=True` warns that it does nothing). Weights are
checked for NaN / infinity as they load, and a result that is not finite (e.g. from a guidance_scale so large that
guidance overflows) raises NonFiniteResultError naming the stage and the likely cause instead of giving a black image.

Like diffusers, a mask that marks nothing to repaint still runs the model (with a warning that says why), and
without a scheduler config the pipeline samples with the Paint-by-Example training schedule
(`pbe.diffusion.scheduler_config.PAINT_BY_EXAMPLE_SCHEDULER`).

One deliberate difference: with several images *and* num_images_per_prompt > 1, diffusers repeats exemplar embeddings
per image ([e0, e0, e1, e1]) but tiles masks and masked-image latents ([m0, m1, m0, m1]), pairing an exemplar with
another image's mask; pbe keeps every copy with its own image, mask and exemplar. For one image, or one copy per
image, the two agree (tested).
"""

from pbe.checkpoints.formats import load_checkpoint
from pbe.pipeline.auto_mask import MASK_UPSAMPLING, AutoMaskMixin, guided_upsample, strongest_region
from pbe.pipeline.checks import NonFiniteResultError
from pbe.pipeline.core import PipelineBase, PipelineOutput
from pbe.pipeline.editing import EditingMixin
from pbe.pipeline.inputs import InputsMixin
from pbe.pipeline.inversion import InversionMixin, InversionOutput
from pbe.pipeline.mask_crop import (
    AUTO_CROP,
    auto_padding_mask_crop,
    mask_crop_box,
    padding_mask_crop_setting,
)

__all__ = [
    "AUTO_CROP",
    "MASK_UPSAMPLING",
    "InversionOutput",
    "NonFiniteResultError",
    "PaintByExamplePipeline",
    "PipelineOutput",
    "auto_padding_mask_crop",
    "guided_upsample",
    "load_checkpoint",
    "mask_crop_box",
    "padding_mask_crop_setting",
    "strongest_region",
]


class PaintByExamplePipeline(EditingMixin, AutoMaskMixin, InversionMixin, InputsMixin, PipelineBase):
    """Exemplar-guided editing (module docstring). Its parts, one file each in `pbe/pipeline/`: loading and the
    model steps (`core.py`), input checks (`inputs.py`, `checks.py`), the edit itself (`editing.py`,
    `mask_crop.py`), automatic masks (`auto_mask.py`) and DDIM inversion (`inversion.py`)."""
