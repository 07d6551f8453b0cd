"""sample.py and pbe.sample_cli: argument checks, output naming, the grid, atomic writes, Hydra runs and sweeps."""

import errno
import os
import shutil
import subprocess
import sys
from dataclasses import fields
from pathlib import Path

import numpy as np
import pytest
from hydra import compose, initialize_config_dir
from PIL import Image

from pbe import sample_cli
from pbe.files import write_file
from pbe.pipeline import PaintByExamplePipeline
from pbe.sample_cli import (
    GRID_GAP,
    LABEL_HEIGHT,
    SampleArgs,
    check_command_line,
    check_free,
    check_sweep,
    config_values,
    draw_grid,
    load_inputs,
    output_paths,
    parse_args,
    run,
    run_hydra_job,
    sweep_suffix,
    swept_keys,
)

ROOT = Path(__file__).resolve().parents[1]
HEIGHT, WIDTH = 48, 64


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    from helpers import tiny_diffusers_pipeline

    folder = tmp_path_factory.mktemp("weights") / "tiny"
    tiny_diffusers_pipeline().save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    """Real photos from scikit-image, small: the source, an exemplar crop, a mask and some bad files."""
    from skimage import data

    folder = tmp_path_factory.mktemp("photos")
    Image.fromarray(data.astronaut()).resize((WIDTH, HEIGHT)).save(folder / "astronaut.png")
    Image.fromarray(data.coffee()).crop((70, 10, 480, 390)).resize((41, 38)).save(folder / "coffee.png")
    mask = np.zeros((HEIGHT, WIDTH), np.uint8)
    mask[HEIGHT // 2 :, WIDTH // 2 :] = 255  # the helmet, bottom right
    Image.fromarray(mask).save(folder / "mask.png")
    Image.fromarray(mask[:, :40]).save(folder / "narrow_mask.png")
    (folder / "notes.txt").write_text("not an image")
    return folder


def arguments(weights_dir, photo_dir, out_path, **changes) -> dict:
    values = {
        "weights": str(weights_dir),
        "image": str(photo_dir / "astronaut.png"),
        "mask": str(photo_dir / "mask.png"),
        "example": str(photo_dir / "coffee.png"),
        "out": str(out_path),
        "steps": 2,
        "progress": False,
    }
    return {**values, **changes}


@pytest.fixture
def no_model(monkeypatch):
    """Loading weights fails the test: checks must come first."""

    def refuse(*args, **kwargs):
        raise AssertionError("weights were loaded before the arguments were checked")

    monkeypatch.setattr(PaintByExamplePipeline, "from_pretrained", refuse)
    monkeypatch.setattr(PaintByExamplePipeline, "from_checkpoint", refuse)


def pixels(path) -> np.ndarray:
    with Image.open(path) as img:
        return np.asarray(img.convert("RGB")).copy()


# ----------------------------------------------------------------------------------------------- bad input


BAD_INPUT = [
    ({"weights": "does/not/exist"}, FileNotFoundError, "weights: does/not/exist does not exist"),
    ({"image": "missing.png"}, FileNotFoundError, "image: file not found"),
    ({"image": "{photos}/notes.txt"}, ValueError, "image: .*notes.txt is not an image"),
    ({"example": "{photos}/notes.txt"}, ValueError, "example: .*not an image"),
    ({"mask": "{photos}/narrow_mask.png"}, ValueError, "mask is 40x48 but image is 64x48"),
    ({"steps": 0}, ValueError, "steps must be an integer >= 1"),
    ({"steps": 2.5}, ValueError, "steps must be an integer"),
    ({"strength": 1.5}, ValueError, r"strength must be a number in \[0, 1\]"),
    ({"strength": -0.1}, ValueError, r"strength must be a number in \[0, 1\]"),
    ({"guidance": -1.0}, ValueError, "guidance must be a number >= 0"),
    ({"sampler": "heun"}, ValueError, "sampler='heun'; valid: ddim, pndm"),
    ({"dtype": "fp8"}, ValueError, "dtype='fp8'; valid: fp32, fp16, bf16"),
    ({"out": "result.jpg"}, ValueError, "out must name a .png file"),
    ({"device": "banana"}, ValueError, "device='banana' is not a torch device"),
    ({"paste_back": "maybe"}, ValueError, "paste_back must be true or false"),
    ({"num_maps": 0, "mask": "auto"}, ValueError, "num_maps must be an integer >= 1"),
    ({"mask_upsample": "bicubic", "mask": "auto"}, ValueError, "mask_upsample='bicubic'; valid: nearest"),
    ({"seeed": 1}, ValueError, r"unknown argument\(s\) \['seeed'\]; valid: .*seed"),
    ({"image": "{photos}"}, ValueError, "image: .* is a directory"),
    ({"mask": "{photos}"}, ValueError, "mask: .* is a directory"),
    ({"out": "{photos}/astronaut.png", "overwrite": True}, ValueError, "out: .*astronaut.png is the input"),
    ({"out": "{photos}/mask.png", "overwrite": True}, ValueError, "out: .*mask.png is the input"),
    ({"out": "{photos}/notes.txt/result.png"}, ValueError, "notes.txt is a file, not a folder"),
    ({"out": "/proc/pbe-no-such-dir/result.png"}, ValueError, "out: cannot write in /proc"),
    ({"warn_pixels": -1}, ValueError, "warn_pixels must be an integer >= 0"),
    ({"vae_tiling": "sometimes"}, ValueError, r"vae_tiling must be true or false \(or null\)"),
    # The released schedule (leading spacing, steps_offset 1): PLMS cannot take 1000 steps (its first timestep
    # would be 1000); the message says what is allowed, before any tensor loads.
    (
        {"steps": 1000},
        ValueError,
        r"steps=1000 does not work for sampler pndm .*Allowed steps here: 1\.\.999",
    ),
    ({"steps": 1000, "sampler": "ddim"}, ValueError, r"sampler ddim .*Allowed steps here: 1\.\.999"),
]


@pytest.mark.parametrize("change, error, message", BAD_INPUT, ids=[str(c) for c, _, _ in BAD_INPUT])
def test_bad_input_raises_a_clear_error_before_loading_weights(
    weights, photos, tmp_path, no_model, change, error, message
):
    change = {k: v.format(photos=photos) if isinstance(v, str) else v for k, v in change.items()}
    with pytest.raises(error, match=message):
        run(parse_args(arguments(weights, photos, tmp_path / "result.png", **change)))
    assert list(tmp_path.iterdir()) == []


def test_a_folder_that_is_no_checkpoint_is_refused(photos, tmp_path, no_model):
    with pytest.raises(ValueError, match="weights: .*model_index.json"):
        parse_args(arguments(photos, photos, tmp_path / "result.png"))


@pytest.mark.parametrize("existing", ["result.png", "result_grid.png"])
def test_existing_outputs_are_not_replaced_and_nothing_loads(weights, photos, tmp_path, no_model, existing):
    (tmp_path / existing).write_bytes(b"precious")
    with pytest.raises(FileExistsError, match="overwrite=true"):
        run(parse_args(arguments(weights, photos, tmp_path / "result.png")))
    assert (tmp_path / existing).read_bytes() == b"precious"
    assert sorted(p.name for p in tmp_path.iterdir()) == [existing]


# ----------------------------------------------------------------------------------------------- runs


def test_overwrite_true_replaces_the_result(weights, photos, tmp_path):
    (tmp_path / "result.png").write_bytes(b"old")
    run(parse_args(arguments(weights, photos, tmp_path / "result.png", overwrite=True, grid=False)))
    assert pixels(tmp_path / "result.png").shape == (HEIGHT, WIDTH, 3)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["result.png"]  # no temporary files left


def test_hydra_config_run_writes_result_and_grid_of_the_inputs(weights, photos, tmp_path, capsys):
    out = tmp_path / "edits" / "result.png"
    overrides = [f"{k}={v}" for k, v in arguments(weights, photos, out).items()]
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        cfg = compose("sample", overrides=[*overrides, "paste_back=true"])
    run_hydra_job(cfg)
    assert sorted(p.name for p in out.parent.iterdir()) == ["result.png", "result_grid.png"]
    result, grid, source = (
        pixels(out),
        pixels(out.parent / "result_grid.png"),
        pixels(photos / "astronaut.png"),
    )
    keep = pixels(photos / "mask.png")[..., 0] == 0
    np.testing.assert_array_equal(result[keep], source[keep])  # paste_back=true reached the pipeline
    assert not np.array_equal(result, source)
    row = grid[LABEL_HEIGHT:]
    np.testing.assert_array_equal(row[:, :WIDTH], source)
    np.testing.assert_array_equal(row[:, -WIDTH:], result)
    assert f"wrote {out}, {out.parent / 'result_grid.png'}" in capsys.readouterr().out


def test_auto_mask_options_reach_generate_mask(weights, photos, tmp_path):
    from scipy import ndimage

    def auto_mask(name, **options):
        args = arguments(weights, photos, tmp_path / name, mask="auto", num_maps=2, grid=False, **options)
        with Image.open(run(parse_args(args)).mask) as mask:
            return np.array(mask) > 127

    blocky = auto_mask("nearest.png")
    guided = auto_mask("guided.png", mask_upsample="guided", mask_single_region=True)
    assert not np.array_equal(blocky, guided)
    assert ndimage.label(guided)[1] <= 1


def test_auto_mask_is_written_and_reproduces_the_result_when_passed_back(weights, photos, tmp_path):
    first = run(
        parse_args(arguments(weights, photos, tmp_path / "auto.png", mask="auto", num_maps=2, grid=False))
    )
    assert [p.name for p in first.all()] == ["auto.png", "auto_mask.png"]
    with Image.open(first.mask) as mask:
        assert mask.mode == "L" and mask.size == (WIDTH, HEIGHT)
    again = arguments(weights, photos, tmp_path / "again.png", mask=str(first.mask), grid=False)
    run(parse_args(again))
    np.testing.assert_array_equal(pixels(tmp_path / "again.png"), pixels(tmp_path / "auto.png"))


def test_num_images_writes_numbered_results_and_one_grid_row_each(weights, photos, tmp_path):
    written = run(parse_args(arguments(weights, photos, tmp_path / "r.png", num_images=2, seed=3)))
    assert [p.name for p in written.all()] == ["r_0.png", "r_1.png", "r_grid.png"]
    first, second = pixels(tmp_path / "r_0.png"), pixels(tmp_path / "r_1.png")
    assert not np.array_equal(first, second)
    grid = pixels(tmp_path / "r_grid.png")
    assert grid.shape[0] == LABEL_HEIGHT + 2 * HEIGHT + GRID_GAP
    np.testing.assert_array_equal(grid[-HEIGHT:, -WIDTH:], second)


def test_config_file_defaults_match_sample_args(weights, photos, tmp_path):
    required = {k: v for k, v in arguments(weights, photos, tmp_path / "x.png").items() if k != "out"}
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        cfg = compose("sample", overrides=[f"{k}={v}" for k, v in required.items()])
    values = config_values(cfg)
    assert set(values) == {f.name for f in fields(SampleArgs)}
    defaults = {f.name: f.default for f in fields(SampleArgs)}
    for key in set(values) - set(required) - {"out"}:
        assert values[key] == defaults[key], key
    assert parse_args(values).out == defaults["out"]


def test_missing_required_values_are_all_named_at_once(weights, tmp_path, no_model):
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        cfg = compose("sample", overrides=[f"weights={weights}"])
    with pytest.raises(
        ValueError, match="image, mask, example are required: pass image=PATH .*; mask=PATH .*; ex"
    ):
        parse_args(config_values(cfg))


# ----------------------------------------------------------------------------------------------- pieces


def test_output_names_carry_the_sweep_suffix(weights, photos, tmp_path):
    args = parse_args(arguments(weights, photos, tmp_path / "res.png", mask="auto"))
    names = [p.name for p in output_paths(args, "seed1").all()]
    assert names == ["res_seed1.png", "res_seed1_grid.png", "res_seed1_mask.png"]


def test_swept_keys_are_the_comma_and_range_overrides():
    argv = [
        "-m",
        "weights=w",
        "seed=1,2",
        "sampler=ddim,plms",
        "steps=range(2,4)",
        "out=o.png",
        "--cfg",
        "job",
    ]
    assert swept_keys(argv) == ["seed", "sampler", "steps"]


def test_sweep_suffix_uses_values_and_file_stems():
    values = {"seed": 7, "guidance": 2.5, "example": "photos/dog.png", "sampler": "ddim"}
    assert sweep_suffix(["seed", "guidance", "example", "sampler"], values) == (
        "seed7_guidance2.5_example-dog_sampler-ddim"
    )
    assert (
        sweep_suffix([], values, job_number=3) == "job3"
    )  # sweeps Hydra set up elsewhere still get distinct names


def test_grid_has_one_row_per_result_with_the_exemplar_at_row_height():
    source = Image.new("RGB", (20, 10), (10, 20, 30))
    mask = Image.new("L", (20, 10), 0)
    mask.paste(200, (0, 0, 5, 10))
    exemplar = Image.new("RGB", (30, 15), (200, 100, 0))
    results = [Image.new("RGB", (20, 10), (i * 50, 0, 0)) for i in range(3)]
    grid = np.asarray(draw_grid(source, mask, exemplar, results))
    assert grid.shape == (LABEL_HEIGHT + 3 * 10 + 2 * GRID_GAP, 20 + 20 + 20 + 20 + 3 * GRID_GAP, 3)
    last_row = grid[-10:]
    np.testing.assert_array_equal(last_row[:, :20], np.asarray(source))
    assert (last_row[:, 20 + GRID_GAP : 25 + GRID_GAP] == 255).all()  # mask: white = repaint
    assert (last_row[:, 25 + GRID_GAP : 40 + GRID_GAP] == 0).all()
    np.testing.assert_array_equal(
        last_row[:, 40 + 2 * GRID_GAP : 60 + 2 * GRID_GAP], np.full((10, 20, 3), (200, 100, 0))
    )
    np.testing.assert_array_equal(last_row[:, -20:], np.asarray(results[2]))


def test_write_file_leaves_the_target_untouched_when_writing_fails(tmp_path):
    class Broken(Image.Image):
        def save(self, f, format):
            Path(f).write_bytes(b"half a png")
            raise OSError("disk full")

    target = tmp_path / "r.png"
    target.write_bytes(b"old")
    with pytest.raises(OSError, match="disk full"):
        write_file(target, Broken(), overwrite=True)
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["r.png"]


def test_write_file_refuses_an_existing_file_without_overwrite(tmp_path):
    target = tmp_path / "r.png"
    target.write_bytes(b"old")
    with pytest.raises(FileExistsError, match="overwrite=true"):
        write_file(target, Image.new("RGB", (8, 8)))
    check_free([tmp_path / "other.png"], overwrite=False)  # a free name passes
    assert target.read_bytes() == b"old"


# ----------------------------------------------------------------------------------------------- entry point


def sample_py(cwd: Path, *argv: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "HYDRA_FULL_ERROR": "1"}
    return subprocess.run(
        [sys.executable, str(ROOT / "sample.py"), *argv],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_sample_py_writes_only_the_result_and_grid(weights, photos, tmp_path):
    done = sample_py(tmp_path, *(f"{k}={v}" for k, v in arguments(weights, photos, "result.png").items()))
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "result.png",
        "result_grid.png",
    ]  # no outputs/, .hydra/
    again = sample_py(tmp_path, *(f"{k}={v}" for k, v in arguments(weights, photos, "result.png").items()))
    assert again.returncode == 1
    assert "error:" in again.stderr and "overwrite=true" in again.stderr and "Traceback" not in again.stderr


def test_sample_py_sweep_writes_one_distinct_file_per_seed(weights, photos, tmp_path):
    values = arguments(weights, photos, "sweep/result.png", grid=False)
    done = sample_py(tmp_path, "-m", *(f"{k}={v}" for k, v in values.items()), "seed=1,2")
    assert done.returncode == 0, done.stderr
    assert [p.name for p in tmp_path.iterdir()] == ["sweep"]
    names = sorted(p.name for p in (tmp_path / "sweep").iterdir())
    assert names == ["multirun.yaml", "result_seed1.png", "result_seed2.png"]
    assert not np.array_equal(
        pixels(tmp_path / "sweep/result_seed1.png"), pixels(tmp_path / "sweep/result_seed2.png")
    )


def error_lines(done: subprocess.CompletedProcess) -> list[str]:
    return [line for line in done.stderr.splitlines() if line.startswith("error:")]


# ----------------------------------------------------------------------------------------------- outputs that fail


def test_a_disk_without_room_is_found_before_the_weights_load(
    weights, photos, tmp_path, no_model, monkeypatch
):
    usage = shutil.disk_usage
    monkeypatch.setattr(sample_cli.shutil, "disk_usage", lambda path: usage(path)._replace(free=1000))
    with pytest.raises(ValueError, match="MiB free; the outputs need up to"):
        run(parse_args(arguments(weights, photos, tmp_path / "result.png")))
    assert list(tmp_path.iterdir()) == []


def test_a_failure_writing_the_grid_leaves_nothing_that_blocks_the_rerun(
    weights, photos, tmp_path, monkeypatch
):
    class FullDisk(Image.Image):
        def save(self, f, format):
            Path(f).write_bytes(b"half a png")
            raise OSError(errno.ENOSPC, "No space left on device")

    out = tmp_path / "edits" / "result.png"
    with monkeypatch.context() as patch:
        patch.setattr(sample_cli, "draw_grid", lambda *a, **k: FullDisk())
        with pytest.raises(OSError, match="No space left on device.*no output was written"):
            run(parse_args(arguments(weights, photos, out)))
    assert list(tmp_path.iterdir()) == []  # no result, no temporary file, not even the new folder
    run(parse_args(arguments(weights, photos, out)))  # the same command again, without overwrite=true
    assert sorted(p.name for p in out.parent.iterdir()) == ["result.png", "result_grid.png"]


# ----------------------------------------------------------------------------------------------- sweeps up front


def sweep_overrides(weights, photos, out, *extra) -> list[str]:
    return [*(f"{k}={v}" for k, v in arguments(weights, photos, out).items()), *extra]


@pytest.mark.parametrize(
    "extra, message",
    [
        (["sampler=ddim,bogus"], r"sweep job 1 \(sampler=bogus\): sampler='bogus'"),
        (["steps=2,02"], r"sweep job 1 \(steps=02\): steps must be an integer"),
        (["example={photos}/coffee.png,{photos}/copy/coffee.png"], "sweep jobs 0 and 1 would both write"),
        (["seed=1,2", "image={photos}/astronaut.png,{photos}"], "sweep job 2 .*image: .* is a directory"),
        (
            ["seed=1,2", "mask={photos}/r_seed2.png", "out={photos}/r.png", "overwrite=true"],
            "sweep job 1 .*r_seed2.png is the input",
        ),
    ],
    ids=["bad_sampler", "steps_02", "same_file_name", "directory", "out_is_an_input"],
)
def test_every_job_of_a_sweep_is_checked_before_any_runs(weights, photos, tmp_path, no_model, extra, message):
    (photos / "copy").mkdir(exist_ok=True)
    shutil.copy(photos / "coffee.png", photos / "copy" / "coffee.png")
    shutil.copy(photos / "mask.png", photos / "r_seed2.png")
    extra = [e.format(photos=photos) for e in extra]
    with pytest.raises(ValueError, match=message):
        check_sweep(sweep_overrides(weights, photos, tmp_path / "result.png", *extra), ROOT / "configs")
    assert list(tmp_path.iterdir()) == []


def test_a_sweep_whose_later_job_would_replace_a_file_is_refused_up_front(
    weights, photos, tmp_path, no_model
):
    (tmp_path / "result_seed2.png").write_bytes(b"precious")
    with pytest.raises(FileExistsError, match="sweep job 1 .*result_seed2.png already exist"):
        check_sweep(sweep_overrides(weights, photos, tmp_path / "result.png", "seed=1,2"), ROOT / "configs")
    assert check_sweep(sweep_overrides(weights, photos, tmp_path / "result.png", "seed=3,4,5")) == 3


def test_sample_py_refuses_a_bad_sweep_before_writing_anything(weights, photos, tmp_path):
    (tmp_path / "sweep").mkdir()
    (tmp_path / "sweep" / "multirun.yaml").write_text("a previous sweep")
    values = arguments(weights, photos, "sweep/result.png", grid=False)
    done = sample_py(tmp_path, "-m", *(f"{k}={v}" for k, v in values.items()), "sampler=ddim,bogus")
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert error_lines(done) == [error_lines(done)[0]] and "sampler='bogus'" in error_lines(done)[0]
    assert [p.name for p in (tmp_path / "sweep").iterdir()] == ["multirun.yaml"]  # the ddim job did not run
    assert (tmp_path / "sweep" / "multirun.yaml").read_text() == "a previous sweep"


def test_sample_py_help_lists_every_option_with_its_default(tmp_path):
    done = sample_py(tmp_path, "--help")
    assert done.returncode == 0 and list(tmp_path.iterdir()) == []
    lines = done.stdout.splitlines()
    for f in fields(SampleArgs):
        line = next((line for line in lines if line.strip().startswith(f"{f.name}=")), None)
        assert line is not None and len(line.split(maxsplit=1)) == 2, f.name  # a description beside each
    assert any("seed=42" in line for line in lines) and any("overwrite=false" in line for line in lines)
    assert "-m" in done.stdout and "seed=1,2" in done.stdout
    assert "Compose your configuration" not in done.stdout  # not Hydra's generic page


def test_an_unknown_option_is_refused_with_the_valid_ones_before_hydra_runs(tmp_path, no_model):
    with pytest.raises(ValueError, match="Could not override 'seeed'.* Valid options: weights, image"):
        check_command_line(["seeed=1"], ROOT / "configs")
    assert check_command_line(["--cfg", "job"]) is False  # Hydra's own flags: left to Hydra


def test_a_large_image_is_warned_about_and_a_line_shows_while_weights_load(
    weights, photos, tmp_path, no_model, capsys
):
    args = parse_args(
        arguments(weights, photos, tmp_path / "r.png", warn_pixels=WIDTH * HEIGHT - 1, progress=True)
    )
    with pytest.raises(AssertionError, match="weights were loaded"):  # no_model: stop where the weights load
        run(args)
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith(
        f"warning: image is {WIDTH}x{HEIGHT} = 3,072 pixels, more than warn_pixels=3,071"
    )
    assert err[1] == f"loading weights from {weights} ..."


def test_without_weights_the_bundled_objects_model_is_used(weights, photos, tmp_path, monkeypatch):
    import pbe.assets

    monkeypatch.setattr(pbe.assets, "default_model_path", lambda: weights)
    args = parse_args(arguments(weights, photos, tmp_path / "result.png", weights=None))
    assert args.weights == weights


def test_without_weights_and_no_bundled_model_weights_is_required(photos, tmp_path, monkeypatch):
    import pbe.assets

    def absent():
        raise FileNotFoundError("the objects model is not installed")

    monkeypatch.setattr(pbe.assets, "default_model_path", absent)
    with pytest.raises(ValueError, match="weights is required"):
        parse_args(arguments("unused", photos, tmp_path / "result.png", weights=None))


def test_write_file_tolerates_a_folder_made_by_another_writer_meanwhile(tmp_path, monkeypatch):
    # two evaluation ranks write into the same new results/ folder: the loser of the mkdir race must not fail
    from pathlib import Path

    target = tmp_path / "results" / "1.png"
    real_mkdir = Path.mkdir

    def racing_mkdir(self, *args, **kwargs):
        real_mkdir(self, *args, **kwargs)  # the other writer wins...
        raise FileExistsError(17, "File exists", str(self))  # ...and this one finds it there

    monkeypatch.setattr(Path, "mkdir", racing_mkdir)
    write_file(target, Image.new("RGB", (4, 4)))
    monkeypatch.undo()
    assert pixels(target).shape == (4, 4, 3)


# ----------------------------------------------------------------------------------------------- round two of bad input


def test_a_seed_beyond_what_a_generator_takes_is_refused_with_its_range(weights, photos, tmp_path, no_model):
    with pytest.raises(ValueError, match=r"seed must be an integer in \[0, 18446744073709551615\]"):
        parse_args(arguments(weights, photos, tmp_path / "r.png", seed=2**70))
    assert parse_args(arguments(weights, photos, tmp_path / "r.png", seed=2**64 - 1)).seed == 2**64 - 1


@pytest.mark.parametrize(
    "change, message",
    [
        ({"steps": 100000}, r"steps must be an integer in \[1, 1000\]"),
        ({"steps": 1000, "sampler": "plms"}, "steps=1000 does not work for sampler plms"),
        (
            {"image": "{photos}/dot.png", "mask": "{photos}/dot_mask.png"},
            "image is 1x1 pixels; this model needs",
        ),
    ],
    ids=["steps_100000", "steps_1000_plms", "one_pixel"],
)
def test_what_depends_on_the_checkpoint_is_checked_before_its_weights_load(
    weights, photos, tmp_path, no_model, change, message
):
    Image.new("RGB", (1, 1)).save(photos / "dot.png")
    Image.new("L", (1, 1), 255).save(photos / "dot_mask.png")
    change = {k: v.format(photos=photos) if isinstance(v, str) else v for k, v in change.items()}
    args = parse_args(arguments(weights, photos, tmp_path / "r.png", progress=True, **change))
    with pytest.raises(ValueError, match=message):
        run(args)  # no_model: building a model first would fail the test
    with pytest.raises(ValueError, match=message):  # and for a sweep, before its first job
        check_sweep([f"{k}={v}" for k, v in arguments(weights, photos, tmp_path / "r.png", **change).items()])
    assert list(tmp_path.iterdir()) == []


def test_an_image_above_max_pixels_is_refused_from_its_header(
    weights, photos, tmp_path, no_model, monkeypatch
):
    big = photos / "big.png"
    Image.new("RGB", (300, 200)).save(big)
    Image.new("L", (300, 200)).save(photos / "big_mask.png")
    opened = []
    monkeypatch.setattr(sample_cli, "open_image", lambda *a, **k: opened.append(a) or None)
    values = arguments(weights, photos, tmp_path / "r.png", image=str(big), mask=str(photos / "big_mask.png"))
    with pytest.raises(
        ValueError, match=r"image: .*big.png is 300x200 = 60,000 pixels, more than max_pixels=59,999"
    ):
        load_inputs(parse_args({**values, "max_pixels": 59_999}))
    assert opened == []  # refused before any decoding
    assert SampleArgs.max_pixels == 4096 * 4096  # the documented default


def test_a_sweep_never_replaces_a_multirun_yaml_of_the_users(weights, photos, tmp_path, no_model):
    record = tmp_path / "multirun.yaml"
    record.write_text("my notes\n")
    overrides = sweep_overrides(weights, photos, tmp_path / "r.png", "seed=1,2")
    with pytest.raises(FileExistsError, match="multirun.yaml already exists .* overwrite=true"):
        check_sweep(overrides)
    with pytest.raises(ValueError, match="multirun.yaml is not a sweep record pbe wrote"):
        check_sweep([*overrides, "overwrite=true"])
    assert record.read_text() == "my notes\n"
    record.write_text("hydra:\n  mode: MULTIRUN\nimage: a.png\n")  # an earlier sweep's record
    assert check_sweep([*overrides, "overwrite=true"]) == 2


def test_sample_py_keeps_the_users_multirun_yaml(weights, photos, tmp_path):
    (tmp_path / "multirun.yaml").write_text("my notes\n")
    values = arguments(weights, photos, "r.png", grid=False)
    done = sample_py(tmp_path, "-m", *(f"{k}={v}" for k, v in values.items()), "seed=1,2")
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert "multirun.yaml already exists" in error_lines(done)[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["multirun.yaml"]
    assert (tmp_path / "multirun.yaml").read_text() == "my notes\n"


@pytest.mark.parametrize("name", ["chät.png", "my photo.png", "a=b.png"])
def test_paths_with_spaces_letters_beyond_ascii_or_equals_signs_are_read(weights, photos, tmp_path, name):
    shutil.copy(photos / "astronaut.png", tmp_path / name)
    values = arguments(weights, photos, "r.png", image=str(tmp_path / name), grid=False)
    done = sample_py(tmp_path, *(f"{k}={v}" for k, v in values.items()))
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "r.png").is_file()


def test_quote_paths_quotes_only_what_hydra_cannot_read():
    assert sample_cli.quote_paths(["image=chät.png", "mask=m.png", "seed=1,2", "example=(1).png"]) == [
        "image='chät.png'",
        "mask=m.png",
        "seed=1,2",
        "example='(1).png'",
    ]
    assert sample_cli.quote_paths(["image=a,ä.png"]) == ["image=a,ä.png"]  # a sweep: left to Hydra


def test_an_unreadable_override_says_how_to_quote(weights, photos, tmp_path, no_model):
    with pytest.raises(ValueError, match="goes in quotes"):
        check_sweep([*sweep_overrides(weights, photos, tmp_path / "r.png"), "sampler=(ddim"])


def test_ctrl_c_while_sample_py_starts_is_one_line_and_exit_130(weights, photos, tmp_path):
    import signal
    import time

    values = arguments(weights, photos, "r.png")
    for delay in (0.3, 1.0, 2.0):  # the imports (hydra, torch) take seconds: each lands in a different phase
        process = subprocess.Popen(
            [sys.executable, str(ROOT / "sample.py"), *(f"{k}={v}" for k, v in values.items())],
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        time.sleep(delay)
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=120)
        if process.returncode == 0:  # finished before the signal: nothing to check at this delay
            continue
        assert process.returncode == 130, err
        assert "Traceback" not in err and err.strip().splitlines()[-1].startswith("interrupted"), err
    assert not (tmp_path / "r.png").exists() or (tmp_path / "r_grid.png").exists()  # all or nothing
