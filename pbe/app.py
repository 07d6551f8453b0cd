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

import hashlib
import html
import io
import os
import socket
import sys
import tempfile
import threading
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields, replace
from pathlib import Path

# Before Gradio (or huggingface_hub, which it imports) is loaded: no analytics, no version checks, no hub calls.
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("DO_NOT_TRACK", "1")

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

DTYPES = ("fp32", "fp16", "bf16")
DEFAULT_SAMPLER = "checkpoint default"
BRUSH_RGB = (255, 64, 160)  # the painted mask's colour in the editor
BRUSH_OPACITY = 0.6
MASK_ALPHA = 64  # a layer pixel at least this opaque is part of the mask (anti-aliased brush edges count)
BRUSH_FRACTION = 0.04  # the brush radius for a photo: this fraction of its shorter side (in [1, 100] pixels)
# Auto mask: generate_mask with the map brought to pixel size along the photo's edges, one region (not DiffEdit's
# latent-pixel blocks: on the small model's held-out scenes IoU 0.51 vs 0.29; docs/small_model.md)
AUTO_MASK_OPTIONS = {"upsample": "guided", "single_region": True}
# Gradio 6.31's editor draws a layer sent by the server into the bounds of all its containers, which include an empty
# one of `canvas_size`: at the default 800x800 a generated mask lands offset (a mark below the photo) and outside
# what the editor sends back. A canvas no larger than any photo keeps the layer on the photo.
EDITOR_CANVAS = (1, 1)
RESULT_HEIGHT = 320  # pixels: the result and the exemplar are shown at this height, aspect kept
# In the page: a file picked or dropped on the source editor goes to the hidden photo upload instead, so that the
# server checks it (file size, type, pixels) before it reaches the editor, and loads it there (see build_app).
FORWARD_PHOTOS_JS = """
() => {
    const forward = (files) => {
        const input = document.querySelector("#photo-upload input[type=file]");
        if (!input || !files || files.length === 0) return;
        const picked = new DataTransfer();
        picked.items.add(files[0]);
        input.files = picked.files;
        input.dispatchEvent(new Event("change", { bubbles: true }));
    };
    const on_source = (event) => event.target instanceof Element && event.target.closest("#source") !== null;
    document.addEventListener("change", (event) => {
        if (!on_source(event) || event.target.type !== "file") return;
        event.stopImmediatePropagation();
        forward(event.target.files);
        event.target.value = "";
    }, true);
    document.addEventListener("drop", (event) => {
        if (!on_source(event) || !event.dataTransfer || event.dataTransfer.files.length === 0) return;
        event.preventDefault();
        event.stopImmediatePropagation();
        forward(event.dataTransfer.files);
        event.target.dispatchEvent(new DragEvent("dragleave", { bubbles: true }));  // the editor's drop highlight
    }, true);
    document.body.dataset.photosForwarded = "true";  // the page's tests wait for this
}
"""
# Images, however small, are shown scaled to their panel, aspect kept. The panels keep their height whatever they
# show, so that the page does not move under the user when an example row brings new images and clears the outputs.
PAGE_CSS = """
#result img, #used-mask img, #exemplar img { width: 100%; height: 100%; object-fit: contain; }
#grid { height: 120px; }
"""


@dataclass
class AppConfig:
    """The command line (`key=value`); also what `build_app` / `launch` take."""

    model: Path | None = None  # None: the bundled objects model (pbe.assets.default_model_path())
    host: str = "127.0.0.1"
    port: int = 7860
    max_pixels: int = 2048 * 2048  # per uploaded image (source, mask, exemplar)
    device: str | None = None  # default: cuda when available
    dtype: str = "fp32"
    max_file_mb: int = 64  # uploads above this many megabytes are refused before decoding (see check_config)
    examples: bool = True
    padding_mask_crop: int | str | None = "auto"  # "auto", pixels of margin (always crop) or None (never)


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
            from pbe.pipeline import padding_mask_crop_setting

            changes[key] = padding_mask_crop_setting(value)
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
    if config.dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {DTYPES}, got {config.dtype!r}")
    if not config.host:
        raise ValueError("host must be an address to listen on, e.g. 127.0.0.1")
    from pbe.pipeline import padding_mask_crop_setting

    padding_mask_crop_setting(config.padding_mask_crop)


