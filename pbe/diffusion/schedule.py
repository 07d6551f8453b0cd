"""The discrete noise schedule of a DDPM-trained model, following diffusers' conventions for parity.

One forward process, two views of it:

- VP (variance preserving): ``x_t = sqrt(a_t) x_0 + sqrt(1 - a_t) eps`` with ``a_t = alphas_cumprod[t]``;
- sigma (variance exploding): ``x_t / sqrt(a_t) = x_0 + sigma_t eps`` with ``sigma_t = sqrt((1 - a_t) / a_t)``.

Betas and ``alphas_cumprod`` are float32 and computed with the same torch calls as diffusers, so the tables
agree bit for bit. Timestep lists are computed in float64 Python arithmetic with numpy's rounding rules.
"""

import bisect
import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property, lru_cache

import torch
from torch import Tensor


def linear_betas(beta_start: float, beta_end: float, num_train_timesteps: int) -> Tensor:
    return torch.linspace(beta_start, beta_end, num_train_timesteps, dtype=torch.float32)


def scaled_linear_betas(beta_start: float, beta_end: float, num_train_timesteps: int) -> Tensor:
    """Linear in sqrt(beta): the latent-diffusion (Stable Diffusion, Paint by Example) schedule."""
    return torch.linspace(beta_start**0.5, beta_end**0.5, num_train_timesteps, dtype=torch.float32) ** 2


def cosine_betas(beta_start: float, beta_end: float, num_train_timesteps: int) -> Tensor:
    """Nichol & Dhariwal's cosine schedule (diffusers' "squaredcos_cap_v2"); beta_start/end are unused."""

    def alpha_bar(u: float) -> float:
        return math.cos((u + 0.008) / 1.008 * math.pi / 2) ** 2

    n = num_train_timesteps
    betas = [min(1 - alpha_bar((i + 1) / n) / alpha_bar(i / n), 0.999) for i in range(n)]
    return torch.tensor(betas, dtype=torch.float32)


BETA_SCHEDULES: dict[str, Callable[[float, float, int], Tensor]] = {
    "linear": linear_betas,
    "scaled_linear": scaled_linear_betas,
    "squaredcos_cap_v2": cosine_betas,
    "cosine": cosine_betas,
}


def round_half_even(value: float) -> int:
    """numpy's round: halves go to the even neighbour (Python's round does the same)."""
    return int(round(value))


def numpy_linspace(start: float, stop: float, num: int) -> list[float]:
    """The values np.linspace(start, stop, num) computes in float64, endpoint included."""
    if num == 1:
        return [float(start)]
    step = (stop - start) / (num - 1)
    values = [i * step + start for i in range(num)]
    values[-1] = float(stop)
    return values


def leading_timesteps(steps: int, num_train_timesteps: int, steps_offset: int) -> list[float]:
    """Multiples of T // steps, plus the offset, largest first (unrounded floats; all integers here)."""
    ratio = num_train_timesteps // steps
    return [float(i * ratio + steps_offset) for i in reversed(range(steps))]


def trailing_timesteps(steps: int, num_train_timesteps: int, steps_offset: int) -> list[float]:
    """round(T - i * T / steps) - 1, largest first. steps_offset does not apply (as in diffusers).

    diffusers builds this with np.arange(T, 0, -T/steps), which for some step counts (61, 103, ...) yields
    one extra value that rounds to timestep -1; here the list always has exactly ``steps`` entries.
    """
    t = num_train_timesteps
    delta = (t - t / steps) - t  # np.arange's increment: (start + step) - start
    return [float(round_half_even(t + i * delta) - 1) for i in range(steps)]


def linspace_timesteps(steps: int, num_train_timesteps: int, steps_offset: int) -> list[float]:
    """Evenly spaced between 0 and T - 1, largest first, unrounded. steps_offset does not apply."""
    return numpy_linspace(0.0, num_train_timesteps - 1.0, steps)[::-1]


TIMESTEP_SPACINGS: dict[str, Callable[[int, int, int], list[float]]] = {
    "leading": leading_timesteps,
    "trailing": trailing_timesteps,
    "linspace": linspace_timesteps,
}

PREDICTION_TYPES = ("epsilon", "v_prediction", "sample")


def interp(x: float, table: list[float]) -> float:
    """np.interp(x, arange(len(table)), table): piecewise linear, clamped at both ends."""
    last = len(table) - 1
    if x <= 0:
        return table[0]
    if x >= last:
        return table[last]
    j = int(math.floor(x))
    slope = table[j + 1] - table[j]
    return slope * (x - j) + table[j]


def to_float32(values: list[float]) -> list[float]:
    """Round Python floats to the nearest float32 (diffusers stores its sigma grids in float32)."""
    return torch.tensor(values, dtype=torch.float64).to(torch.float32).tolist()


