"""Classifier-free guidance (Ho & Salimans 2022): the denoiser a sampler calls, built from a model call that
returns the unconditional and the conditional noise predictions stacked along the batch ([uncond; cond])."""

from __future__ import annotations

from collections.abc import Callable

import torch

EpsFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def guided_denoiser(eps_of: EpsFn, guidance_scale: float, double_input: bool = True) -> EpsFn:
    """eps(x, t) = uncond + guidance_scale * (cond - uncond) where ``eps_of`` gives [uncond; cond].

    Guidance is on when ``guidance_scale > 1`` (as in diffusers); then x is passed twice ([x; x]) unless
    ``double_input`` is False (a model call that serves both halves from one copy of x). Off: ``eps_of(x, t)``."""
    guided = guidance_scale > 1.0

    def denoise(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        eps = eps_of(torch.cat([x, x]) if guided and double_input else x, t)
        if guided:
            uncond, cond = eps.chunk(2)
            eps = uncond + guidance_scale * (cond - uncond)
        return eps

    return denoise
