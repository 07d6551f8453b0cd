"""The training options of `PaintByExampleModule` as small dataclasses, each checked on construction: the
objective (`objective.*`), the optimizer and lr schedule (`optim.*`), EMA (`ema.*`) and the non-finite guard
(`guard.*`); `configs/train.yaml` documents each key."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

CFG_DROPOUT_MODES = ("batch", "sample")
LR_DECAYS = ("constant", "cosine")


@dataclass
class ObjectiveConfig:
    cfg_dropout: float = 0.2  # probability of training on the unconditional vector
    cfg_dropout_mode: str = "batch"  # "batch": one draw per step (original); "sample": one per sample
    # Not in the paper (1.0 = its plain MSE): weight of the latent positions inside the edit region relative to
    # those outside; the loss is the weighted mean, so its scale does not change with the mask's area.
    mask_loss_weight: float = 1.0
    # Not in the paper (1.0 = its t ~ U{0..T-1}): t = floor(T * (1 - (1 - u)^power)), u ~ U[0, 1), so that
    # P(t >= x T) = (1 - x)^(1 / power); power > 1 favours the high-noise steps, where the edit region's content
    # (the exemplar's colour and shape) is not yet readable from z_t and must come from the conditioning.
    timestep_power: float = 1.0
    # Not in the paper; used only on batches with `noisy_image` (data.augment.recolour_p > 0): a recoloured sample
    # whose t >= this and whose exemplar is not dropped is noised from `noisy_image` (its object in another colour)
    # while the target stays `image`: eps* = (z_t - sqrt(a) z0) / sqrt(1 - a). Below this t the correction
    # sqrt(a / (1 - a)) (z_noisy - z0) grows large (the colour is readable from z_t), so those samples stay plain.
    recolour_min_t: int = 300

    def __post_init__(self):
        if not (isinstance(self.recolour_min_t, int) and self.recolour_min_t >= 0):
            raise ValueError(f"objective.recolour_min_t must be an int >= 0, got {self.recolour_min_t!r}")
        if not (math.isfinite(self.timestep_power) and self.timestep_power > 0):
            raise ValueError(f"objective.timestep_power must be > 0 and finite, got {self.timestep_power!r}")
        if not (math.isfinite(self.mask_loss_weight) and self.mask_loss_weight > 0):
            raise ValueError(
                f"objective.mask_loss_weight must be > 0 and finite, got {self.mask_loss_weight!r}"
            )
        if not 0.0 <= self.cfg_dropout <= 1.0:
            raise ValueError(f"objective.cfg_dropout must be in [0, 1], got {self.cfg_dropout!r}")
        if self.cfg_dropout_mode not in CFG_DROPOUT_MODES:
            raise ValueError(
                f"objective.cfg_dropout_mode must be one of {CFG_DROPOUT_MODES}, got {self.cfg_dropout_mode!r}"
            )


@dataclass
class OptimConfig:
    lr: float = 1.0e-5
    weight_decay: float = 0.01
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1.0e-8
    warmup_steps: int = 10_000
    warmup_start: float = 1.0e-6  # warm-up starts at warmup_start * lr
    scale_lr: bool = False  # LDM-style: lr *= global batch size (devices x nodes x batch x accumulation)
    # After the warm-up: "constant" (the paper) or "cosine" (not in the paper: half a cosine from lr down to
    # final_lr_ratio * lr at trainer.max_steps, which short runs need far more than long ones)
    decay: str = "constant"
    final_lr_ratio: float = 0.0
    # cosine: the step the decay ends at, when not trainer.max_steps (a run stopped early on a longer run's
    # schedule, e.g. an ablation compared with that run's checkpoint at the same step)
    decay_steps: int | None = None

    def __post_init__(self):
        self.betas = tuple(self.betas)
        if self.decay not in LR_DECAYS:
            raise ValueError(f"optim.decay must be one of {LR_DECAYS}, got {self.decay!r}")
        if not 0.0 <= self.final_lr_ratio <= 1.0:
            raise ValueError(f"optim.final_lr_ratio must be in [0, 1], got {self.final_lr_ratio!r}")
        if self.lr <= 0:
            raise ValueError(f"optim.lr must be > 0, got {self.lr!r}")
        if self.warmup_steps < 0:
            raise ValueError(f"optim.warmup_steps must be >= 0, got {self.warmup_steps!r}")
        if self.decay_steps is not None:
            if self.decay != "cosine":
                raise ValueError(f"optim.decay_steps is for optim.decay=cosine, not {self.decay!r}")
            if int(self.decay_steps) <= self.warmup_steps:
                raise ValueError(
                    f"optim.decay_steps must be > optim.warmup_steps ({self.warmup_steps}), got {self.decay_steps!r}"
                )


@dataclass
class GuardConfig:
    max_nonfinite: int = 10  # stop after this many non-finite losses in a row


@dataclass
class EMAConfig:
    decay: float | None = None  # e.g. 0.9999; None: no EMA

    def __post_init__(self):
        if self.decay is not None and not 0.0 < self.decay < 1.0:
            raise ValueError(f"ema.decay must be in (0, 1) or null, got {self.decay!r}")


def make_config(cls, values: Mapping | None, name: str):
    try:
        return cls(**dict(values or {}))
    except TypeError as e:
        raise ValueError(f"{name}: {e}") from None


class WarmupSchedule:
    """The lr factor per step (LambdaLR): warmup_start + (1 - warmup_start) * step / warmup_steps for step <
    warmup_steps, then 1, or with `total_steps` a half cosine from 1 at the warm-up's end down to `final_ratio` at
    `total_steps` (and after).

    A class (not a lambda) so that LambdaLR saves its state as plain numbers."""

    def __init__(
        self, warmup_steps: int, warmup_start: float, total_steps: int | None = None, final_ratio: float = 0.0
    ):
        self.warmup_steps, self.warmup_start = int(warmup_steps), float(warmup_start)
        self.total_steps = None if total_steps is None else int(total_steps)
        self.final_ratio = float(final_ratio)

    def __call__(self, step: int) -> float:
        if step < self.warmup_steps:
            return self.warmup_start + (1.0 - self.warmup_start) * step / self.warmup_steps
        if self.total_steps is None:
            return 1.0
        span = max(1, self.total_steps - self.warmup_steps)
        progress = min(1.0, (step - self.warmup_steps) / span)
        return self.final_ratio + (1.0 - self.final_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))
