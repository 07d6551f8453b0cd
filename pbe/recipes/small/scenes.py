"""Held-out synthetic edits with known answers, for evaluating the small model.

Scenes come from `SyntheticSource` with seeds the training never uses, rendered directly at the model's size. Each
edit replaces one object of a target scene: the mask is the object's box extended a little into the free space
(with probability 1/2 the paper's Bezier shape inside it, as in training), and the exemplar is an object cropped from
*another* scene. Because every object's class, colour, box and outline are known, the result can be scored:
its colour in the object's core, its shape (by a classifier), what changed outside the mask.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from pbe.data.masks import Box, bezier_outline, edit_mask, extend_box, pad_box
from pbe.data.synthetic import COLOURS, SHAPES, SyntheticSource

SCENE_SEED, EXEMPLAR_SEED, MASK_SCENE_SEED = 7_001, 7_002, 7_003  # training uses data.seed 0


@dataclass
class SceneObject:
    box: Box
    colour: str
    shape: str
    alpha: np.ndarray  # (H, W) float in [0, 1]: the painted outline


@dataclass
class Scene:
    pixels: np.ndarray  # (H, W, 3) uint8
    objects: list[SceneObject]


@dataclass
class Edit:
    image: np.ndarray  # (H, W, 3) uint8, the target scene
    mask: np.ndarray  # (H, W) uint8, 255 = repaint (the user-facing convention)
    exemplar: np.ndarray  # (h, w, 3) uint8, an object crop from another scene
    target: SceneObject  # the object the mask covers
    exemplar_colour: str
    exemplar_shape: str
    mask_box: Box  # the extended box the mask lies in
    bezier: bool

    @property
    def core(self) -> np.ndarray:
        """(H, W) bool: a disk at the target box centre, radius 0.18 x side (inside every shape's outline)."""
        x0, y0, x1, y1 = self.target.box
        h, w = self.mask.shape
        ys, xs = np.mgrid[:h, :w] + 0.5
        radius = 0.18 * min(x1 - x0, y1 - y0)
        return (xs - (x0 + x1) / 2) ** 2 + (ys - (y0 + y1) / 2) ** 2 <= radius**2


def outline_alpha(shape: str, box: Box, width: int, height: int) -> np.ndarray:
    """The coverage of ``shape`` drawn in ``box`` (2x supersampled, as `paint_shape` draws it)."""
    x0, y0, x1, y1 = box
    w, h = x1 - x0, y1 - y0
    canvas = Image.new("L", (2 * w, 2 * h), 0)
    corners = SHAPES[shape]() * [2 * w, 2 * h] - 0.5
    ImageDraw.Draw(canvas).polygon([tuple(p) for p in corners], fill=255)
    alpha = np.zeros((height, width), np.float32)
    alpha[y0:y1, x0:x1] = np.asarray(canvas.reduce(2), dtype=np.float32) / 255
    return alpha


def make_source(seed: int, size: int, backgrounds: str | None, count: int = 100_000, **kw) -> SyntheticSource:
    """Square ``size`` scenes like the small model's training scenes (shapes 25-50 % of the side)."""
    options = dict(min_shapes=1, max_shapes=2, min_shape_frac=0.25, max_shape_frac=0.5) | kw
    return SyntheticSource(
        num_scenes=count,
        seed=seed,
        min_size=size,
        max_size=size,
        background_dir=backgrounds,
        photo_background_p=0.3 if backgrounds else 0.0,
        **options,
    )


def render_scene(source: SyntheticSource, index: int) -> Scene:
    pixels, boxes, labels = source.render(index)
    h, w = pixels.shape[:2]
    objects = []
    for box, label in zip(boxes, labels):
        colour, shape = label.split(" ", 1)
        objects.append(
            SceneObject(tuple(int(v) for v in box), colour, shape, outline_alpha(shape, box, w, h))
        )
    return Scene(pixels, objects)


def exemplar_crop(scene: Scene, obj: SceneObject, pad: int = 2) -> np.ndarray:
    h, w = scene.pixels.shape[:2]
    x0, y0, x1, y1 = pad_box(obj.box, w, h, pad)
    return scene.pixels[y0:y1, x0:x1].copy()


def edit_mask_for(
    obj: SceneObject, width: int, height: int, rng: np.random.Generator, ratio: float, bezier: bool
):
    extended = extend_box(obj.box, width, height, rng, ratio)
    outline = bezier_outline(obj.box, extended, rng, jitter=1) if bezier else None
    keep = edit_mask(width, height, obj.box, extended, outline).numpy()
    return ((1 - keep) * 255).astype(np.uint8), extended


def held_out_edits(
    count: int,
    size: int = 64,
    backgrounds: str | None = None,
    same_class: bool = False,
    extension_ratio: float = 0.15,
    seed: int = 0,
) -> list[Edit]:
    """``count`` edits. ``same_class=False``: the exemplar is a random object of another scene whose colour differs
    from the target's (so painting the exemplar's colour is visible); True: another instance of the target's own
    class (same colour and shape, other size and background), the setting in which copy-paste shows."""
    targets = make_source(SCENE_SEED + seed, size, backgrounds)
    pool_source = make_source(EXEMPLAR_SEED + seed, size, backgrounds)
    rng = np.random.default_rng([seed, int(same_class)])
    pool: list[tuple[Scene, SceneObject]] = []
    for i in range(max(400, 8 * count if same_class else 2 * count)):
        scene = render_scene(pool_source, i)
        pool += [(scene, o) for o in scene.objects]
    edits = []
    index = 0
    while len(edits) < count:
        scene = render_scene(targets, index)
        index += 1
        target = scene.objects[int(rng.integers(len(scene.objects)))]
        if same_class:
            choices = [
                p
                for p in pool
                if (p[1].colour, p[1].shape) == (target.colour, target.shape) and p[1].box != target.box
            ]
        else:
            choices = [p for p in pool if p[1].colour != target.colour]
        if not choices:
            continue
        ex_scene, ex_obj = choices[int(rng.integers(len(choices)))]
        bezier = bool(rng.random() < 0.5)
        mask, extended = edit_mask_for(target, size, size, rng, extension_ratio, bezier)
        edits.append(
            Edit(
                image=scene.pixels,
                mask=mask,
                exemplar=exemplar_crop(ex_scene, ex_obj),
                target=target,
                exemplar_colour=ex_obj.colour,
                exemplar_shape=ex_obj.shape,
                mask_box=extended,
                bezier=bezier,
            )
        )
    return edits


def single_object_scenes(count: int, size: int = 64, backgrounds: str | None = None, seed: int = 0):
    """(scene, exemplar) pairs for automatic masks: one object per scene, an exemplar of another colour."""
    source = make_source(MASK_SCENE_SEED + seed, size, backgrounds, min_shapes=1, max_shapes=1)
    pool_source = make_source(EXEMPLAR_SEED + seed, size, backgrounds)
    rng = np.random.default_rng([seed, 99])
    pool = [(s, o) for s in (render_scene(pool_source, i) for i in range(200)) for o in s.objects]
    pairs = []
    for i in range(count):
        scene = render_scene(source, i)
        target = scene.objects[0]
        choices = [p for p in pool if p[1].colour != target.colour]
        ex_scene, ex_obj = choices[int(rng.integers(len(choices)))]
        pairs.append((scene, exemplar_crop(ex_scene, ex_obj)))
    return pairs


def colour_rgb(name: str) -> np.ndarray:
    return np.asarray(COLOURS[name], dtype=np.float64)
