"""Samplers against closed-form theory: Gaussian data N(0, s^2) with its exact denoiser.

For x_t = sqrt(a) x_0 + sqrt(1 - a) eps with x_0 ~ N(0, s^2), the exact eps-denoiser is
E[eps | x_t] = sqrt(1 - a) x_t / (a s^2 + 1 - a). In sigma space (y = x / sqrt(a), sigma^2 = (1 - a) / a) the
probability-flow ODE dy/dsigma = eps solves to y(sigma) proportional to sqrt(s^2 + sigma^2), so every
deterministic sampler should map its start to a known multiple of it. Errors are relative (the maps are linear).

The denoiser reads the noise level off the schedule's sigma table at the timestep it is given (linear in sigma
between integers, as LMS and Euler interpolate), so it is exact for whichever timesteps a sampler uses.
"""

import math

import pytest
import torch

from pbe.diffusion import NoiseSchedule, invert_ddim, noise_sigmas, sample_ddim, sample_dpmpp_2m

DATA_STD = 0.5  # not 1: for s = 1 the VP-space flow is the identity, a special case


def exact_denoiser(schedule: NoiseSchedule, s: float = DATA_STD):
    def eps(x, t):
        sigma = schedule.sigma_at(float(t))
        a = 1 / (1 + sigma**2)
        return (1 - a) ** 0.5 * x / (a * s**2 + 1 - a)

    return eps


def exact_flow_factor(sigma_from: float, sigma_to: float, s: float = DATA_STD) -> float:
    """The probability-flow map from noise level sigma_from to sigma_to, for VP-space x."""
    sigma_space = ((s**2 + sigma_to**2) / (s**2 + sigma_from**2)) ** 0.5
    return sigma_space * ((1 + sigma_from**2) / (1 + sigma_to**2)) ** 0.5


def fitted_order(steps: list[int], errors: list[float]) -> float:
    """Least-squares slope of -log(error) against log(steps)."""
    xs, ys = [math.log(n) for n in steps], [-math.log(e) for e in errors]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs)


# "trailing" with an even step count dividing 1000: grids that all start at t = 999 and pass t = 499 halfway
SCHEDULE = NoiseSchedule(timestep_spacing="trailing", steps_offset=0)
STEP_COUNTS = [20, 50, 100, 200]


def error_at_step(name: str, sampler, steps: int, stop_after: int, **options) -> float:
    """Relative error of x after step ``stop_after`` (read through the callback) against the exact flow."""
    sigmas = noise_sigmas(name, SCHEDULE, steps, **options)
    states = {}

    def keep(i, t, x):
        states[i] = x.item()

    sampler(
        exact_denoiser(SCHEDULE),
        torch.ones(1, dtype=torch.float64),
        SCHEDULE,
        steps,
        callback=keep,
        **options,
    )
    expected = exact_flow_factor(sigmas[0], sigmas[stop_after + 1])
    return abs(states[stop_after] / expected - 1)


@pytest.mark.parametrize("name", ["ddim", "dpmpp_2m"])
def test_halfway_level_is_the_same_for_every_step_count(name):
    for n in STEP_COUNTS:
        assert noise_sigmas(name, SCHEDULE, n)[n // 2] == pytest.approx(SCHEDULE.sigma_at(499), rel=1e-6)


def test_ddim_error_falls_at_first_order_over_the_whole_run():
    errors = [error_at_step("ddim", sample_ddim, n, n - 1) for n in STEP_COUNTS]
    assert all(a > b for a, b in zip(errors, errors[1:]))
    assert 0.9 < fitted_order(STEP_COUNTS, errors) < 1.1


def test_ddim_error_falls_at_first_order_halfway():
    errors = [error_at_step("ddim", sample_ddim, n, n // 2 - 1) for n in STEP_COUNTS]
    assert 0.9 < fitted_order(STEP_COUNTS, errors) < 1.1


def test_dpmpp_2m_error_falls_at_second_order_halfway():
    # Measured halfway down (t = 499): a uniform-timestep grid's last steps (sigma ~ sqrt(t) near t = 0) do not
    # shrink in log-SNR as steps double, which caps the whole-run order below 2 for any solver.
    errors = [error_at_step("dpmpp_2m", sample_dpmpp_2m, n, n // 2 - 1) for n in STEP_COUNTS]
    assert all(a > b for a, b in zip(errors, errors[1:]))
    assert 1.9 < fitted_order(STEP_COUNTS, errors) < 2.1


def test_dpmpp_2m_beats_ddim_at_equal_steps_halfway():
    for n in STEP_COUNTS:
        ddim = error_at_step("ddim", sample_ddim, n, n // 2 - 1)
        dpm = error_at_step("dpmpp_2m", sample_dpmpp_2m, n, n // 2 - 1)
        assert dpm < ddim / 3


def test_dpmpp_2m_on_karras_sigmas_beats_ddim_fivefold_over_the_whole_run():
    # Karras sigmas keep the steps near sigma = 0 short in log-SNR, where a uniform-timestep grid is coarse
    for n in (20, 25, 50):
        ddim = error_at_step("ddim", sample_ddim, n, n - 1)
        dpm = error_at_step("dpmpp_2m", sample_dpmpp_2m, n, n - 1, use_karras_sigmas=True)
        assert dpm < ddim / 5


def round_trip_error(
    s: float, set_alpha_to_one: bool, spacing: str, fixed_point_iterations: int = 0
) -> float:
    schedule = NoiseSchedule(timestep_spacing=spacing, set_alpha_to_one=set_alpha_to_one)
    denoiser = exact_denoiser(schedule, s)
    x0 = s * torch.randn(256, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    noise = invert_ddim(denoiser, x0, schedule, 50, fixed_point_iterations=fixed_point_iterations)
    back = sample_ddim(denoiser, noise, schedule, 50)
    return ((back - x0).abs().max() / x0.abs().max()).item()


@pytest.mark.parametrize("spacing", ["leading", "trailing"])
@pytest.mark.parametrize("set_alpha_to_one", [False, True])
def test_ddim_inversion_round_trip_of_unit_variance_latents_within_1e_3_at_50_steps(
    spacing, set_alpha_to_one
):
    # unit variance: what latent diffusion's scale factor (0.18215) aims the VAE latents at
    assert round_trip_error(1.0, set_alpha_to_one, spacing) < 1e-3


@pytest.mark.parametrize("s", [0.5, 2.0])
def test_fixed_point_ddim_inversion_round_trip_within_1e_3_at_50_steps_for_any_data_scale(s):
    plain = round_trip_error(s, False, "leading")
    refined = round_trip_error(s, False, "leading", fixed_point_iterations=2)
    assert refined < 1e-3 < plain
