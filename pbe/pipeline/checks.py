"""The pipeline's argument checks (each error names the argument), load options and limits."""

from __future__ import annotations

import math
import numbers
import os
import sys
import warnings
from pathlib import Path

import numpy as np
import torch

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


def _warn_at_caller(message: str) -> None:
    """warnings.warn pointing at the first frame outside this module and torch (the caller of the pipeline)."""
    internal = (
        str(Path(__file__).parent) + os.sep,
        str(Path(torch.__file__).parent) + os.sep,
    )  # pbe.pipeline, torch
    frame, level = sys._getframe(1), 2  # stacklevel 1 is this function, 2 its caller
    while frame is not None and frame.f_code.co_filename.startswith(internal):
        frame, level = frame.f_back, level + 1
    warnings.warn(message, UserWarning, stacklevel=level)
