"""sample.py's options (`SampleArgs`: each with its default, help and check), their checking and its ``--help``.

`SampleArgs` is the one place the options are declared: importing this module registers them with Hydra's
ConfigStore as ``sample_options``, the base of configs/sample.yaml (which holds only Hydra's settings), `parse_args`
checks a command line's values with the fields' checks, and `usage` writes ``--help`` from the fields' help.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from functools import partial
from pathlib import Path

from omegaconf import OmegaConf

from pbe import edit_options as opt
from pbe.edit_options import option, required

AUTO_MASK = "auto"
# Arguments that are file paths: when swept, output names carry the file's stem (example-dog), not the whole path.
PATH_KEYS = ("weights", "image", "mask", "example")
CONFIG_DIR = (
    Path(__file__).resolve().parent / "configs"
)  # shipped in the package (top-level configs/ links here)
SCHEMA = "sample_options"  # configs/sample.yaml's base in Hydra's ConfigStore

# configs/sample.yaml puts a sweep's multirun.yaml beside the outputs: hydra.sweep.dir = ${pbe_parent:${out}}
OmegaConf.register_new_resolver("pbe_parent", lambda path: str(Path(path).parent), replace=True)


def _input_path(name: str, value, what: str) -> Path | None:
    return None if name == "mask" and value == AUTO_MASK else opt.path(name, value, what)


def _out_path(name: str, value) -> Path:
    out = opt.path(name, value, "a .png file")
    if out.suffix.lower() != ".png":
        raise ValueError(f"{name} must name a .png file, got {str(out)!r}")
    if out.is_dir():
        raise ValueError(
            f"{name} is a folder ({out}); name a .png file inside it, e.g. {name}={out / 'result.png'}"
        )
    return out


def _input(help: str, what: str, unset=opt.UNSET):
    return required(help, what, partial(_input_path, what=what), unset=unset)


def _count(default: int, help: str, low: int, what: str):
    return option(default, help, partial(opt.integer, low=low, what=what))


def _positive(default: float, help: str, ok, what: str):
    return option(default, help, partial(opt.number, ok=ok, what=what))


@dataclass(kw_only=True)
class SampleArgs:
    """sample.py's options; `parse_args` returns one holding the checked values (paths as Path, numbers as float)."""

    weights: Path = _input(
        "model.ckpt, a diffusers folder or a pbe folder; null: the bundled objects model (pbe/assets/objects)",
        "model.ckpt, a diffusers folder or a pbe folder; default: the bundled objects model, if installed",
        unset=None,
    )
    image: Path = _input("the photo to edit", "the photo to edit")
    # None: mask=auto, a DiffEdit-style mask from generate_mask
    mask: Path | None = _input(
        'white = repaint (same size as image), or "auto" for a DiffEdit-style mask (written as <out stem>_mask.png)',
        f"white = repaint, or mask={AUTO_MASK}",
    )
    example: Path = _input(
        "the exemplar: a picture of what to paint into the mask",
        "the exemplar: a picture of what to paint in",
    )
    out: Path = option(
        Path("outputs/result.png"), "a .png; num_images > 1 gives result_0.png, result_1.png, ...", _out_path
    )
    grid: bool = option(
        True,
        "also write <out stem>_grid.png: source | mask | exemplar | result, one row per result",
        opt.flag,
    )
    seed: int = opt.seed_option()
    steps: int = opt.steps_option()
    guidance: float = opt.guidance_option()
    sampler: str | None = opt.sampler_option()
    strength: float = opt.strength_option()
    paste_back: bool = opt.paste_back_option()
    feather: int = opt.feather_option()
    num_images: int = _count(1, "results per run, each with its own noise", 1, "an integer >= 1")
    device: str | None = opt.device_option()
    dtype: str = opt.dtype_option()
    overwrite: bool = option(
        False, "replace existing outputs (never an input, nor a file that is not a .png)", opt.flag
    )
    progress: bool = option(True, "progress bars and a line while the weights load", opt.flag)
    mask_strength: float = _positive(
        0.5,
        "mask=auto: how far the photo is noised before comparing predictions, in (0, 1]",
        lambda v: 0 < v <= 1,
        "a number in (0, 1]",
    )
    num_maps: int = _count(10, "mask=auto: noise draws averaged", 1, "an integer >= 1")
    threshold_ratio: float = _positive(
        3.0,
        "mask=auto: clamp at this multiple of the mean difference before thresholding",
        lambda v: v > 0,
        "a number > 0",
    )
    mask_upsample: str = option(
        "nearest",
        "mask=auto: the map to pixel size: nearest (DiffEdit), bilinear, or guided (follows the photo's edges)",
        opt.mask_upsampling,
    )
    mask_single_region: bool = option(
        False, "mask=auto: keep only the connected region with the strongest response", opt.flag
    )
    vae_tiling: bool | None = option(  # None: tile the VAE above 1024 pixels a side
        None,
        "null: run the VAE on tiles above 1024 pixels a side (bounded memory, Ctrl-C between tiles); true / false: "
        "always / never",
        partial(opt.flag, allow_none=True),
    )
    warn_pixels: int = _count(
        2048 * 2048,
        "warn before editing an image of more pixels than this (2048x2048); 0: never",
        0,
        "an integer >= 0 (0: never warn)",
    )
    max_pixels: int = _count(
        4096 * 4096,
        "refuse (from the file's header) an image, mask or exemplar of more pixels (4096x4096); 0: no limit",
        0,
        "an integer >= 0 (0: no limit)",
    )
    # "auto": edit a crop around the mask at the model's training resolution when the photo is larger than it;
    # an int: always crop, with that many pixels of margin; None: edit the whole photo at its own size
    padding_mask_crop: int | str | None = opt.padding_mask_crop_option()


