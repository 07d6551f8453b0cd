"""The CLIP score: how much an edited region looks like the reference, as the authors' eval_tool computes it.

The result is cropped to its mask's box (`pbe.eval.bench.white_bounds`) and stretched to 224x224 (bilinear, no
antialiasing, on the CLIP-normalised tensor); the reference is resized to 224x224 by PIL; the score is 100 x the
cosine of the two L2-normalised CLIP embeddings.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torchvision.transforms import functional as tvF
from tqdm import tqdm

from pbe.eval.bench import BenchItem, read_mask, white_bounds
from pbe.eval.clip_features import ClipFeatures, normalize, open_rgb_file


def region_crop(result: torch.Tensor, mask: np.ndarray, size: int) -> torch.Tensor:
    """The authors' crop of a CLIP-normalised result (3, H, W) to the mask's box, stretched to size x size
    (bilinear, no antialiasing: torchvision's tensor Resize of their environment)."""
    if tuple(result.shape[-2:]) != tuple(mask.shape):
        raise ValueError(
            f"result is {result.shape[-1]}x{result.shape[-2]} but its mask is {mask.shape[1]}x{mask.shape[0]}"
        )
    top, bottom, left, right = white_bounds(mask)
    crop = result[:, top:bottom, left:right]
    return F.interpolate(
        crop[None], size=(size, size), mode="bilinear", align_corners=False, antialias=False
    )[0]


def reference_pixels(path: Path, size: int) -> torch.Tensor:
    """The authors' reference: PIL resize to size x size (PIL's default filter), RGB, CLIP-normalised."""
    return normalize(tvF.to_tensor(open_rgb_file(path).resize((size, size)).convert("RGB")))


def clip_scores(
    extractor: ClipFeatures, results: Sequence[Path], items: Sequence[BenchItem], progress: bool = False
) -> np.ndarray:
    """100 x cosine(result crop, reference) per item (float64)."""
    if len(results) != len(items):
        raise ValueError(f"{len(results)} results for {len(items)} items")
    size, scores = extractor.image_size, []
    bs = extractor.cfg.batch_size
    for start in tqdm(range(0, len(items), bs), desc="CLIP score", disable=not progress):
        crops, refs = [], []
        for path, item in zip(results[start : start + bs], items[start : start + bs], strict=True):
            result = normalize(tvF.to_tensor(open_rgb_file(Path(path)).convert("RGB")))
            try:
                crops.append(region_crop(result, read_mask(item.mask), size))
            except ValueError as e:
                raise ValueError(f"CLIP score of item {item.id} ({path}): {e}") from None
            refs.append(reference_pixels(item.reference, size))
        a, b = extractor.encode(torch.stack(crops)), extractor.encode(torch.stack(refs))
        a /= np.linalg.norm(a, axis=1, keepdims=True)
        b /= np.linalg.norm(b, axis=1, keepdims=True)
        scores.append(100.0 * (a * b).sum(axis=1))
    return np.concatenate(scores) if scores else np.zeros(0)
