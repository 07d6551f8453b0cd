"""Samplers as small functions over a denoiser and a noise schedule (k-diffusion style), diffusers semantics.

Every sampler has the signature::

    sample_<name>(denoiser, x, schedule, steps, *, generator=None, callback=None, progress=False,
                  start_step=0, **options) -> Tensor

- ``denoiser(x, t)`` returns the model output for the schedule's ``prediction_type`` (eps by default; the
  samplers convert v or x_0 predictions to eps). ``t`` is a 0-d tensor on x's device holding a training
  timestep: int64 for DDIM, PNDM/PLMS and DPM-Solver++, float32 (possibly fractional) for LMS and Euler
  ancestral. The ``x`` the denoiser sees is always in the VP convention the network was trained on: LMS and
  Euler ancestral keep their state in sigma space and divide it by ``sqrt(sigma^2 + 1)`` themselves before the
  call, exactly as diffusers pipelines do with ``scale_model_input``, so one denoiser serves every sampler.
- ``x``: the starting latent. For a full run, unit Gaussian noise times
  ``init_noise_sigma(name, schedule, steps)``; to start part-way (img2img ``strength``, DiffEdit),
  ``add_noise(name, schedule, steps, x0, noise, start_step)`` (both in ``pbe.diffusion.noising``).
- ``steps``: the number of steps of the full schedule, 1..num_train_timesteps, less any count whose timesteps would
  leave the schedule's table (``schedule.check_steps(steps, name)`` says which; e.g. 1000 for DDIM/PNDM/PLMS with
  "leading" spacing and steps_offset 1, where diffusers fails with IndexError).
- ``start_step``: the index of the first step to run (0..steps). The run walks the same timesteps and noise
  levels as the full ``steps``-step run from that index on; multistep samplers start their history afresh.
- ``generator``: the ``torch.Generator`` for the noise DDIM with eta > 0 and Euler ancestral add (drawn with
  ``torch.randn(x.shape)`` once per step, in the order diffusers draws it). ``noise_sampler(x)``, where
  accepted, replaces it.
- ``callback(step_index, t, x)``: called after every step with the step's index in the full run, its timestep
  (as given to the denoiser) and the new x; a tensor it returns replaces x (e.g. to blend in latents outside a
  mask). PNDM's extra model calls (its Runge-Kutta or Heun warm-up) belong to the step they serve.
- ``progress``: show a tqdm progress bar.

Internally x is kept in at least float32; the result has x's dtype. ``SAMPLERS`` maps names to the functions.

Full runs match diffusers' schedulers (tests/test_samplers.py). Deliberate differences: runs started part-way
(``start_step`` > 0) build LMS's and PNDM's multistep history afresh, where diffusers' LMS applies order-4
weights to a one-entry history and its PNDM restarts the warm-up on shifted timesteps; "trailing" spacing always
has exactly ``steps`` timesteps (diffusers adds a bogus timestep -1 for some counts, e.g. 61); DPM-Solver++
stays first order where a grid repeats a sigma (diffusers divides by zero). Kept for parity although it costs
accuracy: DDIM and PNDM step from t to t - T // steps whatever the spacing, which with "trailing" or
"linspace" lands on the next timestep only when steps divides T (see bench/samplers.py).
"""

import math
from collections.abc import Callable

import torch
from torch import Tensor
from tqdm.auto import tqdm

from pbe.diffusion.grids import dpm_grid, sigma_grid
from pbe.diffusion.schedule import NoiseSchedule

Denoiser = Callable[[Tensor, Tensor], Tensor]
Callback = Callable[[int, Tensor, Tensor], Tensor | None]
NoiseSampler = Callable[[Tensor], Tensor]

# Adams-Bashforth weights for the newest eps first, by number of eps available (PNDM's PLMS phase).
ADAMS_BASHFORTH = {
    1: (1.0,),
    2: (3 / 2, -1 / 2),
    3: (23 / 12, -16 / 12, 5 / 12),
    4: (55 / 24, -59 / 24, 37 / 24, -9 / 24),
}


