"""The web app in a real browser: Debian's Chromium (/usr/bin/chromium) driven by Playwright, no downloaded browser.

The app runs in this process on a free loopback port with a tiny random model, whose calls are recorded (what the model
got) and whose Auto mask is a fixed box (`auto_box`; the random model's own would be arbitrary). Each test works
through the page only: uploads with the file inputs, paints with the mouse, clicks, and reads back the images the page
shows. Where Chromium is missing the tests are skipped with the reason in pytest's summary (.ci/run installs it and sets
PBE_REQUIRE_BROWSER=1, which turns the skip into a failure). `PBE_APP_SCREENSHOT=1` rewrites docs/app.png.
"""

from __future__ import annotations

import base64
import contextlib
import io
import os
import re
import shutil
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from app_helpers import save_tiny_model
from PIL import Image

from pbe import app

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SIZE = 128  # source photos are SIZE x SIZE
MAX_PIXELS = (
    500 * 500
)  # the app's limit here: the chelsea and coffee example rows fit, a 600x600 upload does not
MAX_FILE_MB = 1  # and a 2 MB upload is too big
CHELSEA, COFFEE = 1, 2  # example rows (source photo, exemplar): chelsea.png + rocket, coffee.png + chelsea
TIMEOUT_MS = 90_000  # one edit of the tiny model takes about a second; the machine may be busy
PROMPT_S = 10  # a refused upload is reported within this many seconds


def chromium_path() -> str | None:
    """PBE_CHROMIUM (a path), else Debian's chromium on PATH or at /usr/bin/chromium; None when there is none."""
    chosen = os.environ.get("PBE_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
    return chosen if Path(chosen).is_file() else None


def auto_box(size: tuple[int, int]) -> tuple[int, int, int, int]:
    """The region the test server's Auto mask covers in a photo of `size`."""
    width, height = size
    return width // 4, height // 2, width // 2, 3 * height // 4


def box_mask(size: tuple[int, int], box) -> np.ndarray:
    mask = np.zeros(size[::-1], bool)
    mask[box[1] : box[3], box[0] : box[2]] = True
    return mask


@pytest.fixture(scope="module")
def browser():
    reason = None
    if chromium_path() is None:
        reason = "Chromium is not installed (Debian: apt-get install chromium; .ci/run installs it; or PBE_CHROMIUM=path)"
    else:
        try:
            import playwright.sync_api  # noqa: F401
        except ImportError:
            reason = "the playwright package is missing (pip install -e '.[dev]')"
    if reason:
        if os.environ.get("PBE_REQUIRE_BROWSER") == "1":
            pytest.fail(f"web app browser tests cannot run: {reason}")
        pytest.skip(f"web app browser tests not run: {reason}")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        # Playwright adds --headless and a fresh temporary --user-data-dir.
        chromium = p.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_FLAGS)
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory, browser):
    """The app, serving; `calls`: what the model got per edit ({"image", "mask_image"}) and per Auto mask
    ({"image"}), oldest first. `hold`: while a test keeps this event cleared, an edit that has run all its steps
    does not return (so that a second tab is sure to find it still running)."""
    from pbe import PaintByExamplePipeline

    calls = []
    hold = threading.Event()
    hold.set()
    run_model = PaintByExamplePipeline.__call__

    def recorded(self, **kwargs):
        calls.append(
            {"image": np.asarray(kwargs["image"]), "mask_image": np.asarray(kwargs["mask_image"]) > 127}
        )
        result = run_model(self, **kwargs)
        hold.wait(timeout=TIMEOUT_MS / 1000)
        return result

    def box_auto_mask(self, image, example_image, **kwargs):
        calls.append({"image": np.asarray(image)})
        mask = Image.new("L", image.size, 0)
        mask.paste(255, auto_box(image.size))
        return [mask]

    model = save_tiny_model(tmp_path_factory.mktemp("app") / "tiny")
    config = app.AppConfig(model=model, port=app.free_port(), max_pixels=MAX_PIXELS, max_file_mb=MAX_FILE_MB)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(PaintByExamplePipeline, "__call__", recorded)
        patch.setattr(PaintByExamplePipeline, "generate_mask", box_auto_mask)
        demo = app.launch(config, block=False)
        rows = app.example_rows(tmp_path_factory.mktemp("rows"))  # the same files as the app's example rows
        yield SimpleNamespace(url=f"http://127.0.0.1:{config.port}/", calls=calls, rows=rows, hold=hold)
        demo.close()


