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

from __future__ import annotations

import math
import numbers
import os
import sys
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from tqdm.auto import tqdm

from pbe.checkpoints.formats import Checkpoint, load_checkpoint
from pbe.diffusion import (
    SAMPLERS,
    add_noise,
    from_scheduler_config,
    img2img_start_step,
    init_noise_sigma,
    invert_ddim,
)
from pbe.diffusion.scheduler_config import PAINT_BY_EXAMPLE_SCHEDULER
from pbe.models import PaintByExample
from pbe.models.vae_tiling import needs_tiling, tiled_decode, tiled_encode
from pbe.preprocess import (
    as_list,
    empty_mask_message,
    exemplar_tensor,
    feathered_alpha,
    image_tensor,
    keep_mask,
    pad_to_multiple,
    to_mask_float,
)

OUTPUT_TYPES = ("pil", "np", "pt", "latent")
# The VAE runs on overlapping tiles (bounded memory, Ctrl-C honoured between tiles) when an image is larger than
# VAE_TILING_THRESHOLD pixels on a side (pipe.vae_tiling: None = that rule, True / False = always / never).
VAE_TILING_THRESHOLD = 1024
VAE_TILE, VAE_TILE_OVERLAP = 512, 64  # pixels (pipe.vae_tile, pipe.vae_tile_overlap)
LARGE_IMAGE_PIXELS = (
    2048 * 2048
)  # warn before editing more pixels than this (pipe.large_image_pixels; None: never)
TORCH_DTYPES = (torch.float32, torch.float16, torch.bfloat16)  # what the model computes in (torch_dtype=)
USUAL_GUIDANCE = 20.0  # guidance scales above this are named as the likely cause of an overflow
# sample.py, the app and the demo: padding_mask_crop=auto crops when the model records its training resolution and
# the photo is larger than it on either side, with a margin of AUTO_CROP_MARGIN x the mask box's longest side on every
# side (at least AUTO_CROP_MIN_MARGIN pixels): the crop is about twice the box, so the edited region fills about half
# of what the model sees, as the objects did in the small model's training scenes (25-50 % of the side).
AUTO_CROP = "auto"
AUTO_CROP_MARGIN = 0.5
AUTO_CROP_MIN_MARGIN = 8


class NonFiniteResultError(ValueError):
    """The edit produced NaN or infinite values (it would have been a black image); the message says where from.

    A ValueError, as the usual cause is an argument (a huge guidance_scale) and command lines report those."""


def _count(value, name: str, low: int = 1) -> int:
    """A whole number >= low (Python or numpy integers) as an int; ValueError naming the argument otherwise."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
        raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    return int(value)


def _real(value, name: str, ok, what: str) -> float:
    """A finite real number passing `ok`, as a float; ValueError naming the argument otherwise."""
    if (
        isinstance(value, bool)
        or not isinstance(value, numbers.Real)
        or not math.isfinite(value)
        or not ok(value)
    ):
        raise ValueError(f"{name} must be {what}, got {value!r}")
    return float(value)


def _flag(value, name: str) -> bool:
    """A bool (Python or numpy) as a bool; TypeError naming the argument otherwise (the string "false" is true)."""
    if not isinstance(value, bool | np.bool_):
        raise TypeError(f"{name} must be True or False, got {value!r} ({type(value).__name__})")
    return bool(value)


def _crop_margin(value) -> int | None:
    """padding_mask_crop: None, or a whole number of pixels >= 0; ValueError naming it otherwise (bools refused)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
        raise ValueError(
            "padding_mask_crop must be None (no crop) or an integer >= 0 (pixels of margin around the mask), "
            f"got {value!r}"
        )
    return int(value)