def resolve_model(model: Path | None) -> Path:
    """The checkpoint to serve: `model`, or the bundled objects model; FileNotFoundError saying what to pass."""
    from pbe.sample_cli import check_weights

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


# ----------------------------------------------------------------------------------------------- images


def check_size(size: tuple[int, int], name: str, max_pixels: int) -> None:
    """ValueError when an image of `size` (width, height) has more than `max_pixels` pixels."""
    width, height = size
    if width * height > max_pixels:
        raise ValueError(
            f"{name} is {width}x{height} = {width * height:,} pixels; this app takes at most {max_pixels:,} "
            "(max_pixels); scale it down first"
        )


def check_pixels(image: Image.Image | None, name: str, max_pixels: int) -> None:
    if image is not None:
        check_size(image.size, name, max_pixels)


def mask_from_layers(layers: Sequence[Image.Image], size: tuple[int, int]) -> Image.Image:
    """The painted strokes of the editor's layers -> an "L" mask of `size` (white = repaint)."""
    mask = np.zeros((size[1], size[0]), bool)
    for i, layer in enumerate(layers):
        if layer.size != size:
            raise ValueError(
                f"mask layer {i} is {layer.size[0]}x{layer.size[1]} but the source is {size[0]}x{size[1]}"
            )
        alpha = np.asarray(layer.convert("RGBA"))[..., 3]
        mask |= alpha >= MASK_ALPHA
    return Image.fromarray(mask.astype(np.uint8) * 255, mode="L")


def mask_layer(mask: Image.Image) -> Image.Image:
    """An "L" mask (white = repaint) -> an RGBA layer painted with the brush colour, editable in the editor."""
    painted = np.asarray(mask.convert("L")) >= 128
    layer = np.zeros((*painted.shape, 4), np.uint8)
    layer[painted] = (*BRUSH_RGB, round(255 * BRUSH_OPACITY))
    return Image.fromarray(layer, mode="RGBA")


def editor_value(background: Image.Image, mask: Image.Image | None) -> dict:
    """The editor's value for `background` with `mask` as its layer. No composite: Gradio's editor would load a
    composite as its background, with the mask's paint baked into the photo."""
    return {
        "background": background,
        "layers": [mask_layer(mask)] if mask is not None else [],
        "composite": None,
    }


def brush_radius(size: tuple[int, int]) -> int:
    """The brush's default radius for a photo of `size`: a stroke covers a region, not the whole photo."""
    return min(100, max(1, round(min(size) * BRUSH_FRACTION)))


def source_and_mask(value: dict | None, max_pixels: int) -> tuple[Image.Image, Image.Image]:
    """The editor's value -> (RGB source: its background, "L" mask: the union of its layers). ValueError when there is
    no source."""
    background = (value or {}).get("background")
    if background is None:
        raise ValueError("image: upload a source photo first (the left panel)")
    check_pixels(background, "image", max_pixels)
    source = background.convert("RGB")
    return source, mask_from_layers(value.get("layers") or [], source.size)


def example_rows(folder: Path) -> list[list[str]]:
    """(photo, exemplar) file pairs from scikit-image's bundled photos, written to `folder`; [] without skimage."""
    try:
        from skimage import data
    except ImportError:
        return []
    from pbe.files import write_files

    photos = {
        name: Image.fromarray(getattr(data, name)()).convert("RGB")
        for name in ("astronaut", "coffee", "chelsea", "rocket")
    }
    # (source photo, exemplar photo, the exemplar's crop box in it)
    specs = [
        ("astronaut", "coffee", (70, 10, 480, 390)),
        ("chelsea", "rocket", (230, 40, 380, 420)),
        ("coffee", "chelsea", (120, 20, 320, 220)),
        ("rocket", "astronaut", (150, 20, 330, 210)),
    ]
    rows = []
    for source, exemplar, crop in specs:
        pair = [
            (folder / f"{source}.png", photos[source]),
            (folder / f"{exemplar}_exemplar.png", photos[exemplar].crop(crop)),
        ]
        written = write_files(pair, overwrite=True)  # overwrite: the folder is the app's own
        rows.append([str(path) for path in written])
    return rows


# ----------------------------------------------------------------------------------------------- the app


