"""pbe.app without a browser: arguments, the model and port checks, masks from the editor's layers, the handlers."""

import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from app_helpers import save_tiny_model
from PIL import Image

from pbe import app


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return save_tiny_model(tmp_path_factory.mktemp("app") / "tiny")


@pytest.fixture(scope="module")
def editor(model_dir, tmp_path_factory):
    config = app.AppConfig(model=model_dir, max_pixels=100 * 100)
    return app.load_editor(config, model_dir)


def photo(w, h, seed=0):
    return Image.fromarray((np.random.default_rng(seed).random((h, w, 3)) * 255).astype(np.uint8))


def box_mask(w, h, box):
    mask = Image.new("L", (w, h), 0)
    mask.paste(255, box)
    return mask


def test_parse_args_reads_key_value_and_rejects_unknown_keys():
    config = app.parse_args(["model=/x", "port=7000", "host=0.0.0.0", "max_pixels=5000"])
    assert (config.model.name, config.port, config.host, config.max_pixels) == ("x", 7000, "0.0.0.0", 5000)
    assert app.AppConfig().host == "127.0.0.1"  # loopback unless asked
    with pytest.raises(ValueError, match="unknown argument 'modle'"):
        app.parse_args(["modle=/x"])
    with pytest.raises(ValueError, match="port must be an integer"):
        app.parse_args(["port=http"])
    with pytest.raises(ValueError, match="port must be in"):
        app.parse_args(["port=70000"])


def test_missing_model_says_what_to_pass(tmp_path):
    with pytest.raises(FileNotFoundError, match="model: .*does not exist; pass model=PATH"):
        app.resolve_model(tmp_path / "nope")