def mask_crop_box(repaint, padding: int) -> tuple[int, int, int, int]:
    """The region `padding_mask_crop=padding` edits, (left, top, right, bottom) with right / bottom exclusive.

    `repaint`: (H, W) booleans (or 0 / 1), True where the mask repaints. The bounding box of those pixels, grown by
    `padding` on every side, then to a square (centred on the box) of its longer side, then moved inside the image;
    in a dimension where the image is smaller than the square, the whole dimension. ValueError for an empty mask."""
    repaint = np.asarray(repaint.cpu() if isinstance(repaint, torch.Tensor) else repaint).astype(bool)
    if repaint.ndim != 2:
        raise ValueError(f"mask_crop_box takes an (H, W) mask, got shape {repaint.shape}")
    padding = _crop_margin(padding)
    if padding is None:
        raise ValueError("padding_mask_crop must be an integer >= 0 here, got None")
    rows, cols = np.flatnonzero(repaint.any(axis=1)), np.flatnonzero(repaint.any(axis=0))
    if rows.size == 0:
        raise ValueError("the mask marks nothing to repaint: there is no region to crop around")
    box = [
        int(cols[0]) - padding,
        int(rows[0]) - padding,
        int(cols[-1]) + 1 + padding,
        int(rows[-1]) + 1 + padding,
    ]
    side = max(box[2] - box[0], box[3] - box[1])
    for lo, n in ((0, repaint.shape[1]), (1, repaint.shape[0])):  # x, then y
        start = box[lo] - (side - (box[lo + 2] - box[lo])) // 2  # the square, centred on the grown box
        start = 0 if side >= n else min(max(start, 0), n - side)  # inside the image
        box[lo], box[lo + 2] = start, start + min(side, n)
    return box[0], box[1], box[2], box[3]


def padding_mask_crop_setting(value, name: str = "padding_mask_crop") -> int | str | None:
    """A sample.py / app / demo setting, checked: "auto", None (also "none", "null" or ""), or pixels >= 0 (an int, or
    a string of digits from a command line). ValueError naming `name` otherwise."""
    if isinstance(value, str):
        text = value.strip().lower()
        if text == AUTO_CROP:
            return AUTO_CROP
        if text in ("none", "null", ""):
            return None
        if text.isdigit():
            return int(text)
    elif value is None or (
        isinstance(value, numbers.Integral) and not isinstance(value, bool) and value >= 0
    ):
        return None if value is None else int(value)
    raise ValueError(
        f"{name} must be {AUTO_CROP} (crop around the mask when the photo is larger than the model's training "
        f"resolution), an integer >= 0 (always crop, with that many pixels of margin) or none (never crop); "
        f"got {value!r}"
    )


def auto_padding_mask_crop(setting, train_resolution: int | None, size: tuple[int, int], masks) -> int | None:
    """The pipeline's padding_mask_crop for a sample.py / app / demo `setting` (see padding_mask_crop_setting).

    None: None. An int: itself. "auto": None unless `train_resolution` is known and the photo (`size`: width,
    height) is larger than it on either side; then AUTO_CROP_MARGIN x the longest side of the mask's bounding box
    (over all `masks`, white = repaint, binarised as the pipeline does), at least AUTO_CROP_MIN_MARGIN pixels. A mask
    that marks nothing gives None (the pipeline then edits as without the crop, and warns about the mask)."""
    setting = padding_mask_crop_setting(setting)
    if setting != AUTO_CROP:
        return setting
    if train_resolution is None or max(size) <= train_resolution:
        return None
    longest = 0
    for i, mask in enumerate(masks if isinstance(masks, list | tuple) else [masks]):
        repaint = keep_mask(to_mask_float(mask, f"mask_image[{i}]")).numpy() < 0.5
        rows, cols = np.flatnonzero(repaint.any(axis=1)), np.flatnonzero(repaint.any(axis=0))
        if rows.size:
            longest = max(longest, int(rows[-1] - rows[0] + 1), int(cols[-1] - cols[0] + 1))
    if longest == 0:
        return None
    return max(AUTO_CROP_MIN_MARGIN, math.ceil(AUTO_CROP_MARGIN * longest))


def _torch_dtype(value) -> torch.dtype | None:
    """None (keep the weights' dtype) or one of TORCH_DTYPES; TypeError / ValueError naming torch_dtype otherwise."""
    valid = "torch.float32, torch.float16 or torch.bfloat16 (or None: keep the weights' dtype)"
    if value is None:
        return None
    if not isinstance(value, torch.dtype):
        raise TypeError(f"torch_dtype must be a torch.dtype: {valid}; got {value!r}")
    if value not in TORCH_DTYPES:
        raise ValueError(f"torch_dtype must be {valid}; got {value}")
    return value


def _device(value) -> torch.device | None:
    """None (where the weights are) or a device this machine has; TypeError / ValueError naming device otherwise."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, str | int | torch.device):
        raise TypeError(f"device must be a str, int or torch.device such as 'cpu' or 'cuda', got {value!r}")
    try:
        device = torch.device(value)
    except (RuntimeError, ValueError) as e:
        raise ValueError(
            f"device={value!r} is not a torch device ({e}); use 'cpu', 'cuda' or 'cuda:N'"
        ) from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={value!r}: CUDA is not available on this machine; use device='cpu'")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise ValueError(f"device={value!r}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"device={value!r}: MPS is not available on this machine; use device='cpu'")
    return device


def _load_options(torch_dtype, device, channels_last, autocast) -> tuple:
    """The pipeline's construction options, checked (before any weights load) and normalised."""
    return (
        _torch_dtype(torch_dtype),
        _device(device),
        _flag(channels_last, "channels_last"),
        _flag(autocast, "autocast"),
    )