def to_eps(output: Tensor, x: Tensor, alpha: float, prediction_type: str) -> Tensor:
    """Convert a model output to eps for an input x = sqrt(alpha) x_0 + sqrt(1 - alpha) eps."""
    if prediction_type == "epsilon":
        return output
    if prediction_type == "v_prediction":
        return alpha**0.5 * output + (1 - alpha) ** 0.5 * x
    if prediction_type == "sample":
        return (x - alpha**0.5 * output) / (1 - alpha) ** 0.5
    raise ValueError(f"unknown prediction_type {prediction_type!r}; valid: epsilon, v_prediction, sample")


def gaussian_noise(generator: torch.Generator | None) -> NoiseSampler:
    """Noise like x from ``generator`` (drawn on the generator's device, then moved to x's)."""

    def draw(x: Tensor) -> Tensor:
        device = generator.device if generator is not None else x.device
        return torch.randn(x.shape, generator=generator, dtype=x.dtype, device=device).to(x.device)

    return draw


def check_run(schedule: NoiseSchedule, steps: int, start_step: int, sampler: str, **options) -> None:
    schedule.check_steps(steps, sampler, **options)
    if isinstance(start_step, bool) or not isinstance(start_step, int) or not 0 <= start_step <= steps:
        raise ValueError(f"start_step must be an integer in [0, steps={steps}], got {start_step!r}")


def check_eta(eta: float) -> None:
    if not eta >= 0:
        raise ValueError(f"eta must be >= 0 (0: deterministic, 1: fully stochastic), got {eta!r}")


def step_range(start_step: int, steps: int, progress: bool, name: str):
    return tqdm(range(start_step, steps), desc=name, disable=not progress, leave=False)


def working_copy(x: Tensor) -> Tensor:
    return x.to(torch.promote_types(x.dtype, torch.float32))


def after_step(callback: Callback | None, index: int, t: Tensor, x: Tensor) -> Tensor:
    if callback is None:
        return x
    replaced = callback(index, t, x)
    if replaced is None:
        return x
    if not isinstance(replaced, Tensor):
        raise TypeError(f"callback must return None or a Tensor to replace x, got {type(replaced).__name__}")
    return replaced.to(x.dtype)


def sample_ddim(
    denoiser: Denoiser,
    x: Tensor,
    schedule: NoiseSchedule,
    steps: int,
    *,
    generator: torch.Generator | None = None,
    callback: Callback | None = None,
    progress: bool = False,
    start_step: int = 0,
    eta: float = 0.0,
    noise_sampler: NoiseSampler | None = None,
) -> Tensor:
    """DDIM (Song et al. 2021): eta = 0 follows the probability-flow ODE (first order), eta = 1 is DDPM-like."""
    check_run(schedule, steps, start_step, "ddim")
    check_eta(eta)
    noise_sampler = noise_sampler or gaussian_noise(generator)
    timesteps = schedule.timesteps(steps).tolist()
    jump = schedule.num_train_timesteps // steps
    limit = schedule.clip_sample_range
    out_dtype, x = x.dtype, working_copy(x)
    for i in step_range(start_step, steps, progress, "DDIM"):
        t = torch.tensor(timesteps[i], device=x.device)
        a, a_prev = schedule.alpha_list[timesteps[i]], schedule.alpha_at(timesteps[i] - jump)
        eps = to_eps(denoiser(x, t), x, a, schedule.prediction_type).to(x.dtype)
        x0 = (x - (1 - a) ** 0.5 * eps) / a**0.5
        if schedule.clip_sample:
            x0 = x0.clamp(-limit, limit)
        std = eta * ((1 - a_prev) / (1 - a) * (1 - a / a_prev)) ** 0.5
        x = a_prev**0.5 * x0 + max(1 - a_prev - std**2, 0.0) ** 0.5 * eps
        if eta > 0:
            x = x + std * noise_sampler(x)
        x = after_step(callback, i, t, x)
    return x.to(out_dtype)


def pndm_transfer(x: Tensor, eps: Tensor, a: float, a_next: float) -> Tensor:
    """PNDM's transfer (Liu et al. 2022, eq. 9): move x from alpha a to alpha a_next along eps."""
    denominator = a * (1 - a_next) ** 0.5 + (a * (1 - a) * a_next) ** 0.5
    return (a_next / a) ** 0.5 * x - (a_next - a) / denominator * eps