@pytest.fixture(scope="module")
def url(server):
    return server.url


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A photo, an exemplar, a mask and bad files (scikit-image's photos when available, else random pixels)."""
    folder = tmp_path_factory.mktemp("uploads")
    rng = np.random.default_rng(0)
    try:
        from skimage import data

        source = Image.fromarray(data.astronaut()).resize((SIZE, SIZE), Image.LANCZOS)
        exemplar = Image.fromarray(data.coffee()).crop((70, 10, 480, 390)).resize((64, 60), Image.LANCZOS)
    except ImportError:
        source = Image.fromarray((rng.random((SIZE, SIZE, 3)) * 255).astype(np.uint8))
        exemplar = Image.fromarray((rng.random((60, 64, 3)) * 255).astype(np.uint8))
    source.save(folder / "source.png")
    source.resize((96, 64), Image.LANCZOS).save(folder / "small.png")
    exemplar.save(folder / "exemplar.png")
    mask = Image.new("L", (SIZE, SIZE), 0)
    mask.paste(255, (20, 70, 90, 120))
    mask.save(folder / "mask.png")
    Image.new("RGB", (600, 600), (40, 90, 200)).save(folder / "huge.png")  # small file, too many pixels
    Image.fromarray((rng.random((840, 840, 3)) * 255).astype(np.uint8)).save(folder / "big.png")  # 2 MB
    assert (folder / "big.png").stat().st_size > MAX_FILE_MB * 2**20
    (folder / "notes.txt").write_text("not an image")
    (folder / "notes.png").write_text("not an image either, whatever the name says")
    return folder


def photo(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


# ----------------------------------------------------------------------------------------------- page helpers


def open_app(browser, url, viewport=(1400, 1000)):
    page = browser.new_context(viewport={"width": viewport[0], "height": viewport[1]}).new_page()
    page.set_default_timeout(TIMEOUT_MS)
    page.goto(url)
    page.wait_for_selector("#run")
    page.locator("#source canvas").first.wait_for(state="attached")  # the editor's drawing surface is ready
    page.wait_for_selector(
        "body[data-photos-forwarded=true]", state="attached"
    )  # the page's script is in place
    return page


def upload(page, elem_id: str, path: Path, expect_event: bool = True):
    """Set a file input; with `expect_event`, wait for the upload event's round trip to the server."""
    if not expect_event:
        page.set_input_files(f"#{elem_id} input[type=file]", str(path))
        return
    with page.expect_response(lambda r: "/queue/join" in r.url):
        page.set_input_files(f"#{elem_id} input[type=file]", str(path))
    page.wait_for_timeout(300)


def drop_file(page, selector: str, path: Path):
    """Drag `path` from the desktop and drop it on `selector`."""
    files = page.evaluate_handle(
        """([data, name]) => {
            const file = new File([Uint8Array.from(atob(data), c => c.charCodeAt(0))], name, {type: "image/png"});
            const dropped = new DataTransfer();
            dropped.items.add(file);
            return dropped;
        }""",
        [base64.b64encode(path.read_bytes()).decode(), path.name],
    )
    page.dispatch_event(selector, "drop", {"dataTransfer": files})


@contextlib.contextmanager
def editor_changes(page):
    """Wait, after the block, until the editor's canvas shows something new and has settled (what the server set in
    it, a photo or a mask, is drawn)."""
    canvas = page.locator("#source canvas").first
    before = last = canvas.screenshot()
    yield
    deadline = time.monotonic() + TIMEOUT_MS / 1000
    while time.monotonic() < deadline:
        page.wait_for_timeout(150)
        now = canvas.screenshot()
        if now != before and now == last:
            return
        last = now
    raise AssertionError("the editor did not change")


def load_photo(page, path: Path):
    with editor_changes(page):
        upload(page, "source", path)


def upload_photos(page, files):
    load_photo(page, files / "source.png")
    upload(page, "exemplar", files / "exemplar.png")
    page.locator("#exemplar img").first.wait_for()


def example_rows(page):
    return page.locator("table").filter(has_text="Exemplar").locator("tbody tr")


def click_row(page, index: int):
    row = example_rows(page).nth(index)
    with editor_changes(page):
        row.scroll_into_view_if_needed()
        page.wait_for_timeout(500)  # the page has stopped scrolling: the click lands on this row
        row.click()
    page.locator("#exemplar img").first.wait_for()


def paint_stroke(page, dx: int = 60, dy: int = 0):
    """Drag the mouse across the editor's canvas, `dy` screen pixels below its middle, with the brush."""
    page.click("#source button[aria-label='Brush']")
    box = page.locator("#source canvas").first.bounding_box()
    x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2 + dy
    page.mouse.move(x - dx, y)
    page.mouse.down()
    for k in range(21):
        page.mouse.move(x - dx + 2 * dx * k / 20, y + (k % 3))
    page.mouse.up()


def set_steps(page, steps: int):
    page.fill("#steps input", str(steps))


def edit(page, steps: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """Press Edit; wait for the new result. Returns (result, mask used) as the page shows them."""
    set_steps(page, steps)
    shown = "() => { const img = document.querySelector('#result img'); return img === null ? '' : img.src; }"
    before = page.evaluate(shown)
    page.click("#run")
    page.wait_for_function(f"before => ({shown})() !== '' && ({shown})() !== before", arg=before)
    return shown_image(page, "result"), shown_image(page, "used-mask") > 127


def shown_image(page, elem_id: str) -> np.ndarray:
    """The pixels of the image the page shows in `elem_id` (fetched from its src in the page's own session)."""
    img = page.locator(f"#{elem_id} img").first
    img.wait_for()
    body = page.request.get(img.get_attribute("src")).body()
    return np.array(Image.open(io.BytesIO(body)))


def wait_for_error(page, pattern: str, timeout_s: float = TIMEOUT_MS / 1000, stays: bool = False) -> str:
    """The error toast whose text matches `pattern` (then closed, so the next one is fresh). `stays`: check that it
    stays until closed (no countdown bar, which Gradio shows on a toast that goes away by itself)."""
    toast = page.locator("[data-testid='toast-body']", has_text=re.compile(pattern)).first
    toast.wait_for(timeout=timeout_s * 1000)
    text = toast.inner_text()
    if stays:
        assert toast.locator(".timer").count() == 0, f"{text!r} goes away by itself"
    for close in page.locator("[data-testid='toast-close']").all():
        close.click()
    return text


def assert_edit_used(server, result, used, source: np.ndarray):
    """The model got the page's mask and the clean photo; the result keeps the photo outside the mask."""
    got = server.calls[-1]
    assert np.array_equal(got["mask_image"], used), "the mask the model got is the one 'Mask used' shows"
    assert np.array_equal(got["image"], source), "the model got the photo, without brush paint"
    assert np.array_equal(result[~used], source[~used]), "paste-back: unmasked pixels equal the photo"


# ----------------------------------------------------------------------------------------------- tests


def test_paint_a_mask_and_edit(browser, server, files, tmp_path):
    page = open_app(browser, server.url)
    upload_photos(page, files)
    paint_stroke(page)
    result, mask = edit(page)
    source = photo(files / "source.png")
    assert result.shape == source.shape
    assert mask[SIZE // 2, SIZE // 2], "the stroke through the middle is part of the mask"
    assert 0.02 < mask.mean() < 0.8, (
        f"painted fraction {mask.mean():.3f}: a stroke, not nothing or everything"
    )
    assert not mask[:8, :8].any() and not mask[-8:, -8:].any(), "corners far from the stroke are not painted"
    assert_edit_used(server, result, mask, source)
    assert (result[mask] != source[mask]).any(axis=-1).mean() > 0.5, "painted pixels were edited"
    grid_link = page.locator("#grid a").first
    grid = Image.open(io.BytesIO(page.request.get(grid_link.get_attribute("href")).body()))
    assert grid.width > 3 * SIZE and grid.height > SIZE  # source | mask | exemplar | result
    page.evaluate("window.scrollTo(0, 0)")  # the click on Edit scrolled it into view: show the page's top
    page.screenshot(path=tmp_path / "app.png")
    if os.environ.get("PBE_APP_SCREENSHOT") == "1" or not (ROOT / "docs" / "app.png").exists():
        shutil.copyfile(tmp_path / "app.png", ROOT / "docs" / "app.png")


@pytest.mark.parametrize(
    "mix", ["uploaded mask", "auto mask", "auto mask + strokes", "uploaded mask + strokes"]
)
def test_the_model_gets_the_mask_the_page_shows(browser, server, files, mix):
    page = open_app(browser, server.url)
    upload_photos(page, files)
    with editor_changes(page):
        if mix.startswith("uploaded mask"):
            upload(page, "mask-upload", files / "mask.png")
            base = np.asarray(Image.open(files / "mask.png")) > 127
        else:
            page.click("#auto-mask")
            base = box_mask((SIZE, SIZE), auto_box((SIZE, SIZE)))
    if mix.endswith("strokes"):
        paint_stroke(page, dy=-40)  # above the uploaded mask and the auto mask
    result, used = edit(page)
    assert_edit_used(server, result, used, photo(files / "source.png"))
    if mix.endswith("strokes"):
        assert used[base].all(), f"the {mix.split(' +')[0]} is part of the mask"
        stroke = used & ~base
        top = np.flatnonzero(base.any(axis=1)).min()
        assert stroke.mean() > 0.01 and not stroke[top:].any(), "and the stroke painted above it"
    else:
        assert np.array_equal(used, base), f"the mask is exactly the {mix}, nothing beside it"


def test_chelsea_row_auto_mask_and_a_stroke(browser, server):
    """The issue's steps: the mask is the auto mask plus the stroke, the photo has no paint, the layer keeps its
    place."""
    page = open_app(browser, server.url)
    click_row(page, CHELSEA)
    chelsea = photo(Path(server.rows[CHELSEA][0]))
    auto = box_mask(chelsea.shape[1::-1], auto_box(chelsea.shape[1::-1]))
    with editor_changes(page):
        page.click("#auto-mask")
    assert "Layer 1" not in page.inner_text("#source"), "no layer menu whose name changes"
    paint_stroke(page, dy=-70)
    result, used = edit(page)
    assert_edit_used(server, result, used, chelsea)
    assert used[auto].all(), "the auto mask is in 'Mask used'"
    stroke = used & ~auto
    top = auto_box(chelsea.shape[1::-1])[1]
    assert stroke.sum() > 500 and not stroke[top:].any(), "and the stroke above it, no stray mark below"


def test_example_row_sets_photo_mask_and_exemplar(browser, server, files):
    page = open_app(browser, server.url)
    load_photo(page, files / "source.png")
    upload(page, "exemplar", files / "exemplar.png")
    paint_stroke(page)
    edit(page)
    with editor_changes(page):
        page.click("#auto-mask")
    click_row(page, COFFEE)
    assert page.locator("#result img").count() == 0, "the last result is cleared"
    assert page.locator("#used-mask img").count() == 0, "and its mask"
    exemplar = photo(Path(server.rows[COFFEE][1]))
    assert np.array_equal(shown_image(page, "exemplar"), exemplar), "the row's exemplar"
    page.click("#run")  # the row comes without a mask: the strokes and the auto mask are gone
    wait_for_error(page, "mask_image is empty")
    with editor_changes(page):
        page.click("#auto-mask")
    assert np.array_equal(server.calls[-1]["image"], photo(Path(server.rows[COFFEE][0]))), "the row's photo"


@pytest.mark.parametrize("viewport", [(1280, 720), (700, 900)], ids=["columns", "stacked"])
def test_clicking_example_rows_keeps_the_page_in_place(browser, server, viewport):
    page = open_app(browser, server.url, viewport=viewport)
    rows = example_rows(page)
    rows.nth(COFFEE).scroll_into_view_if_needed()
    for row in (CHELSEA, COFFEE, CHELSEA):  # a tall, then a wide, then a tall exemplar
        before = page.evaluate("window.scrollY"), page.locator("#result").bounding_box()["y"]
        shown = page.evaluate("() => (document.querySelector('#exemplar img') || {}).src")
        rows.nth(row).click()  # where the user sees it: no scrolling by the test
        page.wait_for_function(
            "before => (document.querySelector('#exemplar img') || {}).src !== before", arg=shown
        )
        page.wait_for_timeout(1000)  # the photo and exemplar are laid out
        after = page.evaluate("window.scrollY"), page.locator("#result").bounding_box()["y"]
        assert after == before, f"row {row}: (scrollY, the result's top) went from {before} to {after}"


def test_refused_uploads_are_reported_at_once_and_leave_the_input_empty(browser, server, files, capfd):
    """Too big a file, not an image, too many pixels: a message at once (the browser's own for the first two, the
    app's, which stays until closed, for the others), the input left empty, one line in the server log each."""
    page = open_app(browser, server.url)
    capfd.readouterr()
    too_big, not_an_image = "exceed the maximum allowed size", "Invalid file type"
    for elem_id, name, pattern in (
        ("source", "big.png", too_big),
        ("source", "notes.txt", not_an_image),
        ("source", "notes.png", "image: notes.png is not an image"),
        ("source", "huge.png", "image is 600x600 = 360,000 pixels"),
        ("exemplar", "big.png", too_big),
        ("exemplar", "notes.txt", not_an_image),
        ("exemplar", "notes.png", "example_image: notes.png is not an image"),
        ("exemplar", "huge.png", "example_image is 600x600 = 360,000 pixels"),
        ("mask-upload", "big.png", too_big),
        ("mask-upload", "huge.png", "mask_image is 600x600"),
    ):
        start = time.monotonic()
        page.set_input_files(f"#{elem_id} input[type=file]", str(files / name))
        text = wait_for_error(page, pattern, timeout_s=PROMPT_S, stays=pattern not in (too_big, not_an_image))
        took = time.monotonic() - start
        assert took < PROMPT_S, f"{name} on {elem_id}: reported after {took:.1f} s"
        assert "pixels" not in pattern or f"at most {MAX_PIXELS:,}" in text
        page.wait_for_timeout(300)
        assert page.locator(f"#{elem_id} img").count() == 0, f"{name} on {elem_id}: the input is left empty"
    drop_file(page, "#source canvas", files / "huge.png")  # dragged onto the editor: the same
    wait_for_error(page, "image is 600x600 = 360,000 pixels", timeout_s=PROMPT_S, stays=True)
    page.click("#run")
    wait_for_error(page, "upload a source photo first", timeout_s=PROMPT_S, stays=True)  # no endless spinner
    upload_photos(page, files)
    paint_stroke(page)
    result, used = edit(page)
    assert_edit_used(server, result, used, photo(files / "source.png"))
    log = capfd.readouterr().err.splitlines()
    errors = [line for line in log if line.startswith("pbe.app: error: ")]
    assert len(errors) == 7 and "upload a source photo first" in errors[-1], log
    assert not any("Traceback" in line for line in log), "a user error is one line in the log, no traceback"


def test_bad_input_shows_errors_and_the_app_keeps_serving(browser, server, files):
    page = open_app(browser, server.url)
    upload_photos(page, files)
    set_steps(page, 2)
    page.click("#run")
    wait_for_error(page, "mask_image is empty", stays=True)
    paint_stroke(page)
    set_steps(page, 0)
    page.click("#run")
    assert "got 0" in wait_for_error(page, "steps")
    assert page.locator("#result img").count() == 0
    result, _ = edit(page)
    assert result.shape == (SIZE, SIZE, 3), "the app still edits after the errors"


def test_small_photo_brush_and_result_size(browser, server, files):
    page = open_app(browser, server.url)
    with editor_changes(page):
        drop_file(page, "#source canvas", files / "small.png")  # dragged onto the editor
    upload(page, "exemplar", files / "exemplar.png")
    page.click("#source button[aria-label='Brush']")
    box = page.locator("#source canvas").first.bounding_box()
    page.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)  # one dab of the brush
    result, used = edit(page)
    assert result.shape == (64, 96, 3)
    assert 0 < used.mean() < 0.05, (
        f"one dab covers {used.mean():.1%} of a 96x64 photo: the brush fits the photo"
    )
    width, height = drawn_size(page, "#result img")
    panel = page.locator("#result").bounding_box()
    assert width > 0.9 * panel["width"] or height > 0.7 * panel["height"], (
        f"the result is shown at {width:.0f}x{height:.0f} in a {panel['width']:.0f}x{panel['height']:.0f} panel"
    )
    assert abs(width / height - 96 / 64) < 0.05, f"with its aspect kept ({width:.0f}x{height:.0f})"


def drawn_size(page, selector: str) -> tuple[float, float]:
    """The size at which the page draws the image `selector` (its box, as its CSS object-fit fills it)."""
    img = page.evaluate(
        """selector => { const img = document.querySelector(selector); const box = img.getBoundingClientRect();
        return [box.width, box.height, img.naturalWidth, img.naturalHeight, getComputedStyle(img).objectFit]; }""",
        selector,
    )
    box_width, box_height, width, height, fit = img
    scale = min(box_width / width, box_height / height)
    scale = {"contain": scale, "scale-down": min(1, scale), "none": 1}.get(fit)
    return (box_width, box_height) if scale is None else (width * scale, height * scale)


def test_second_tab_waits_for_the_first_and_progress_is_shown(browser, server, files):
    first, second = open_app(browser, server.url), open_app(browser, server.url)
    for page, steps in ((first, 200), (second, 2)):
        page.bring_to_front()
        upload_photos(page, files)
        paint_stroke(page)
        set_steps(page, steps)
    first.bring_to_front()
    server.hold.clear()  # the first edit does not return until the second tab has been seen waiting
    try:
        first.click("#run")
        first.locator("#result", has_text=re.compile(r"\d+/200 steps")).wait_for()  # a progress bar per step
        assert "denoising" in first.inner_text("#result")
        assert first.locator("#run").is_disabled(), "Edit cannot be pressed again while the edit runs"
        second.bring_to_front()
        second.click("#run")
        # waits its turn: behind the first edit (and any event an earlier test's page left in the queue)
        second.locator("#result", has_text=re.compile(r"queue: \d+/\d+")).wait_for()
        assert first.locator("#result img").count() == 0, "the first edit is still running"
    finally:
        server.hold.set()
    first.locator("#result img").first.wait_for()
    first.locator("#run:not([disabled])").wait_for()  # and can be pressed again once it finished
    assert shown_image(second, "result").shape == (SIZE, SIZE, 3)
    for page in (first, second):  # no open event streams while the module's server shuts down
        page.close()