class Editor:
    """The model side of the app: one pipeline, the handlers' logic, no Gradio types (testable without a server)."""

    def __init__(self, pipe, max_pixels: int, workdir: Path, padding_mask_crop: int | str | None = "auto"):
        from pbe.pipeline import padding_mask_crop_setting

        self.pipe = pipe
        self.max_pixels = max_pixels
        self.workdir = workdir
        self.padding_mask_crop = padding_mask_crop_setting(padding_mask_crop)  # see AppConfig
        self._lock = threading.Lock()  # Gradio's queue already runs one job at a time; this makes sure of it

    def generator(self, seed) -> object:
        import torch

        if isinstance(seed, bool) or seed is None or int(seed) != seed or not 0 <= int(seed) < 2**63:
            raise ValueError(f"seed must be an integer in [0, 2**63), got {seed!r}")
        return torch.Generator().manual_seed(int(seed))

    def edit(
        self,
        value: dict | None,
        exemplar: Image.Image | None,
        sampler: str,
        steps,
        guidance: float,
        strength: float,
        seed,
        paste_back: bool,
        feather,
        on_step: Callable[[int, int], None] | None = None,
    ) -> tuple[Image.Image, Image.Image, str]:
        """Run one edit; returns (result, mask used, grid PNG path). ValueError for anything wrong with the input.

        The mask is the editor's layer as the page shows it (see source_and_mask)."""
        from pbe.diffusion import img2img_start_step
        from pbe.files import write_file
        from pbe.sample_cli import draw_grid

        source, mask = source_and_mask(value, self.max_pixels)
        if exemplar is None:
            raise ValueError("example_image: upload an exemplar (the object to paint in)")
        check_pixels(exemplar, "example_image", self.max_pixels)
        if not np.asarray(mask).any():
            raise ValueError(
                "mask_image is empty: paint over the region to replace, upload a mask, or press 'Auto mask'"
            )
        steps = int(steps) if isinstance(steps, float) and steps.is_integer() else steps
        feather = int(feather) if isinstance(feather, float) and feather.is_integer() else feather
        total = None
        if isinstance(steps, int) and steps >= 1 and isinstance(strength, int | float) and 0 <= strength <= 1:
            total = steps - img2img_start_step(steps, float(strength))
        done = 0

        def callback(i, t, x):
            nonlocal done
            done += 1
            if on_step is not None:
                on_step(done, total or done)

        from pbe.pipeline import auto_padding_mask_crop

        train_resolution = getattr(self.pipe, "train_resolution", None)
        padding = auto_padding_mask_crop(self.padding_mask_crop, train_resolution, source.size, mask)
        generator = self.generator(seed)
        with self._lock:
            result = self.pipe(
                image=source,
                mask_image=mask,
                example_image=exemplar.convert("RGB"),
                num_inference_steps=steps,
                guidance_scale=float(guidance),
                strength=float(strength),
                generator=generator,
                paste_back=bool(paste_back),
                feather=feather,
                sampler=None if sampler in (None, DEFAULT_SAMPLER) else sampler,
                callback=callback,
                progress=False,
                padding_mask_crop=padding,
            ).images[0]
        grid = draw_grid(source, mask, exemplar.convert("RGB"), [result])
        out = write_file(Path(tempfile.mkdtemp(prefix="edit-", dir=self.workdir)) / "pbe_grid.png", grid)
        return result, mask, str(out)

    def load_photo(self, photo: Image.Image | None) -> dict:
        """A new source photo -> the editor's value: the photo, nothing painted."""
        if photo is None:
            raise ValueError("image: no photo uploaded")
        check_pixels(photo, "image", self.max_pixels)
        return editor_value(photo.convert("RGB"), None)

    def auto_mask(self, value: dict | None, exemplar: Image.Image | None, seed) -> dict:
        """DiffEdit-style mask (generate_mask) -> the editor's value with the mask as its layer (replacing strokes)."""
        source, _ = source_and_mask(value, self.max_pixels)
        if exemplar is None:
            raise ValueError(
                "example_image: upload an exemplar first; the auto mask is where it would change the photo"
            )
        check_pixels(exemplar, "example_image", self.max_pixels)
        with self._lock:
            mask = self.pipe.generate_mask(
                source, exemplar.convert("RGB"), generator=self.generator(seed), **AUTO_MASK_OPTIONS
            )[0]
        return editor_value(source, mask)

    def load_mask(self, value: dict | None, mask: Image.Image | None) -> dict:
        """An uploaded mask (white = repaint) -> the editor's mask layer (replacing what was painted)."""
        source, _ = source_and_mask(value, self.max_pixels)
        if mask is None:
            raise ValueError("mask_image: no mask uploaded")
        check_pixels(mask, "mask_image", self.max_pixels)
        if mask.size != source.size:
            raise ValueError(
                f"mask_image is {mask.width}x{mask.height} but image is {source.width}x{source.height}; they must match"
            )
        return editor_value(source, mask.convert("L").point(lambda v: 255 if v >= 128 else 0))

    def clear_mask(self, value: dict | None) -> dict | None:
        """Drop the mask (painted, uploaded or generated); keep the source."""
        background = (value or {}).get("background")
        return editor_value(background.convert("RGB"), None) if background is not None else None