def sample_pndm(
    denoiser: Denoiser,
    x: Tensor,
    schedule: NoiseSchedule,
    steps: int,
    *,
    generator: torch.Generator | None = None,
    callback: Callback | None = None,
    progress: bool = False,
    start_step: int = 0,
    skip_prk_steps: bool = False,
) -> Tensor:
    """PNDM (Liu et al. 2022): a 4th-order Adams-Bashforth method on eps with the PNDM transfer.

    Warm-up, as in diffusers: three Runge-Kutta steps of four model calls each (``skip_prk_steps=False``), or
    (``skip_prk_steps=True``, the "PLMS" of latent diffusion) one Heun-like step that averages the eps at both
    ends, after which the method runs at order 2, 3 then 4. Steps target ``t - T // steps`` (diffusers' rule).
    """
    check_run(schedule, steps, start_step, "pndm")
    timesteps = schedule.timesteps(steps).tolist()
    jump = schedule.num_train_timesteps // steps
    half = jump // 2
    alpha = schedule.alpha_at
    out_dtype, x = x.dtype, working_copy(x)

    def eps_at(sample: Tensor, timestep: int) -> Tensor:
        t = torch.tensor(timestep, device=x.device)
        return to_eps(denoiser(sample, t), sample, alpha(timestep), schedule.prediction_type).to(x.dtype)

    history: list[Tensor] = []
    for i in step_range(start_step, steps, progress, "PNDM"):
        t, taken, has_next = timesteps[i], i - start_step, i + 1 < steps
        if not skip_prk_steps and taken < 3 and has_next:
            # Runge-Kutta step to the next timestep; midpoints as diffusers places them (t - half, then
            # t_next + half, which differ when T // steps is odd)
            t_next = timesteps[i + 1]
            e1 = eps_at(x, t)
            e2 = eps_at(pndm_transfer(x, e1, alpha(t), alpha(t - half)), t_next + half)
            e3 = eps_at(pndm_transfer(x, e2, alpha(t), alpha(t_next + half)), t_next + half)
            e4 = eps_at(pndm_transfer(x, e3, alpha(t), alpha(t_next)), t_next)
            history.append(e1)
            x = pndm_transfer(x, e1 / 6 + e2 / 3 + e3 / 3 + e4 / 6, alpha(t), alpha(t_next))
        elif skip_prk_steps and taken == 0 and has_next:
            # Heun-like start: predict with eps(t), correct with the mean of eps(t) and eps at the next timestep
            t_next = timesteps[i + 1]
            e0 = eps_at(x, t)
            e1 = eps_at(pndm_transfer(x, e0, alpha(t), alpha(t - jump)), t_next)
            history.append(e0)
            x = pndm_transfer(x, (e0 + e1) / 2, alpha(t_next + jump), alpha(t_next))
        else:
            history = history[-3:] + [eps_at(x, t)]
            weights = ADAMS_BASHFORTH[len(history)]
            eps = sum(w * e for w, e in zip(weights, reversed(history)))
            x = pndm_transfer(x, eps, alpha(t), alpha(t - jump))
        x = after_step(callback, i, torch.tensor(t, device=x.device), x)
    return x.to(out_dtype)


def sample_plms(
    denoiser: Denoiser,
    x: Tensor,
    schedule: NoiseSchedule,
    steps: int,
    *,
    generator: torch.Generator | None = None,
    callback: Callback | None = None,
    progress: bool = False,
    start_step: int = 0,
) -> Tensor:
    """PLMS, the paper's sampler: PNDM with ``skip_prk_steps=True`` (steps + 1 model calls)."""
    return sample_pndm(
        denoiser,
        x,
        schedule,
        steps,
        generator=generator,
        callback=callback,
        progress=progress,
        start_step=start_step,
        skip_prk_steps=True,
    )


