"""Samplers against diffusers' schedulers on diffusers' deterministic full-loop set-up, plus the API contract.

Set-up (diffusers' scheduler tests): sample = arange(768) / 768 laid out as (4, 3, 8, 8), model(x, t) = x * t / (t + 1).
The diffusers loop is the pipeline loop: model(scale_model_input(x, t), t), then step. Parity tolerance: the
largest difference is at most 1e-5 of the largest magnitude of diffusers' result (float32 throughout).
Runs with fewer than 3 steps are left out: starting at t = 999, the x_0 prediction divides a difference of two
nearly equal numbers by sqrt(a_999) = 0.068, and float32 rounding alone moves results by ~2e-5 there (diffusers'
float32 result differs from a float64 run by as much as ours does).
"""

import itertools
import json

import pytest
import torch
from diffusers import (
    DDIMInverseScheduler,
    DDIMScheduler,
    DPMSolverMultistepScheduler,
    EulerAncestralDiscreteScheduler,
    LMSDiscreteScheduler,
    PNDMScheduler,
)

from pbe.diffusion import (
    SAMPLERS,
    NoiseSchedule,
    add_noise,
    from_scheduler_config,
    get_sampler,
    img2img_start_step,
    init_noise_sigma,
    invert_ddim,
    sample_ddim,
    sample_dpmpp_2m,
    sample_euler_ancestral,
    sample_lms,
    sample_pndm,
)

