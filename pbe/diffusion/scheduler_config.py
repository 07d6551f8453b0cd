"""Build a sampler from a diffusers ``scheduler_config.json``, so that a checkpoint's own scheduler is honoured.

``from_scheduler_config(config)`` returns ``(sampler_name, schedule, options)``; run it as
``SAMPLERS[sampler_name](denoiser, x, schedule, steps, **options)``. Settings missing from the config take
the defaults of the diffusers class it names (they differ from class to class, and from ``NoiseSchedule``'s).
Settings that would change the result but are not implemented here raise ``ValueError``; unknown keys are
ignored with a warning.
"""

import json
import math
import warnings
from collections.abc import Mapping
from os import PathLike
from pathlib import Path

from pbe.diffusion.schedule import NoiseSchedule

# The noise schedule every Paint-by-Example model is trained with, and the released model's own scheduler (PLMS,
# i.e. diffusers' PNDM with skip_prk_steps). Defined once: the pipeline's default, the checkpoint writers and
# training all use it. Copy before changing (`dict(PAINT_BY_EXAMPLE_SCHEDULER)`).
PAINT_BY_EXAMPLE_SCHEDULER: dict = {
    "_class_name": "PNDMScheduler",
    "num_train_timesteps": 1000,
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "skip_prk_steps": True,
    "steps_offset": 1,
    "set_alpha_to_one": False,
    "clip_sample": False,
    "prediction_type": "epsilon",
    "timestep_spacing": "leading",
    "trained_betas": None,
}

# diffusers class -> (sampler name, the class's own defaults for the settings read here)
SCHEDULER_CLASSES: dict[str, tuple[str, dict]] = {
    "DDIMScheduler": (
        "ddim",
        {
            "beta_schedule": "linear",
            "beta_start": 0.0001,
            "beta_end": 0.02,
            "clip_sample": True,
            "set_alpha_to_one": True,
            "steps_offset": 0,
            "timestep_spacing": "leading",
        },
    ),
    "PNDMScheduler": (
        "pndm",
        {
            "beta_schedule": "linear",
            "beta_start": 0.0001,
            "beta_end": 0.02,
            "set_alpha_to_one": False,
            "steps_offset": 0,
            "timestep_spacing": "leading",
            "skip_prk_steps": False,
        },
    ),
    "LMSDiscreteScheduler": (
        "lms",
        {
            "beta_schedule": "linear",
            "beta_start": 0.0001,
            "beta_end": 0.02,
            "steps_offset": 0,
            "timestep_spacing": "linspace",
        },
    ),
    "EulerAncestralDiscreteScheduler": (
        "euler_a",
        {
            "beta_schedule": "linear",
            "beta_start": 0.0001,
            "beta_end": 0.02,
            "steps_offset": 0,
            "timestep_spacing": "linspace",
        },
    ),
    "DPMSolverMultistepScheduler": (
        "dpmpp_2m",
        {
            "beta_schedule": "linear",
            "beta_start": 0.0001,
            "beta_end": 0.02,
            "steps_offset": 0,
            "timestep_spacing": "linspace",
            "solver_order": 2,
            "solver_type": "midpoint",
            "lower_order_final": True,
            "euler_at_final": False,
            "use_karras_sigmas": False,
            "final_sigmas_type": "zero",
        },
    ),
}

SCHEDULE_KEYS = (
    "num_train_timesteps",
    "beta_start",
    "beta_end",
    "beta_schedule",
    "timestep_spacing",
    "steps_offset",
    "set_alpha_to_one",
    "clip_sample",
    "clip_sample_range",
    "prediction_type",
)
SAMPLER_OPTION_KEYS = {
    "pndm": ("skip_prk_steps",),
    "dpmpp_2m": (
        "solver_order",
        "solver_type",
        "lower_order_final",
        "euler_at_final",
        "use_karras_sigmas",
        "final_sigmas_type",
    ),
}
# Settings accepted only at the value that leaves the result unchanged (anything else is not implemented).
NEUTRAL_SETTINGS = {
    "trained_betas": None,
    "thresholding": False,
    "rescale_betas_zero_snr": False,
    "use_karras_sigmas": False,
    "use_exponential_sigmas": False,
    "use_beta_sigmas": False,
    "use_lu_lambdas": False,
    "use_flow_sigmas": False,
    "use_dynamic_shifting": False,
    "variance_type": None,
    "lambda_min_clipped": -math.inf,
    "algorithm_type": "dpmsolver++",
    "timestep_type": "discrete",
    "interpolation_type": "linear",
    "sigma_min": None,
    "sigma_max": None,
}
# Settings with no effect here (only used by features that the neutral settings above keep off).
INERT_KEYS = (
    "dynamic_thresholding_ratio",
    "sample_max_value",
    "flow_shift",
    "time_shift_type",
    "shift",
    "use_clipped_model_output",
)


