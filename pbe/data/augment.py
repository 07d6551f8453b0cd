"""Exemplar augmentation of Paint by Example, and the config that holds every data switch and probability.

The exemplar (the reference the model must paint back) is the padded box crop resized to ``exemplar_size``,
then flipped, rotated with a reflected border, box-blurred and elastically warped, each with its own
probability, and finally CLIP-normalised. Parameters are drawn first (``sample_exemplar_params``) from a numpy
``Generator`` and applied second (``augment_exemplar``), so the decisions are recorded and reproducible.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torchvision.transforms.v2 import functional as TF

from pbe.models.clip_vision import CLIP_MEAN, CLIP_STD


@dataclass(frozen=True)
class AugmentConfig:
    """Every switch and probability of the data pipeline; the defaults are the paper's (the
    authors' `ldm/data/open-images.py`)."""

    image_size: int = 512  # side of the square training image and mask
    exemplar_size: int = 224  # side of the exemplar (CLIP ViT-L/14 input)
    box_pad: int = 10  # the exemplar crop is the box padded by up to this many pixels per side
    exemplar_aug: bool = True  # master switch for flip, rotation, blur and elastic on the exemplar
    flip_p: float = 0.5
    rotate_p: float = 0.5
    rotate_limit: float = 20.0  # degrees, uniform in [-limit, limit], reflected border
    blur_p: float = 0.3
    blur_kernel_min: int = 3  # box blur, odd kernel sizes between min and max
    blur_kernel_max: int = 7
    elastic_p: float = 0.3
    elastic_alpha: float = 1.0  # displacement scale (pixels) of the smoothed noise field
    elastic_sigma: float = 50.0  # smoothing of the noise field (pixels)
    elastic_alpha_affine: float = 50.0  # random affine part: anchor points moved by up to this many pixels
    box_extension: bool = True  # extend the box into the free space before making the mask
    extension_ratio: float = 0.4  # each side moves out by randint(0, int(ratio * free space))
    bezier_p: float = 0.5  # probability of the Bezier mask; otherwise the extended rectangle
    bezier_points: int = 18  # points per quadratic curve (t = 0.05 ... 0.05 * points)
    bezier_jitter: int = 5  # each outline coordinate moves by randint(-jitter, jitter)
    # Not in the paper: probability that the whole image is the edit region (the small model uses it so that
    # `generate_mask`, which asks the UNet to repaint everything, sees that case in training).
    full_mask_p: float = 0.0
    # Not in the paper: probability that the sample also carries `noisy_image`, a copy of `image` whose chosen object
    # is shifted to a random other colour (needs a source with object masks: data=synthetic). The objective noises
    # that copy for t >= objective.recolour_min_t and still asks for `image`: the exemplar, not z_t, must then
    # decide the object's colour (what `generate_mask` and strength < 1 edits rely on; see docs/small_model.md).
    recolour_p: float = 0.0
    recolour_min_distance: float = 96.0  # RGB distance (0-255) of the new colour from the object's mean
    square_crop: bool = True  # random square window around the extended box; off: squash the whole image
    crop_shrink_ratio: float = 0.6  # the window shrinks by randint(0, int(ratio * smallest margin)) per side
    # Where pbe deliberately departs from the original code (data/augment=original switches all three back):
    antialias: bool = True  # antialiased resizes (the original: plain bilinear, cv2 INTER_LINEAR exemplar)
    mask_style: str = "pbe"  # "original": its Bezier point de-duplication, unclamped polygon (data.masks)
    crop_style: str = "pbe"  # "original": square images never cropped, fallback right_most <= left_most

    def __post_init__(self):
        for name in ("mask_style", "crop_style"):
            if getattr(self, name) not in ("pbe", "original"):
                raise ValueError(f"{name} must be 'pbe' or 'original', got {getattr(self, name)!r}")
        for name in ("flip_p", "rotate_p", "blur_p", "elastic_p", "bezier_p", "full_mask_p", "recolour_p"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be a probability in [0, 1], got {value}")
        for name in ("extension_ratio", "crop_shrink_ratio"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {value}")
        for name in ("image_size", "exemplar_size"):
            value = getattr(self, name)
            if not (isinstance(value, int) and value >= 8):
                raise ValueError(f"{name} must be an int >= 8, got {value!r}")
        for name in ("box_pad", "bezier_jitter"):
            value = getattr(self, name)
            if not (isinstance(value, int) and value >= 0):
                raise ValueError(f"{name} must be an int >= 0, got {value!r}")
        if not (isinstance(self.bezier_points, int) and 1 <= self.bezier_points <= 19):
            raise ValueError(
                f"bezier_points must be an int in [1, 19] (t stays below 1), got {self.bezier_points!r}"
            )
        kernels = (self.blur_kernel_min, self.blur_kernel_max)
        if not all(isinstance(k, int) and k >= 1 and k % 2 == 1 for k in kernels) or kernels[0] > kernels[1]:
            raise ValueError(
                f"blur_kernel_min and blur_kernel_max must be odd ints >= 1 with min <= max, got {kernels}"
            )
        if self.blur_kernel_max // 2 >= self.exemplar_size:
            raise ValueError(f"blur_kernel_max must be below 2 * exemplar_size, got {self.blur_kernel_max}")
        if not 0.0 <= self.recolour_min_distance <= 220.0:
            raise ValueError(
                f"recolour_min_distance must be in [0, 220] (RGB units; larger may admit no colour), "
                f"got {self.recolour_min_distance}"
            )
        for name in ("rotate_limit", "elastic_alpha", "elastic_sigma", "elastic_alpha_affine"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")

    @classmethod
    def from_dict(cls, values: dict) -> AugmentConfig:
        """Build from a plain mapping (e.g. the Hydra ``data.augment`` node), rejecting unknown keys."""
        valid = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(values) - set(valid))
        if unknown:
            raise ValueError(f"augment: unknown keys {unknown}; valid keys are {valid}")
        return cls(**values)


@dataclass(frozen=True)
class ExemplarParams:
    """The random decisions for one exemplar; angle 0 / kernel 0 / elastic False mean 'not applied'."""

    flip: bool
    angle: float
    blur_kernel: int
    elastic: bool
    affine_jitter: np.ndarray  # (3, 2) pixel offsets of the elastic transform's affine anchor points
    noise_seed: int  # seed of the elastic noise field


def sample_exemplar_params(rng: np.random.Generator, config: AugmentConfig) -> ExemplarParams:
    """Draw the exemplar decisions; the same number of values is drawn whatever the switches say."""
    decide = rng.random(4)
    angle = float(rng.uniform(-config.rotate_limit, config.rotate_limit))
    kernels = list(range(config.blur_kernel_min, config.blur_kernel_max + 1, 2))
    kernel = kernels[int(rng.integers(len(kernels)))]
    jitter = rng.uniform(-config.elastic_alpha_affine, config.elastic_alpha_affine, size=(3, 2))
    noise_seed = int(rng.integers(2**62))
    on = config.exemplar_aug
    return ExemplarParams(
        flip=bool(on and decide[0] < config.flip_p),
        angle=angle if on and decide[1] < config.rotate_p else 0.0,
        blur_kernel=kernel if on and decide[2] < config.blur_p else 0,
        elastic=bool(on and decide[3] < config.elastic_p),
        affine_jitter=jitter,
        noise_seed=noise_seed,
    )


@functools.lru_cache(maxsize=8)
def pixel_grid(height: int, width: int) -> torch.Tensor:
    """(H, W, 2) pixel-centre coordinates (x, y); cached, so never modify the result in place."""
    ys, xs = torch.meshgrid(
        torch.arange(height, dtype=torch.float32), torch.arange(width, dtype=torch.float32), indexing="ij"
    )
    return torch.stack([xs, ys], dim=-1)


def reflect_coordinates(coords: torch.Tensor, size: int) -> torch.Tensor:
    """Fold coordinates into [0, size - 1] by mirroring about the edge pixels (OpenCV's BORDER_REFLECT_101)."""
    if size == 1:
        return torch.zeros_like(coords)
    period = 2 * (size - 1)
    folded = torch.remainder(coords, period)
    return torch.where(folded > size - 1, period - folded, folded)


def warp_reflect(image: torch.Tensor, source: torch.Tensor) -> torch.Tensor:
    """Resample ``image`` (C, H, W) at pixel coordinates ``source`` (H, W, 2) with a reflected border.

    The coordinates are folded back into the image first, so torchvision's grid sampler never reads outside.
    """
    _, height, width = image.shape
    folded = torch.stack(
        [reflect_coordinates(source[..., 0], width), reflect_coordinates(source[..., 1], height)], dim=-1
    )
    scale = torch.tensor([2.0 / width, 2.0 / height])
    displacement = (folded - pixel_grid(height, width)) * scale
    return TF.elastic(image, displacement[None])


def rotate_reflect(image: torch.Tensor, angle: float) -> torch.Tensor:
    """Rotate counter-clockwise by ``angle`` degrees about the centre, filling corners by reflection."""
    _, height, width = image.shape
    centre = torch.tensor([(width - 1) / 2, (height - 1) / 2])
    cos, sin = math.cos(math.radians(angle)), math.sin(math.radians(angle))
    inverse = torch.tensor([[cos, -sin], [sin, cos]])  # output offset -> source offset
    source = (pixel_grid(height, width) - centre) @ inverse.T + centre
    return warp_reflect(image, source)


def box_blur(image: torch.Tensor, kernel: int) -> torch.Tensor:
    """Mean filter with a ``kernel x kernel`` window and a reflected border."""
    _, height, width = image.shape
    pad = kernel // 2
    padded = F.pad(image[None], (pad, pad, pad, pad), mode="reflect")[0]
    # separable sum of shifted views (much faster than conv2d at these sizes): along x, then along y
    rows = sum(padded[:, :, i : i + width] for i in range(kernel))
    return sum(rows[:, i : i + height] for i in range(kernel)) / kernel**2


def smooth_noise(height: int, width: int, sigma: float, seed: int) -> torch.Tensor:
    """(2, H, W) uniform [-1, 1] noise smoothed by a Gaussian of ``sigma`` pixels (FFT, periodic border)."""
    noise = torch.from_numpy(
        np.random.default_rng(seed).uniform(-1, 1, size=(2, height, width)).astype(np.float32)
    )
    fy = torch.fft.fftfreq(height)[:, None]
    fx = torch.fft.rfftfreq(width)[None, :]
    transfer = torch.exp(-2 * math.pi**2 * sigma**2 * (fx**2 + fy**2))
    return torch.fft.irfft2(torch.fft.rfft2(noise) * transfer, s=(height, width))


def elastic_source(height: int, width: int, params: ExemplarParams, config: AugmentConfig) -> torch.Tensor:
    """Source coordinates of the elastic transform: a random affine warp composed with a smooth noise field.

    The affine part moves three anchor points (centre +- a third of the side) by ``params.affine_jitter``; the
    field displaces each output pixel by ``alpha`` times Gaussian-smoothed uniform noise before the affine map.
    """
    cx, cy, third = width // 2, height // 2, min(height, width) // 3
    anchors = np.array(
        [[cx + third, cy + third], [cx + third, cy - third], [cx - third, cy - third]], dtype=np.float64
    )
    moved = anchors + params.affine_jitter
    system = np.concatenate([moved, np.ones((3, 1))], axis=1)
    if abs(np.linalg.det(system)) < 1e-6:  # anchors collapsed onto a line: no affine part
        matrix = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    else:
        matrix = np.linalg.solve(system, anchors).T  # output (x, y, 1) -> source (x, y)
    points = pixel_grid(height, width)
    if config.elastic_alpha > 0:
        field = smooth_noise(height, width, config.elastic_sigma, params.noise_seed) * config.elastic_alpha
        points = points + field.permute(1, 2, 0)
    matrix = torch.from_numpy(matrix).float()
    return points @ matrix[:, :2].T + matrix[:, 2]


def clip_normalize(image: torch.Tensor) -> torch.Tensor:
    """(3, H, W) in [0, 1] -> CLIP-normalised."""
    mean = torch.tensor(CLIP_MEAN).view(3, 1, 1)
    std = torch.tensor(CLIP_STD).view(3, 1, 1)
    return (image - mean) / std


def augment_exemplar(crop: torch.Tensor, params: ExemplarParams, config: AugmentConfig) -> torch.Tensor:
    """uint8 (3, h, w) crop -> float (3, S, S) CLIP-normalised exemplar (resize, flip, rotate, blur, elastic)."""
    size = config.exemplar_size
    image = TF.resize(crop, [size, size], antialias=config.antialias).float() / 255
    if params.flip:
        image = TF.horizontal_flip(image)
    if params.angle != 0.0:
        image = rotate_reflect(image, params.angle)
    if params.blur_kernel > 0:
        image = box_blur(image, params.blur_kernel)
    if params.elastic:
        image = warp_reflect(image, elastic_source(size, size, params, config))
    return clip_normalize(image.clamp(0, 1))


def resize_image(image: torch.Tensor, size: int, antialias: bool = True) -> torch.Tensor:
    """uint8 (3, h, w) -> float (3, size, size) in [-1, 1]. pbe: antialiased resize of the uint8 pixels; the
    original (antialias=False): scale to [-1, 1] first, then plain bilinear (its T.Resize on the float tensor)."""
    if antialias:
        return TF.resize(image, [size, size], antialias=True).float() / 127.5 - 1
    return TF.resize(image.float() / 127.5 - 1, [size, size], antialias=False)


def recolour_object(
    image: torch.Tensor,
    coverage: torch.Tensor,
    rng: np.random.Generator,
    min_distance: float = 96.0,
    palette: list[tuple[float, float, float]] | None = None,
) -> torch.Tensor:
    """uint8 (3, H, W) ``image`` with the object of ``coverage`` (float (H, W) in [0, 1]) shifted to another colour
    at least ``min_distance`` (RGB, 0-255) from the object's mean colour; its shading moves along.

    With ``palette`` (the colours objects of the source have), one of its colours that far away, drawn uniformly
    (the farthest if none is): the new colour then looks like any other object's, so the model cannot tell a
    recoloured object by an unusual colour. Without, up to 64 uniform RGB draws, else the RGB cube's corner farthest
    from the mean (always >= 220 away)."""
    weight = coverage.float()
    total = float(weight.sum())
    if total <= 0:
        raise ValueError("recolour_object: coverage is empty (the object has no pixel)")
    mean = (image.float() * weight).sum(dim=(1, 2)) / total
    if palette is not None:
        colours = torch.tensor(palette, dtype=torch.float32)
        distance = (colours - mean).norm(dim=1)
        far = torch.nonzero(distance >= min_distance).flatten()
        pick = int(far[int(rng.integers(len(far)))]) if len(far) else int(distance.argmax())
        return shift_colour(image, weight, colours[pick] - mean)
    for _ in range(64):
        colour = torch.from_numpy(rng.uniform(0.0, 255.0, size=3)).float()
        if float((colour - mean).norm()) >= min_distance:
            break
    else:
        colour = torch.where(mean < 127.5, 255.0, 0.0)
    return shift_colour(image, weight, colour - mean)


def shift_colour(image: torch.Tensor, weight: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    shifted = image.float() + weight[None] * shift[:, None, None]
    return shifted.round().clamp(0, 255).to(torch.uint8)
