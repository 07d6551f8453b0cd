"""The options of an edit, declared once: default, one line of help and a check per dataclass field.

A field made by `option` (or `required`) carries its help text and its check in the field's metadata. A check is a
function ``check(name, value) -> value`` that returns the value typed (a float for a number, a Path for a path) or
raises ValueError with a message naming the option. From such a dataclass:

- `check_values` checks a mapping of raw values (as a command line or a config gives them), field by field;
- `hydra_defaults` is its config for Hydra: `register_schema` stores it in Hydra's ConfigStore, where a yaml config
  takes it as its base (configs/sample.yaml: ``defaults: [sample_options, ...]``). The schema is untyped on purpose:
  a value reaches the field's check as the user wrote it, so that sample.py and a call from Python give one message;
- `help_lines` is the options part of a ``--help`` page.

The options that sample.py, pbe.eval and the app share (seed, steps, guidance, sampler, dtype, device,
padding_mask_crop, ...) are made by the functions at the end, so that each tool declares and checks them alike.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Callable, Mapping
from functools import partial
from pathlib import Path, PurePath
from typing import Any

MAX_SEED = 2**64 - 1  # the largest seed torch.Generator.manual_seed takes
UNSET = "???"  # Hydra's "required, no default"

Check = Callable[[str, Any], Any]


# ----------------------------------------------------------------------------------------------- checks


def integer(name: str, value, low: int, what: str, high: int | None = None) -> int:
    """An int (not a bool) in [low, high]; else ValueError "`name` must be `what`, got ..."."""
    if (
        isinstance(value, bool)
        or not isinstance(value, int)
        or value < low
        or (high is not None and value > high)
    ):
        raise ValueError(f"{name} must be {what}, got {value!r}")
    return value


def number(name: str, value, ok: Callable[[float], bool], what: str) -> float:
    """A finite int or float (not a bool) for which `ok` holds, as a float."""
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or not ok(value)
    ):
        raise ValueError(f"{name} must be {what}, got {value!r}")
    return float(value)


def flag(name: str, value, allow_none: bool = False) -> bool | None:
    if not isinstance(value, bool) and not (allow_none and value is None):
        raise ValueError(f"{name} must be true or false{' (or null)' if allow_none else ''}, got {value!r}")
    return value


def choice(name: str, value, valid: tuple[str, ...], none: str | None = None) -> str | None:
    """One of `valid`; None too when `none` says what None means (it ends the message)."""
    if value is None and none is not None:
        return None
    if not isinstance(value, str) or value not in valid:
        ending = f", or null {none}" if none is not None else ""
        raise ValueError(f"{name}={value!r}; valid: {', '.join(valid)}{ending}")
    return value


def path(name: str, value, what: str) -> Path:
    """A path (user folder expanded); `what` says what it is for."""
    if value is None or value == "":
        raise ValueError(f"{name} is required: pass {name}=PATH ({what})")
    if not isinstance(value, str | os.PathLike):
        raise ValueError(f"{name} must be a path ({what}), got {value!r}")
    return Path(value).expanduser()


def sampler_name(name: str, value) -> str | None:
    from pbe.diffusion import SAMPLERS

    return choice(name, value, tuple(SAMPLERS), none="for the checkpoint's own")


def dtype_name(name: str, value) -> str:
    from pbe.checkpoints.formats import DTYPES

    return choice(name, value, tuple(DTYPES))


def device_name(name: str, value) -> str | None:
    if value is not None and not isinstance(value, str):
        raise ValueError(f"{name} must be a string such as cpu, cuda or cuda:1 (or null), got {value!r}")
    return value


def mask_upsampling(name: str, value) -> str:
    from pbe.pipeline import MASK_UPSAMPLING

    return choice(name, value, tuple(MASK_UPSAMPLING))


def padding_mask_crop(name: str, value) -> int | str | None:
    from pbe.pipeline import padding_mask_crop_setting

    return padding_mask_crop_setting(value, name)


# ----------------------------------------------------------------------------------------------- fields


def option(default, help: str, check: Check | None = None):
    """A dataclass field: an option with a default, its line of help and its check."""
    return dataclasses.field(default=default, metadata={"help": help, "check": check})


def required(help: str, what: str, check: Check | None = None, unset=UNSET):
    """A dataclass field without a default. `what`: a few words for error messages; `unset`: its value in the
    Hydra config when not given (``???``, or None where leaving it out means something)."""
    return dataclasses.field(metadata={"help": help, "what": what, "check": check, "unset": unset})


def has_default(f: dataclasses.Field) -> bool:
    return f.default is not dataclasses.MISSING


def check_values(cls, values: Mapping) -> dict:
    """Every field of dataclass `cls`: its value in `values` (else its default) passed through its check, in field
    order, so the first wrong option raises."""
    checked = {}
    for f in dataclasses.fields(cls):
        value = values[f.name] if f.name in values or not has_default(f) else f.default
        check = f.metadata.get("check")
        checked[f.name] = check(f.name, value) if check is not None else value
    return checked


def check_fields(obj, names) -> None:
    """Run the checks of the fields `names` of dataclass instance `obj` on the values it holds."""
    by_name = {f.name: f for f in dataclasses.fields(obj)}
    for name in names:
        by_name[name].metadata["check"](name, getattr(obj, name))


def hydra_defaults(cls) -> dict:
    """The options of dataclass `cls` as a Hydra config: defaults as a yaml would write them (paths as text)."""
    node = {}
    for f in dataclasses.fields(cls):
        value = f.default if has_default(f) else f.metadata.get("unset", UNSET)
        node[f.name] = str(value) if isinstance(value, PurePath) else value
    return node


def register_schema(name: str, cls) -> None:
    """Store the options of `cls` in Hydra's ConfigStore as `name`, for a config's defaults list."""
    from hydra.core.config_store import ConfigStore

    ConfigStore.instance().store(name=name, node=hydra_defaults(cls))


def shown(value) -> str:
    """A default as a command line would write it: null, true / false, 5.0, outputs/result.png."""
    return "null" if value is None else str(value).lower() if isinstance(value, bool) else str(value)


def help_lines(cls, skip=()) -> list[str]:
    """``  name=default   help``, one line per option of `cls` (not those in `skip`)."""
    lines = []
    for f in dataclasses.fields(cls):
        if f.name not in skip:
            default = f.default if has_default(f) else f.metadata.get("unset", UNSET)
            lines.append(f"  {f.name + '=' + shown(default):<24} {f.metadata.get('help', '')}".rstrip())
    return lines


# ----------------------------------------------------------------------------------------------- shared options


check_seed = partial(integer, low=0, what=f"an integer in [0, {MAX_SEED}] (2**64 - 1)", high=MAX_SEED)


def seed_option(default: int = 42):
    return option(
        default, "random seed in [0, 2**64 - 1]: the same seed and arguments give the same image", check_seed
    )


def steps_option(default: int = 50, what: str = "an integer >= 1"):
    return option(default, "sampling steps", partial(integer, low=1, what=what))


def guidance_option(default: float = 5.0, what: str = "a number >= 0 (1 or less: no guidance)"):
    return option(
        default,
        "classifier-free guidance scale; 1 or less turns it off",
        partial(number, ok=lambda v: v >= 0, what=what),
    )


def sampler_option():
    return option(
        None,
        "null: the checkpoint's own (PLMS for the released model); or ddim, pndm, plms, lms, dpmpp_2m, euler_a",
        sampler_name,
    )


def strength_option(default: float = 1.0):
    return option(
        default,
        "< 1 starts from the photo noised part of the way (image-to-image)",
        partial(number, ok=lambda v: 0 <= v <= 1, what="a number in [0, 1] (1: from pure noise)"),
    )


def paste_back_option(default: bool = False):
    return option(default, "put the original pixels back outside the mask", flag)


def feather_option(default: int = 0):
    return option(
        default, "paste-back edge width in pixels", partial(integer, low=0, what="an integer >= 0 (pixels)")
    )


def device_option():
    return option(None, "null: cuda when available, else cpu", device_name)


def dtype_option():
    return option("fp32", "fp32, fp16 or bf16", dtype_name)


def padding_mask_crop_option():
    return option(
        "auto",
        "auto: when the photo is larger than the model's training resolution, edit a square around the mask "
        "(margin: half the mask's longest side, >= 8 px) at that resolution and paste it back; N: always, N px "
        "margin; null: never",
        padding_mask_crop,
    )
