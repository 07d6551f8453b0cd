"""Scores of a small model on held-out synthetic edits (`pbe.recipes.small.scenes`), used by `python -m pbe.report small`.

- colour error: RGB distance (0-255 scale) between the mean colour of the result in the replaced object's core and
  the exemplar object's colour; measured with the exemplar, with the unconditional vector and with a random other
  exemplar (of another colour) as the conditioning, always against the colour of the edit's own exemplar;
- shape accuracy: the shape classifier's verdict on the result's mask box vs the exemplar's shape (chance 1/6);
- background change: mean absolute difference (0-255) outside the mask (dilated by 2 px), without paste-back;
- copy-paste similarity: on edits whose exemplar is another instance of the target's own class, 1 - mean absolute
  difference between the result's mask box and the exemplar crop (both 32x32), vs the same for the untouched source
  (another instance of the class: what a non-copying answer looks like);
- automatic-mask IoU: `pipe.generate_mask` on one-object scenes with an exemplar of another colour, vs the object.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from pbe.assets import backgrounds_dir
from pbe.pipeline import PaintByExamplePipeline
from pbe.recipes.small.scenes import Edit, colour_rgb, held_out_edits, single_object_scenes
from pbe.recipes.small.shape_classifier import SHAPE_NAMES, crop_tensor

STEPS, GUIDANCE, SAMPLER = 25, 5.0, "ddim"


@dataclass
class GenerationSettings:
    steps: int = STEPS
    guidance: float = GUIDANCE
    sampler: str = SAMPLER
    seed: int = 0
    batch: int = 50


class UnconditionalPipeline(PaintByExamplePipeline):
    """The same model, conditioned on its learned unconditional vector instead of the exemplar."""

    def _encode_exemplars(self, exemplars: torch.Tensor) -> torch.Tensor:
        return self.model.encoder.unconditional(exemplars.shape[0]).to(self.dtype)


def load_pipeline(path, unconditional: bool = False) -> PaintByExamplePipeline:
    cls = UnconditionalPipeline if unconditional else PaintByExamplePipeline
    return cls.from_pretrained(path, torch_dtype=torch.float32, device="cpu")


def generate(
    pipe: PaintByExamplePipeline,
    edits: list[Edit],
    exemplars: list[np.ndarray] | None = None,
    settings: GenerationSettings | None = None,
    desc: str = "edits",
) -> np.ndarray:
    """(N, H, W, 3) float results in [0, 1], no paste-back; batch k uses seed `settings.seed + k`."""
    s = settings or GenerationSettings()
    exemplars = exemplars if exemplars is not None else [e.exemplar for e in edits]
    guidance = 1.0 if isinstance(pipe, UnconditionalPipeline) else s.guidance  # cond == uncond: no CFG needed
    out = []
    starts = range(0, len(edits), s.batch)
    for k, start in enumerate(tqdm(starts, desc=desc, unit="batch", dynamic_ncols=True, leave=False)):
        chunk = edits[start : start + s.batch]
        result = pipe(
            image=[e.image for e in chunk],
            mask_image=[e.mask for e in chunk],
            example_image=exemplars[start : start + s.batch],
            num_inference_steps=s.steps,
            guidance_scale=guidance,
            sampler=s.sampler,
            generator=torch.Generator().manual_seed(s.seed + k),
            output_type="np",
            progress=False,
        )
        out.append(result.images)
    return np.concatenate(out)


def colour_errors(results: np.ndarray, edits: list[Edit]) -> np.ndarray:
    """Per edit: |mean colour in the target's core - the exemplar's colour| (RGB, 0-255)."""
    errors = []
    for result, edit in zip(results, edits):
        mean = (result[edit.core] * 255).mean(axis=0)
        errors.append(np.linalg.norm(mean - colour_rgb(edit.exemplar_colour)))
    return np.asarray(errors)


def shape_predictions(classifier, results: np.ndarray, edits: list[Edit]) -> list[str]:
    crops = torch.stack([crop_tensor(r.astype(np.float32), e.mask_box) for r, e in zip(results, edits)])
    return [SHAPE_NAMES[i] for i in classifier.predict(crops).tolist()]


def shape_hits(classifier, results: np.ndarray, edits: list[Edit]) -> np.ndarray:
    """Per edit: 1.0 where the classifier sees the exemplar's shape in the result's mask box, else 0.0."""
    predicted = shape_predictions(classifier, results, edits)
    return np.asarray([p == e.exemplar_shape for p, e in zip(predicted, edits)], dtype=np.float64)


def shape_accuracy(classifier, results: np.ndarray, edits: list[Edit]) -> float:
    return float(shape_hits(classifier, results, edits).mean())


def outside_mask(edit: Edit, margin: int = 2) -> np.ndarray:
    mask = torch.from_numpy(edit.mask > 127).float()[None, None]
    grown = F.max_pool2d(mask, 2 * margin + 1, stride=1, padding=margin)[0, 0] > 0
    return ~grown.numpy()


def background_change(results: np.ndarray, edits: list[Edit]) -> float:
    """Mean |result - source| (0-255) outside the mask (dilated by 2 px), averaged over edits."""
    values = []
    for result, edit in zip(results, edits):
        keep = outside_mask(edit)
        values.append(np.abs(result[keep] * 255 - edit.image[keep].astype(np.float64)).mean())
    return float(np.mean(values))


def similarity_to_exemplar(images: np.ndarray, edits: list[Edit]) -> float:
    """1 - mean |mask-box crop - exemplar crop| (both 32x32, [0, 1]), averaged over edits."""
    values = []
    for image, edit in zip(images, edits):
        pixels = image.astype(np.float32) if image.dtype != np.uint8 else image
        crop = crop_tensor(pixels, edit.mask_box)
        h, w = edit.exemplar.shape[:2]
        exemplar = crop_tensor(edit.exemplar, (0, 0, w, h))
        values.append(1.0 - (crop - exemplar).abs().mean().item())
    return float(np.mean(values))


# generate_mask's options beyond DiffEdit's rule, scored too (each scene with the same noise draws as the default)
MASK_OPTIONS = {
    "bilinear_one_region": {"upsample": "bilinear", "single_region": True},
    "guided": {"upsample": "guided"},
    "guided_one_region": {"upsample": "guided", "single_region": True},
}


def scene_masks(pipe: PaintByExamplePipeline, scene, exemplar, seed: int) -> dict[str, np.ndarray]:
    """generate_mask's boolean masks of one scene: "default" (DiffEdit's rule) and each of MASK_OPTIONS, every one
    from the same noise draws (a generator seeded with `seed`)."""
    out = {}
    for name, options in {"default": {}, **MASK_OPTIONS}.items():
        generator = torch.Generator().manual_seed(seed)
        masks = pipe.generate_mask(
            scene.pixels, exemplar, generator=generator, output_type="pt", progress=False, **options
        )
        out[name] = masks[0, 0].numpy() > 0.5
    return out


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max(1, (a | b).sum()))


def mask_iou(pipe: PaintByExamplePipeline, count: int, backgrounds: str | None, seed: int = 0) -> dict:
    """Mean IoU of `generate_mask` with the object's outline and with its box, on one-object scenes; also the
    outline IoU with each of MASK_OPTIONS (`iou_object_<name>`)."""
    pairs = single_object_scenes(count, backgrounds=backgrounds, seed=seed)
    scores = {name: [] for name in ("default", *MASK_OPTIONS)}
    box_iou = []
    for k, (scene, exemplar) in enumerate(tqdm(pairs, desc="generate_mask", leave=False, dynamic_ncols=True)):
        obj = scene.objects[0]
        outline = obj.alpha > 0.5
        box = np.zeros_like(outline)
        x0, y0, x1, y1 = obj.box
        box[y0:y1, x0:x1] = True
        masks = scene_masks(pipe, scene, exemplar, seed + k)
        for name, mask in masks.items():
            scores[name].append(iou(mask, outline))
        box_iou.append(iou(masks["default"], box))
    return {
        "scenes": count,
        "iou_object": float(np.mean(scores.pop("default"))),
        **{f"iou_object_{name}": float(np.mean(values)) for name, values in scores.items()},
        "iou_box": float(np.mean(box_iou)),
    }


def other_exemplars(edits: list[Edit], seed: int = 0) -> tuple[list[np.ndarray], list[str]]:
    """For each edit, the exemplar of another edit whose colour differs (a fixed, seeded pairing)."""
    rng = np.random.default_rng(seed + 17)
    out, colours = [], []
    for edit in edits:
        while True:
            other = edits[int(rng.integers(len(edits)))]
            if other.exemplar_colour != edit.exemplar_colour:
                break
        out.append(other.exemplar)
        colours.append(other.exemplar_colour)
    return out, colours


def quick_colour_check(model_dir, count: int = 32) -> dict:
    """Colour error with the exemplar vs with the unconditional vector on `count` held-out edits (the recipe's
    summary; the full report is `python -m pbe.report small`)."""
    edits = held_out_edits(count, backgrounds=str(backgrounds_dir()))
    settings = GenerationSettings(steps=20, batch=count)
    cond = colour_errors(generate(load_pipeline(model_dir), edits, settings=settings), edits).mean()
    uncond_results = generate(load_pipeline(model_dir, unconditional=True), edits, settings=settings)
    uncond = colour_errors(uncond_results, edits).mean()
    return {"edits": count, "exemplar": float(cond), "uncond": float(uncond), "ratio": float(cond / uncond)}
