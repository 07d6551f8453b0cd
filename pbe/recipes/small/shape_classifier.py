"""A small CNN that tells the six synthetic shapes apart, to judge what the small model painted.

It sees what the report will show it: the crop of a scene at an object's box extended a little into the free space
(a mask box), resized to 32x32, on the same textured and photo backgrounds. Trained on scenes of its own seed (never
the held-out edits' scenes), with random blur so that the autoencoder's softness does not fool it. Its accuracy on
held-out crops is reported next to the model's shape accuracy.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from pbe.data.masks import extend_box
from pbe.data.synthetic import SHAPES
from pbe.recipes.small.scenes import make_source, render_scene

SHAPE_NAMES = sorted(SHAPES)
CLASSIFIER_SEED, CLASSIFIER_TEST_SEED = 7_010, 7_011
CROP = 32


def crop_tensor(pixels: np.ndarray, box) -> torch.Tensor:
    """(3, 32, 32) float in [0, 1]: the box of an (H, W, 3) uint8 or [0, 1] float image, resized."""
    x0, y0, x1, y1 = box
    region = torch.as_tensor(np.ascontiguousarray(pixels[y0:y1, x0:x1])).permute(2, 0, 1).float()
    if pixels.dtype == np.uint8:
        region = region / 255
    return F.interpolate(
        region[None], size=(CROP, CROP), mode="bilinear", antialias=True, align_corners=False
    )[0]


def labelled_crops(
    seed: int, count: int, size: int, backgrounds: str | None
) -> tuple[torch.Tensor, torch.Tensor]:
    source = make_source(seed, size, backgrounds)
    rng = np.random.default_rng(seed)
    crops, labels = [], []
    index = 0
    while len(crops) < count:
        scene = render_scene(source, index)
        index += 1
        for obj in scene.objects:
            box = extend_box(obj.box, size, size, rng, float(rng.uniform(0.0, 0.3)))
            crops.append(crop_tensor(scene.pixels, box))
            labels.append(SHAPE_NAMES.index(obj.shape))
    return torch.stack(crops[:count]), torch.tensor(labels[:count])


class ShapeClassifier(nn.Module):
    def __init__(self, width: int = 16):
        super().__init__()
        w = width
        self.features = nn.Sequential(
            nn.Conv2d(3, w, 3, padding=1), nn.GroupNorm(4, w), nn.SiLU(), nn.MaxPool2d(2),
            nn.Conv2d(w, 2 * w, 3, padding=1), nn.GroupNorm(8, 2 * w), nn.SiLU(), nn.MaxPool2d(2),
            nn.Conv2d(2 * w, 4 * w, 3, padding=1), nn.GroupNorm(8, 4 * w), nn.SiLU(), nn.MaxPool2d(2),
            nn.Conv2d(4 * w, 4 * w, 3, padding=1), nn.GroupNorm(8, 4 * w), nn.SiLU(),
        )  # fmt: skip
        self.head = nn.Linear(4 * w, len(SHAPE_NAMES))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, 3, 32, 32) in [0, 1] -> logits (B, 6)."""
        return self.head(self.features(x * 2 - 1).mean(dim=(2, 3)))

    @torch.no_grad()
    def predict(self, x: torch.Tensor) -> torch.Tensor:
        self.eval()
        return torch.cat([self(chunk).argmax(1) for chunk in x.split(256)])


def random_blur(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Half of the crops get a 3x3 box blur, a quarter a 5x5 one: the autoencoder's softness."""
    out = x.clone()
    pick = torch.rand(x.shape[0], generator=generator)
    for kernel, chosen in ((3, (pick >= 0.25) & (pick < 0.75)), (5, pick >= 0.75)):
        if chosen.any():
            out[chosen] = F.avg_pool2d(
                x[chosen], kernel, stride=1, padding=kernel // 2, count_include_pad=False
            )
    return out


def train_shape_classifier(
    size: int = 64, backgrounds: str | None = None, count: int = 4000, steps: int = 500, seed: int = 0
) -> tuple[ShapeClassifier, float]:
    """A classifier and its accuracy on 600 held-out crops (of scenes from another seed)."""
    torch.manual_seed(seed)
    crops, labels = labelled_crops(CLASSIFIER_SEED, count, size, backgrounds)
    test_crops, test_labels = labelled_crops(CLASSIFIER_TEST_SEED, 600, size, backgrounds)
    model = ShapeClassifier()
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=2e-3, total_steps=steps)
    generator = torch.Generator().manual_seed(seed)
    model.train()
    for _ in tqdm(range(steps), desc="shape classifier", unit="step", dynamic_ncols=True, leave=False):
        idx = torch.randint(0, count, (64,), generator=generator)
        x = random_blur(crops[idx], generator)
        flip = torch.rand(64, generator=generator) < 0.5
        x[flip] = x[flip].flip(-1)  # every shape is left-right symmetric
        loss = F.cross_entropy(model(x), labels[idx])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
    accuracy = (model.predict(test_crops) == test_labels).float().mean().item()
    return model.eval(), accuracy


def cached_shape_classifier(cache: str | Path | None, **kwargs) -> tuple[ShapeClassifier, float]:
    """`train_shape_classifier(**kwargs)`, kept in `cache` (a .pt file with its weights and accuracy) for reuse."""
    path = Path(cache) if cache else None
    key = json.dumps(kwargs, sort_keys=True)
    if path is not None and path.is_file():
        saved = torch.load(path, weights_only=True)
        if saved.get("key") == key:
            model = ShapeClassifier()
            model.load_state_dict(saved["state"])
            return model.eval(), float(saved["accuracy"])
    model, accuracy = train_shape_classifier(**kwargs)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        torch.save({"key": key, "state": model.state_dict(), "accuracy": accuracy}, tmp)
        tmp.replace(path)
    return model, accuracy
