"""Files shipped inside the package: the small trained model, demo inputs, background photos for synthetic scenes.

- `small/`: the small Paint-by-Example model trained on this project's CPU recipe (`make train-small`), pbe's native
  layout (`pbe_config.json` + `model.safetensors`);
- `demo/`: masks (white = repaint) and exemplars for skimage's astronaut, coffee, chelsea and rocket photos;
- `backgrounds/`: other skimage photos, downscaled, used as backgrounds of the small model's synthetic scenes.
"""

from __future__ import annotations

from pathlib import Path

ASSETS = Path(__file__).resolve().parent


def small_model_path() -> Path:
    """The folder of the committed small model (load it with `PaintByExamplePipeline.from_pretrained(path)`)."""
    folder = ASSETS / "small"
    missing = [name for name in ("pbe_config.json", "model.safetensors") if not (folder / name).is_file()]
    if missing:
        raise FileNotFoundError(
            f"the small model is not installed: {folder} lacks {', '.join(missing)}; train it with "
            "`make train-small` (writes pbe/assets/small) or pass a checkpoint path explicitly"
        )
    return folder


def objects_model_path() -> Path:
    """The folder of the committed objects model (`make train-objects` writes it)."""
    folder = ASSETS / "objects"
    missing = [name for name in ("pbe_config.json", "model.safetensors") if not (folder / name).is_file()]
    if missing:
        raise FileNotFoundError(
            f"the objects model is not installed: {folder} lacks {', '.join(missing)}; train it with "
            "`make train-objects` (writes pbe/assets/objects) or pass a checkpoint path explicitly"
        )
    return folder


def default_model_path() -> Path:
    """The model pbe edits with when none is named: the objects model."""
    return objects_model_path()


def demo_dir() -> Path:
    return ASSETS / "demo"


def backgrounds_dir() -> Path:
    return ASSETS / "backgrounds"