def _generator(value) -> torch.Generator | None:
    if value is not None and not isinstance(value, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator or None, got {value!r}")
    return value


def _finite_tensor(value, name: str, what: str) -> torch.Tensor | None:
    """None, or a tensor without NaN / infinity; TypeError / ValueError naming the argument otherwise."""
    if value is None:
        return None
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{name} must be {what}, got {type(value).__name__}")
    if not bool(torch.isfinite(value).all()):
        raise ValueError(f"{name} contains NaN or infinite values")
    return value


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


def _warn_at_caller(message: str) -> None:
    """warnings.warn pointing at the first frame outside this module and torch (the caller of the pipeline)."""
    internal = (__file__, str(Path(torch.__file__).parent) + os.sep)  # this module, torch.no_grad's wrapper
    frame, level = sys._getframe(1), 2  # stacklevel 1 is this function, 2 its caller
    while frame is not None and frame.f_code.co_filename.startswith(internal):
        frame, level = frame.f_back, level + 1
    warnings.warn(message, UserWarning, stacklevel=level)


def _resize(images: torch.Tensor, size: int) -> torch.Tensor:
    """(B, C, h, w) float images to (B, C, size, size): bicubic, antialiased when shrinking."""
    if tuple(images.shape[-2:]) == (size, size):
        return images
    return F.interpolate(images, size=(size, size), mode="bicubic", align_corners=False, antialias=True)


@dataclass
class PipelineOutput:
    images: list[Image.Image] | np.ndarray | torch.Tensor
    nsfw_content_detected: None = None  # diffusers' field; pbe has no safety checker


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


@dataclass
class _Inputs:
    """Validated, preprocessed inputs (padded to a size the UNet takes)."""

    images: torch.Tensor  # (B, 3, H, W) in [-1, 1]
    keep: torch.Tensor  # (B, 1, H, W), 1 = keep
    pixels: list[np.ndarray | None]  # original uint8 pixels, for exact paste-back
    exemplars: torch.Tensor | None  # (B, 3, 224, 224)
    height: int  # before padding
    width: int


class PaintByExamplePipeline:
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
        # another order (outputs equal up to float rounding). Off by default: on the full-size UNet it measured slower
        # than NCHW on this CPU (bench/unet_step.py --options-effect: 1.37x at 32x32 latents, 1.04x at 64x64 fp32;
        # the small-conv matmul path needs contiguous weights).
        self.channels_last = channels_last
        if self.channels_last:
            for part in (self.model.unet, self.model.vae):
                part.to(memory_format=torch.channels_last)
        # autocast=True: float32 weights, the UNet computing in bf16 under torch.autocast (prepare and every step); the
        # sampler's arithmetic, the VAE and the exemplar encoder stay float32. Not exact: the noise prediction moves by
        # bf16 rounding (about 2e-2 on the full-size UNet), for 0.61x the UNet time at 64x64 (README "Performance").
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
    ) -> PaintByExamplePipeline:
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
    ) -> PaintByExamplePipeline:
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
        guided = guidance_scale > 1.0
        unet = self.model.unet
        # per-edit constants (conv_in's share of cond_latents, cross-attention outputs); under guidance one copy of
        # x serves both halves (UNet.prepare, exact up to float rounding)
        with self._unet_autocast():
            prepared = unet.prepare(cond_latents, context)

        def denoise(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            x = x.to(self.dtype)
            inp = torch.cat([x, x]) if guided and prepared.copies == 1 else x
            with self._unet_autocast():
                eps = unet(inp, t, prepared=prepared).to(self.dtype)
            if guided:
                uncond, cond = eps.chunk(2)
                eps = uncond + guidance_scale * (cond - uncond)
            return eps

        return denoise

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

    def _to_output(self, images: torch.Tensor, output_type: str):
        if output_type == "pt":
            return images
        array = images.permute(0, 2, 3, 1).numpy()
        if output_type == "np":
            return array
        return [Image.fromarray(a) for a in (array * 255).round().astype(np.uint8)]

    # ----------------------------------------------------------------------------------------------- DiffEdit

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
