"""The Paint by Example training dataset: one source, the paper's augmentations, reproducible sample by sample.

``dataset[i]`` is a dict:

- ``image``: float (3, S, S) in [-1, 1], the square crop of the source image;
- ``mask``: float (1, S, S) in [0, 1], 1 = keep, 0 = edit (bilinear at the border, as in the original);
- ``masked_image``: ``image * mask``;
- ``exemplar``: float (3, E, E), the augmented box crop (or the exemplar the source gives: data=objects),
  CLIP-normalised (E = 224 by default);
- ``box``: float (4,), the chosen box in ``image`` pixel coordinates (x0, y0, x1, y1);
- with ``recolour_p > 0`` (not in the paper) also ``noisy_image``, float (3, S, S): ``image``, or with probability
  ``recolour_p`` a copy whose chosen object has another colour, and ``recoloured``, a bool tensor saying which;
- ``meta``: image id, label, the boxes in source pixels and every augmentation decision.

All randomness comes from numpy generators seeded by ``(seed, epoch, index, attempt)``, one per stage, so the
same seed and index give the same sample in any worker and in any order, and switching one stage off (an
ablation) leaves the other stages' draws unchanged. Unusable images are skipped with a counted warning.
"""

from __future__ import annotations

import inspect
import warnings

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import MissingMandatoryValue
from torchvision.transforms.v2 import functional as TF

from pbe.data.augment import (
    AugmentConfig,
    augment_exemplar,
    recolour_object,
    resize_image,
    sample_exemplar_params,
)
from pbe.data.masks import bezier_outline, edit_mask, extend_box, pad_box, square_crop_window
from pbe.data.objects import ObjectsSource
from pbe.data.sources import (
    CocoSource,
    JsonlSource,
    OpenImagesSource,
    SkippedSampleWarning,
    SourceImage,
    UnusableSample,
)
from pbe.data.synthetic import SyntheticSource

# a stage appended here leaves the other stages' draws as they were (SeedSequence children are numbered)
STAGES = ("box", "exemplar", "mask", "crop", "retry", "recolour")


def sample_generators(seed: int, epoch: int, index: int, attempt: int) -> dict[str, np.random.Generator]:
    """One independent generator per pipeline stage, derived from the sample's identity only."""
    children = np.random.SeedSequence([seed, epoch, index, attempt]).spawn(len(STAGES))
    return {stage: np.random.default_rng(child) for stage, child in zip(STAGES, children)}


def make_sample(
    item: SourceImage,
    config: AugmentConfig,
    rngs: dict[str, np.random.Generator],
    palette: list[tuple[float, float, float]] | None = None,
) -> dict:
    """Turn a source image with usable boxes into one training sample (see the module docstring); ``palette``: the
    source's object colours, for ``recolour_p``."""
    image = item.image
    _, height, width = image.shape
    choice = int(rngs["box"].integers(len(item.boxes)))
    box = item.boxes[choice]

    params = sample_exemplar_params(rngs["exemplar"], config)
    px0, py0, px1, py1 = pad_box(box, width, height, config.box_pad)
    given = getattr(item, "exemplar", None)  # data=objects may give its own (another style, or on white)
    exemplar = augment_exemplar(image[:, py0:py1, px0:px1] if given is None else given, params, config)

    extended = extend_box(box, width, height, rngs["mask"], config.extension_ratio)
    extended = extended if config.box_extension else box
    bezier = bool(rngs["mask"].random() < config.bezier_p)
    outline = None
    if bezier:
        outline = bezier_outline(
            box,
            extended,
            rngs["mask"],
            config.bezier_points,
            jitter=config.bezier_jitter,
            style=config.mask_style,
        )
    keep = edit_mask(width, height, box, extended, outline, style=config.mask_style)
    if config.full_mask_p > 0 and rngs["mask"].random() < config.full_mask_p:  # no draw at all when off
        keep = torch.zeros_like(keep)

    window = None
    if config.square_crop:
        window = square_crop_window(
            width, height, extended, rngs["crop"], config.crop_shrink_ratio, style=config.crop_style
        )
    wx0, wy0, wx1, wy1 = window if window is not None else (0, 0, width, height)
    size = config.image_size
    target = resize_image(image[:, wy0:wy1, wx0:wx1], size, antialias=config.antialias)
    mask = TF.resize(keep[None, wy0:wy1, wx0:wx1], [size, size], antialias=config.antialias).clamp(0, 1)
    scale = torch.tensor([size / (wx1 - wx0), size / (wy1 - wy0)] * 2)
    offset = torch.tensor([wx0, wy0] * 2, dtype=torch.float32)

    sample = {
        "image": target,
        "mask": mask,
        "masked_image": target * mask,
        "exemplar": exemplar,
        "box": (torch.tensor(box, dtype=torch.float32) - offset) * scale,
        "meta": {
            "image_id": item.image_id,
            "label": item.labels[choice],
            "source_size": torch.tensor([width, height]),
            "source_box": torch.tensor(box),
            "extended_box": torch.tensor(extended),
            "crop_box": torch.tensor([wx0, wy0, wx1, wy1]),
            "square_cropped": window is not None,
            "bezier": bezier,
            "flipped": params.flip,
            "rotated": params.angle != 0.0,
            "angle": params.angle,
            "blurred": params.blur_kernel > 0,
            "blur_kernel": params.blur_kernel,
            "elastic": params.elastic,
        },
    }
    if config.recolour_p > 0:  # no draw at all when off
        noisy, recoloured = image, bool(rngs["recolour"].random() < config.recolour_p)
        if recoloured:
            if item.masks is None:
                raise ValueError(
                    "data.augment.recolour_p > 0 needs object masks, which this source does not give "
                    "(data=synthetic does)"
                )
            noisy = recolour_object(
                image, item.masks[choice], rngs["recolour"], config.recolour_min_distance, palette
            )
        sample["noisy_image"] = resize_image(noisy[:, wy0:wy1, wx0:wx1], size, antialias=config.antialias)
        sample["recoloured"] = torch.tensor(recoloured)
    return sample


