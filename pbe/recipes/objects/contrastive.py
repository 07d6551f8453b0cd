"""Contrastive training on code points, shared by the objects model's vision tower and the judge that scores it.

A positive pair is what the objects data gives for one sample: the exemplar (another style's drawing of the code
point where it has one, on white or cropped from a scene, with the paper's exemplar augmentation) and the object as
it was pasted into the scene (the crop of its box). The loss is InfoNCE in both directions over the batch, with
every other sample of the same code point masked out of the negatives (a batch rarely holds two).
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from pbe.data.augment import clip_normalize


def scene_crops(images: torch.Tensor, boxes: torch.Tensor, size: int) -> torch.Tensor:
    """The box of each image ([-1, 1], (B, 3, S, S)), resized to ``size`` and CLIP-normalised."""
    out = []
    for image, box in zip(images, boxes):
        x0, y0, x1, y1 = (int(round(float(v))) for v in box)
        x1, y1 = max(x1, x0 + 1), max(y1, y0 + 1)
        crop = (image[:, y0:y1, x0:x1].unsqueeze(0) + 1) / 2
        crop = F.interpolate(crop, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
        out.append(clip_normalize(crop[0].clamp(0, 1)))
    return torch.stack(out)


def info_nce(a: torch.Tensor, b: torch.Tensor, labels: list[str], temperature: float) -> torch.Tensor:
    """Symmetric InfoNCE of normalised embeddings a[i] <-> b[i]; pairs of the same label are not negatives."""
    logits = a @ b.T / temperature
    same = torch.tensor([[x == y for y in labels] for x in labels])
    logits = logits.masked_fill(same & ~torch.eye(len(labels), dtype=torch.bool), float("-inf"))
    target = torch.arange(len(labels))
    return (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2


def fit_contrastive(
    embed: nn.Module,
    stream,
    steps: int,
    lr: float,
    size: int,
    temperature: float = 0.1,
    desc: str = "contrastive",
) -> float:
    """Train ``embed`` (CLIP-normalised (B, 3, size, size) -> (B, D)) on ``stream``'s batches (``exemplar``,
    ``label`` and either ``crop`` or ``image`` + ``box``); returns the last loss. AdamW, warm-up then cosine decay
    to 0."""
    params = [p for p in embed.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=0.05)
    warmup = max(1, steps // 20)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min(1.0, (s + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * min(s / steps, 1.0)))
    )
    embed.train()
    bar = tqdm(range(steps), desc=desc, unit="step", dynamic_ncols=True)
    loss = torch.tensor(0.0)
    for _ in bar:
        batch = next(stream)
        exemplars = batch["exemplar"]
        if exemplars.shape[-1] != size:
            exemplars = F.interpolate(exemplars, size=(size, size), mode="bilinear", antialias=True)
        crops = batch["crop"] if "crop" in batch else scene_crops(batch["image"], batch["box"], size)
        views = torch.cat([exemplars, crops])
        z = F.normalize(embed(views).float(), dim=-1)
        n = exemplars.shape[0]
        loss = info_nce(z[:n], z[n:], batch["label"], temperature)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        schedule.step()
        bar.set_postfix(loss=f"{loss.item():.3f}")
    embed.eval()
    return loss.item()


def on_white_pixels(images: list[torch.Tensor], size: int) -> torch.Tensor:
    """uint8 (3, H, W) images -> CLIP-normalised (B, 3, size, size)."""
    out = []
    for image in images:
        x = F.interpolate(
            image.float().unsqueeze(0) / 255, size=(size, size), mode="bilinear", antialias=True
        )
        out.append(clip_normalize(x[0].clamp(0, 1)))
    return torch.stack(out)


@torch.no_grad()
def retrieval_top1(embed, root, size: int, query_styles: list[str], gallery_styles: list[str]) -> dict:
    """Held-out code points: each drawing in a query style finds its code point among all held-out code points'
    drawings in each gallery style (another style than its own): top-1 accuracy, its standard error and the
    number of queries. Code points without both drawings are left out."""
    from pbe.data.objects import HeldoutFiles, on_white, read_manifest

    manifest = read_manifest(root, key="root")
    files = HeldoutFiles(manifest, sorted(set(query_styles) | set(gallery_styles)), "heldout", photo_side=64)
    hits = []
    for gallery_style in gallery_styles:
        gallery = [
            (cp, d) for cp in files.codepoints for d in files.by_codepoint[cp] if d.style == gallery_style
        ]
        if len(gallery) < 2:
            continue
        g = F.normalize(embed(on_white_pixels([on_white(files.cutout(d)) for _, d in gallery], size)), dim=-1)
        for query_style in query_styles:
            if query_style == gallery_style:
                continue
            queries = [
                (cp, d)
                for cp in files.codepoints
                for d in files.by_codepoint[cp]
                if d.style == query_style and any(c == cp for c, _ in gallery)
            ]
            if not queries:
                continue
            q = F.normalize(
                embed(on_white_pixels([on_white(files.cutout(d)) for _, d in queries], size)), dim=-1
            )
            best = (q @ g.T).argmax(1).tolist()
            hits += [gallery[j][0] == cp for j, (cp, _) in zip(best, queries)]
    if not hits:
        return {"top1": float("nan"), "se": float("nan"), "n": 0, "chance": float("nan")}
    p = float(np.mean(hits))
    return {
        "top1": p,
        "se": math.sqrt(p * (1 - p) / len(hits)),
        "n": len(hits),
        "chance": 1 / len(files.codepoints),
    }
