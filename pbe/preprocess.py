"""Image, mask and exemplar handling for the editing pipeline.

Conventions (the same as diffusers' PaintByExamplePipeline and the original inference script):
- images: PIL images (any mode; grayscale and RGBA are converted to RGB, 16-bit and float images keep their range),
  HxW / HxWx3 / HxWx4 uint8 arrays, file paths (turned upright by their EXIF orientation, as diffusers' load_image
  does), or tensors (3, H, W) / (B, 3, H, W) already in [-1, 1];
- masks: white (>= 0.5) = repaint: PIL images (brightness; alpha is ignored), integer arrays 0..255, bool arrays, float
  arrays / tensors in [0, 1]. Inside the model the convention flips to 1 = keep;
- exemplars: anything an image can be, preprocessed like transformers' CLIPImageProcessor (shortest edge to 224 with
  antialiased bicubic, centre crop, CLIP normalisation); a tensor is taken as already-normalised pixel values.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps, UnidentifiedImageError
from torchvision.transforms.v2 import InterpolationMode
from torchvision.transforms.v2 import functional as tvF

from pbe.models.clip_vision import CLIP_MEAN, CLIP_STD

ImageLike = Image.Image | np.ndarray | torch.Tensor | str | Path


def open_image(value: ImageLike, name: str) -> Image.Image | np.ndarray | torch.Tensor:
    """Paths become PIL images; anything else passes through. Clear errors for missing or non-image files."""
    if isinstance(value, str | Path):
        path = Path(value)
        if path.is_dir():
            raise ValueError(f"{name}: {path} is a directory; pass an image file")
        if not path.is_file():
            raise FileNotFoundError(f"{name}: file not found: {path}")
        try:
            with Image.open(path) as img:
                img.load()
                # as a photo viewer shows it (and as diffusers' load_image does): a phone photo stands upright
                upright = ImageOps.exif_transpose(img)
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
            raise ValueError(f"{name}: {path} is not an image PIL can read ({e})") from None
        return to_8bit(upright, f"{name} ({path})")
    if isinstance(value, Image.Image | np.ndarray | torch.Tensor):
        return value
    raise ValueError(
        f"{name} has type {type(value).__name__}; expected a PIL image, a numpy array, a tensor or a file path"
    )


# Modes PIL decodes with more than 8 bits per channel, and the value that is white in each.
HIGH_DEPTH_WHITE = {"I;16": 65535, "I;16L": 65535, "I;16B": 65535, "I;16N": 65535, "I": 65535, "F": 1.0}
EIGHT_BIT_MODES = ("1", "L", "LA", "La", "P", "PA", "RGB", "RGBA", "RGBa", "RGBX", "CMYK", "YCbCr")


def to_8bit(img: Image.Image, name: str) -> Image.Image:
    """The image with 8 bits per channel, its real range kept: 16-bit images (PIL "I;16" / "I") are scaled from
    [0, 65535], float images ("F") from [0, 1]. PIL's own convert("RGB") would clip them (a 16-bit photo turns almost
    white, a [0, 1] float one black); values outside those ranges, and modes with no RGB meaning, are refused."""
    if img.mode in EIGHT_BIT_MODES:
        return img
    if img.mode not in HIGH_DEPTH_WHITE:
        try:
            return img.convert("RGB")
        except ValueError:
            raise ValueError(
                f"{name}: PIL mode {img.mode!r} cannot be turned into RGB; save it as an 8- or 16-bit RGB or "
                "grayscale image"
            ) from None
    white = HIGH_DEPTH_WHITE[img.mode]
    values = np.asarray(img, dtype=np.float64)
    if not np.isfinite(values).all():
        raise ValueError(f"{name}: the image holds NaN or infinite values")
    low, high = float(values.min()), float(values.max())
    if low < 0 or high > white:
        kind = "a float image must hold values in [0, 1]" if img.mode == "F" else "a 16-bit image: [0, 65535]"
        raise ValueError(f"{name}: values in [{low:g}, {high:g}]; {kind}")
    return Image.fromarray(np.round(values * (255 / white)).astype(np.uint8), mode="L")


def as_list(value, name: str) -> list:
    if value is None:
        raise ValueError(f"{name} is required (got None)")
    if isinstance(value, torch.Tensor) and value.ndim == 4:
        return list(value)
    items = list(value) if isinstance(value, list | tuple) else [value]
    if not items:
        raise ValueError(f"{name} is an empty list")
    return [open_image(v, f"{name}[{i}]" if len(items) > 1 else name) for i, v in enumerate(items)]


def to_uint8_rgb(img, name: str) -> np.ndarray:
    """HxWx3 uint8 from a PIL image (any mode) or an HxW / HxWx3 / HxWx4 array (integers in [0, 255], or float in
    [0, 1]); empty or non-finite input is refused."""
    arr = np.array(to_8bit(img, name).convert("RGB")) if isinstance(img, Image.Image) else np.asarray(img)
    if arr.size == 0:
        raise ValueError(f"{name}: empty image of shape {arr.shape}; expected an image with pixels")
    if isinstance(img, Image.Image):
        return arr
    if arr.dtype != np.uint8:
        if np.issubdtype(arr.dtype, np.integer):
            if arr.min() < 0 or arr.max() > 255:
                raise ValueError(f"{name}: an integer array must hold values in [0, 255]")
            arr = arr.astype(np.uint8)
        elif not np.issubdtype(arr.dtype, np.floating):
            raise ValueError(f"{name}: a {arr.dtype} array must be uint8, or float in [0, 1]")
        else:
            _check_finite(arr, name)
            if arr.min() < 0 or arr.max() > 1:
                raise ValueError(f"{name}: a {arr.dtype} array must be uint8, or float in [0, 1]")
            arr = (arr * 255).round().astype(np.uint8)
    if arr.ndim == 2:
        arr = np.repeat(arr[:, :, None], 3, axis=2)
    if arr.ndim != 3 or arr.shape[2] not in (1, 3, 4):
        raise ValueError(f"{name}: array of shape {arr.shape}; expected HxW, HxWx3 or HxWx4")
    if arr.shape[2] == 1:
        arr = np.repeat(arr, 3, axis=2)
    return np.ascontiguousarray(arr[:, :, :3])


def to_mask_float(mask, name: str) -> np.ndarray:
    """HxW float32 in [0, 1] (white = repaint) from a PIL image, an array, or a tensor."""
    if isinstance(mask, Image.Image):
        return np.array(to_8bit(mask, name).convert("L")).astype(np.float32) / 255.0
    if isinstance(mask, torch.Tensor):
        mask = mask.detach().cpu()
        mask = (mask.float() if mask.is_floating_point() else mask).numpy()
    arr = np.asarray(mask)
    if arr.size == 0:
        raise ValueError(f"{name}: empty mask of shape {arr.shape}")
    if arr.ndim == 3 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.ndim == 3 and arr.shape[2] in (3, 4):
        return np.array(Image.fromarray(to_uint8_rgb(arr, name)).convert("L")).astype(np.float32) / 255.0
    if arr.ndim != 2:
        raise ValueError(f"{name}: mask of shape {arr.shape}; expected HxW (or 1xHxW)")
    if arr.dtype == np.bool_:
        return arr.astype(np.float32)  # True = repaint
    if np.issubdtype(arr.dtype, np.integer):  # 0..255, as a PIL "L" image (diffusers' convention)
        if arr.min() < 0 or arr.max() > 255:
            raise ValueError(f"{name}: an integer mask must hold values in [0, 255] (255 = repaint)")
        return arr.astype(np.float32) / 255.0
    if not np.issubdtype(arr.dtype, np.floating):
        raise ValueError(
            f"{name}: a {arr.dtype} mask; expected uint8 / integer 0..255, bool, or float in [0, 1]"
        )
    _check_finite(arr, name)
    arr = arr.astype(np.float32)
    if arr.min() < 0 or arr.max() > 1:
        raise ValueError(f"{name}: a float mask must lie in [0, 1] (white / 1 = repaint)")
    return arr


def _check_finite(arr, name: str) -> None:
    finite = torch.isfinite(arr).all() if isinstance(arr, torch.Tensor) else np.isfinite(arr).all()
    if not bool(finite):
        raise ValueError(f"{name} contains NaN or infinite values")


def has_alpha(mask) -> bool:
    """Whether a mask carries transparency (ignored by the pipeline: only its brightness counts)."""
    if isinstance(mask, Image.Image):
        return mask.mode in ("RGBA", "LA", "PA", "La", "RGBa") or "transparency" in mask.info
    arr = np.asarray(mask) if isinstance(mask, np.ndarray) else None
    return arr is not None and arr.ndim == 3 and arr.shape[2] == 4


def empty_mask_message(name: str, mask, repaint: np.ndarray) -> str:
    """Why a mask marks nothing to repaint, for the warning (`repaint`: the mask as floats, white = 1)."""
    message = (
        f"{name} marks nothing to repaint: no pixel is white (white = repaint, black = keep; values are "
        f"binarised at 0.5). The model still runs, as in diffusers, and repaints nothing in particular."
    )
    brightest = float(repaint.max())
    if has_alpha(mask):
        message += (
            " The mask has an alpha channel, which is ignored: paint the region to repaint white "
            "instead of marking it by transparency."
        )
    elif brightest > 0:
        message += (
            f" Its brightest value is {round(brightest * 255)}/255, below the threshold of 128: "
            "soft or grey masks must reach at least mid-grey where they should repaint."
        )
    return message


def keep_mask(repaint: np.ndarray) -> torch.Tensor:
    """User mask (white = repaint) -> model mask (1 = keep), binarised at 0.5 exactly as diffusers does."""
    keep = 1 - repaint
    keep[keep < 0.5] = 0
    keep[keep >= 0.5] = 1
    return torch.from_numpy(keep)


def image_tensor(img, name: str) -> tuple[torch.Tensor, np.ndarray | None]:
    """(3, H, W) float32 in [-1, 1], plus the uint8 pixels when the input had them (for exact paste-back)."""
    if isinstance(img, torch.Tensor):
        if img.ndim != 3 or img.shape[0] != 3:
            raise ValueError(
                f"{name}: tensor of shape {tuple(img.shape)}; expected (3, H, W) or (B, 3, H, W)"
            )
        _check_finite(img, name)
        if img.min() < -1 or img.max() > 1:
            raise ValueError(f"{name}: tensor images must lie in [-1, 1]")
        return img.float(), None
    pixels = to_uint8_rgb(img, name)
    return torch.from_numpy(pixels.transpose(2, 0, 1).copy()).to(torch.float32) / 127.5 - 1.0, pixels


def exemplar_tensor(img, name: str, size: int = 224) -> torch.Tensor:
    """CLIP pixel values (3, size, size), computed like transformers' CLIPImageProcessor (torchvision backend)."""
    if isinstance(img, torch.Tensor):
        if img.ndim != 3 or img.shape != (3, size, size):
            raise ValueError(
                f"{name}: tensor of shape {tuple(img.shape)}; expected CLIP pixel values (3, {size}, {size})"
            )
        _check_finite(img, name)
        return img.float()
    pixels = torch.from_numpy(to_uint8_rgb(img, name).transpose(2, 0, 1).copy())
    h, w = pixels.shape[1:]
    short, long = (w, h) if w <= h else (h, w)
    new_long = int(size * long / short)
    new_size = [new_long, size] if w <= h else [size, new_long]
    pixels = tvF.resize(pixels, new_size, interpolation=InterpolationMode.BICUBIC, antialias=True)
    top, left = int((pixels.shape[1] - size) / 2.0), int((pixels.shape[2] - size) / 2.0)
    pixels = pixels[:, top : top + size, left : left + size].to(torch.float32)
    mean = torch.tensor(CLIP_MEAN) * (1.0 / (1 / 255))
    std = torch.tensor(CLIP_STD) * (1.0 / (1 / 255))
    return (pixels - mean[:, None, None]) / std[:, None, None]


def pad_to_multiple(
    x: torch.Tensor, multiple: int, value: float | None = None
) -> tuple[torch.Tensor, int, int]:
    """Pad (B, C, H, W) on the right / bottom to multiples of `multiple`: edge pixels repeated, or `value`."""
    h, w = x.shape[-2:]
    ph, pw = math.ceil(h / multiple) * multiple - h, math.ceil(w / multiple) * multiple - w
    if ph == 0 and pw == 0:
        return x, 0, 0
    if value is None:
        return F.pad(x, (0, pw, 0, ph), mode="replicate"), ph, pw
    return F.pad(x, (0, pw, 0, ph), value=value), ph, pw


def feathered_alpha(keep: torch.Tensor, feather: int) -> torch.Tensor:
    """Paste-back weight of the original: 1 on every kept pixel (exactly), falling off into the edited region
    over `feather` pixels, 0 beyond. keep: (B, 1, H, W) with 1 = keep."""
    if feather <= 0:
        return keep
    k = 2 * feather + 1
    soft = F.avg_pool2d(F.pad(keep, (feather,) * 4, mode="replicate"), k, stride=1)
    return torch.maximum(keep, (2 * soft).clamp(max=1.0) * (1 - keep))
