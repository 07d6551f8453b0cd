"""Scores of an objects model on held-out edits, judged by `pbe.recipes.objects.judge` (not the model's tower).

An edit is a held-out photo crop (never a training photo) with a held-out code point pasted in it, whose box is
masked. Each scene is edited three times, with three exemplars (objects on white, `heldout_scenes` candidates):
the scene's own code point, another code point of the *same* dominant colour, and one of *another* colour.

- identity: for each pair (own, same-colour) and (own, other-colour), each of the two edits is shown to the judge
  with both exemplars as candidates; a trial is right when the judge picks the exemplar that was used. Chance 0.5.
  The judge's ceiling is the same choice made on the unedited scene (the object really there, for the own side);
- colour error: RGB distance (0-255) between the mean colour of the edit's box core (its middle 60 %) and the mean
  colour of the exemplar object (its opaque pixels), with the exemplar and with the unconditional vector; ratio =
  conditional / unconditional (lower: the exemplar decides the colour);
- copy-paste: 1 - mean |difference| (0-1, at 32 px) between the edit's box and the exemplar, vs the same between an
  untouched different drawing of that code point (another style, on white) and the exemplar: a model that copies
  pixels scores far above that reference;
- background PSNR: outside the box (grown by 2 px), result vs source, without paste-back;
- mask IoU: `generate_mask` on the unedited scene with the other-colour exemplar, vs the pasted object's alpha > 0.5.
Every mean comes with its standard error (std / sqrt(n)).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from tqdm import tqdm

from pbe.pipeline import PaintByExamplePipeline

ROLES = ("same_object", "same_colour", "other_colour")


@dataclass
class Settings:
    steps: int = 25
    guidance: float = 5.0
    sampler: str = "ddim"
    seed: int = 0
    batch: int = 50


@dataclass
class EditSet:
    """Scenes with their three exemplars (on white) and the model's results, (N, H, W, 3) in [0, 1] per role."""

    scenes: list
    exemplars: dict[str, list[torch.Tensor]]
    results: dict[str, np.ndarray] = field(default_factory=dict)


def mean_se(values) -> dict:
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if len(v) == 0:
        return {"mean": float("nan"), "se": float("nan"), "n": 0}
    se = float(v.std(ddof=1) / math.sqrt(len(v))) if len(v) > 1 else float("nan")
    return {"mean": float(v.mean()), "se": se, "n": int(len(v))}


def complete_scenes(scenes: list) -> list:
    """Scenes that have all three candidate roles (a rare colour may have no same-colour partner)."""
    return [s for s in scenes if {c.role for c in s.candidates} >= set(ROLES)]


def edit_set(root, n: int, styles: list[str] | None, size: int, seed: int) -> EditSet:
    from pbe.data.objects import heldout_scenes

    scenes = complete_scenes(heldout_scenes(root, 2 * n, seed=seed, styles=styles, size=size))[:n]
    exemplars = {
        role: [next(c for c in s.candidates if c.role == role).image for s in scenes] for role in ROLES
    }
    return EditSet(scenes, exemplars)


def pil(t: torch.Tensor) -> Image.Image:
    return Image.fromarray(t.permute(1, 2, 0).numpy())


def mask_pil(scene) -> Image.Image:
    return Image.fromarray(((1 - scene.mask.numpy()) * 255).astype(np.uint8))


def generate(
    pipe: PaintByExamplePipeline,
    scenes,
    exemplars,
    settings: Settings,
    unconditional: bool = False,
    desc="edits",
) -> np.ndarray:
    """(N, H, W, 3) results in [0, 1] without paste-back; batch k uses seed settings.seed + k (the same noise for
    every exemplar, so the exemplar is the only difference between the roles)."""
    out = []
    for k, start in enumerate(
        tqdm(range(0, len(scenes), settings.batch), desc=desc, leave=False, unit="batch")
    ):
        chunk = scenes[start : start + settings.batch]
        kwargs = dict(
            image=[pil(s.image) for s in chunk],
            mask_image=[mask_pil(s) for s in chunk],
            example_image=[pil(e) for e in exemplars[start : start + settings.batch]],
            num_inference_steps=settings.steps,
            guidance_scale=1.0 if unconditional else settings.guidance,
            sampler=settings.sampler,
            generator=torch.Generator().manual_seed(settings.seed + k),
            output_type="np",
            progress=False,
        )
        if unconditional:
            with unconditional_encoder(pipe):
                out.append(pipe(**kwargs).images)
        else:
            out.append(pipe(**kwargs).images)
    return np.concatenate(out)


