"""Noise schedules and samplers for latent diffusion (DDIM, PNDM/PLMS, LMS, DPM-Solver++(2M), Euler ancestral),
DDIM inversion, img2img noising, and loading a diffusers scheduler config. Depends on torch only."""

from pbe.diffusion.inversion import invert_ddim
from pbe.diffusion.noising import add_noise, img2img_start_step, init_noise_sigma, noise_sigmas, sampler_grid
from pbe.diffusion.samplers import (
    SAMPLERS,
    get_sampler,
    sample_ddim,
    sample_dpmpp_2m,
    sample_euler_ancestral,
    sample_lms,
    sample_plms,
    sample_pndm,
)
from pbe.diffusion.schedule import NoiseSchedule
from pbe.diffusion.scheduler_config import check_steps_for, from_scheduler_config, read_scheduler_config

__all__ = [
    "SAMPLERS",
    "NoiseSchedule",
    "add_noise",
    "check_steps_for",
    "from_scheduler_config",
    "get_sampler",
    "img2img_start_step",
    "init_noise_sigma",
    "invert_ddim",
    "noise_sigmas",
    "read_scheduler_config",
    "sample_ddim",
    "sample_dpmpp_2m",
    "sample_euler_ancestral",
    "sample_lms",
    "sample_plms",
    "sample_pndm",
    "sampler_grid",
]