def lms_coefficients(nodes: list[float], target: float) -> list[float]:
    """Weights of the derivatives at ``nodes`` (newest first, distinct) for the step nodes[0] -> target.

    Each weight is the integral from nodes[0] to target of a Lagrange basis polynomial on the nodes, computed
    exactly (in a variable shifted to start at 0).
    """
    start = nodes[0]
    length = target - start
    shifted = [n - start for n in nodes]
    order = len(nodes)
    weights = []
    for j in range(order):
        poly, denominator = [1.0], 1.0  # coefficients, lowest power first
        for k in range(order):
            if k == j:
                continue
            poly = [
                (poly[m - 1] if m > 0 else 0.0) - shifted[k] * (poly[m] if m < len(poly) else 0.0)
                for m in range(len(poly) + 1)
            ]
            denominator *= shifted[j] - shifted[k]
        integral = sum(c * length ** (m + 1) / (m + 1) for m, c in enumerate(poly))
        weights.append(integral / denominator)
    return weights


def sample_lms(
    denoiser: Denoiser,
    x: Tensor,
    schedule: NoiseSchedule,
    steps: int,
    *,
    generator: torch.Generator | None = None,
    callback: Callback | None = None,
    progress: bool = False,
    start_step: int = 0,
    order: int = 4,
) -> Tensor:
    """Linear multistep in sigma space (Karras et al. 2022's "LMS"), order 4 by default, ramping up from 1."""
    check_run(schedule, steps, start_step, "lms")
    if isinstance(order, bool) or not isinstance(order, int) or order < 1:
        raise ValueError(f"order must be a positive integer, got {order!r}")
    grid = sigma_grid(schedule, steps)
    out_dtype, x = x.dtype, working_copy(x)
    history: list[tuple[float, Tensor]] = []  # (sigma, dx/dsigma = eps), oldest first, distinct sigmas
    for i in step_range(start_step, steps, progress, "LMS"):
        sigma = grid.sigmas[i]
        t = torch.tensor(grid.timesteps[i], dtype=torch.float32, device=x.device)
        x_in = x / (sigma**2 + 1) ** 0.5
        eps = to_eps(denoiser(x_in, t), x_in, 1 / (sigma**2 + 1), schedule.prediction_type).to(x.dtype)
        # A sigma the grid repeats (the table's end, reached by "leading" timesteps past T - 1) replaces its
        # older derivative rather than becoming a second, coincident interpolation node (diffusers: NaN).
        history = [h for h in history if h[0] != sigma][-(order - 1) :] if order > 1 else []
        history.append((sigma, eps))
        nodes = [h[0] for h in reversed(history)]
        weights = lms_coefficients(nodes, grid.sigmas[i + 1])
        x = x + sum(w * h[1] for w, h in zip(weights, reversed(history)))
        x = after_step(callback, i, t, x)
    return x.to(out_dtype)


def sample_euler_ancestral(
    denoiser: Denoiser,
    x: Tensor,
    schedule: NoiseSchedule,
    steps: int,
    *,
    generator: torch.Generator | None = None,
    callback: Callback | None = None,
    progress: bool = False,
    start_step: int = 0,
    eta: float = 1.0,
    noise_sampler: NoiseSampler | None = None,
) -> Tensor:
    """Euler ancestral in sigma space: an Euler step down to sigma_down, then fresh noise up to the next sigma.

    eta scales the re-injected noise (1 = diffusers' EulerAncestralDiscreteScheduler, 0 = plain Euler).
    """
    check_run(schedule, steps, start_step, "euler_a")
    check_eta(eta)
    noise_sampler = noise_sampler or gaussian_noise(generator)
    grid = sigma_grid(schedule, steps)
    out_dtype, x = x.dtype, working_copy(x)
    for i in step_range(start_step, steps, progress, "Euler ancestral"):
        sigma, sigma_next = grid.sigmas[i], grid.sigmas[i + 1]
        t = torch.tensor(grid.timesteps[i], dtype=torch.float32, device=x.device)
        x_in = x / (sigma**2 + 1) ** 0.5
        eps = to_eps(denoiser(x_in, t), x_in, 1 / (sigma**2 + 1), schedule.prediction_type).to(x.dtype)
        sigma_up = min(sigma_next, eta * (sigma_next**2 * (sigma**2 - sigma_next**2) / sigma**2) ** 0.5)
        sigma_down = (sigma_next**2 - sigma_up**2) ** 0.5
        x = x + (sigma_down - sigma) * eps
        if eta > 0:
            x = x + sigma_up * noise_sampler(x)
        x = after_step(callback, i, t, x)
    return x.to(out_dtype)