class unconditional_encoder:
    """Within the block, the pipeline conditions on the model's learned unconditional vector."""

    def __init__(self, pipe):
        self.pipe = pipe

    def __enter__(self):
        pipe = self.pipe
        self.saved = pipe.__dict__.get("_encode_exemplars")
        pipe._encode_exemplars = lambda x: pipe.model.encoder.unconditional(x.shape[0]).to(pipe.dtype)

    def __exit__(self, *exc):
        del self.pipe._encode_exemplars
        if self.saved is not None:
            self.pipe._encode_exemplars = self.saved


def as_model_input(result: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(result).permute(2, 0, 1).float() * 2 - 1


def box_tensor(scene) -> torch.Tensor:
    return torch.tensor(scene.box, dtype=torch.float32)


def identity_trials(judge, edits: EditSet) -> dict:
    """Judge's picks per pair kind as mean ± se (`identity_trial_values`)."""
    return {k: mean_se(v) for k, v in identity_trial_values(judge, edits).items()}


def identity_trial_values(judge, edits: EditSet) -> dict[str, list[int]]:
    """Judge's picks per pair kind; 1 = right, in a fixed order (two per scene: own exemplar used, then the other),
    so two models' trials on one edit set pair up. Also the judge's ceiling on the unedited scenes."""
    from pbe.recipes.objects.judge import pick

    trials = {"same_colour": [], "other_colour": [], "ceiling_same_colour": [], "ceiling_other_colour": []}
    for i, scene in enumerate(edits.scenes):
        for other in ("same_colour", "other_colour"):
            pair = [edits.exemplars["same_object"][i], edits.exemplars[other][i]]
            for used, role in enumerate(("same_object", other)):
                edited = as_model_input(edits.results[role][i])
                trials[other].append(int(pick(judge, edited, box_tensor(scene), pair) == used))
            source = scene.image.float() / 127.5 - 1
            trials[f"ceiling_{other}"].append(int(pick(judge, source, box_tensor(scene), pair) == 0))
    return trials


def object_colour(image: torch.Tensor) -> np.ndarray:
    """Mean RGB of an object on white (pixels not near-white)."""
    rgb = image.permute(1, 2, 0).numpy().reshape(-1, 3).astype(np.float64)
    keep = (rgb < 235).any(axis=1)
    return rgb[keep].mean(0) if keep.any() else rgb.mean(0)


def box_core_colour(result: np.ndarray, box, frac: float = 0.6) -> np.ndarray:
    x0, y0, x1, y1 = box
    w, h = x1 - x0, y1 - y0
    dx, dy = int(round(w * (1 - frac) / 2)), int(round(h * (1 - frac) / 2))
    core = result[y0 + dy : max(y1 - dy, y0 + dy + 1), x0 + dx : max(x1 - dx, x0 + dx + 1)]
    return core.reshape(-1, 3).mean(0) * 255


def colour_errors(results: np.ndarray, scenes, exemplars) -> np.ndarray:
    return np.array(
        [
            np.linalg.norm(box_core_colour(r, s.box) - object_colour(e))
            for r, s, e in zip(results, scenes, exemplars)
        ]
    )


def resized(x: np.ndarray | torch.Tensor, size: int = 32) -> torch.Tensor:
    t = torch.as_tensor(x).float()
    if t.shape[-1] == 3:
        t = t.permute(2, 0, 1)
    return F.interpolate(t.unsqueeze(0), size=(size, size), mode="bilinear", antialias=True)[0]


def box_crop(result: np.ndarray, box) -> np.ndarray:
    x0, y0, x1, y1 = box
    return result[y0:y1, x0:x1]


def similarity(a: torch.Tensor, b: torch.Tensor) -> float:
    return 1 - float((a - b).abs().mean())


def copy_paste(edits: EditSet) -> dict:
    """Similarity of the own-exemplar edits' boxes to the exemplar vs an untouched other drawing of it."""
    edit_sim, ref_sim = copy_paste_values(edits)
    return {"edit": mean_se(edit_sim), "other_drawing": mean_se(ref_sim)}


def copy_paste_values(edits: EditSet) -> tuple[list[float], list[float]]:
    """Per scene with a second drawing of its code point: (edit vs exemplar, other drawing vs exemplar)."""
    edit_sim, ref_sim = [], []
    for i, scene in enumerate(edits.scenes):
        own = [c for c in scene.candidates if c.role == "same_object"]
        if len(own) < 2:
            continue
        exemplar = resized(own[0].image) / 255
        edit_sim.append(similarity(resized(box_crop(edits.results["same_object"][i], scene.box)), exemplar))
        ref_sim.append(similarity(resized(own[1].image) / 255, exemplar))
    return edit_sim, ref_sim


def background_psnr(results: np.ndarray, scenes, margin: int = 2) -> dict:
    values = []
    for r, s in zip(results, scenes):
        keep = np.ones(r.shape[:2], bool)
        x0, y0, x1, y1 = s.box
        keep[max(0, y0 - margin) : y1 + margin, max(0, x0 - margin) : x1 + margin] = False
        source = s.image.permute(1, 2, 0).numpy() / 255
        mse = float(((r - source)[keep] ** 2).mean())
        values.append(10 * math.log10(1 / max(mse, 1e-10)))
    return mean_se(values)


def mask_iou(pipe: PaintByExamplePipeline, edits: EditSet, count: int, seed: int = 0) -> dict:
    values = []
    for i, scene in enumerate(tqdm(edits.scenes[:count], desc="generate_mask", leave=False)):
        mask = (
            pipe.generate_mask(
                image=pil(scene.image),
                example_image=pil(edits.exemplars["other_colour"][i]),
                generator=torch.Generator().manual_seed(seed + i),
                output_type="pt",
                progress=False,
            )[0, 0].numpy()
            > 0.5
        )
        truth = scene.coverage.numpy() > 0.5
        union = (mask | truth).sum()
        values.append(float((mask & truth).sum() / union) if union else float("nan"))
    return mean_se(values)


def score(pipe, judge, edits: EditSet, settings: Settings, mask_scenes: int = 0, full: bool = True) -> dict:
    """Every figure of the module docstring for one model on one edit set (results are kept in ``edits``)."""
    for role in ROLES:
        edits.results[role] = generate(pipe, edits.scenes, edits.exemplars[role], settings, desc=role)
    scores = {"identity": identity_trials(judge, edits), "edits": len(edits.scenes)}
    if not full:
        return scores
    uncond = generate(
        pipe, edits.scenes, edits.exemplars["same_object"], settings, True, desc="unconditional"
    )
    cond_err = colour_errors(edits.results["same_object"], edits.scenes, edits.exemplars["same_object"])
    uncond_err = colour_errors(uncond, edits.scenes, edits.exemplars["same_object"])
    scores["colour"] = {
        "exemplar": mean_se(cond_err),
        "unconditional": mean_se(uncond_err),
        "ratio": float(cond_err.mean() / uncond_err.mean()),
    }
    scores["copy_paste"] = copy_paste(edits)
    scores["background_psnr"] = background_psnr(edits.results["same_object"], edits.scenes)
    if mask_scenes:
        scores["mask_iou"] = mask_iou(pipe, edits, mask_scenes, settings.seed)
    return scores
