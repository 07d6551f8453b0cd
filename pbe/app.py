"""A web app for exemplar editing: upload a photo, paint over what to replace, drop in an exemplar, see the result.

    python -m pbe.app [model=PATH] [host=127.0.0.1] [port=7860] [max_pixels=4194304] [device=cpu|cuda] [dtype=fp32]

Built on Gradio (`pip install 'pbe[app]'`) over `pbe.PaintByExamplePipeline`. `model` is anything pbe reads (the
authors' model.ckpt, a diffusers folder, a pbe folder); without it the bundled small model is used once it exists.
The server listens on 127.0.0.1 only unless `host` says otherwise, sends nothing anywhere (Gradio's analytics are
off), runs one model job at a time (other tabs wait in Gradio's queue) and refuses images above `max_pixels` before
any model work. Bad input (not an image, an empty mask, steps 0, ...) is reported in the page, from the pipeline's
own checks, and the app goes on serving.
"""

from __future__ import annotations

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
# Auto mask: generate_mask with the map brought to pixel size along the photo's edges, one region (not DiffEdit's
# latent-pixel blocks: on the small model's held-out scenes IoU 0.51 vs 0.29; docs/small_model.md)
AUTO_MASK_OPTIONS = {"upsample": "guided", "single_region": True}


@dataclass
class AppConfig:
    """The command line (`key=value`); also what `build_app` / `launch` take."""

    model: Path | None = None  # None: the bundled small model (pbe.assets.small_model_path())
    host: str = "127.0.0.1"
    port: int = 7860
    max_pixels: int = 2048 * 2048  # per uploaded image (source, mask, exemplar)
    device: str | None = None  # default: cuda when available
    dtype: str = "fp32"
    max_file_mb: int = 64  # uploads above this many megabytes are refused by the server before decoding
    examples: bool = True


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
        else:
            changes[key] = value or None
    config = replace(config, **changes)
    check_config(config)
    return config


def check_config(config: AppConfig) -> None:
    if not 0 <= config.port <= 65535:
        raise ValueError(f"port must be in [0, 65535] (0: any free port), got {config.port}")
    if config.max_pixels < 64:
        raise ValueError(f"max_pixels must be at least 64, got {config.max_pixels}")
    if config.max_file_mb < 1:
        raise ValueError(f"max_file_mb must be at least 1, got {config.max_file_mb}")
    if config.dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {DTYPES}, got {config.dtype!r}")
    if not config.host:
        raise ValueError("host must be an address to listen on, e.g. 127.0.0.1")


