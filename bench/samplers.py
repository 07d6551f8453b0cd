"""Sampler accuracy on the analytic case: Gaussian data N(0, s^2) denoised by its exact denoiser.

For each sampler, prints the error at 5, 10, 20 and 50 steps and the fewest steps that bring it under 1e-3.

Error: the relative error of the output's standard deviation against the exact marginal at the sampler's final
noise level, starting from the exact marginal at its first noise level. Every map here is linear, so for the
deterministic samplers this equals the error of each sample against the exact probability-flow ODE solution;
for the stochastic ones (DDIM with eta = 1, Euler ancestral) it is the error of the output distribution.

The standard deviation is computed exactly rather than estimated: the sampler runs on a vector whose entry 0
holds the start and whose entry k + 1 receives the k-th noise draw (a noise sampler returning one-hot vectors);
by linearity each entry ends up as one coefficient of the output in terms of independent unit Gaussians.

The default spacing is "trailing", where every step count starts at t = 999: with "leading" (the released
model's), few steps start lower (5 steps at t = 801, 1 step at t = 1), and the error, measured from each run's own
start, no longer says how well pure noise is turned into data.

Fewest steps: "first" is the smallest step count with error < threshold; "from" the smallest count from which
every count up to --max-steps stays below it (errors can cross zero, so a lucky count may come early). Every
count is tried, which takes a minute or two. With "trailing" or "linspace" spacing, DDIM and PNDM follow
diffusers' rule of stepping to t - T // steps, which lands on the next timestep only when steps divides T:
their error jumps about between neighbouring step counts.

    python bench/samplers.py [--data-std 0.5] [--spacing trailing] [--offset 0] [--max-steps 500]
"""

import argparse
import time

import torch

from pbe.diffusion import SAMPLERS, NoiseSchedule, noise_sigmas

# label -> (sampler name, options); the stochastic ones also get the one-hot noise sampler
RUNS = {
    "ddim": ("ddim", {}),
    "ddim (eta=1)": ("ddim", {"eta": 1.0}),
    "pndm": ("pndm", {}),
    "plms": ("plms", {}),
    "lms": ("lms", {}),
    "dpmpp_2m": ("dpmpp_2m", {}),
    "dpmpp_2m (karras)": ("dpmpp_2m", {"use_karras_sigmas": True}),
    "euler_a": ("euler_a", {}),
}
STOCHASTIC = {"ddim (eta=1)", "euler_a"}
SIGMA_SPACE = {"lms", "euler_a"}
REPORTED_STEPS = (5, 10, 20, 50)
LADDER = [
    *range(1, 11),
    12,
    15,
    20,
    25,
    30,
    40,
    50,
    60,
    80,
    100,
    120,
    150,
    200,
    250,
    300,
    400,
    500,
    600,
    800,
    1000,
]


def exact_denoiser(schedule: NoiseSchedule, data_std: float):
    def eps(x, t):
        sigma = schedule.sigma_at(float(t))
        a = 1 / (1 + sigma**2)
        return (1 - a) ** 0.5 * x / (a * data_std**2 + 1 - a)

    return eps


def marginal_variance(sigma: float, data_std: float, sigma_space: bool) -> float:
    """Variance of x at noise level sigma in the sampler's convention (x_0 + sigma n, or that over sqrt(1 + sigma^2))."""
    variance = data_std**2 + sigma**2
    return variance if sigma_space else variance / (1 + sigma**2)


def one_hot_noise():
    draws = 0

    def draw(x: torch.Tensor) -> torch.Tensor:
        nonlocal draws
        draws += 1
        noise = torch.zeros_like(x)
        noise[draws] = 1.0
        return noise

    return draw


def sampler_error(label: str, schedule: NoiseSchedule, steps: int, data_std: float) -> float:
    name, options = RUNS[label]
    options = dict(options)
    if label in STOCHASTIC:
        options["noise_sampler"] = one_hot_noise()
    sigmas = noise_sigmas(name, schedule, steps, **options)
    sigma_space = name in SIGMA_SPACE
    start = torch.zeros(steps + 1, dtype=torch.float64)
    start[0] = 1.0
    out = SAMPLERS[name](exact_denoiser(schedule, data_std), start, schedule, steps, **options)
    start_variance = marginal_variance(sigmas[0], data_std, sigma_space)
    variance = out[0].item() ** 2 * start_variance + (out[1:] ** 2).sum().item()
    target = marginal_variance(sigmas[-1], data_std, sigma_space)
    return abs((variance / target) ** 0.5 - 1)


def fewest_steps(label: str, schedule: NoiseSchedule, data_std: float, threshold: float, max_steps: int):
    """(first step count under threshold, first count from which all stay under it); None where none does."""
    below = [sampler_error(label, schedule, n, data_std) < threshold for n in range(1, max_steps + 1)]
    first = below.index(True) + 1 if True in below else None
    last_failure = max((n for n, ok in enumerate(below, start=1) if not ok), default=0)
    stays = last_failure + 1 if last_failure < max_steps else None
    return first, stays


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-std", type=float, default=0.5, help="s of the Gaussian data N(0, s^2)")
    parser.add_argument("--spacing", default="trailing", choices=["leading", "trailing", "linspace"])
    parser.add_argument("--offset", type=int, default=0, help="steps_offset (leading spacing only)")
    parser.add_argument("--threshold", type=float, default=1e-3)
    parser.add_argument("--max-steps", type=int, default=500)
    args = parser.parse_args()

    schedule = NoiseSchedule(timestep_spacing=args.spacing, steps_offset=args.offset)
    print(
        f"Gaussian data s={args.data_std}, SD v1 schedule, spacing={args.spacing}, steps_offset={args.offset}; "
        f"relative error of the output std vs the exact marginal"
    )
    header = f"{'sampler':<20}" + "".join(f"{f'{n} steps':>11}" for n in REPORTED_STEPS)
    print(header + f"{f'first < {args.threshold:g}':>16}{'from':>8}{'time':>8}")
    for label in RUNS:
        began = time.perf_counter()
        errors = [sampler_error(label, schedule, n, args.data_std) for n in REPORTED_STEPS]
        first, stays = fewest_steps(label, schedule, args.data_std, args.threshold, args.max_steps)
        first, stays = (str(n) if n is not None else f">{args.max_steps}" for n in (first, stays))
        row = f"{label:<20}" + "".join(f"{e:>11.2e}" for e in errors)
        print(row + f"{first:>16}{stays:>8}{time.perf_counter() - began:>7.1f}s", flush=True)


if __name__ == "__main__":
    main()
