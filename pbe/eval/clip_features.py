"""CLIP ViT-B/32 image features, the one feature extractor of all three benchmark metrics.

open_clip's image tower is built for `ClipConfig.arch` and given the weights of a local file (never downloaded);
`ClipFeatures` embeds images with CLIP's own preprocessing (bicubic resize of the short side to 224, centre crop,
CLIP mean / std) and returns the `encode_image` embeddings, not normalised, as float64 rows. `image_files` lists the
images of a folder.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torchvision.transforms import InterpolationMode
from torchvision.transforms import functional as tvF
from tqdm import tqdm

from pbe.models.clip_vision import CLIP_MEAN, CLIP_STD

IMAGE_SUFFIXES = (".bmp", ".jpg", ".jpeg", ".pgm", ".png", ".ppm", ".tif", ".tiff", ".webp")


@dataclass
class ClipConfig:
    weights: str | None = None  # a local .safetensors / .bin / .pt state dict (full CLIP or its visual tower)
    arch: str = "ViT-B-32"  # an open_clip model name, or a path to an open_clip model-config .json
    quick_gelu: bool = True  # OpenAI's weights (the authors' clip.load("ViT-B/32")) use QuickGELU
    device: str | None = None  # None: cuda when available, else cpu
    batch_size: int = 50


def _open_clip_name(arch: str) -> str:
    import open_clip

    if arch.endswith(".json"):
        path = Path(arch).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"clip.arch: model config {path} not found")
        open_clip.add_model_config(path)
        return path.stem
    if arch not in open_clip.list_models():
        raise ValueError(f"clip.arch={arch!r} is not an open_clip model name (nor a .json model config)")
    return arch


def load_clip_visual(cfg: ClipConfig) -> torch.nn.Module:
    """open_clip's image tower for `cfg.arch` with the weights of `cfg.weights` (strict), in eval mode."""

    from pbe.checkpoints.tensor_io import read_tensors

    if not cfg.weights:
        raise ValueError(
            "clip.weights is required: a local file with CLIP ViT-B/32 weights (pbe never downloads); "
            "`python -m pbe.eval.metrics random-clip` writes random ones (numbers then not comparable)"
        )
    state, metadata = read_tensors(Path(cfg.weights).expanduser())
    name = _open_clip_name(cfg.arch)
    for key, want in (("arch", name), ("quick_gelu", str(bool(cfg.quick_gelu)))):
        if key in metadata and metadata[key] != want:
            raise ValueError(
                f"clip.weights {cfg.weights} were made for {key}={metadata[key]}, config has {want}"
            )
    visual = _create(name, bool(cfg.quick_gelu)).visual
    if any(k.startswith("visual.") for k in state):
        state = {k[len("visual.") :]: v for k, v in state.items() if k.startswith("visual.")}
    try:
        visual.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise ValueError(f"clip.weights {cfg.weights} do not fit open_clip {name}: {str(e)[:500]}") from None
    return visual.eval().requires_grad_(False)


def _create(name: str, quick_gelu: bool) -> torch.nn.Module:
    """open_clip.create_model(name, pretrained=None): random init, without its "no pretrained weights" warning."""
    import logging

    import open_clip

    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        return open_clip.create_model(name, pretrained=None, force_quick_gelu=quick_gelu)
    finally:
        root.setLevel(level)


def clip_dim(cfg: ClipConfig) -> int:
    """Width of `cfg.arch`'s image embedding, from open_clip's model config (no model is built)."""
    import open_clip

    return int(open_clip.get_model_config(_open_clip_name(cfg.arch))["embed_dim"])


def clip_preprocess(image: Image.Image, size: int) -> torch.Tensor:
    """CLIP's own preprocessing: short side to `size` (bicubic), centre crop, RGB, [0, 1], CLIP mean / std."""
    image = tvF.center_crop(tvF.resize(image, size, interpolation=InterpolationMode.BICUBIC), size)
    return normalize(tvF.to_tensor(image.convert("RGB")))


def normalize(pixels: torch.Tensor) -> torch.Tensor:
    """(3, H, W) in [0, 1] -> CLIP-normalised."""
    mean, std = torch.tensor(CLIP_MEAN)[:, None, None], torch.tensor(CLIP_STD)[:, None, None]
    return (pixels - mean) / std


def open_rgb_file(path: Path) -> Image.Image:
    if not path.is_file():
        raise FileNotFoundError(f"image not found: {path}")
    with Image.open(path) as img:
        img.load()
        return img.copy()


class ClipFeatures:
    """CLIP image embeddings (encode_image, not normalised), float64 numpy rows."""

    def __init__(self, cfg: ClipConfig):
        self.cfg = cfg
        self.device = torch.device(cfg.device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.visual = load_clip_visual(cfg).to(self.device)
        size = self.visual.image_size
        self.image_size = int(size[0] if isinstance(size, tuple | list) else size)
        self.dim = int(self.visual.output_dim)

    @torch.no_grad()
    def encode(self, pixels: torch.Tensor) -> np.ndarray:
        """(N, 3, S, S) CLIP-normalised pixels -> (N, dim) float64, in batches of cfg.batch_size."""
        out = []
        for start in range(0, pixels.shape[0], self.cfg.batch_size):
            batch = pixels[start : start + self.cfg.batch_size].to(self.device, torch.float32)
            out.append(self.visual(batch).double().cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, self.dim))

    def images(
        self, paths: Sequence[Path], progress: bool = False, desc: str = "CLIP features"
    ) -> np.ndarray:
        rows = []
        bs = self.cfg.batch_size
        for start in tqdm(range(0, len(paths), bs), desc=desc, disable=not progress):
            chunk = paths[start : start + bs]
            pixels = torch.stack([clip_preprocess(open_rgb_file(Path(p)), self.image_size) for p in chunk])
            rows.append(self.encode(pixels))
        return np.concatenate(rows) if rows else np.zeros((0, self.dim))


def image_files(folder: str | Path) -> list[Path]:
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise FileNotFoundError(f"image folder not found: {folder}")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not files:
        raise ValueError(f"{folder} holds no image ({', '.join(IMAGE_SUFFIXES)})")
    return files