def resolve_model(model: Path | None) -> Path:
    """The checkpoint to serve: `model`, or the bundled small model; FileNotFoundError saying what to pass."""
    from pbe.sample_cli import check_weights

    if model is None:
        try:
            from pbe.assets import small_model_path

            return small_model_path()
        except (ImportError, FileNotFoundError) as e:
            raise FileNotFoundError(
                f"model: no model=PATH given and the bundled small model is not available ({e}); pass model=PATH "
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
    layers = [mask_layer(mask)] if mask is not None else []
    composite = background.convert("RGBA")
    for layer in layers:
        composite = Image.alpha_composite(composite, layer)
    return {"background": background, "layers": layers, "composite": composite}


def source_and_mask(
    value: dict | None, max_pixels: int, base: Image.Image | None = None
) -> tuple[Image.Image, Image.Image]:
    """The editor's value -> (RGB source, "L" mask: the painted strokes, plus `base` when it has the source's size).

    `base` is the last generated or uploaded mask. It is shown in the editor as a layer, but Gradio's editor (6.x)
    leaves a layer set by the server out of what it sends once the user paints, so the app keeps it and adds the
    strokes to it. ValueError when there is no source."""
    background = (value or {}).get("background")
    if background is None:
        raise ValueError("image: upload a source photo first (the left panel)")
    check_pixels(background, "image", max_pixels)
    source = background.convert("RGB")
    mask = mask_from_layers(value.get("layers") or [], source.size)
    if base is not None and base.size == source.size:
        mask = Image.fromarray(np.maximum(np.asarray(mask), np.asarray(base.convert("L"))))
    return source, mask


def example_rows(folder: Path) -> list[list[str]]:
    """(photo, exemplar) file pairs from scikit-image's bundled photos, written to `folder`; [] without skimage."""
    try:
        from skimage import data
    except ImportError:
        return []
    folder.mkdir(parents=True, exist_ok=True)
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
        paths = [folder / f"{source}.png", folder / f"{exemplar}_exemplar.png"]
        photos[source].save(paths[0])
        photos[exemplar].crop(crop).save(paths[1])
        rows.append([str(p) for p in paths])
    return rows


# ----------------------------------------------------------------------------------------------- the app


class Editor:
    """The model side of the app: one pipeline, the handlers' logic, no Gradio types (testable without a server)."""

    def __init__(self, pipe, max_pixels: int, workdir: Path):
        self.pipe = pipe
        self.max_pixels = max_pixels
        self.workdir = workdir
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
        base_mask: Image.Image | None = None,
    ) -> tuple[Image.Image, Image.Image, str]:
        """Run one edit; returns (result, mask used, grid PNG path). ValueError for anything wrong with the input.

        The mask is what was painted in the editor plus `base_mask` (the last generated or uploaded mask)."""
        from pbe.diffusion import img2img_start_step
        from pbe.sample_cli import draw_grid, write_png

        source, mask = source_and_mask(value, self.max_pixels, base_mask)
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
            ).images[0]
        grid = draw_grid(source, mask, exemplar.convert("RGB"), [result])
        out = Path(tempfile.mkdtemp(prefix="edit-", dir=self.workdir)) / "pbe_grid.png"
        write_png(grid, out)
        return result, mask, str(out)

    def auto_mask(
        self, value: dict | None, exemplar: Image.Image | None, seed
    ) -> tuple[dict, Image.Image, Image.Image]:
        """DiffEdit-style mask (generate_mask) -> (editor value with the mask as a layer, the mask, the mask)."""
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
        return editor_value(source, mask), mask, mask

    def load_mask(self, value: dict | None, mask: Image.Image | None) -> tuple[dict, Image.Image]:
        """An uploaded mask (white = repaint) -> the editor's mask layer (replacing what was painted)."""
        source, _ = source_and_mask(value, self.max_pixels)
        if mask is None:
            raise ValueError("mask_image: no mask uploaded")
        check_pixels(mask, "mask_image", self.max_pixels)
        if mask.size != source.size:
            raise ValueError(
                f"mask_image is {mask.width}x{mask.height} but image is {source.width}x{source.height}; they must match"
            )
        mask = mask.convert("L").point(lambda v: 255 if v >= 128 else 0)
        return editor_value(source, mask), mask

    def clear_mask(self, value: dict | None) -> tuple[dict | None, None]:
        """Drop the painted strokes and the generated / uploaded mask; keep the source."""
        background = (value or {}).get("background")
        return (editor_value(background.convert("RGB"), None) if background is not None else None), None


def _readable(fn):
    """Run a handler; ValueError / FileNotFoundError (the pipeline's and the app's checks) become gr.Error."""
    import functools

    import gradio as gr

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except (ValueError, FileNotFoundError) as e:
            raise gr.Error(str(e), title="Cannot run this") from None
        except gr.Error:
            raise
        except (
            Exception
        ) as e:  # a bug or an out-of-memory: the server log has the traceback, the page a summary
            traceback.print_exc()
            raise gr.Error(f"{type(e).__name__}: {e}", title="The edit failed") from None

    return wrapper


def _check_upload(file, name: str, max_pixels: int) -> None:
    """An uploaded file (Gradio FileData) is an image PIL reads, of at most max_pixels: read from its header only,
    so neither a non-image nor a huge image is decoded. Raises gr.Error naming the input."""
    import gradio as gr

    if file is None or getattr(file, "path", None) is None:
        return
    shown = getattr(file, "orig_name", None) or Path(file.path).name
    try:
        with Image.open(file.path) as img:
            size = img.size
    except Exception as e:
        raise gr.Error(
            f"{name}: {shown} is not an image PIL can read ({type(e).__name__})", title="Not an image"
        ) from None
    try:
        check_size(size, name, max_pixels)
    except ValueError as e:
        raise gr.Error(str(e), title="Image too large") from None


