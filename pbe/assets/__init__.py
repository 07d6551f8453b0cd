"""Files shipped inside the package: the models trained here, demo inputs, background photos for synthetic scenes.

- `objects/`: the objects model (`make train-objects`), the default model; `small/`: the small synthetic model
  (`make train-small`); both in pbe's native layout (`pbe_config.json` + `model.safetensors`);
- `demo/`: masks (white = repaint) and exemplars for skimage's astronaut, coffee, chelsea and rocket photos;
- `backgrounds/`: other skimage photos, downscaled, used as backgrounds of the small model's synthetic scenes.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

ASSETS = Path(__file__).resolve().parent


def trained_model_folder(name: str) -> Path:
    """``pbe/assets/<name>``, a model trained here (`make train-<name>` writes it), checked to be complete."""
    folder = ASSETS / name
    missing = [f for f in ("pbe_config.json", "model.safetensors") if not (folder / f).is_file()]
    if missing:
        raise FileNotFoundError(
            f"the {name} model is not installed: {folder} lacks {', '.join(missing)}; train it with "
            f"`make train-{name}` (writes pbe/assets/{name}) or pass a checkpoint path explicitly"
        )
    return folder


def small_model_path() -> Path:
    """The folder of the committed small model (load it with `PaintByExamplePipeline.from_pretrained(path)`)."""
    return trained_model_folder("small")


def objects_model_path() -> Path:
    """The folder of the committed objects model (`make train-objects` writes it)."""
    return trained_model_folder("objects")


def default_model_path() -> Path:
    """The model pbe edits with when none is named: the objects model."""
    return objects_model_path()


def demo_dir() -> Path:
    return ASSETS / "demo"


def demo_photo(name: str, short_side: int, multiple: int = 1) -> np.ndarray:
    """scikit-image's photo ``name`` (astronaut, coffee, chelsea, rocket: the demo and evaluation photos, a dev
    extra), RGB, downscaled (Lanczos) to a short side of about ``short_side`` px, each side a multiple of
    ``multiple``."""
    from PIL import Image

    try:
        import skimage.data
    except ImportError as e:
        raise ImportError(
            "the photo demo needs scikit-image (pip install -e '.[dev]', which `make demo` does)"
        ) from e
    image = Image.fromarray(getattr(skimage.data, name)()).convert("RGB")
    scale = short_side / min(image.size)
    size = tuple(max(multiple, round(s * scale / multiple) * multiple) for s in image.size)
    return np.asarray(image.resize(size, Image.LANCZOS))


def backgrounds_dir() -> Path:
    return ASSETS / "backgrounds"
