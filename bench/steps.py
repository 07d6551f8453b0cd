"""Equal quality for less: how many steps each sampler needs to be as close to its converged result as PLMS-50.

For each sampler configuration: the relative distance ||x - x_ref|| / ||x_ref|| of its result at 5..50 steps to the
reference it converges to, the fewest steps that reach PLMS-50's distance (PLMS with the released schedule's
"leading" spacing, the pipeline's default), the model calls that takes, and the wall time relative to PLMS-50 (model
calls dominate: a full-size UNet call costs seconds, a sampler step microseconds; with --model it is measured).

Samplers end in one of three ways, which differ by about 1e-3 relative here (the noise left at the schedule's last
timestep, sigma = 0.029), more than the solver errors of interest; each is compared with the limit of its own kind:
- "ode0": LMS integrates the probability-flow ODE down to sigma = 0;
- "vp0": DDIM and PLMS stop at the last timestep's noise level (alphas_cumprod[0], set_alpha_to_one False);
- "denoise0": DPM-Solver++ ends with the denoised estimate at that last noise level.

Problems:
- default: data N(0, s^2) per coordinate with its exact denoiser; the ODE is solved in closed form, so each reference
  is the exact solution from unit noise at t = 999 (1000-step runs are printed next to them);
- --model DIR (a pbe-readable checkpoint, e.g. pbe.assets.small_model_path()): a guided edit with a real model;
  distances on the final latents; references are 1000-step trailing runs (LMS, PLMS, DPM-Solver++); wall times
  are measured.

Every run starts from the same unit noise (times the sampler's init_noise_sigma), as the pipeline does, so start
conventions (leading spacing starting at t = 981 for 50 steps, t = 801 for 5) count as error, as they do in an edit.
"Steps to match": the fewest steps from which every count up to 50 is at most PLMS-50's distance ("first": the
fewest, where distances cross zero and a lucky count comes early).

    .venv/bin/python bench/steps.py [--data-std 0.5] [--model DIR] [--max-steps 100]

Last lines: `ratio fastest_vs_plms50 <wall of the fastest config matching PLMS-50 / PLMS-50's>` and per config
`ratio calls_<label> <its calls / PLMS-50's calls>`.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from dataclasses import replace

import torch

from pbe.diffusion import SAMPLERS, NoiseSchedule, init_noise_sigma

# label -> (sampler, options, timestep spacing)
CONFIGS: dict[str, tuple[str, dict, str]] = {
    "plms leading": ("plms", {}, "leading"),
    "plms trailing": ("plms", {}, "trailing"),
    "ddim leading": ("ddim", {}, "leading"),
    "ddim trailing": ("ddim", {}, "trailing"),
    "lms trailing": ("lms", {}, "trailing"),
    "dpmpp_2m leading": ("dpmpp_2m", {}, "leading"),
    "dpmpp_2m trailing": ("dpmpp_2m", {}, "trailing"),
    "dpmpp_2m karras": ("dpmpp_2m", {"use_karras_sigmas": True}, "trailing"),
}
ENDINGS = {"lms": "ode0", "ddim": "vp0", "plms": "vp0", "dpmpp_2m": "denoise0"}
REFERENCE_RUNS = {
    "ode0": ("lms", {}, "trailing"),
    "vp0": ("plms", {}, "trailing"),
    "denoise0": ("dpmpp_2m", {}, "trailing"),
}
BASELINE = "plms leading"
BASELINE_STEPS = 50
REPORTED = (5, 8, 10, 15, 20, 25, 30, 40, 50)


def gaussian_denoiser(schedule: NoiseSchedule, s: float):
    """eps for data N(0, s^2): x = sqrt(a) x0 + sqrt(1 - a) eps with E[eps | x] = sqrt(1 - a) x / (a s^2 + 1 - a)."""

    def eps(x, t):
        a = 1 / (1 + schedule.sigma_at(float(t)) ** 2)
        return (1 - a) ** 0.5 * x / (a * s**2 + 1 - a)

    return eps


def gaussian_references(schedule: NoiseSchedule, s: float, noise: torch.Tensor) -> dict[str, torch.Tensor]:
    """Exact ends of the ODE from x = noise (VP) at t = 999, for each way of ending.

    In sigma space (x_s = x / sqrt(a)) the ODE keeps x_s / sqrt(s^2 + sigma^2) constant."""
    a_top, a_end = schedule.alpha_list[-1], schedule.alpha_list[0]
    top = (a_top * s**2 + 1 - a_top) ** 0.5  # sqrt(a) * sqrt(s^2 + sigma^2) at the top
    sigma_end2 = (1 - a_end) / a_end
    return {
        "ode0": noise * s / top,
        "vp0": noise * (a_end * s**2 + 1 - a_end) ** 0.5 / top,
        "denoise0": noise * s**2 / (top * (s**2 + sigma_end2) ** 0.5),
    }


def counting(denoiser: Callable) -> tuple[Callable, list[int]]:
    calls = [0]

    def wrapped(x, t):
        calls[0] += 1
        return denoiser(x, t)

    return wrapped, calls


def run(make_denoiser: Callable, noise: torch.Tensor, config, steps: int, base: NoiseSchedule):
    """(result, model calls, seconds) of one run from unit noise."""
    name, options, spacing = config
    schedule = replace(base, timestep_spacing=spacing)
    denoiser, calls = counting(make_denoiser(schedule))
    x = noise * init_noise_sigma(name, schedule, steps, **options)
    t0 = time.perf_counter()
    out = SAMPLERS[name](denoiser, x, schedule, steps, **options)
    return out, calls[0], time.perf_counter() - t0


def distance(x: torch.Tensor, ref: torch.Tensor) -> float:
    return ((x.double() - ref.double()).norm() / ref.double().norm()).item()


def allowed(config, steps: int, base: NoiseSchedule) -> bool:
    name, options, spacing = config
    return replace(base, timestep_spacing=spacing).step_problem(steps, name, **options) is None


def model_problem(path: str, seed: int = 0):
    """A guided edit with a real model: (make_denoiser(schedule), unit noise, the model's schedule)."""
    from PIL import Image

    from pbe import PaintByExamplePipeline

    pipe = PaintByExamplePipeline.from_pretrained(path)
    size = pipe.size_multiple * max(1, 256 // pipe.size_multiple)
    g = torch.Generator().manual_seed(seed)
    image = Image.fromarray((torch.rand(size, size, 3, generator=g) * 255).byte().numpy())
    mask = Image.new("L", (size, size), 0)
    mask.paste(255, (size // 4, size // 4, 3 * size // 4, 3 * size // 4))
    exemplar = Image.fromarray((torch.rand(96, 96, 3, generator=g) * 255).byte().numpy())
    inputs = pipe._prepare(image, mask, exemplar)
    context = pipe._context(inputs.exemplars, 1, 5.0)
    cond, _ = pipe._cond_latents(inputs, 1, True, torch.Generator().manual_seed(seed))
    h, w = (s // pipe.vae_scale for s in inputs.images.shape[-2:])
    noise = torch.randn(1, pipe.model.vae.config.latent_channels, h, w, generator=g)
    denoise = pipe._denoiser(context, cond, 5.0)
    return (lambda schedule: denoise), noise, pipe.schedule


def matching_steps(distances: dict[int, float], target: float, last: int) -> tuple[int | None, int | None]:
    """(fewest steps at most `target` away, fewest from which every count up to `last` is)."""
    ok = {n: d <= target for n, d in distances.items()}
    first = min((n for n, good in ok.items() if good), default=None)
    failures = [n for n, good in ok.items() if not good and n <= last]
    # the fewest measured count above the last failure (with --max-steps below 50 only REPORTED counts are measured)
    after = min((n for n in ok if n > max(failures)), default=None) if failures else min(ok)
    stable = after if ok.get(last, False) else None
    return first, stable


@torch.no_grad()
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=None, help="a checkpoint folder: use the real model")
    parser.add_argument("--data-std", type=float, default=0.5, help="s of the Gaussian data N(0, s^2)")
    parser.add_argument("--dim", type=int, default=4096, help="coordinates per sample (Gaussian problem)")
    parser.add_argument("--max-steps", type=int, default=60)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    if args.model:
        make, noise, base = model_problem(args.model)
        print(f"model {args.model}: a guided edit (guidance 5), distances on the final latents")
        t0 = time.perf_counter()
        refs = {kind: run(make, noise, cfg, 1000, base)[0] for kind, cfg in REFERENCE_RUNS.items()}
        print(f"references: 1000-step trailing runs ({time.perf_counter() - t0:.0f} s)")
    else:
        s, base = args.data_std, NoiseSchedule()
        noise = torch.randn(args.dim, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
        make = lambda schedule: gaussian_denoiser(schedule, s)  # noqa: E731
        refs = gaussian_references(base, s, noise)
        print(f"data N(0, {s}^2) per coordinate, exact denoiser; references: exact ODE ends from t = 999")
        for kind, cfg in REFERENCE_RUNS.items():
            print(
                f"  {kind:<9} a 1000-step {cfg[0]} trailing run is {distance(run(make, noise, cfg, 1000, base)[0], refs[kind]):.1e} from it"
            )
    kinds = list(refs)
    print(
        "  between endings: "
        + ", ".join(f"{a}-{b} {distance(refs[a], refs[b]):.1e}" for a in kinds for b in kinds if a < b)
    )

    out, base_calls, base_time = run(make, noise, CONFIGS[BASELINE], BASELINE_STEPS, base)
    target = distance(out, refs[ENDINGS[CONFIGS[BASELINE][0]]])
    print(
        f"target: {BASELINE} at {BASELINE_STEPS} steps is {target:.2e} from its reference ({base_calls} model calls, {base_time:.2f} s)\n"
    )

    header = f"{'config':<20}" + "".join(f"{n:>9}" for n in REPORTED)
    print(header + f"{'first':>7}{'steps':>7}{'calls':>7}{'wall vs PLMS-50':>17}")
    best, lines = None, []
    for label, config in CONFIGS.items():
        ref = refs[ENDINGS[config[0]]]
        counts = sorted(set(range(1, args.max_steps + 1)) | set(REPORTED))
        results = {n: run(make, noise, config, n, base) for n in counts if allowed(config, n, base)}
        distances = {n: distance(r[0], ref) for n, r in results.items()}
        row = f"{label:<20}" + "".join(
            f"{distances[n]:>9.1e}" if n in distances else f"{'-':>9}" for n in REPORTED
        )
        first, stable = matching_steps(distances, target, BASELINE_STEPS)
        if stable is None:
            row += f"{first or '-':>7}{'-':>7}{'-':>7}{'-':>17}"
        else:
            _, calls, seconds = results[stable]
            ratio = seconds / base_time if args.model else calls / base_calls
            row += f"{first:>7}{stable:>7}{calls:>7}{ratio:>17.3f}"
            lines.append(f"ratio calls_{label.replace(' ', '_')} {calls / base_calls:.3f}")
            if best is None or ratio < best[1]:
                best = (label, ratio, stable)
        print(row, flush=True)
    print()
    if best is not None:
        how = "measured wall time" if args.model else "model calls"
        print(f"fastest match: {best[0]} at {best[2]} steps, {best[1]:.3f}x PLMS-50 ({how})")
        lines.append(f"ratio fastest_vs_plms50 {best[1]:.3f}")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