def _check_uploads(component, name: str, max_pixels: int) -> None:
    """Make a gr.Image / gr.ImageEditor refuse non-images and images above max_pixels before decoding them.

    Gradio's own preprocessing would fail on a non-image with an error the page does not show; this raises gr.Error,
    which it does. The method is replaced on the instance: a subclass would make Gradio write a .pyi stub file
    beside this module."""
    import gradio as gr

    preprocess = component.preprocess

    def checked(payload):
        files = payload
        if isinstance(component, gr.ImageEditor) and payload is not None:
            files = component.blob_storage.get(payload.id) if payload.id else payload
            if files is not None:
                _check_upload(files.background, name, max_pixels)
                for layer in files.layers or []:
                    _check_upload(layer, "mask layer", max_pixels)
        else:
            _check_upload(payload, name, max_pixels)
        try:
            return preprocess(payload)
        except gr.Error:
            raise
        except Exception as e:
            raise gr.Error(f"{name}: not an image PIL can read ({type(e).__name__})") from None

    component.preprocess = checked


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
    brush = gr.Brush(
        colors=[(f"rgb{BRUSH_RGB}", BRUSH_OPACITY)],
        default_color=(f"rgb{BRUSH_RGB}", BRUSH_OPACITY),
        color_mode="fixed",
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
                    layers=gr.LayerOptions(allow_additional_layers=False, layers=["mask"]),
                    brush=brush,
                    eraser=gr.Eraser(),
                    format="png",
                    elem_id="source",
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
                    label="Result", type="pil", format="png", interactive=False, elem_id="result"
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
        for component, name in ((source, "image"), (mask_upload, "mask_image"), (exemplar, "example_image")):
            _check_uploads(component, name, editor.max_pixels)
        base_mask = gr.State(None)  # the last generated or uploaded mask ("L"), see source_and_mask
        if examples:
            gr.Examples(examples, inputs=[source, exemplar], label="Examples (scikit-image photos)")
        elif examples is not None:
            gr.Markdown("*No examples: they use scikit-image's photos (`pip install scikit-image`).*")

        def edit(value, ex, smp, n, g, s, sd, pb, fe, base, progress=gr.Progress()):  # noqa: B008 (Gradio reads it)
            progress(0, desc="starting")
            return editor.edit(
                value,
                ex,
                smp,
                n,
                g,
                s,
                sd,
                pb,
                fe,
                on_step=lambda i, total: progress((i, total), desc="denoising"),
                base_mask=base,
            )

        def auto_mask(value, ex, sd, progress=gr.Progress()):  # noqa: B008
            progress(None, desc="computing the mask")
            return editor.auto_mask(value, ex, sd)

        # Uploads are checked at once (the components' preprocess refuses non-images and huge images).
        # A new source drops the generated / uploaded mask of the previous one.
        light = dict(concurrency_id="checks", concurrency_limit=4, show_progress="hidden")
        source.upload(lambda v: None, inputs=source, outputs=base_mask, **light)
        source.clear(lambda: None, outputs=base_mask, **light)
        exemplar.upload(lambda v: None, inputs=exemplar, **light)
        mask_upload.upload(
            _readable(editor.load_mask),
            inputs=[source, mask_upload],
            outputs=[source, base_mask],
            concurrency_id="model",
        )
        clear.click(_readable(editor.clear_mask), inputs=source, outputs=[source, base_mask], **light)
        auto.click(
            _readable(auto_mask),
            inputs=[source, exemplar, seed],
            outputs=[source, used_mask, base_mask],
            concurrency_id="model",
        )
        run.click(
            _readable(edit),
            inputs=[
                source,
                exemplar,
                sampler,
                steps,
                guidance,
                strength,
                seed,
                paste_back,
                feather,
                base_mask,
            ],
            outputs=[result, used_mask, grid],
            concurrency_id="model",
        )
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
    return Editor(pipe, config.max_pixels, workdir)


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
