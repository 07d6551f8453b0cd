"""A web app for exemplar editing: upload a photo, paint over what to replace, drop in an exemplar, see the result.

    python -m pbe.app [model=PATH] [host=127.0.0.1] [port=7860] [max_pixels=4194304] [device=cpu|cuda] [dtype=fp32]
                      [padding_mask_crop=auto|N|none]

Built on Gradio (`pip install 'pbe[app]'`) over `pbe.PaintByExamplePipeline`. `model` is anything pbe reads (the
authors' model.ckpt, a diffusers folder, a pbe folder); without it the bundled objects model is used once it exists.
The server listens on 127.0.0.1 only unless `host` says otherwise, sends nothing anywhere (Gradio's analytics are
off), runs one model job at a time (other tabs wait in Gradio's queue) and refuses images above `max_pixels` before
any model work. Bad input (not an image, an empty mask, steps 0, ...) is reported in the page, from the pipeline's
own checks, until dismissed; the server log gets one line for it (`pbe.app: error: ...`) and the app goes on serving.

`padding_mask_crop=auto` (the default): when the model records its training resolution (`pipe.train_resolution`) and
the photo is larger than it on either side, the model edits a square around the mask at that resolution, pasted back
into the photo (the pixels outside the mask stay the photo's, whatever the paste-back box says): fast, and what a small
model can paint. N: always crop, with N pixels of margin; none: edit the whole photo at its own size.

The editor is the one source of the mask: what the model gets is the union of its painted layer, however it was made
(strokes, an uploaded mask, Auto mask, any mix), and the source is the editor's background, which never holds paint.
"""

from __future__ import annotations

import socket
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, fields, replace
from pathlib import Path

from pbe import edit_options as opt
from pbe.app_editor import (
    AUTO_MASK_OPTIONS,
    BRUSH_FRACTION,
    BRUSH_OPACITY,
    BRUSH_RGB,
    DEFAULT_SAMPLER,
    MASK_ALPHA,
    Editor,
    brush_radius,
    check_pixels,
    check_size,
    editor_value,
    example_rows,
    mask_from_layers,
    mask_layer,
    source_and_mask,
)
from pbe.app_page import (
    EDITOR_CANVAS,
    FORWARD_PHOTOS_JS,
    PAGE_CSS,
    RESULT_HEIGHT,
    ShownImages,
    _check_upload,
    _check_uploads,
    _readable,
    build_app,
    user_error,
)

__all__ = [  # the app's names, wherever they are defined (pbe.app_editor: the model side, pbe.app_page: the page)
    "AUTO_MASK_OPTIONS",
    "AppConfig",
    "BRUSH_FRACTION",
    "BRUSH_OPACITY",
    "BRUSH_RGB",
    "DEFAULT_SAMPLER",
    "EDITOR_CANVAS",
    "Editor",
    "FORWARD_PHOTOS_JS",
    "MASK_ALPHA",
    "PAGE_CSS",
    "RESULT_HEIGHT",
    "ShownImages",
    "_check_upload",
    "_check_uploads",
    "_readable",
    "brush_radius",
    "build_app",
    "check_config",
    "check_pixels",
    "check_port_free",
    "check_size",
    "editor_upload_bytes",
    "editor_value",
    "example_rows",
    "free_port",
    "launch",
    "load_editor",
    "main",
    "mask_from_layers",
    "mask_layer",
    "parse_args",
    "resolve_model",
    "source_and_mask",
    "user_error",
]


@dataclass
class AppConfig:
    """The command line (`key=value`); also what `build_app` / `launch` take."""

    model: Path | None = None  # None: the bundled objects model (pbe.assets.default_model_path())
    host: str = "127.0.0.1"
    port: int = 7860
    max_pixels: int = 2048 * 2048  # per uploaded image (source, mask, exemplar)
    device: str | None = opt.device_option()  # default: cuda when available
    dtype: str = opt.dtype_option()
    max_file_mb: int = 64  # uploads above this many megabytes are refused before decoding (see check_config)
    examples: bool = True
    # "auto", pixels of margin (always crop) or None (never)
    padding_mask_crop: int | str | None = opt.padding_mask_crop_option()


# ----------------------------------------------------------------------------------------------- arguments


def parse_args(argv: Sequence[str]) -> AppConfig:
    """`key=value` arguments (as sample.py takes them) -> AppConfig, with clear errors."""
    known = {f.name: f for f in fields(AppConfig)}
    values: dict = {}
    for arg in argv:
        key, sep, value = arg.partition("=")
        key = key.lstrip("-").replace("-", "_")
        if not sep:
            raise ValueError(f"argument {arg!r} is not key=value; valid keys: {', '.join(known)}")
        if key not in known:
            raise ValueError(f"unknown argument {key!r}; valid keys: {', '.join(known)}")
        values[key] = value
    config = AppConfig()
    changes: dict = {}
    for key, value in values.items():
        if key == "model":
            changes[key] = Path(value).expanduser() if value else None
        elif key in ("port", "max_pixels", "max_file_mb"):
            try:
                changes[key] = int(value)
            except ValueError:
                raise ValueError(f"{key} must be an integer, got {value!r}") from None
        elif key == "examples":
            if value.lower() not in ("true", "false"):
                raise ValueError(f"examples must be true or false, got {value!r}")
            changes[key] = value.lower() == "true"
        elif key == "padding_mask_crop":
            changes[key] = opt.padding_mask_crop(key, value)
        else:
            changes[key] = value or None
    config = replace(config, **changes)
    check_config(config)
    return config