def read_json_object(path: Path, error: type[ValueError] = ValueError) -> dict:
    """A JSON object from the file `path`; `error` naming the file when it is not valid JSON or not an object."""
    try:
        data = json.loads(path.read_bytes())
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise error(f"{path}: not valid JSON ({e})") from None
    if not isinstance(data, dict):
        raise error(f"{path}: expected a JSON object, found a {type(data).__name__}")
    return data


def read_scheduler_config(path: str | PathLike) -> dict:
    """Load scheduler_config.json from a file, a scheduler folder, or a diffusers pipeline folder."""
    path = Path(path)
    for candidate in (path, path / "scheduler_config.json", path / "scheduler" / "scheduler_config.json"):
        if candidate.is_file():
            return read_json_object(candidate)
    raise ValueError(
        f"no scheduler_config.json at {path} (looked at the file, <path>/ and <path>/scheduler/)"
    )


def from_scheduler_config(config: Mapping | str | PathLike) -> tuple[str, NoiseSchedule, dict]:
    """``(sampler_name, schedule, options)`` for a diffusers scheduler config (a dict or a path).

    ValueError for a config this cannot honour; read from a path, the message names the file."""
    if isinstance(config, Mapping):
        return _from_mapping(config)
    path = Path(config)
    config = read_scheduler_config(path)
    try:
        return _from_mapping(config)
    except (ValueError, TypeError) as e:
        raise ValueError(f"{path}: {e}") from None


def check_steps_for(config: Mapping, sampler: str | None, steps: int) -> None:
    """Refuse (ValueError) a step count a checkpoint's schedule cannot run with `sampler` (None: the checkpoint's
    own, with its options), as the pipeline would resolve it; for checks before the weights load."""
    default, schedule, options = from_scheduler_config(config)
    sampler = sampler or default
    schedule.check_steps(steps, sampler, **(options if sampler == default else {}))


def _from_mapping(config: Mapping) -> tuple[str, NoiseSchedule, dict]:
    class_name = config.get("_class_name")
    if class_name not in SCHEDULER_CLASSES:
        raise ValueError(
            f"unsupported scheduler class {class_name!r} in _class_name; valid: {', '.join(SCHEDULER_CLASSES)}"
        )
    name, defaults = SCHEDULER_CLASSES[class_name]
    settings = {**defaults, **{k: v for k, v in config.items() if not k.startswith("_")}}
    option_keys = SAMPLER_OPTION_KEYS.get(name, ())

    for key, neutral in NEUTRAL_SETTINGS.items():
        if key in option_keys or key not in settings:
            continue
        value = settings[key]
        same = value == neutral or (neutral is None and value is None)
        if isinstance(neutral, float) and isinstance(value, int | float):
            same = float(value) == neutral
        if not same:
            raise ValueError(
                f"{class_name} setting {key}={value!r} is not supported; valid: {key}={neutral!r}"
            )

    known = set(SCHEDULE_KEYS) | set(option_keys) | set(NEUTRAL_SETTINGS) | set(INERT_KEYS)
    unknown = sorted(set(settings) - known)
    if unknown:
        warnings.warn(f"{class_name}: ignoring unknown settings {unknown}", stacklevel=3)

    schedule = NoiseSchedule(**{k: settings[k] for k in SCHEDULE_KEYS if k in settings})
    options = {k: settings[k] for k in option_keys}
    return name, schedule, options
