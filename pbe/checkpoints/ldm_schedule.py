"""The noise schedule as the original LDM layout stores it: buffers computed from a scheduler config, and back.

The authors' `LatentDiffusion` registers `betas` and eleven quantities derived from them as float32 buffers of the
model; a file in that layout carries no other record of the schedule. `ldm_schedule_buffers` computes them the way
the original code does; `scheduler_from_betas` recognises a diffusers scheduler config from stored betas.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from pbe.checkpoints.tensor_io import CheckpointError
from pbe.diffusion.scheduler_config import PAINT_BY_EXAMPLE_SCHEDULER

LDM_SCHEDULE_BUFFERS = (
    "betas",
    "alphas_cumprod",
    "alphas_cumprod_prev",
    "sqrt_alphas_cumprod",
    "sqrt_one_minus_alphas_cumprod",
    "log_one_minus_alphas_cumprod",
    "sqrt_recip_alphas_cumprod",
    "sqrt_recipm1_alphas_cumprod",
    "posterior_variance",
    "posterior_log_variance_clipped",
    "posterior_mean_coef1",
    "posterior_mean_coef2",
)


def ldm_schedule_buffers(scheduler: Mapping) -> dict[str, torch.Tensor]:
    """The noise-schedule buffers the original LatentDiffusion stores (computed as it does: float64, then float32)."""
    betas = betas_from_scheduler(scheduler).double()
    alphas = 1.0 - betas
    ac = torch.cumprod(alphas, 0)
    ac_prev = torch.cat([torch.ones(1, dtype=torch.float64), ac[:-1]])
    posterior_variance = betas * (1.0 - ac_prev) / (1.0 - ac)
    buffers = {
        "betas": betas,
        "alphas_cumprod": ac,
        "alphas_cumprod_prev": ac_prev,
        "sqrt_alphas_cumprod": ac.sqrt(),
        "sqrt_one_minus_alphas_cumprod": (1.0 - ac).sqrt(),
        "log_one_minus_alphas_cumprod": (1.0 - ac).log(),
        "sqrt_recip_alphas_cumprod": (1.0 / ac).sqrt(),
        "sqrt_recipm1_alphas_cumprod": (1.0 / ac - 1).sqrt(),
        "posterior_variance": posterior_variance,
        "posterior_log_variance_clipped": posterior_variance.clamp(min=1e-20).log(),
        "posterior_mean_coef1": betas * ac_prev.sqrt() / (1.0 - ac),
        "posterior_mean_coef2": (1.0 - ac_prev) * alphas.sqrt() / (1.0 - ac),
    }
    return {k: v.float() for k, v in buffers.items()}


def betas_from_scheduler(scheduler: Mapping) -> torch.Tensor:
    t = int(scheduler.get("num_train_timesteps", 1000))
    start, end = float(scheduler.get("beta_start", 0.00085)), float(scheduler.get("beta_end", 0.012))
    kind = scheduler.get("beta_schedule", "scaled_linear")
    if scheduler.get("trained_betas") is not None:
        return torch.tensor(scheduler["trained_betas"], dtype=torch.float64)
    if kind == "scaled_linear":
        return torch.linspace(start**0.5, end**0.5, t, dtype=torch.float64) ** 2
    if kind == "linear":
        return torch.linspace(start, end, t, dtype=torch.float64)
    raise ValueError(f"beta_schedule={kind!r}; the original layout can store 'scaled_linear' or 'linear'")


def scheduler_from_betas(betas: torch.Tensor | None) -> dict:
    """Recognise the schedule of stored betas (scaled_linear or linear); default to the released model's."""
    scheduler = dict(PAINT_BY_EXAMPLE_SCHEDULER)
    if betas is None:
        return scheduler
    if betas.ndim != 1 or not ((betas > 0) & (betas < 1)).all():
        raise CheckpointError(
            "the checkpoint's 'betas' buffer is not a noise schedule (values must lie in (0, 1))"
        )
    if same_betas(betas_from_scheduler(scheduler), betas):  # also when stored in float16 / bfloat16
        return scheduler
    betas = betas.double()
    for kind in ("scaled_linear", "linear"):
        candidate = {
            **scheduler,
            "beta_schedule": kind,
            "num_train_timesteps": len(betas),
            "beta_start": float(betas[0]),
            "beta_end": float(betas[-1]),
        }
        if torch.allclose(betas_from_scheduler(candidate), betas, rtol=1e-5, atol=1e-9):
            candidate["beta_start"] = _round_sig(candidate["beta_start"])
            candidate["beta_end"] = _round_sig(candidate["beta_end"])
            return candidate
    return {**scheduler, "num_train_timesteps": len(betas), "trained_betas": betas.tolist()}


def same_betas(expected: torch.Tensor, stored: torch.Tensor) -> bool:
    """Whether `stored` betas are the `expected` schedule, up to the rounding of the dtype they were stored in."""
    rtol = max(1e-5, torch.finfo(stored.dtype).eps)
    return expected.shape == stored.shape and torch.allclose(expected, stored.double(), rtol=rtol, atol=1e-9)


def _round_sig(x: float, digits: int = 6) -> float:
    return float(f"{x:.{digits}g}") if x else x