@dataclass(frozen=True)
class NoiseSchedule:
    """A training noise schedule plus the inference settings a diffusers ``scheduler_config.json`` carries.

    Defaults are those of the released Paint by Example checkpoint (Stable Diffusion v1 schedule).
    ``set_alpha_to_one`` picks what DDIM/PNDM step to after timestep 0 is passed: alpha 1 (a clean sample)
    or alphas_cumprod[0]. ``clip_sample`` (DDIM and DDIM inversion only) clamps the predicted x_0 to
    [-clip_sample_range, clip_sample_range]. ``prediction_type`` says what the denoiser returns; samplers
    convert it to eps.
    """

    num_train_timesteps: int = 1000
    beta_start: float = 0.00085
    beta_end: float = 0.012
    beta_schedule: str = "scaled_linear"
    timestep_spacing: str = "leading"
    steps_offset: int = 1
    set_alpha_to_one: bool = False
    clip_sample: bool = False
    clip_sample_range: float = 1.0
    prediction_type: str = "epsilon"

    def __post_init__(self):
        if not isinstance(self.num_train_timesteps, int) or self.num_train_timesteps < 2:
            raise ValueError(f"num_train_timesteps must be an integer >= 2, got {self.num_train_timesteps!r}")
        choices = [
            ("beta_schedule", self.beta_schedule, BETA_SCHEDULES),
            ("timestep_spacing", self.timestep_spacing, TIMESTEP_SPACINGS),
            ("prediction_type", self.prediction_type, PREDICTION_TYPES),
        ]
        for name, value, valid in choices:
            if value not in valid:
                raise ValueError(f"unknown {name} {value!r}; valid: {', '.join(valid)}")
        if not isinstance(self.steps_offset, int) or self.steps_offset < 0:
            raise ValueError(f"steps_offset must be a non-negative integer, got {self.steps_offset!r}")
        if self.clip_sample_range <= 0:
            raise ValueError(f"clip_sample_range must be > 0, got {self.clip_sample_range!r}")

    @cached_property
    def betas(self) -> Tensor:
        make = BETA_SCHEDULES[self.beta_schedule]
        return make(self.beta_start, self.beta_end, self.num_train_timesteps)

    @cached_property
    def alphas_cumprod(self) -> Tensor:
        """a_t = prod_{s <= t} (1 - beta_s), float32, shape (T,)."""
        return torch.cumprod(1.0 - self.betas, dim=0)

    @cached_property
    def sigmas(self) -> Tensor:
        """sigma_t = sqrt((1 - a_t) / a_t), float32, shape (T,), increasing with t."""
        a = self.alphas_cumprod
        return ((1 - a) / a) ** 0.5

    @cached_property
    def alpha_list(self) -> list[float]:
        return self.alphas_cumprod.tolist()

    @cached_property
    def sigma_list(self) -> list[float]:
        return self.sigmas.tolist()

    @cached_property
    def log_sigma_list(self) -> list[float]:
        return torch.log(self.sigmas).tolist()

    @property
    def final_alpha_cumprod(self) -> float:
        """The alpha a DDIM/PNDM step lands on when it steps past timestep 0."""
        return 1.0 if self.set_alpha_to_one else self.alpha_list[0]

    def alpha_at(self, timestep: int) -> float:
        """alphas_cumprod[timestep], or the final alpha for a negative timestep (DDIM/PNDM convention)."""
        return self.alpha_list[timestep] if timestep >= 0 else self.final_alpha_cumprod

    def check_count(self, steps: int) -> None:
        """steps is an integer in [1, num_train_timesteps] (what every grid needs; see check_steps)."""
        if (
            isinstance(steps, bool)
            or not isinstance(steps, int)
            or not 1 <= steps <= self.num_train_timesteps
        ):
            raise ValueError(
                f"steps must be an integer in [1, {self.num_train_timesteps}] (num_train_timesteps), got {steps!r}"
            )

    def step_problem(self, steps: int, sampler: str | None = None, **options) -> str | None:
        """Why a ``steps``-step run of ``sampler`` cannot run on this schedule, or None if it can.

        ``steps`` must already pass ``check_count``. DDIM, PNDM/PLMS and DDIM inversion (``sampler`` None or
        their names) index the alpha table at every timestep: with "leading" spacing a ``steps_offset`` > 0 can
        push the first timestep, ``(steps - 1) * (T // steps) + steps_offset``, past T - 1 (diffusers raises
        IndexError there). DPM-Solver++ ("dpmpp_2m") with "leading" spacing places ``steps + 1`` points
        ``T // (steps + 1)`` apart, which needs steps < T, and its first timestep ``steps * (T // (steps + 1)) +
        steps_offset`` must not pass T - 1; with ``use_karras_sigmas`` it uses no spacing. LMS and Euler
        ancestral read sigmas by interpolation, clamped at the table's end as diffusers does: any count runs.
        """
        last = self.num_train_timesteps - 1
        if sampler in ("lms", "euler_a") or self.timestep_spacing != "leading":
            return None
        if sampler == "dpmpp_2m":
            if options.get("use_karras_sigmas"):
                return None
            ratio = self.num_train_timesteps // (steps + 1)
            if ratio == 0:
                return (
                    f"DPM-Solver++ with 'leading' spacing places steps + 1 = {steps + 1} points "
                    f"T // (steps + 1) apart on T = {self.num_train_timesteps} timesteps, which needs steps < T"
                )
            first = steps * ratio + self.steps_offset
            rule = f"steps * (T // (steps + 1)) + steps_offset = {first}"
        else:
            first = (steps - 1) * (self.num_train_timesteps // steps) + self.steps_offset
            rule = f"(steps - 1) * (T // steps) + steps_offset = {first}"
        if first > last:
            return f"its first timestep, {rule}, is past the last training timestep {last}"
        return None

    def allowed_steps(self, sampler: str | None = None, **options) -> list[int]:
        """Every step count ``check_steps`` accepts for ``sampler`` on this schedule, in increasing order."""
        return list(_allowed_steps(self, sampler, bool(options.get("use_karras_sigmas"))))

    def check_steps(self, steps: int, sampler: str | None = None, **options) -> None:
        """Raise ValueError unless a ``steps``-step run of ``sampler`` (None: DDIM/PNDM/PLMS, the strictest
        of the table-indexing samplers) works on this schedule; the message says exactly which counts do.
        ``options``: the sampler's keyword options (only ``use_karras_sigmas`` matters here)."""
        self.check_count(steps)
        problem = self.step_problem(steps, sampler, **options)
        if problem is not None:
            allowed = describe_ranges(self.allowed_steps(sampler, **options))
            raise ValueError(
                f"steps={steps} does not work for sampler {sampler or 'ddim/pndm/plms'} on this schedule "
                f"(timestep_spacing='leading', steps_offset={self.steps_offset}): {problem}. "
                f"Allowed steps here: {allowed}"
            )

    def spaced_timesteps(self, steps: int) -> list[float]:
        """The ``timestep_spacing`` rule's timesteps, largest first, as unrounded floats (as diffusers'
        ``set_timesteps``; with "leading" spacing they may pass T - 1, see ``check_steps``)."""
        self.check_count(steps)
        return TIMESTEP_SPACINGS[self.timestep_spacing](steps, self.num_train_timesteps, self.steps_offset)

    def timesteps(self, steps: int) -> Tensor:
        """Integer training timesteps of a ``steps``-step DDIM/PNDM run, largest first (int64)."""
        return torch.tensor([round_half_even(t) for t in self.spaced_timesteps(steps)], dtype=torch.int64)

    def sigma_at(self, timestep: float) -> float:
        """sigma at a possibly fractional timestep, linearly interpolated in sigma (float64)."""
        return interp(float(timestep), self.sigma_list)

    def timestep_at(self, sigma: float) -> float:
        """Inverse of the sigma table, interpolating linearly in log sigma; clamped to [0, T - 1]."""
        logs = self.log_sigma_list
        log_sigma = math.log(max(sigma, 1e-10))
        low = bisect.bisect_right(logs, log_sigma) - 1  # last index whose log sigma <= log_sigma
        low = min(max(low, 0), len(logs) - 2)
        w = (logs[low] - log_sigma) / (logs[low] - logs[low + 1])
        w = min(max(w, 0.0), 1.0)
        return (1 - w) * low + w * (low + 1)

    def karras_sigmas(self, steps: int, rho: float = 7.0) -> list[float]:
        """Karras et al. (2022) sigmas from sigma_max down to sigma_min, uniform in sigma**(1/rho)."""
        self.check_count(steps)
        sigma_min, sigma_max = self.sigma_list[0], self.sigma_list[-1]
        lo, hi = sigma_min ** (1 / rho), sigma_max ** (1 / rho)
        return [(hi + r * (lo - hi)) ** rho for r in numpy_linspace(0.0, 1.0, steps)]


@lru_cache(maxsize=64)
def _allowed_steps(schedule: NoiseSchedule, sampler: str | None, use_karras_sigmas: bool) -> tuple[int, ...]:
    options = {"use_karras_sigmas": use_karras_sigmas}
    counts = range(1, schedule.num_train_timesteps + 1)
    return tuple(n for n in counts if schedule.step_problem(n, sampler, **options) is None)


def describe_ranges(values: list[int] | tuple[int, ...]) -> str:
    """[1, 2, 3, 5, 7, 8] -> '1..3, 5, 7..8'."""
    parts, i = [], 0
    while i < len(values):
        j = i
        while j + 1 < len(values) and values[j + 1] == values[j] + 1:
            j += 1
        parts.append(str(values[i]) if i == j else f"{values[i]}..{values[j]}")
        i = j + 1
    return ", ".join(parts) or "none"