# The options without a default, and what each is (for the message when one is missing).
REQUIRED = {f.name: f.metadata["what"] for f in fields(SampleArgs) if not opt.has_default(f)}

opt.register_schema(SCHEMA, SampleArgs)


def default_weights() -> Path | None:
    """The objects model trained by this project (pbe/assets/objects), used when no weights= is given; None if
    absent."""
    from pbe.assets import default_model_path

    try:
        return default_model_path()
    except FileNotFoundError:
        return None


def parse_args(values: Mapping) -> SampleArgs:
    """Check every argument (types, ranges, that the weights path exists) and return them typed.

    `values` holds the keys of configs/sample.yaml (missing optional keys take the defaults); required ones
    (weights, image, mask, example) may be None when not given.
    """
    from pbe.checkpoints.formats import check_weights

    known = {f.name for f in fields(SampleArgs)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"unknown argument(s) {unknown}; valid: {', '.join(sorted(known))}")
    values = dict(values)
    if values.get("weights") in (None, ""):
        values["weights"] = default_weights()
    missing = [key for key in REQUIRED if values.get(key) is None or values.get(key) == ""]
    if missing:  # all of them at once
        what = "; ".join(f"{key}=PATH ({REQUIRED[key]})" for key in missing)
        raise ValueError(f"{', '.join(missing)} {'is' if len(missing) == 1 else 'are'} required: pass {what}")
    args = SampleArgs(**opt.check_values(SampleArgs, values))
    check_weights(args.weights)
    return args


def config_values(cfg) -> dict:
    """A Hydra / OmegaConf config as a plain dict, with unset required values (``???``) as None."""
    values = OmegaConf.to_container(cfg, resolve=True)
    return {key: None if OmegaConf.is_missing(cfg, key) else value for key, value in values.items()}


QUOTING_HINT = (
    "a value with characters the command line does not take bare (brackets, '=', quotes) goes in quotes inside "
    "the shell's: key=\"'my (1).png'\""
)


def quote_paths(argv: Sequence[str], keys: Sequence[str] = (*PATH_KEYS, "out")) -> list[str]:
    """Paths Hydra's override grammar cannot read bare (non-ASCII letters, ``=``, brackets), quoted for it:
    ``image=chät.png`` -> ``image='chät.png'``. Values that parse, and sweeps (a comma), are left as they are."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parser = OverridesParser.create()
    quoted = []
    for arg in argv:
        key, sep, value = arg.partition("=")
        if sep and key in keys and value and "," not in value and value[0] not in "'\"":
            try:
                parser.parse_override(arg)
            except Exception:  # noqa: BLE001 -- Hydra raises several kinds; quoting is the cure for all
                quote = "'" if "'" not in value else '"' if '"' not in value else None
                if quote is not None:
                    arg = f"{key}={quote}{value}{quote}"
        quoted.append(arg)
    return quoted


def usage() -> str:
    """sample.py --help: every option with its default and a one-line description (from `SampleArgs`)."""
    lines = [
        "usage: python sample.py weights=PATH image=PATH mask=PATH|auto example=PATH [key=value ...]",
        "       python sample.py -m weights=PATH image=PATH mask=PATH example=PATH seed=1,2,3 [key=a,b ...]",
        "",
        "Paints the exemplar into the white region of the mask and writes the result and a grid (source | mask |",
        "exemplar | result). Every argument is checked before the weights load; existing files are kept unless",
        "overwrite=true, and an output never replaces an input.",
        "",
        "required:",
    ]
    for f in fields(SampleArgs):
        if f.name in REQUIRED:
            lines.append(f"  {f.name + '=...':<24} {f.metadata['help']}")
    lines += ["", "options (default):", *opt.help_lines(SampleArgs, skip=REQUIRED)]
    lines += [
        "",
        "sweeps (-m before or after all key=value arguments, not between them):",
        "  key=a,b,c or key=range(1,4) runs one job per value, every combination of the swept keys; e.g.",
        "  python sample.py -m ... seed=1,2 sampler=ddim,plms writes result_seed1_sampler-ddim.png, ... and",
        "  multirun.yaml beside them. Every job (arguments, inputs, output names) is checked before the first runs.",
        "",
        "Hydra's own help: python sample.py --hydra-help",
    ]
    return "\n".join(lines)
