"""The page of pbe.app: the Gradio Blocks over an `Editor` (`build_app`), the upload checks, the user errors.

Importing this module turns off Gradio's analytics and the hub's calls before Gradio is loaded (it is imported in the
functions that use it, so that `python -m pbe.app --help` and the model checks run without it)."""

from __future__ import annotations

import hashlib
import html
import io
import os
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path

# Before Gradio (or huggingface_hub, which it imports) is loaded: no analytics, no version checks, no hub calls.
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("DO_NOT_TRACK", "1")

from PIL import Image  # noqa: E402

from pbe.app_editor import (  # noqa: E402
    BRUSH_OPACITY,
    BRUSH_RGB,
    DEFAULT_SAMPLER,
    Editor,
    brush_radius,
    check_size,
)

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
