"""The judge that scores the objects model: a small CNN, trained on its own (another architecture, seed and input
size than the model's tower, never shown the model's edits), that embeds an object so that drawings of one code
point lie close. Given an edit, it embeds the edited box and picks the candidate exemplar nearest to it.

It is trained like the tower (`pbe.recipes.objects.contrastive`) on training code points in the training styles
only; held-out code points and the reserved style are what it is then asked about. Its own ceiling is reported
beside the model's figures: the same choice made on the unedited scene (the object really pasted there).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from pbe.checkpoints.tensor_io import read_safetensors
from pbe.recipes.objects.contrastive import fit_contrastive, on_white_pixels, scene_crops
from pbe.recipes.stage_tools import save_tensors

SIZE = 48  # the judge's input side in pixels
DEFAULTS = {
    "steps": 800,
    "batch_size": 96,
    "lr": 2e-3,
    "temperature": 0.1,
    "seed": 7,
    "width": 32,
    "pairs": 10000,
}


def block(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, stride=2, padding=1),
        nn.GroupNorm(8, c_out),
        nn.GELU(),
        nn.Conv2d(c_out, c_out, 3, padding=1),
        nn.GroupNorm(8, c_out),
        nn.GELU(),
    )


class Judge(nn.Module):
    """CLIP-normalised (B, 3, 48, 48) -> (B, 128) embeddings (not normalised)."""

    def __init__(self, width: int = 32, dim: int = 128):
        super().__init__()
        self.features = nn.Sequential(block(3, width), block(width, 2 * width), block(2 * width, 4 * width))
        self.head = nn.Linear(4 * width, dim)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(pixels).mean(dim=(2, 3)))

    @torch.no_grad()
    def embed_boxes(self, images: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
        """Normalised embeddings of each image's box (images in [-1, 1])."""
        return F.normalize(self(scene_crops(images, boxes, SIZE)), dim=-1)

    @torch.no_grad()
    def embed_on_white(self, images: list[torch.Tensor]) -> torch.Tensor:
        """Normalised embeddings of uint8 (3, H, W) objects on white."""
        return F.normalize(self(on_white_pixels(images, SIZE)), dim=-1)


def judge_dataset(root: str | Path, image_size: int, seed: int):
    """The objects training data (training code points, training styles, training photos) as the judge sees it:
    scenes at ``image_size`` (the model's), exemplars at the judge's 48 px, another style's drawing where there is
    one, on white half the time."""
    from pbe.data import build_dataset

    return build_dataset(
        {
            "source": {
                "kind": "objects",
                "root": str(root),
                "num_samples": 20000,
                "seed": seed,
                "min_size": 96,
                "max_size": 128,
                "min_object_area": 0.05,
                "max_object_area": 0.5,
                "exemplar_on_white_p": 0.5,
                "exemplar_style": "other",
            },
            "augment": {"image_size": image_size, "exemplar_size": SIZE},
            "seed": seed,
        }
    )


def judge_pairs(root: str | Path, image_size: int, count: int, seed: int) -> dict:
    """``count`` training pairs drawn once (composing scenes costs more than the judge's step): CLIP-normalised
    exemplars and scene crops at 48 px, with their labels (code point names)."""
    dataset = judge_dataset(root, image_size, seed)
    exemplars, crops, labels = [], [], []
    for i in tqdm(range(count), desc="judge pairs", unit="pair", dynamic_ncols=True):
        sample = dataset[i % len(dataset)]
        exemplars.append(sample["exemplar"])
        crops.append(scene_crops(sample["image"][None], sample["box"][None], SIZE)[0])
        labels.append(sample["meta"]["label"])
    return {"exemplar": torch.stack(exemplars), "crop": torch.stack(crops), "label": labels}


def pair_batches(pairs: dict, batch_size: int, seed: int):
    """Endless shuffled batches of ``pairs``, each view flipped left-right at random."""
    generator = torch.Generator().manual_seed(seed)
    n = len(pairs["label"])
    while True:
        order = torch.randperm(n, generator=generator)
        for start in range(0, n - batch_size + 1, batch_size):
            index = order[start : start + batch_size]
            batch = {}
            for key in ("exemplar", "crop"):
                views = pairs[key][index]
                flip = torch.rand(len(index), generator=generator) < 0.5
                batch[key] = torch.where(flip[:, None, None, None], views.flip(-1), views)
            batch["label"] = [pairs["label"][i] for i in index.tolist()]
            yield batch


def train_judge(root: str | Path, out: str | Path, image_size: int = 64, **options) -> Path:
    """Train the judge on the fetched objects folder ``root``; writes ``out`` (a .safetensors file with its
    held-out retrieval figures in the metadata) and returns it."""
    from pbe.recipes.objects.tower import tower_retrieval

    opts = {**DEFAULTS, **options}
    torch.manual_seed(opts["seed"])
    judge = Judge(width=opts["width"])
    start = time.perf_counter()
    pairs = judge_pairs(root, image_size, opts["pairs"], opts["seed"] + 1000)
    fit_contrastive(
        judge,
        pair_batches(pairs, opts["batch_size"], opts["seed"]),
        opts["steps"],
        opts["lr"],
        SIZE,
        opts["temperature"],
        desc="judge",
    )
    judge.eval()
    figures = tower_retrieval(judge, root, SIZE)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = {"retrieval": json.dumps(figures), "seconds": f"{time.perf_counter() - start:.0f}"}
    meta["options"] = json.dumps(opts)
    save_tensors(out, judge.state_dict(), meta)
    return out


def load_judge(path: str | Path) -> tuple[Judge, dict]:
    state, meta = read_safetensors(Path(path))
    judge = Judge(width=json.loads(meta["options"])["width"])
    judge.load_state_dict(state)
    judge.eval()
    return judge, {k: json.loads(v) if k in ("retrieval", "options") else v for k, v in meta.items()}


def pick(judge: Judge, edited: torch.Tensor, box: torch.Tensor, candidates: list[torch.Tensor]) -> int:
    """The index of the candidate (uint8 objects on white) nearest to the edited box of ``edited`` ([-1, 1])."""
    query = judge.embed_boxes(edited.unsqueeze(0), box.unsqueeze(0))
    return int((judge.embed_on_white(candidates) @ query.T).squeeze(1).argmax())
