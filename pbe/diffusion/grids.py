"""The timesteps each sampler family evaluates the denoiser at, and the noise levels it walks through.

A ``Grid`` holds, for an N-step run, the N model timesteps and N + 1 sigmas (sigma-space noise levels,
``sqrt((1 - a) / a)``): the level of x before each step, then the level after the last step.

- ``ddim_grid`` (DDIM, PNDM/PLMS): integer timesteps from the schedule's spacing; every step targets
  ``t - T // N`` (diffusers' rule, whatever the spacing), past timestep 0 meaning the final alpha.
- ``sigma_grid`` (LMS, Euler ancestral): timesteps may be fractional ("linspace" is not rounded), sigmas are
  interpolated in the training sigma table and end with 0.
- ``dpm_grid`` (DPM-Solver++): diffusers' DPM spacing ("linspace" and "leading" place N + 1 points and drop
  the last), optionally Karras sigmas with timesteps read back from the table, ending with 0 or sigma_min.
"""

from dataclasses import dataclass

from pbe.diffusion.schedule import (
    NoiseSchedule,
    numpy_linspace,
    round_half_even,
    to_float32,
    trailing_timesteps,
)

FINAL_SIGMAS_TYPES = ("zero", "sigma_min")


@dataclass(frozen=True)
class Grid:
    timesteps: list[float]  # one per step; whole numbers for DDIM, PNDM and DPM-Solver++
    sigmas: list[float]  # steps + 1 noise levels: before each step, then after the last one


def vp_sigma(alpha: float) -> float:
    return ((1 - alpha) / alpha) ** 0.5


def ddim_grid(schedule: NoiseSchedule, steps: int) -> Grid:
    schedule.check_steps(steps, "ddim")
    timesteps = schedule.timesteps(steps).tolist()
    after_last = timesteps[-1] - schedule.num_train_timesteps // steps
    alphas = [schedule.alpha_list[t] for t in timesteps] + [schedule.alpha_at(after_last)]
    return Grid([float(t) for t in timesteps], [vp_sigma(a) for a in alphas])


def sigma_grid(schedule: NoiseSchedule, steps: int) -> Grid:
    timesteps = to_float32(schedule.spaced_timesteps(steps))
    sigmas = to_float32([schedule.sigma_at(t) for t in timesteps] + [0.0])
    return Grid(timesteps, sigmas)


def dpm_timesteps(schedule: NoiseSchedule, steps: int) -> list[int]:
    schedule.check_count(steps)
    t, spacing = schedule.num_train_timesteps, schedule.timestep_spacing
    if spacing == "linspace":
        return [round_half_even(v) for v in numpy_linspace(0.0, t - 1.0, steps + 1)[::-1][:-1]]
    if spacing == "leading":
        ratio = t // (steps + 1)
        return [i * ratio + schedule.steps_offset for i in range(steps, 0, -1)]
    return [int(v) for v in trailing_timesteps(steps, t, schedule.steps_offset)]


def dpm_grid(
    schedule: NoiseSchedule, steps: int, use_karras_sigmas: bool = False, final_sigmas_type: str = "zero"
) -> Grid:
    if final_sigmas_type not in FINAL_SIGMAS_TYPES:
        raise ValueError(
            f"unknown final_sigmas_type {final_sigmas_type!r}; valid: {', '.join(FINAL_SIGMAS_TYPES)}"
        )
    if use_karras_sigmas:
        sigmas = schedule.karras_sigmas(steps)
        # diffusers rounds the read-back timesteps, except for the cosine schedule where it truncates
        read_back = int if schedule.beta_schedule in ("squaredcos_cap_v2", "cosine") else round_half_even
        timesteps = [read_back(schedule.timestep_at(s)) for s in sigmas]
    else:
        timesteps = dpm_timesteps(schedule, steps)
        sigmas = [schedule.sigma_at(t) for t in timesteps]
    last = schedule.sigma_list[0] if final_sigmas_type == "sigma_min" else 0.0
    return Grid([float(t) for t in timesteps], to_float32(sigmas + [last]))