SD_BETAS = dict(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear")
SETTINGS = list(itertools.product(["leading", "trailing", "linspace"], [0, 1], [False, True]))
SETTING_IDS = [f"{s}-offset{o}-one{int(a)}" for s, o, a in SETTINGS]
STEPS = 10


def deterministic_sample() -> torch.Tensor:
    n = 4 * 3 * 8 * 8
    return (torch.arange(n).flip(-1).reshape(3, 8, 8, 4) / n).permute(3, 0, 1, 2)


def model(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    t = t.to(x.dtype)
    return x * t / (t + 1)


def assert_parity(ours: torch.Tensor, theirs: torch.Tensor, tolerance: float = 1e-5) -> None:
    assert ours.shape == theirs.shape and ours.dtype == theirs.dtype
    relative = ((ours - theirs).abs().max() / theirs.abs().max()).item()
    assert relative <= tolerance, f"relative difference {relative:.2e}"


def diffusers_loop(scheduler, steps, seed=None, begin=0, x=None, **step_kwargs):
    """The diffusers pipeline loop; ``begin`` > 0 runs the img2img tail from a given latent."""
    scheduler.set_timesteps(steps)
    if x is None:
        x = deterministic_sample() * scheduler.init_noise_sigma
    if begin and hasattr(scheduler, "set_begin_index"):
        scheduler.set_begin_index(begin)
    generator = torch.Generator().manual_seed(seed) if seed is not None else None
    if generator is not None:
        step_kwargs["generator"] = generator
    for t in scheduler.timesteps[begin:]:
        eps = model(scheduler.scale_model_input(x, t), t)
        x = scheduler.step(eps, t, x, **step_kwargs).prev_sample
    return x


def settings(spacing, offset, one, **extra):
    return dict(SD_BETAS, timestep_spacing=spacing, steps_offset=offset, set_alpha_to_one=one, **extra)


def schedule_for(config):
    fields = NoiseSchedule.__dataclass_fields__
    return NoiseSchedule(**{k: v for k, v in config.items() if k in fields})


def start_noise(name, schedule, steps, **options):
    return deterministic_sample() * init_noise_sigma(name, schedule, steps, **options)


@pytest.mark.parametrize("spacing, offset, one", SETTINGS, ids=SETTING_IDS)
@pytest.mark.parametrize("eta", [0.0, 0.6])
def test_ddim_matches_diffusers(spacing, offset, one, eta):
    config = settings(spacing, offset, one, clip_sample=False)
    theirs = diffusers_loop(DDIMScheduler(**config), STEPS, seed=0 if eta else None, eta=eta)
    generator = torch.Generator().manual_seed(0)
    ours = sample_ddim(
        model, deterministic_sample(), schedule_for(config), STEPS, eta=eta, generator=generator
    )
    assert_parity(ours, theirs)


def test_ddim_clip_sample_matches_diffusers():
    config = dict(
        beta_start=0.0001, beta_end=0.02, beta_schedule="linear", clip_sample=True, clip_sample_range=0.5
    )
    config |= dict(set_alpha_to_one=True, steps_offset=0)  # DDIMScheduler's defaults, not NoiseSchedule's
    theirs = diffusers_loop(DDIMScheduler(**config), 25)
    ours = sample_ddim(model, deterministic_sample(), schedule_for(config), 25)
    assert_parity(ours, theirs)


@pytest.mark.parametrize("spacing, offset, one", SETTINGS, ids=SETTING_IDS)
@pytest.mark.parametrize("skip_prk_steps", [True, False])
def test_pndm_matches_diffusers(spacing, offset, one, skip_prk_steps):
    config = settings(spacing, offset, one, skip_prk_steps=skip_prk_steps)
    theirs = diffusers_loop(PNDMScheduler(**config), STEPS)
    ours = sample_pndm(
        model, deterministic_sample(), schedule_for(config), STEPS, skip_prk_steps=skip_prk_steps
    )
    assert_parity(ours, theirs)


@pytest.mark.parametrize("steps", [3, 4, 7, 8])
def test_pndm_matches_diffusers_at_small_and_odd_step_counts(steps):
    # 8 steps: T // steps = 125 is odd, where diffusers' Runge-Kutta midpoints are off by one timestep
    for skip in (True, False):
        if steps < 4 and not skip:
            continue  # diffusers' Runge-Kutta warm-up needs at least 4 steps
        config = settings("leading", 1, False, skip_prk_steps=skip)
        theirs = diffusers_loop(PNDMScheduler(**config), steps)
        ours = sample_pndm(model, deterministic_sample(), schedule_for(config), steps, skip_prk_steps=skip)
        assert_parity(ours, theirs)


@pytest.mark.parametrize("spacing, offset", [(s, o) for s, o, a in SETTINGS if not a])
def test_lms_matches_diffusers(spacing, offset):
    config = dict(SD_BETAS, timestep_spacing=spacing, steps_offset=offset)
    theirs = diffusers_loop(LMSDiscreteScheduler(**config), STEPS)
    schedule = schedule_for(config)
    ours = sample_lms(model, start_noise("lms", schedule, STEPS), schedule, STEPS)
    assert_parity(ours, theirs)


@pytest.mark.parametrize("spacing, offset", [(s, o) for s, o, a in SETTINGS if not a])
def test_euler_ancestral_matches_diffusers_given_the_same_noise(spacing, offset):
    config = dict(SD_BETAS, timestep_spacing=spacing, steps_offset=offset)
    theirs = diffusers_loop(EulerAncestralDiscreteScheduler(**config), STEPS, seed=7)
    schedule = schedule_for(config)
    x = start_noise("euler_a", schedule, STEPS)
    ours = sample_euler_ancestral(model, x, schedule, STEPS, generator=torch.Generator().manual_seed(7))
    assert_parity(ours, theirs)


@pytest.mark.parametrize("spacing, offset", [(s, o) for s, o, a in SETTINGS if not a])
@pytest.mark.parametrize(
    "options",
    [
        {},
        {"use_karras_sigmas": True},
        {"final_sigmas_type": "sigma_min"},
        {"use_karras_sigmas": True, "final_sigmas_type": "sigma_min", "solver_type": "heun"},
    ],
    ids=["uniform", "karras", "sigma_min", "karras-sigma_min-heun"],
)
def test_dpmpp_2m_matches_diffusers(spacing, offset, options):
    config = dict(SD_BETAS, timestep_spacing=spacing, steps_offset=offset)
    theirs = diffusers_loop(DPMSolverMultistepScheduler(**config, **options), STEPS)
    ours = sample_dpmpp_2m(model, deterministic_sample(), schedule_for(config), STEPS, **options)
    assert_parity(ours, theirs)


@pytest.mark.parametrize("steps", [20, 30])
def test_dpmpp_2m_second_order_final_step_matches_diffusers(steps):
    # with 15+ steps and sigma_min at the end, diffusers keeps the last step second order
    config = dict(SD_BETAS, timestep_spacing="linspace", final_sigmas_type="sigma_min")
    theirs = diffusers_loop(DPMSolverMultistepScheduler(**config), steps)
    ours = sample_dpmpp_2m(
        model, deterministic_sample(), schedule_for(config), steps, final_sigmas_type="sigma_min"
    )
    assert_parity(ours, theirs)


@pytest.mark.parametrize("spacing, offset, one", [s for s in SETTINGS if s[0] != "linspace"])
def test_ddim_inversion_matches_diffusers(spacing, offset, one):
    config = settings(spacing, offset, one, clip_sample=False)
    scheduler = DDIMInverseScheduler(**config)
    scheduler.set_timesteps(STEPS)
    theirs = deterministic_sample()
    for t in scheduler.timesteps:
        theirs = scheduler.step(model(theirs, t), t, theirs).prev_sample
    ours = invert_ddim(model, deterministic_sample(), schedule_for(config), STEPS)
    assert_parity(ours, theirs)


def test_partial_ddim_inversion_stops_where_sampling_from_start_step_begins():
    schedule, steps, start = NoiseSchedule(), 10, 4
    trajectory = {}

    def keep(i, t, x):
        trajectory[i] = (t.item(), x.clone())

    x0 = deterministic_sample()
    invert_ddim(model, x0, schedule, steps, callback=keep)
    partial = invert_ddim(model, x0, schedule, steps, start_step=start)
    last_t, expected = trajectory[steps - start - 1]
    assert last_t == schedule.timesteps(steps)[start].item()
    torch.testing.assert_close(partial, expected, rtol=0, atol=0)


VP_EXTRAS = {"ddim": dict(clip_sample=False, set_alpha_to_one=False)}  # DDIMScheduler's own defaults differ
TAIL_CASES = [
    ("ddim", DDIMScheduler),
    ("euler_a", EulerAncestralDiscreteScheduler),
    ("dpmpp_2m", DPMSolverMultistepScheduler),
]


@pytest.mark.parametrize("name, scheduler_class", TAIL_CASES)
def test_img2img_tail_matches_diffusers(name, scheduler_class):
    config = dict(SD_BETAS, timestep_spacing="leading", steps_offset=1, **VP_EXTRAS.get(name, {}))
    steps, strength = 20, 0.6
    start = img2img_start_step(steps, strength)
    generator = torch.Generator().manual_seed(3)
    x0, noise = torch.randn(2, 4, 8, 8, generator=generator), torch.randn(2, 4, 8, 8, generator=generator)

    scheduler = scheduler_class(**config)
    scheduler.set_timesteps(steps)
    noisy = scheduler.add_noise(x0, noise, scheduler.timesteps[start : start + 1])
    theirs = diffusers_loop(scheduler, steps, seed=5, begin=start, x=noisy)

    schedule = schedule_for(config)
    x = add_noise(name, schedule, steps, x0, noise, start)
    ours = get_sampler(name)(
        model, x, schedule, steps, start_step=start, generator=torch.Generator().manual_seed(5)
    )
    assert_parity(ours, theirs)


@pytest.mark.parametrize("name, scheduler_class", TAIL_CASES)
def test_v_prediction_matches_diffusers(name, scheduler_class):
    config = dict(
        SD_BETAS, timestep_spacing="trailing", prediction_type="v_prediction", **VP_EXTRAS.get(name, {})
    )
    theirs = diffusers_loop(scheduler_class(**config), STEPS, seed=2)
    schedule = schedule_for(config)
    x = start_noise(name, schedule, STEPS)
    ours = get_sampler(name)(model, x, schedule, STEPS, generator=torch.Generator().manual_seed(2))
    assert_parity(ours, theirs)


# --- building from a scheduler_config.json ---------------------------------------------------------------------

RELEASED_PBE_SCHEDULER = {
    "_class_name": "PNDMScheduler",
    "_diffusers_version": "0.11.0.dev0",
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "beta_start": 0.00085,
    "clip_sample": False,
    "num_train_timesteps": 1000,
    "set_alpha_to_one": False,
    "skip_prk_steps": True,
    "steps_offset": 1,
    "trained_betas": None,
}
CONFIG_CASES = [
    (DDIMScheduler, dict(SD_BETAS, timestep_spacing="trailing", set_alpha_to_one=False)),
    (DDIMScheduler, dict()),  # class defaults: linear betas, clip_sample and set_alpha_to_one on
    (PNDMScheduler, dict(SD_BETAS, steps_offset=1)),
    (LMSDiscreteScheduler, dict(SD_BETAS, timestep_spacing="leading", steps_offset=1)),
    (DPMSolverMultistepScheduler, dict(SD_BETAS, use_karras_sigmas=True, solver_type="heun")),
    (EulerAncestralDiscreteScheduler, dict(SD_BETAS)),
]


@pytest.mark.parametrize("scheduler_class, config", CONFIG_CASES, ids=lambda v: getattr(v, "__name__", ""))
def test_sampler_built_from_a_diffusers_config_matches_that_scheduler(scheduler_class, config):
    scheduler = scheduler_class(**config)
    name, schedule, options = from_scheduler_config(
        dict(scheduler.config, _class_name=scheduler_class.__name__)
    )
    theirs = diffusers_loop(scheduler, STEPS, seed=4 if name == "euler_a" else None)
    x = start_noise(name, schedule, STEPS, **options)
    ours = SAMPLERS[name](model, x, schedule, STEPS, generator=torch.Generator().manual_seed(4), **options)
    assert_parity(ours, theirs)


def test_released_checkpoint_scheduler_is_plms_on_the_sd_schedule(tmp_path):
    folder = tmp_path / "scheduler"
    folder.mkdir()
    (folder / "scheduler_config.json").write_text(json.dumps(RELEASED_PBE_SCHEDULER))
    name, schedule, options = from_scheduler_config(tmp_path)  # a pipeline folder
    assert (name, options) == ("pndm", {"skip_prk_steps": True})
    assert schedule == NoiseSchedule()
    theirs = diffusers_loop(PNDMScheduler.from_config(RELEASED_PBE_SCHEDULER), 50)
    assert_parity(SAMPLERS[name](model, deterministic_sample(), schedule, 50, **options), theirs)


def test_unsupported_scheduler_class_raises_listing_supported_ones():
    with pytest.raises(ValueError, match="HeunDiscreteScheduler.*valid: DDIMScheduler, PNDMScheduler"):
        from_scheduler_config({"_class_name": "HeunDiscreteScheduler"})


def test_unsupported_setting_raises_naming_it():
    config = dict(RELEASED_PBE_SCHEDULER, _class_name="DDIMScheduler", thresholding=True)
    with pytest.raises(ValueError, match="thresholding=True is not supported; valid: thresholding=False"):
        from_scheduler_config(config)


def test_unknown_config_keys_are_ignored_with_a_warning():
    with pytest.warns(UserWarning, match="ignoring unknown settings.*some_future_flag"):
        name, schedule, _ = from_scheduler_config(dict(RELEASED_PBE_SCHEDULER, some_future_flag=3))
    assert (name, schedule) == ("pndm", NoiseSchedule())


def test_missing_config_file_raises(tmp_path):
    with pytest.raises(ValueError, match="no scheduler_config.json"):
        from_scheduler_config(tmp_path / "nowhere")


# --- the common signature and its contract ---------------------------------------------------------------------


def gaussian_start(name, schedule, steps):
    return torch.randn(1, 4, 4, 4, generator=torch.Generator().manual_seed(0)) * init_noise_sigma(
        name, schedule, steps
    )


@pytest.mark.parametrize("name", SAMPLERS)
def test_every_sampler_takes_the_common_signature(name):
    schedule, steps = NoiseSchedule(), 6
    seen = []
    out = get_sampler(name)(
        model,
        gaussian_start(name, schedule, steps),
        schedule,
        steps,
        generator=torch.Generator().manual_seed(1),
        callback=lambda i, t, x: seen.append(i),
        progress=False,
        start_step=2,
    )
    assert out.shape == (1, 4, 4, 4) and torch.isfinite(out).all()
    assert seen == [2, 3, 4, 5]


@pytest.mark.parametrize("name", SAMPLERS)
def test_callback_return_value_replaces_x(name):
    schedule, steps = NoiseSchedule(), 5
    x = gaussian_start(name, schedule, steps)
    out = get_sampler(name)(model, x, schedule, steps, callback=lambda i, t, x: torch.full_like(x, 0.25))
    assert torch.equal(out, torch.full_like(x, 0.25))


@pytest.mark.parametrize("name", SAMPLERS)
def test_denoiser_gets_timesteps_of_the_documented_dtype_and_vp_input(name):
    schedule, steps = NoiseSchedule(), 4
    calls = []

    def recording_model(x, t):
        calls.append((x.clone(), t))
        return model(x, t)

    x = gaussian_start(name, schedule, steps)
    get_sampler(name)(recording_model, x, schedule, steps)
    first_x, first_t = calls[0]
    assert first_t.dim() == 0
    assert first_t.dtype == (torch.float32 if name in ("lms", "euler_a") else torch.int64)
    # the first model input is unit-variance-scaled noise, whatever the sampler's own convention
    torch.testing.assert_close(first_x, x / init_noise_sigma(name, schedule, steps), rtol=1e-6, atol=1e-6)


def test_restarting_ddim_from_a_callback_state_continues_the_same_run():
    schedule, steps = NoiseSchedule(), 12
    states = {}
    x = gaussian_start("ddim", schedule, steps)

    def keep(i, t, x):
        states[i] = x.clone()

    full = sample_ddim(model, x, schedule, steps, callback=keep)
    resumed = sample_ddim(model, states[4], schedule, steps, start_step=5)
    torch.testing.assert_close(resumed, full, rtol=0, atol=0)


@pytest.mark.parametrize("name", SAMPLERS)
def test_half_precision_input_gives_half_precision_output_close_to_float32(name):
    schedule, steps = NoiseSchedule(), 8
    x = gaussian_start(name, schedule, steps)
    full = get_sampler(name)(model, x, schedule, steps, generator=torch.Generator().manual_seed(0))
    half = get_sampler(name)(model, x.half(), schedule, steps, generator=torch.Generator().manual_seed(0))
    assert half.dtype == torch.float16
    torch.testing.assert_close(half.float(), full, rtol=2e-2, atol=2e-2)


def test_callback_returning_something_else_than_a_tensor_raises():
    with pytest.raises(TypeError, match="callback must return None or a Tensor"):
        sample_ddim(model, torch.zeros(2), NoiseSchedule(), 3, callback=lambda i, t, x: 1.0)


def test_progress_switch_controls_the_bar(capsys):
    schedule = NoiseSchedule()
    sample_ddim(model, torch.zeros(2), schedule, 3, progress=False)
    assert "DDIM" not in capsys.readouterr().err
    sample_ddim(model, torch.zeros(2), schedule, 3, progress=True)
    assert "DDIM" in capsys.readouterr().err


def test_unknown_sampler_name_raises_listing_names():
    with pytest.raises(
        ValueError, match="unknown sampler 'heun'; valid: ddim, pndm, plms, lms, dpmpp_2m, euler_a"
    ):
        get_sampler("heun")


@pytest.mark.parametrize("name", SAMPLERS)
@pytest.mark.parametrize("steps", [0, 1001])
def test_step_count_outside_range_raises_before_any_model_call(name, steps):
    def exploding_model(x, t):
        raise AssertionError("model called")

    with pytest.raises(ValueError, match=r"steps must be an integer in \[1, 1000\]"):
        get_sampler(name)(exploding_model, torch.zeros(2), NoiseSchedule(), steps)


@pytest.mark.parametrize(
    "call, message",
    [
        (
            lambda: sample_ddim(model, torch.zeros(2), NoiseSchedule(), 10, start_step=11),
            r"start_step .* \[0, steps=10\]",
        ),
        (lambda: sample_ddim(model, torch.zeros(2), NoiseSchedule(), 10, eta=-1.0), "eta must be >= 0"),
        (lambda: sample_lms(model, torch.zeros(2), NoiseSchedule(), 10, order=0), "order must be a positive"),
        (
            lambda: sample_dpmpp_2m(model, torch.zeros(2), NoiseSchedule(), 10, solver_type="x"),
            "valid: midpoint, heun",
        ),
        (
            lambda: sample_dpmpp_2m(model, torch.zeros(2), NoiseSchedule(), 10, final_sigmas_type="x"),
            "valid: zero",
        ),
        (lambda: invert_ddim(model, torch.zeros(2), NoiseSchedule(), 1001), r"\[1, 1000\]"),
        (
            lambda: invert_ddim(model, torch.zeros(2), NoiseSchedule(), 10, fixed_point_iterations=-1),
            "fixed_point_iterations must be a non-negative integer",
        ),
    ],
    ids=[
        "start_step",
        "eta",
        "lms-order",
        "solver_type",
        "final_sigmas_type",
        "inversion-steps",
        "fixed-point",
    ],
)
def test_bad_sampler_options_raise(call, message):
    with pytest.raises(ValueError, match=message):
        call()


@pytest.mark.parametrize(
    ("content", "says"),
    [("{broken", "not valid JSON"), ("[1]", "expected a JSON object"), ('{"_class_name": "Nope"}', "Nope")],
)
def test_broken_scheduler_config_file_is_named(tmp_path, content, says):
    path = tmp_path / "scheduler_config.json"
    path.write_text(content)
    with pytest.raises(ValueError, match=f"{path}.*{says}"):
        from_scheduler_config(path)
