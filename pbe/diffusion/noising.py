"""How much noise each sampler expects, and noising a clean latent to a sampler's step (img2img ``strength``).

Samplers keep x in one of two conventions. DDIM, PNDM/PLMS and DPM-Solver++ use the VP one,
``x = sqrt(a) x_0 + sqrt(1 - a) noise``; LMS and Euler ancestral the sigma one, ``x = x_0 + sigma noise``.
``add_noise`` writes a latent in the right one, so that ``sampler(..., start_step=k)`` can continue from it.

Typical img2img use::

    start = img2img_start_step(steps, strength)
    x = add_noise(name, schedule, steps, x0, noise, start)
    x = get_sampler(name)(denoiser, x, schedule, steps, start_step=start)
"""

from torch import Tensor

from pbe.diffusion.grids import Grid, ddim_grid, dpm_grid, sigma_grid
from pbe.diffusion.samplers import SAMPLERS
from pbe.diffusion.schedule import NoiseSchedule

SIGMA_SPACE_SAMPLERS = ("lms", "euler_a")

# Which noise levels each sampler walks; DPM-Solver++ also needs its Karras / final-sigma options.
GRIDS = {
    "ddim": ddim_grid,
    "pndm": ddim_grid,
    "plms": ddim_grid,
    "lms": sigma_grid,
    "euler_a": sigma_grid,
    "dpmpp_2m": dpm_grid,
}
GRID_OPTIONS = {"dpmpp_2m": ("use_karras_sigmas", "final_sigmas_type")}


def check_name(name: str) -> None:
    if name not in SAMPLERS:
        raise ValueError(f"unknown sampler {name!r}; valid: {', '.join(SAMPLERS)}")


def sampler_grid(name: str, schedule: NoiseSchedule, steps: int, **options) -> Grid:
    """The timesteps and noise levels of a ``steps``-step run; ``options`` are the sampler's keyword options
    (only those that move the grid are used, so a sampler's whole option dict may be passed)."""
    check_name(name)
    wanted = {k: v for k, v in options.items() if k in GRID_OPTIONS.get(name, ())}
    return GRIDS[name](schedule, steps, **wanted)


def noise_sigmas(name: str, schedule: NoiseSchedule, steps: int, **options) -> list[float]:
    """steps + 1 sigma-space noise levels: where x sits before each step, then after the last one."""
    return sampler_grid(name, schedule, steps, **options).sigmas


def init_noise_sigma(name: str, schedule: NoiseSchedule, steps: int, **options) -> float:
    """The factor for unit Gaussian noise to start a full run: 1 for VP samplers; for LMS and Euler ancestral
    the largest sigma ("linspace"/"trailing" spacing) or sqrt(sigma_max^2 + 1) ("leading"), like diffusers."""
    if name not in SIGMA_SPACE_SAMPLERS:
        check_name(name)
        schedule.check_steps(steps, name, **options)
        return 1.0
    sigma_max = max(noise_sigmas(name, schedule, steps, **options))
    if schedule.timestep_spacing in ("linspace", "trailing"):
        return sigma_max
    return (sigma_max**2 + 1) ** 0.5


def img2img_start_step(steps: int, strength: float) -> int:
    """The first step to run for img2img: strength 1 runs all steps, 0 none (diffusers' rule)."""
    if not 0.0 <= strength <= 1.0:
        raise ValueError(f"strength must be in [0, 1] (0: keep the input, 1: full noise), got {strength!r}")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be a positive integer, got {steps!r}")
    return steps - min(int(steps * strength), steps)


def add_noise(
    name: str, schedule: NoiseSchedule, steps: int, x0: Tensor, noise: Tensor, start_step: int, **options
) -> Tensor:
    """x0 noised to where ``name``'s ``steps``-step run has x before step ``start_step`` (``start_step ==
    steps``: after the last step), in that sampler's convention."""
    sigmas = noise_sigmas(name, schedule, steps, **options)
    if isinstance(start_step, bool) or not isinstance(start_step, int) or not 0 <= start_step <= steps:
        raise ValueError(f"start_step must be an integer in [0, steps={steps}], got {start_step!r}")
    sigma = sigmas[start_step]
    if name in SIGMA_SPACE_SAMPLERS:
        return x0 + sigma * noise
    alpha = 1 / (1 + sigma**2)
    return alpha**0.5 * x0 + (1 - alpha) ** 0.5 * noise