def user_error(message: str, title: str = "Cannot run this"):
    """A gr.Error for bad input: shown in the page until dismissed, one line in the server log (no traceback)."""
    import gradio as gr

    print(f"pbe.app: error: {message}", file=sys.stderr, flush=True)
    return gr.Error(html.escape(message), title=title, duration=None, print_exception=False)


def _readable(fn):
    """Run a handler; ValueError / FileNotFoundError (the pipeline's and the app's checks) become a user error, anything
    else (a bug, out of memory) a traceback in the server log and a summary in the page."""
    import functools

    import gradio as gr

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except gr.Error:
            raise
        except (ValueError, FileNotFoundError) as e:
            raise user_error(str(e)) from None
        except Exception as e:
            traceback.print_exc()
            raise gr.Error(
                html.escape(f"{type(e).__name__}: {e}"),
                title="The edit failed",
                duration=None,
                print_exception=False,
            ) from None

    return wrapper


def _check_upload(file, name: str, max_pixels: int) -> None:
    """An uploaded file (Gradio FileData) is an image PIL reads, of at most max_pixels: read from its header only,
    so neither a non-image nor a huge image is decoded. Raises a user error naming the input."""
    if file is None or getattr(file, "path", None) is None:
        return
    shown = getattr(file, "orig_name", None) or Path(file.path).name
    try:
        with Image.open(file.path) as img:
            size = img.size
    except Exception as e:
        raise user_error(
            f"{name}: {shown} is not an image PIL can read ({type(e).__name__})", title="Not an image"
        ) from None
    try:
        check_size(size, name, max_pixels)
    except ValueError as e:
        raise user_error(str(e), title="Image too large") from None


def _check_uploads(component, name: str, max_pixels: int) -> None:
    """Make a gr.Image refuse non-images and images above max_pixels before decoding them.

    Gradio's own preprocessing would fail on a non-image with an error the page does not show; this raises gr.Error,
    which it does. The method is replaced on the instance: a subclass would make Gradio write a .pyi stub file
    beside this module. (Not for the editor: a prop update gives each session its own copy of it, without this.)"""
    import gradio as gr

    preprocess = component.preprocess

    def checked(payload):
        _check_upload(payload, name, max_pixels)
        try:
            return preprocess(payload)
        except gr.Error:
            raise
        except Exception as e:
            raise user_error(
                f"{name}: not an image PIL can read ({type(e).__name__})", title="Not an image"
            ) from None

    component.preprocess = checked


class ShownImages:
    """The images the page is sent, as PNG files in `folder`, named by their content and written once.

    Gradio (6.31) stores an image it sends by rewriting the cache file of that content in place, which cuts off a
    browser loading the same image (the same photo, sent again with a new mask): the editor never shows it. A file
    path is copied into the cache instead, once."""

    def __init__(self, folder: Path):
        self.folder = folder

    def path(self, image: Image.Image) -> str:
        from pbe.files import write_file

        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        data = buffer.getvalue()
        path = self.folder / f"{hashlib.sha256(data).hexdigest()}.png"
        if not path.exists():
            try:
                write_file(path, data)
            except FileExistsError:  # written meanwhile, for another tab: the same bytes
                pass
        return str(path)

    def editor(self, value: dict | None) -> dict | None:
        """An editor value (see editor_value) with its images as files."""
        if value is None:
            return None
        return {
            **value,
            "background": self.path(value["background"]),
            "layers": list(map(self.path, value["layers"])),
        }


