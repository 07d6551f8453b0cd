"""Noise schedule, timestep grids and noising helpers, checked against diffusers' schedulers (test-only oracle)."""

import math

import pytest
import torch
from diffusers import (
    DDIMScheduler,
    DPMSolverMultistepScheduler,
    EulerAncestralDiscreteScheduler,
    LMSDiscreteScheduler,
)

from pbe.diffusion import NoiseSchedule, add_noise, img2img_start_step, init_noise_sigma, noise_sigmas
from pbe.diffusion.grids import dpm_grid, sigma_grid

SPACINGS = ["leading", "trailing", "linspace"]
BETAS = {
    "scaled_linear": dict(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear"),
    "linear": dict(beta_start=0.0001, beta_end=0.02, beta_schedule="linear"),
    "cosine": dict(beta_schedule="squaredcos_cap_v2"),
}
STEP_COUNTS = [1, 2, 3, 7, 10, 25, 50, 61, 333, 1000]


@pytest.mark.parametrize("betas", BETAS)
def test_alphas_cumprod_identical_to_diffusers(betas):
    ours = NoiseSchedule(**BETAS[betas]).alphas_cumprod
    theirs = DDIMScheduler(**BETAS[betas]).alphas_cumprod
    assert ours.dtype == torch.float32
    assert torch.equal(ours, theirs)


def test_default_schedule_is_the_released_models():
    a = NoiseSchedule().alphas_cumprod
    assert a.shape == (1000,)
    assert a[0].item() == pytest.approx(0.99915, abs=1e-6)
    assert a[-1].item() == pytest.approx(0.0046601, rel=1e-4)


def test_cosine_alias_matches_diffusers_name():
    cosine = NoiseSchedule(beta_schedule="cosine").alphas_cumprod
    assert torch.equal(cosine, NoiseSchedule(beta_schedule="squaredcos_cap_v2").alphas_cumprod)


@pytest.mark.parametrize("spacing", SPACINGS)
@pytest.mark.parametrize("offset", [0, 1])
def test_timesteps_match_diffusers_for_every_step_count(spacing, offset):
    ours_schedule = NoiseSchedule(timestep_spacing=spacing, steps_offset=offset)
    theirs = DDIMScheduler(**BETAS["scaled_linear"], timestep_spacing=spacing, steps_offset=offset)
    for steps in range(1, 1001):
        theirs.set_timesteps(steps)
        ours = ours_schedule.timesteps(steps)
        assert len(ours) == steps
        # diffusers' "trailing" appends a bogus timestep -1 for some counts (np.arange rounding): compare the rest
        assert torch.equal(ours, theirs.timesteps[:steps]), steps


@pytest.mark.parametrize("spacing", SPACINGS)
@pytest.mark.parametrize("betas", BETAS)
def test_sigma_grid_matches_lms_scheduler(spacing, betas):
    config = dict(BETAS[betas], timestep_spacing=spacing, steps_offset=1)
    schedule, theirs = NoiseSchedule(**config), LMSDiscreteScheduler(**config)
    for steps in STEP_COUNTS:
        theirs.set_timesteps(steps)
        grid = sigma_grid(schedule, steps)
        assert torch.equal(torch.tensor(grid.timesteps, dtype=torch.float32), theirs.timesteps[:steps])
        assert torch.equal(torch.tensor(grid.sigmas, dtype=torch.float32)[:-1], theirs.sigmas[:steps])
        assert grid.sigmas[-1] == 0.0


@pytest.mark.parametrize("spacing", SPACINGS)
@pytest.mark.parametrize("karras", [False, True])
@pytest.mark.parametrize("final", ["zero", "sigma_min"])
def test_dpm_grid_matches_dpm_solver_scheduler(spacing, karras, final):
    config = dict(BETAS["scaled_linear"], timestep_spacing=spacing, steps_offset=1)
    schedule = NoiseSchedule(**config)
    theirs = DPMSolverMultistepScheduler(**config, use_karras_sigmas=karras, final_sigmas_type=final)
    for steps in [s for s in STEP_COUNTS if s != 61]:  # 61: diffusers' extra "trailing" timestep
        theirs.set_timesteps(steps)
        grid = dpm_grid(schedule, steps, karras, final)
        assert torch.equal(torch.tensor(grid.timesteps, dtype=torch.int64), theirs.timesteps), steps
        assert torch.equal(torch.tensor(grid.sigmas, dtype=torch.float32), theirs.sigmas), steps


@pytest.mark.parametrize("spacing", SPACINGS)
@pytest.mark.parametrize(
    "name, scheduler_class", [("lms", LMSDiscreteScheduler), ("euler_a", EulerAncestralDiscreteScheduler)]
)
def test_init_noise_sigma_matches_diffusers(spacing, name, scheduler_class):
    config = dict(BETAS["scaled_linear"], timestep_spacing=spacing, steps_offset=1)
    theirs = scheduler_class(**config)
    theirs.set_timesteps(30)
    ours = init_noise_sigma(name, NoiseSchedule(**config), 30)
    assert ours == pytest.approx(float(theirs.init_noise_sigma), rel=1e-6)
    assert ours > 1.0


@pytest.mark.parametrize("name", ["ddim", "pndm", "plms", "dpmpp_2m"])
def test_vp_samplers_start_from_unit_noise(name):
    assert init_noise_sigma(name, NoiseSchedule(), 50) == 1.0


def test_sigma_interpolation_is_exact_on_the_table_and_invertible_there():
    schedule = NoiseSchedule()
    table = schedule.sigmas
    for t in [0, 1, 500, 998, 999]:
        assert schedule.sigma_at(t) == table[t].item()
        assert schedule.timestep_at(table[t].item()) == pytest.approx(t, abs=1e-4)
    for t in [3.25, 411.5, 998.9]:  # sigma is linear in t, the inverse linear in log sigma: same bracket
        assert math.floor(t) <= schedule.timestep_at(schedule.sigma_at(t)) <= math.ceil(t)


def test_add_noise_vp_matches_ddpm_forward_process():
    schedule = NoiseSchedule()
    theirs = DDIMScheduler(**BETAS["scaled_linear"], steps_offset=1)
    theirs.set_timesteps(20)
    g = torch.Generator().manual_seed(0)
    x0, noise = torch.randn(2, 4, 8, 8, generator=g), torch.randn(2, 4, 8, 8, generator=g)
    for start in [0, 5, 19]:
        ours = add_noise("ddim", schedule, 20, x0, noise, start)
        expected = theirs.add_noise(x0, noise, theirs.timesteps[start : start + 1])
        torch.testing.assert_close(ours, expected, rtol=1e-5, atol=1e-6)


def test_add_noise_sigma_space_matches_lms_scheduler():
    schedule = NoiseSchedule()
    theirs = LMSDiscreteScheduler(**BETAS["scaled_linear"], timestep_spacing="leading", steps_offset=1)
    theirs.set_timesteps(20)
    g = torch.Generator().manual_seed(1)
    x0, noise = torch.randn(1, 4, 8, 8, generator=g), torch.randn(1, 4, 8, 8, generator=g)
    ours = add_noise("lms", schedule, 20, x0, noise, 6)
    expected = theirs.add_noise(x0, noise, theirs.timesteps[6:7])
    torch.testing.assert_close(ours, expected, rtol=1e-5, atol=1e-6)


def test_add_noise_after_the_last_step_is_clean_for_sigma_samplers():
    x0 = torch.randn(3, 4)
    assert torch.equal(add_noise("euler_a", NoiseSchedule(), 10, x0, torch.randn(3, 4), 10), x0)


def test_noise_sigmas_fall_from_first_to_last_step():
    sigmas = noise_sigmas("dpmpp_2m", NoiseSchedule(), 25, use_karras_sigmas=True)
    assert len(sigmas) == 26
    assert all(a > b for a, b in zip(sigmas, sigmas[1:]))


@pytest.mark.parametrize("strength, expected_start", [(1.0, 0), (0.0, 50), (0.5, 25), (0.75, 13), (0.999, 1)])
def test_img2img_start_step_follows_diffusers_rule(strength, expected_start):
    # diffusers: init = min(int(steps * strength), steps); start at index steps - init
    assert img2img_start_step(50, strength) == 50 - min(int(50 * strength), 50) == expected_start


@pytest.mark.parametrize("strength", [-0.1, 1.5, math.nan])
def test_strength_outside_unit_interval_raises(strength):
    with pytest.raises(ValueError, match=r"strength must be in \[0, 1\]"):
        img2img_start_step(50, strength)


@pytest.mark.parametrize("steps", [0, -3, 1001, 2.5, True])
def test_bad_step_count_raises_with_valid_range(steps):
    with pytest.raises(ValueError, match=r"steps must be an integer in \[1, 1000\]"):
        NoiseSchedule().timesteps(steps)


@pytest.mark.parametrize(
    "field, value, listed",
    [
        ("beta_schedule", "quadratic", "scaled_linear"),
        ("timestep_spacing", "uniform", "trailing"),
        ("prediction_type", "flow", "v_prediction"),
    ],
)
def test_unknown_schedule_setting_raises_listing_valid_values(field, value, listed):
    with pytest.raises(ValueError, match=listed):
        NoiseSchedule(**{field: value})