def test_taken_port_gives_a_clear_message_and_exit_code(model_dir):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = subprocess.run(
            [sys.executable, "-m", "pbe.app", f"model={model_dir}", f"port={port}"],
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert proc.returncode == 2
    assert f"port {port} on 127.0.0.1 is not free" in proc.stderr and "port=N" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_mask_layer_round_trips_through_the_editor_layers():
    mask = box_mask(40, 30, (5, 6, 20, 25))
    layer = app.mask_layer(mask)
    assert layer.mode == "RGBA" and layer.size == mask.size
    assert np.array_equal(np.asarray(app.mask_from_layers([layer], mask.size)), np.asarray(mask))
    faint = np.zeros((30, 40, 4), np.uint8)
    faint[..., 3] = app.MASK_ALPHA - 1  # anti-aliasing residue below the threshold is not a mask
    assert not np.asarray(app.mask_from_layers([Image.fromarray(faint)], mask.size)).any()


def test_edit_pastes_back_and_writes_a_grid(editor):
    source, exemplar = photo(64, 48), photo(30, 20, seed=1)
    mask = box_mask(64, 48, (16, 8, 48, 40))
    value = app.editor_value(source, mask)
    result, used, grid = editor.edit(value, exemplar, "ddim", 2, 5.0, 1.0, 3, True, 0)
    inside = np.asarray(used) > 0
    assert np.array_equal(inside, np.asarray(mask) > 0)
    res, src = np.asarray(result), np.asarray(source)
    assert np.array_equal(res[~inside], src[~inside])
    assert (res[inside] != src[inside]).any(axis=-1).mean() > 0.5
    with Image.open(grid) as g:
        assert g.width > 3 * 64 and g.height >= 48


def test_edit_refuses_large_images_before_the_model_runs(editor, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("the pipeline ran")

    monkeypatch.setattr(editor, "pipe", refuse)
    big = photo(120, 100)
    with pytest.raises(ValueError, match=r"image is 120x100 = 12,000 pixels; this app takes at most 10,000"):
        editor.edit(
            app.editor_value(big, box_mask(120, 100, (0, 0, 9, 9))), photo(8, 8), None, 2, 5, 1, 0, True, 0
        )
    with pytest.raises(ValueError, match="mask_image is empty"):
        editor.edit(app.editor_value(photo(32, 32), None), photo(8, 8), None, 2, 5, 1, 0, True, 0)


def test_the_mask_is_the_union_of_the_editor_layers_and_the_source_its_background():
    source = photo(40, 30)
    layers = [
        app.mask_layer(box_mask(40, 30, (0, 0, 10, 10))),
        app.mask_layer(box_mask(40, 30, (30, 20, 40, 30))),
    ]
    got_source, mask = app.source_and_mask({"background": source, "layers": layers}, 10_000)
    assert np.array_equal(np.asarray(got_source), np.asarray(source))
    both = np.maximum(
        np.asarray(box_mask(40, 30, (0, 0, 10, 10))), np.asarray(box_mask(40, 30, (30, 20, 40, 30)))
    )
    assert np.array_equal(np.asarray(mask), both)
    _, nothing = app.source_and_mask({"background": source, "layers": []}, 10_000)
    assert not np.asarray(nothing).any()


def test_editor_values_sent_to_the_page_keep_the_paint_out_of_the_photo():
    source, mask = photo(40, 30), box_mask(40, 30, (5, 5, 20, 20))
    value = app.editor_value(source, mask)
    assert value["composite"] is None, "the editor would load a composite as its background, paint and all"
    assert value["background"] is source and len(value["layers"]) == 1


def test_auto_mask_and_an_uploaded_mask_become_the_editor_layer(editor):
    source, exemplar = photo(64, 48), photo(30, 20, seed=1)
    value = editor.auto_mask(app.editor_value(source, None), exemplar, 0)
    assert value["background"].size == (64, 48) and [layer.size for layer in value["layers"]] == [(64, 48)]
    mask = box_mask(64, 48, (8, 8, 40, 30))
    value = editor.load_mask(app.editor_value(source, None), mask)
    assert np.array_equal(np.asarray(app.source_and_mask(value, 10_000)[1]), np.asarray(mask))
    with pytest.raises(ValueError, match="mask_image is 20x20 but image is 64x48"):
        editor.load_mask(app.editor_value(source, None), box_mask(20, 20, (0, 0, 5, 5)))
    assert editor.clear_mask(value)["layers"] == [] and editor.clear_mask(None) is None


def test_a_new_photo_is_checked_and_comes_without_a_mask(editor):
    value = editor.load_photo(photo(64, 48))
    assert value["background"].mode == "RGB" and value["layers"] == []
    with pytest.raises(ValueError, match="image is 120x100 = 12,000 pixels"):
        editor.load_photo(photo(120, 100))


def test_brush_radius_follows_the_photo():
    assert app.brush_radius((96, 64)) == 3 and app.brush_radius((512, 512)) == 20
    assert app.brush_radius((4, 4)) == 1 and app.brush_radius((8000, 6000)) == 100


def test_images_for_the_page_are_written_once(tmp_path):
    shown = app.ShownImages(tmp_path / "shown")
    first = shown.path(photo(20, 10))
    stat = Path(first).stat()
    assert shown.path(photo(20, 10)) == first, "the same image: the same file"
    assert Path(first).stat().st_mtime_ns == stat.st_mtime_ns, "not rewritten (a browser may be reading it)"
    assert shown.path(photo(20, 10, seed=1)) != first
    assert np.array_equal(np.asarray(Image.open(first)), np.asarray(photo(20, 10)))
    value = shown.editor(app.editor_value(photo(20, 10), box_mask(20, 10, (0, 0, 5, 5))))
    assert value["background"] == first and Path(value["layers"][0]).is_file()


def test_user_errors_stay_in_the_page_and_are_one_line_in_the_log(capsys):
    import gradio as gr

    def refuse(message):
        raise ValueError(message)

    with pytest.raises(gr.Error) as error:
        app._readable(refuse)("steps must be >= 1, got 0 <b>")
    assert error.value.duration is None, "stays until dismissed"
    assert error.value.message == "steps must be &gt;= 1, got 0 &lt;b&gt;", "shown as text"
    assert not error.value.print_exception
    assert capsys.readouterr().err == "pbe.app: error: steps must be >= 1, got 0 <b>\n"

    def bug():
        raise RuntimeError("a bug")

    with pytest.raises(gr.Error, match="RuntimeError: a bug"):
        app._readable(bug)()
    assert "Traceback" in capsys.readouterr().err, "a bug keeps its traceback"


def test_max_file_mb_must_hold_the_editor_png_of_the_largest_photo():
    app.check_config(app.AppConfig())  # the defaults fit
    with pytest.raises(
        ValueError, match="max_file_mb=1 is too small for max_pixels=4,194,304.*max_file_mb=17"
    ):
        app.parse_args(["max_file_mb=1"])
    app.parse_args(["max_file_mb=1", "max_pixels=250000"])


def test_examples_are_the_bundled_photos(tmp_path):
    pytest.importorskip("skimage")
    rows = app.example_rows(tmp_path)
    assert len(rows) == 4
    for source, exemplar in rows:
        assert Image.open(source).size[0] >= 300 and Image.open(exemplar).mode == "RGB"