def _brush(radius: int | str = "auto"):
    """The editor's brush: the mask colour only, `radius` pixels of the photo ("auto": Gradio's default)."""
    import gradio as gr

    return gr.Brush(
        default_size=radius,
        colors=[(f"rgb{BRUSH_RGB}", BRUSH_OPACITY)],
        default_color=(f"rgb{BRUSH_RGB}", BRUSH_OPACITY),
        color_mode="fixed",
    )


def build_app(
    editor: Editor, sampler_names: Sequence[str], default_sampler: str, examples: list | None = None
):
    """The Gradio Blocks for `editor`. `examples`: rows from `example_rows` ([] shows a note)."""
    import gradio as gr

    intro = (
        "## Paint by Example\n"
        "1. Upload a **source** photo and paint over the region to replace (brush, eraser and brush size in the "
        "editor's toolbar), or upload a mask, or press **Auto mask**. "
        "2. Upload an **exemplar**: the object to paint in. 3. Press **Edit**."
    )
    with gr.Blocks(title="pbe: Paint by Example", analytics_enabled=False) as demo:
        gr.Markdown(intro)
        with gr.Row():
            with gr.Column():
                source = gr.ImageEditor(
                    label="Source (paint the region to replace)",
                    type="pil",
                    image_mode="RGBA",
                    sources=("upload", "clipboard"),
                    transforms=(),
                    layers=False,  # one mask layer: no layer menu (whose name Gradio changes when the server sets it)
                    brush=_brush(),
                    eraser=gr.Eraser(),
                    format="png",
                    canvas_size=EDITOR_CANVAS,
                    elem_id="source",
                )
                # Photos picked or dropped on the editor arrive here (FORWARD_PHOTOS_JS), are checked, then loaded.
                photo_upload = gr.Image(
                    type="pil",
                    image_mode="RGB",
                    sources=("upload",),
                    format="png",
                    visible="hidden",
                    elem_id="photo-upload",
                )
                mask_upload = gr.Image(
                    label="Or upload a mask (white = repaint)",
                    type="pil",
                    image_mode="L",
                    sources=("upload",),
                    format="png",
                    height=160,
                    elem_id="mask-upload",
                )
            with gr.Column():
                exemplar = gr.Image(
                    label="Exemplar",
                    type="pil",
                    image_mode="RGB",
                    sources=("upload", "clipboard"),
                    height=RESULT_HEIGHT,
                    elem_id="exemplar",
                )
                with gr.Row():
                    auto = gr.Button("Auto mask", elem_id="auto-mask")
                    clear = gr.Button("Clear mask", elem_id="clear-mask")
                with gr.Group():
                    sampler = gr.Dropdown(
                        [f"{DEFAULT_SAMPLER}", *sampler_names],
                        value=DEFAULT_SAMPLER,
                        label=f"Sampler ({DEFAULT_SAMPLER}: {default_sampler})",
                        elem_id="sampler",
                    )
                    steps = gr.Number(50, label="Steps", precision=0, elem_id="steps")
                    guidance = gr.Slider(
                        0, 15, value=5.0, step=0.5, label="Guidance scale", elem_id="guidance"
                    )
                    strength = gr.Slider(
                        0, 1, value=1.0, step=0.05, label="Strength (< 1: keep more)", elem_id="strength"
                    )
                    seed = gr.Number(42, label="Seed", precision=0, elem_id="seed")
                    paste_back = gr.Checkbox(
                        True, label="Paste back the unmasked pixels", elem_id="paste-back"
                    )
                    feather = gr.Slider(0, 64, value=0, step=1, label="Feather (pixels)", elem_id="feather")
                run = gr.Button("Edit", variant="primary", elem_id="run")
            with gr.Column():
                result = gr.Image(
                    label="Result",
                    type="pil",
                    format="png",
                    interactive=False,
                    height=RESULT_HEIGHT,
                    elem_id="result",
                )
                used_mask = gr.Image(
                    label="Mask used (white = repaint)",
                    type="pil",
                    format="png",
                    interactive=False,
                    height=160,
                    elem_id="used-mask",
                )
                grid = gr.File(
                    label="Grid: source | mask | exemplar | result", interactive=False, elem_id="grid"
                )
        for component, name in (
            (photo_upload, "image"),
            (mask_upload, "mask_image"),
            (exemplar, "example_image"),
        ):
            _check_uploads(component, name, editor.max_pixels)
        rows = None
        if examples:
            rows = gr.Dataset(
                components=[source, exemplar],
                samples=examples,
                type="index",
                label="Examples (scikit-image photos)",
                elem_id="examples",
            )
        elif examples is not None:
            gr.Markdown("*No examples: they use scikit-image's photos (`pip install scikit-image`).*")

        shown = ShownImages(editor.workdir / "shown")
        # A new photo (uploaded or an example row) comes with an empty mask and clears the last edit's outputs.
        new_photo_outputs = [source, mask_upload, result, used_mask, grid]

        def new_photo(value: dict) -> list:
            radius = brush_radius(value["background"].size)
            update = gr.update(
                value=shown.editor(value), brush=_brush(radius), eraser=gr.Eraser(default_size=radius)
            )
            return [update, None, None, None, None]

        def load_photo(photo):  # and empty the hidden upload for the next one
            return [*new_photo(editor.load_photo(photo)), None]

        def load_row(index):
            photo, example = (Image.open(path).convert("RGB") for path in examples[index])
            return [*new_photo(editor.load_photo(photo)), shown.path(example)]

        def edit(value, ex, smp, n, g, s, sd, pb, fe, progress=gr.Progress()):  # noqa: B008 (Gradio reads it)
            progress(0, desc="starting")
            on_step = lambda i, total: progress((i, total), desc="denoising")  # noqa: E731
            result, mask, grid = editor.edit(value, ex, smp, n, g, s, sd, pb, fe, on_step=on_step)
            return shown.path(result), shown.path(mask), grid

        def auto_mask(value, ex, sd, progress=gr.Progress()):  # noqa: B008
            progress(None, desc="computing the mask")
            return shown.editor(editor.auto_mask(value, ex, sd))

        def model_job(button, fn, inputs, outputs, progress_on=None) -> None:
            """`button` runs `fn` in the model's queue and cannot be pressed again until it finished or failed.
            `progress_on`: where the progress shows (default: the outputs)."""
            toggle = dict(outputs=button, queue=False, show_progress="hidden")
            job = button.click(lambda: gr.update(interactive=False), **toggle).then(
                _readable(fn),
                inputs=inputs,
                outputs=outputs,
                concurrency_id="model",
                show_progress_on=progress_on,
            )
            for finished in (job.success, job.failure):  # (Gradio 6.31 runs no .then() after a failure)
                finished(lambda: gr.update(interactive=True), **toggle)

        # Uploads are checked at once (the components' preprocess refuses non-images and huge images); a refused
        # one leaves its component empty.
        light = dict(concurrency_id="checks", concurrency_limit=4, show_progress="hidden")

        def checked_upload(component, fn, inputs, outputs) -> None:
            component.upload(_readable(fn), inputs=inputs, outputs=outputs, **light).failure(
                lambda: None, outputs=component, **light
            )

        checked_upload(photo_upload, load_photo, photo_upload, [*new_photo_outputs, photo_upload])
        checked_upload(exemplar, lambda v: None, exemplar, None)
        checked_upload(
            mask_upload, lambda v, m: shown.editor(editor.load_mask(v, m)), [source, mask_upload], source
        )
        if rows is not None:
            rows.click(_readable(load_row), inputs=rows, outputs=[*new_photo_outputs, exemplar], **light)
        clear.click(
            _readable(lambda v: (shown.editor(editor.clear_mask(v)), None)),
            inputs=source,
            outputs=[source, mask_upload],
            **light,
        )
        # (On the button: Gradio 6.31 leaves the editor's progress overlay on for good now and then.)
        model_job(auto, auto_mask, [source, exemplar, seed], source, progress_on=auto)
        model_job(
            run,
            edit,
            [source, exemplar, sampler, steps, guidance, strength, seed, paste_back, feather],
            [result, used_mask, grid],
        )
        demo.load(None, js=FORWARD_PHOTOS_JS)
    demo.queue(default_concurrency_limit=1)
    return demo


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