def editor_upload_bytes(pixels: int) -> int:
    """The most bytes of one PNG the editor sends for an image of `pixels` (RGBA, incompressible, with overhead)."""
    return 4 * pixels + pixels // 100 + 4096


def check_config(config: AppConfig) -> None:
    if not 0 <= config.port <= 65535:
        raise ValueError(f"port must be in [0, 65535] (0: any free port), got {config.port}")
    if config.max_pixels < 64:
        raise ValueError(f"max_pixels must be at least 64, got {config.max_pixels}")
    if config.max_file_mb < 1:
        raise ValueError(f"max_file_mb must be at least 1, got {config.max_file_mb}")
    if config.max_file_mb * 2**20 < editor_upload_bytes(config.max_pixels):
        need = -(-editor_upload_bytes(config.max_pixels) // 2**20)
        raise ValueError(
            f"max_file_mb={config.max_file_mb} is too small for max_pixels={config.max_pixels:,}: the editor sends "
            f"the photo back as a PNG of up to {need} MB, which the server would refuse; pass max_file_mb={need} or "
            "more, or a smaller max_pixels"
        )
    opt.check_fields(config, ("device", "dtype"))  # as sample.py checks them
    if not config.host:
        raise ValueError("host must be an address to listen on, e.g. 127.0.0.1")
    opt.check_fields(config, ("padding_mask_crop",))


def resolve_model(model: Path | None) -> Path:
    """The checkpoint to serve: `model`, or the bundled objects model; FileNotFoundError saying what to pass."""
    from pbe.checkpoints.formats import check_weights

    if model is None:
        try:
            from pbe.assets import default_model_path

            return default_model_path()
        except (ImportError, FileNotFoundError) as e:
            raise FileNotFoundError(
                f"model: no model=PATH given and the bundled objects model is not available ({e}); pass model=PATH "
                "to the authors' model.ckpt, a diffusers folder or a pbe folder"
            ) from None
    try:
        check_weights(model)
    except (FileNotFoundError, ValueError) as e:
        raise type(e)(str(e).replace("weights:", "model:").replace("weights=", "model=")) from None
    return model


def check_port_free(host: str, port: int) -> None:
    """OSError with a clear message when `port` on `host` cannot be bound (taken, or not an address here)."""
    if port == 0:
        return
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does: TIME_WAIT is not "taken"
        try:
            s.bind((host, port))
        except OSError as e:
            raise OSError(
                f"port {port} on {host} is not free ({e.strerror}); is another app (or another pbe.app) running? "
                f"Stop it, or pass port=N for another port"
            ) from None


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def load_editor(config: AppConfig, model: Path) -> Editor:
    import torch

    from pbe import PaintByExamplePipeline
    from pbe.checkpoints.formats import DTYPES as TORCH_DTYPES

    device = config.device or ("cuda" if torch.cuda.is_available() else "cpu")
    pipe = PaintByExamplePipeline.from_pretrained(
        model, torch_dtype=TORCH_DTYPES[config.dtype], device=device
    )
    workdir = Path(tempfile.mkdtemp(prefix="pbe-app-"))
    return Editor(pipe, config.max_pixels, workdir, config.padding_mask_crop)


def launch(config: AppConfig, block: bool = True):
    """Check the port and the model, load the model, build and start the app. Returns the Blocks (running)."""
    from pbe.diffusion import SAMPLERS

    check_config(config)
    check_port_free(config.host, config.port)
    model = resolve_model(config.model)
    import gradio  # noqa: F401  (an ImportError here says to install the app extra, before the model loads)

    editor = load_editor(config, model)
    rows = example_rows(editor.workdir / "examples") if config.examples else None
    demo = build_app(editor, list(SAMPLERS), editor.pipe.default_sampler, rows)
    demo.launch(
        server_name=config.host,
        server_port=config.port or free_port(config.host),
        share=False,
        inbrowser=False,
        ssr_mode=False,
        mcp_server=False,
        enable_monitoring=False,
        max_file_size=config.max_file_mb * 1024 * 1024,
        allowed_paths=[str(editor.workdir)],
        css=PAGE_CSS,
        prevent_thread_lock=not block,
        quiet=not block,
    )
    return demo


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if any(a in ("-h", "--help", "help") for a in argv):
        print(__doc__)
        return 0
    try:
        config = parse_args(argv)
        launch(config)
    except (ValueError, FileNotFoundError, OSError) as e:
        print(f"pbe.app: {e}", file=sys.stderr)
        return 2
    except ImportError as e:
        print(f"pbe.app: {e}; install the app extra: pip install 'pbe[app]'", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