class ExemplarEditDataset(torch.utils.data.Dataset):
    """Samples for exemplar-guided inpainting from ``source`` (anything with ``len`` and ``open(i)``).

    An index whose image is unusable (unreadable, corrupt, no usable box) is replaced by another index drawn
    from the sample's own generator, with a ``SkippedSampleWarning``; ``skipped`` counts these in this process.
    Call ``set_epoch`` to get fresh augmentations each epoch.
    """

    def __init__(self, source, config: AugmentConfig | None = None, seed: int = 0, max_attempts: int = 32):
        if len(source) == 0:
            raise ValueError("source: the source is empty")
        if not (isinstance(seed, int) and seed >= 0):
            raise ValueError(f"seed must be an int >= 0, got {seed!r}")
        if max_attempts < 1:
            raise ValueError(f"max_attempts must be >= 1, got {max_attempts}")
        config = config if config is not None else AugmentConfig()
        if config.recolour_p > 0 and not getattr(source, "object_masks", False):
            raise ValueError(
                f"data.augment.recolour_p={config.recolour_p} needs a source with object masks (data=synthetic); "
                f"{type(source).__name__} gives only boxes"
            )
        self.source = source
        self.config = config
        self.palette = getattr(source, "object_colours", None)  # for recolour_p: colours objects really have
        self.seed, self.max_attempts = seed, max_attempts
        self.epoch = 0
        self.skipped = 0

    def set_epoch(self, epoch: int) -> None:
        if not (isinstance(epoch, int) and epoch >= 0):
            raise ValueError(f"epoch must be an int >= 0, got {epoch!r}")
        self.epoch = epoch
        if hasattr(self.source, "set_epoch"):  # data=objects composes new scenes each epoch
            self.source.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, index: int) -> dict:
        count = len(self)
        if not -count <= index < count:
            raise IndexError(f"index {index} out of range for {count} samples")
        index %= count
        candidate = index
        for attempt in range(self.max_attempts):
            rngs = sample_generators(self.seed, self.epoch, index, attempt)
            try:
                item = self.source.open(candidate)
            except UnusableSample as err:
                self.skipped += 1
                warnings.warn(
                    f"skipped sample {candidate}: {err} ({self.skipped} skipped so far in this process)",
                    SkippedSampleWarning,
                    stacklevel=2,
                )
                candidate = int(rngs["retry"].integers(count))
                continue
            sample = make_sample(item, self.config, rngs, self.palette)
            sample["meta"].update(index=index, source_index=candidate, attempts=attempt + 1)
            return sample
        raise RuntimeError(
            f"{self.max_attempts} unusable images in a row from index {index}; is the data readable?"
        )


SOURCES = {
    "synthetic": SyntheticSource,
    "openimages": OpenImagesSource,
    "coco": CocoSource,
    "jsonl": JsonlSource,
    "objects": ObjectsSource,
}


def build_source(options: dict):
    """A source from a mapping whose ``kind`` names an entry of ``SOURCES``; the other keys are its arguments."""
    options = dict(options)
    kind = options.pop("kind", None)
    if kind not in SOURCES:
        raise ValueError(f"source.kind must be one of {sorted(SOURCES)}, got {kind!r}")
    make = SOURCES[kind]
    valid = list(inspect.signature(make).parameters)
    unknown = sorted(set(options) - set(valid))
    if unknown:
        raise ValueError(f"source ({kind}): unknown keys {unknown}; valid keys are {valid}")
    return make(**options)


def build_dataset(cfg: DictConfig | dict) -> ExemplarEditDataset:
    """The dataset described by a Hydra ``data`` node: ``source`` (with ``kind``), ``augment``, ``seed``."""
    if isinstance(cfg, DictConfig):
        try:
            cfg = OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)
        except MissingMandatoryValue as err:
            raise ValueError(
                f"data: a required value is not set ({err.full_key}); give it as an override"
            ) from err
    valid = ["source", "augment", "seed", "max_attempts"]
    unknown = sorted(set(cfg) - set(valid))
    if unknown:
        raise ValueError(f"data: unknown keys {unknown}; valid keys are {valid}")
    if "source" not in cfg:
        raise ValueError(f"data: missing 'source' (a mapping with kind in {sorted(SOURCES)})")
    augment = AugmentConfig.from_dict(cfg.get("augment") or {})  # checked before a source reads its files
    return ExemplarEditDataset(
        build_source(cfg["source"]),
        augment,
        seed=cfg.get("seed", 0),
        max_attempts=cfg.get("max_attempts", 32),
    )