SOLVER_TYPES = ("midpoint", "heun")


def sample_dpmpp_2m(
    denoiser: Denoiser,
    x: Tensor,
    schedule: NoiseSchedule,
    steps: int,
    *,
    generator: torch.Generator | None = None,
    callback: Callback | None = None,
    progress: bool = False,
    start_step: int = 0,
    use_karras_sigmas: bool = False,
    final_sigmas_type: str = "zero",
    solver_order: int = 2,
    solver_type: str = "midpoint",
    lower_order_final: bool = True,
    euler_at_final: bool = False,
) -> Tensor:
    """DPM-Solver++(2M) (Lu et al. 2022): second-order multistep on the x_0 prediction in log-SNR time.

    Works in VP space with integer timesteps (the denoiser sees x as is). Options as in diffusers'
    DPMSolverMultistepScheduler: Karras sigmas, the last sigma (0 or sigma_min), the second-order variant
    ("midpoint" or "heun"), and when the last step falls back to first order (always when it goes to sigma 0;
    with ``lower_order_final`` when steps < 15; always with ``euler_at_final``).
    """
    check_run(schedule, steps, start_step, "dpmpp_2m", use_karras_sigmas=use_karras_sigmas)
    if solver_order not in (1, 2):
        raise ValueError(f"solver_order must be 1 or 2 for DPM-Solver++(2M), got {solver_order!r}")
    if solver_type not in SOLVER_TYPES:
        raise ValueError(f"unknown solver_type {solver_type!r}; valid: {', '.join(SOLVER_TYPES)}")
    grid = dpm_grid(schedule, steps, use_karras_sigmas, final_sigmas_type)
    final_first_order = euler_at_final or (lower_order_final and steps < 15) or final_sigmas_type == "zero"
    out_dtype, x = x.dtype, working_copy(x)
    previous_x0: Tensor | None = None
    for i in step_range(start_step, steps, progress, "DPM-Solver++(2M)"):
        sigma, sigma_next = grid.sigmas[i], grid.sigmas[i + 1]
        t = torch.tensor(int(grid.timesteps[i]), device=x.device)
        alpha_s = 1 / (sigma**2 + 1) ** 0.5
        eps = to_eps(denoiser(x, t), x, alpha_s**2, schedule.prediction_type).to(x.dtype)
        x0 = (x - sigma * alpha_s * eps) / alpha_s
        if sigma_next == 0:
            x = x0  # the first-order update's limit as sigma_next -> 0
        else:
            alpha_t = 1 / (sigma_next**2 + 1) ** 0.5
            h = math.log(sigma) - math.log(sigma_next)  # lambda = log(alpha / sigma_vp) = -log(sigma)
            phi = -math.expm1(-h)  # 1 - exp(-h)
            x = (sigma_next * alpha_t) / (sigma * alpha_s) * x + alpha_t * phi * x0
            first_order = solver_order == 1 or previous_x0 is None or (i == steps - 1 and final_first_order)
            h_prev = 0.0 if first_order else math.log(grid.sigmas[i - 1]) - math.log(sigma)
            if (
                h_prev > 0
            ):  # (a repeated sigma, h_prev = 0, only happens on degenerate grids: stay first order)
                d1 = (x0 - previous_x0) * (h / h_prev)
                if solver_type == "midpoint":
                    x = x + 0.5 * alpha_t * phi * d1
                else:
                    x = x + alpha_t * (1 - phi / h) * d1
        previous_x0 = x0
        x = after_step(callback, i, t, x)
    return x.to(out_dtype)


SAMPLERS: dict[str, Callable[..., Tensor]] = {
    "ddim": sample_ddim,
    "pndm": sample_pndm,
    "plms": sample_plms,
    "lms": sample_lms,
    "dpmpp_2m": sample_dpmpp_2m,
    "euler_a": sample_euler_ancestral,
}


def get_sampler(name: str) -> Callable[..., Tensor]:
    if name not in SAMPLERS:
        raise ValueError(f"unknown sampler {name!r}; valid: {', '.join(SAMPLERS)}")
    return SAMPLERS[name]
