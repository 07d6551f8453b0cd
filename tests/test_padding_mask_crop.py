"""padding_mask_crop: edit a square around the mask at the model's training resolution and paste it back.

The pipeline's option (diffusers' name; default None leaves everything as it was), the crop box, the `auto` default of
sample.py / the app / the demo, and `train_resolution` carried from the checkpoint to the pipeline."""

import numpy as np
import pytest
import torch
from app_helpers import save_tiny_model
from PIL import Image

from pbe import PaintByExamplePipeline
from pbe.checkpoints.formats import load_checkpoint, save_checkpoint, set_train_resolution
from pbe.pipeline import PipelineOutput, auto_padding_mask_crop, mask_crop_box

TRAIN_RESOLUTION = 32  # what the tiny model's folder records (its VAE downsamples by 4: 8x8 latents)
W, H = 96, 80  # the photo: larger than TRAIN_RESOLUTION
BOX = (60, 30, 72, 44)  # the mask's white rectangle (left, top, right, bottom)


def photo(w=W, h=H, seed=0) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8))


def smooth_photo(w=W, h=H) -> Image.Image:
    """Slowly varying colours: resizing it down and up again changes little, shifting it changes a lot."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    rgb = np.stack([np.sin(x / 9), np.cos(y / 7), np.sin((x + y) / 11)], axis=-1)
    return Image.fromarray(np.round((rgb + 1) * 127.5).astype(np.uint8))


def box_mask(box=BOX, w=W, h=H) -> np.ndarray:
    mask = np.zeros((h, w), np.uint8)
    mask[box[1] : box[3], box[0] : box[2]] = 255
    return mask


EXEMPLAR = photo(20, 20, seed=9)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    path = save_tiny_model(tmp_path_factory.mktemp("crop") / "tiny")
    set_train_resolution(path, TRAIN_RESOLUTION)
    return path


@pytest.fixture
def pipe(folder):
    return PaintByExamplePipeline.from_pretrained(folder)


def edit(pipe, image=None, mask=None, **options):
    options = {"num_inference_steps": 2, "progress": False, "output_type": "np", **options}
    image = photo() if image is None else image
    mask = box_mask() if mask is None else mask
    return pipe(image, mask, EXEMPLAR, generator=torch.Generator().manual_seed(0), **options).images


def record_sizes(pipe) -> dict[str, list]:
    """The spatial sizes the VAE encoder and the UNet are called with, recorded as the pipeline runs."""
    seen = {"vae": [], "unet": []}
    pipe.model.vae.encoder.register_forward_pre_hook(lambda m, args: seen["vae"].append(args[0].shape[-2:]))
    pipe.model.unet.register_forward_pre_hook(lambda m, args: seen["unet"].append(args[0].shape[-2:]))
    return seen


# ----------------------------------------------------------------------------------------------- the crop box


def test_the_box_grows_by_the_margin_then_to_a_square_centred_on_it():
    mask = np.zeros((100, 100), bool)
    mask[40:50, 30:60] = True  # 30 wide, 10 high
    # grown by 5: x 25..65 (40), y 35..55 (20); the square of side 40 centred on it: y 25..65
    assert mask_crop_box(mask, 5) == (25, 25, 65, 65)


def test_the_box_is_moved_inside_the_image_at_its_borders():
    top_left, bottom_right = np.zeros((100, 100), bool), np.zeros((100, 100), bool)
    top_left[:10, :10] = True
    bottom_right[90:, 95:] = True
    assert mask_crop_box(top_left, 10) == (0, 0, 30, 30)
    assert mask_crop_box(bottom_right, 10) == (70, 70, 100, 100)  # square side 30: 10 + 2 x 10 rows


def test_the_box_takes_the_whole_side_where_the_image_is_smaller_than_the_square():
    wide = np.zeros((30, 100), bool)
    wide[10:20, 40:60] = True  # grown by 10: 40 x 30, a square of 40 does not fit 30 rows
    assert mask_crop_box(wide, 10) == (30, 0, 70, 30)
    assert mask_crop_box(wide, 60) == (0, 0, 100, 30)  # larger than the image both ways: all of it


def test_the_box_of_an_empty_mask_is_refused():
    with pytest.raises(ValueError, match="marks nothing to repaint"):
        mask_crop_box(np.zeros((8, 8), bool), 4)


# ----------------------------------------------------------------------------------------------- the pipeline


def test_train_resolution_comes_from_the_native_folder_and_changes_nothing_by_default(pipe, folder):
    assert pipe.train_resolution == TRAIN_RESOLUTION
    seen = record_sizes(pipe)
    default = edit(pipe)
    assert set(seen["vae"]) == {(H, W)}  # the whole photo, at its own size
    unknown = PaintByExamplePipeline.from_pretrained(folder)
    unknown.train_resolution = None
    np.testing.assert_array_equal(default, edit(unknown))
    np.testing.assert_array_equal(default, edit(pipe, padding_mask_crop=None))


def test_the_model_sees_the_crop_at_the_training_resolution(pipe):
    seen = record_sizes(pipe)
    edit(pipe, padding_mask_crop=4)
    latent = TRAIN_RESOLUTION // pipe.vae_scale
    assert set(seen["vae"]) == {(TRAIN_RESOLUTION, TRAIN_RESOLUTION)}
    assert seen["unet"] and set(seen["unet"]) == {(latent, latent)}


def test_without_train_resolution_the_crop_keeps_its_size_rounded_up_to_the_vae_factor(pipe):
    pipe.train_resolution = None
    seen = record_sizes(pipe)
    edit(pipe, mask=box_mask((60, 30, 69, 36)), padding_mask_crop=3)  # 9 x 6, grown by 3: a square of 15
    assert set(seen["vae"]) == {(16, 16)}


@pytest.mark.parametrize("output_type", ["pil", "np", "pt"])
def test_pixels_outside_the_mask_are_the_inputs_exactly(pipe, output_type):
    result = edit(pipe, padding_mask_crop=4, output_type=output_type)
    if output_type == "pil":
        result = np.asarray(result[0])
        source = np.asarray(photo())
    elif output_type == "np":
        result, source = result[0], np.asarray(photo()).astype(np.float32) / 255
    else:
        result = result[0].permute(1, 2, 0).numpy()
        source = np.asarray(photo()).astype(np.float32) / 255
    inside = box_mask() > 0
    assert result.shape == source.shape
    np.testing.assert_array_equal(result[~inside], source[~inside])
    assert (result[inside] != source[inside]).any(axis=-1).mean() > 0.5  # the mask was edited


@pytest.mark.parametrize(
    "size, box",
    [((W, H), BOX), ((W, 40), (30, 5, 80, 35))],
    ids=["square", "photo_lower_than_the_square"],  # 50 x 30 grown by 4: a square of 58 in 40 rows
)
def test_the_edited_crop_goes_back_where_it_came_from(pipe, monkeypatch, size, box):
    """With a model that gives back what it is shown, the result inside the mask is the photo (up to resizing)."""
    real_call = PaintByExamplePipeline.__call__

    def echo(self, image, mask_image, example_image, **options):
        if options.get("padding_mask_crop") is not None:
            return real_call(self, image, mask_image, example_image, **options)
        return PipelineOutput(images=((image + 1) / 2).repeat_interleave(options["num_images_per_prompt"], 0))

    monkeypatch.setattr(PaintByExamplePipeline, "__call__", echo)
    source, mask = smooth_photo(*size), box_mask(box, *size)
    result = edit(pipe, image=source, mask=mask, padding_mask_crop=4)[0]
    inside = mask > 0
    error = np.abs(result[inside] - np.asarray(source)[inside] / 255)
    assert error.mean() < 0.02, error.mean()
    shifted = np.abs(result[inside] - np.roll(np.asarray(source), 2, axis=1)[inside] / 255)
    assert shifted.mean() > 5 * error.mean()  # the measure would see a misplaced paste


def test_batches_and_copies_keep_each_image_outside_its_own_mask(pipe):
    images = [photo(seed=1), photo(seed=2)]
    masks = [box_mask(), box_mask((0, 60, 20, 80))]  # the second in a corner: its square is moved inside
    result = edit(pipe, image=images, mask=masks, padding_mask_crop=6, num_images_per_prompt=2)
    assert result.shape == (4, H, W, 3)
    for j, out in enumerate(result):
        source, inside = np.asarray(images[j // 2]).astype(np.float32) / 255, masks[j // 2] > 0
        np.testing.assert_array_equal(out[~inside], source[~inside])
        assert (out[inside] != source[inside]).any(axis=-1).mean() > 0.5
    assert not np.array_equal(result[0], result[1])  # each copy its own noise


def test_feather_softens_the_edge_inside_the_mask_only(pipe):
    sharp = edit(pipe, padding_mask_crop=4)[0]
    soft = edit(pipe, padding_mask_crop=4, feather=3)[0]
    inside = box_mask() > 0
    core = box_mask((BOX[0] + 3, BOX[1] + 3, BOX[2] - 3, BOX[3] - 3)) > 0
    np.testing.assert_array_equal(soft[~inside], sharp[~inside])
    np.testing.assert_array_equal(soft[core], sharp[core])
    assert not np.array_equal(soft[inside & ~core], sharp[inside & ~core])


def test_latents_have_the_generation_size(pipe):
    latent = TRAIN_RESOLUTION // pipe.vae_scale
    noise = torch.randn(1, 4, latent, latent)
    assert edit(pipe, padding_mask_crop=4, latents=noise).shape == (1, H, W, 3)
    with pytest.raises(ValueError, match="latents have shape"):
        edit(pipe, padding_mask_crop=4, latents=torch.randn(1, 4, H // pipe.vae_scale, W // pipe.vae_scale))


@pytest.fixture
def guarded(pipe):
    """The pipeline with hooks that fail the test if any network runs."""

    def boom(*_):
        raise AssertionError("model work started before the arguments were checked")

    for module in (pipe.model.unet, pipe.model.vae.encoder, pipe.model.encoder):
        module.register_forward_pre_hook(boom)
    return pipe


@pytest.mark.parametrize(
    "change, match",
    [
        ({"padding_mask_crop": -1}, "padding_mask_crop must be None .* or an integer >= 0"),
        ({"padding_mask_crop": 2.5}, "padding_mask_crop must be None .* or an integer >= 0"),
        ({"padding_mask_crop": True}, "padding_mask_crop must be None .* or an integer >= 0"),
        ({"padding_mask_crop": "8"}, "padding_mask_crop must be None .* or an integer >= 0"),
        (
            {"padding_mask_crop": 4, "output_type": "latent"},
            "padding_mask_crop=4 cannot give output_type='latent'",
        ),
        (
            {"padding_mask_crop": 4, "image_latents": torch.zeros(1, 3, 4, 8, 8)},
            "padding_mask_crop=4 cannot be combined with image_latents",
        ),
        (
            {"padding_mask_crop": 4, "mask": np.zeros((H, W), np.uint8)},
            "padding_mask_crop=4 crops around the mask",
        ),
    ],
    ids=["negative", "float", "bool", "string", "latent_output", "image_latents", "empty_mask"],
)
def test_bad_padding_mask_crop_is_refused_before_model_work(guarded, change, match):
    with pytest.raises(ValueError, match=match):
        edit(guarded, **change)


# ----------------------------------------------------------------------------------------------- checkpoints


def test_train_resolution_round_trips_pbe_written_files_and_is_none_for_diffusers(folder, tmp_path):
    from helpers import tiny_diffusers_pipeline

    ckpt = load_checkpoint(folder)
    ckpt.train_resolution = 48
    save_checkpoint(ckpt, tmp_path / "native", "native", progress=False)
    save_checkpoint(ckpt, tmp_path / "model.ckpt", "ldm", progress=False)
    ckpt.train_resolution = None  # as the released model.ckpt: no entry
    save_checkpoint(ckpt, tmp_path / "released.ckpt", "ldm", progress=False)
    tiny_diffusers_pipeline().save_pretrained(tmp_path / "diffusers")
    assert PaintByExamplePipeline.from_pretrained(tmp_path / "native").train_resolution == 48
    assert PaintByExamplePipeline.from_pretrained(tmp_path / "model.ckpt").train_resolution == 48
    assert PaintByExamplePipeline.from_pretrained(tmp_path / "released.ckpt").train_resolution is None
    assert PaintByExamplePipeline.from_pretrained(tmp_path / "diffusers").train_resolution is None


def test_the_bundled_small_model_records_its_64_px_training_resolution():
    from pbe.assets import small_model_path

    assert load_checkpoint(small_model_path()).train_resolution == 64


# ----------------------------------------------------------------------------------------------- auto (sample.py, app, demo)


def test_auto_crops_with_half_the_mask_box_as_margin_only_above_the_training_resolution():
    mask = box_mask((10, 10, 50, 30))  # 40 x 20: margin 20
    assert auto_padding_mask_crop("auto", 64, (W, H), mask) == 20
    assert auto_padding_mask_crop("auto", 64, (W, H), box_mask((10, 10, 14, 12))) == 8  # at least 8 px
    assert auto_padding_mask_crop("auto", 96, (W, H), mask) is None  # the photo is not larger
    assert auto_padding_mask_crop("auto", None, (W, H), mask) is None  # the model does not say
    assert (
        auto_padding_mask_crop("auto", 64, (W, H), np.zeros((H, W), np.uint8)) is None
    )  # nothing to crop around
    assert (
        auto_padding_mask_crop(5, None, (W, H), mask) == 5
        and auto_padding_mask_crop(None, 64, (W, H), mask) is None
    )


def cli_run(folder, tmp_path, monkeypatch, size, setting, progress=False) -> tuple[list, np.ndarray]:
    """sample.py's run() on a photo of `size`; (the padding_mask_crop each pipeline call got, the result)."""
    from pbe.sample_cli import parse_args, run

    w, h = size
    photo(w, h).save(tmp_path / "photo.png")
    Image.fromarray(box_mask((w // 2, h // 2, w // 2 + 8, h // 2 + 6), w, h)).save(tmp_path / "mask.png")
    EXEMPLAR.save(tmp_path / "exemplar.png")
    calls, real_call = [], PaintByExamplePipeline.__call__

    def recording(self, *args, **options):
        calls.append(options.get("padding_mask_crop"))
        return real_call(self, *args, **options)

    monkeypatch.setattr(PaintByExamplePipeline, "__call__", recording)
    values = {
        "weights": str(folder),
        "image": str(tmp_path / "photo.png"),
        "mask": str(tmp_path / "mask.png"),
        "example": str(tmp_path / "exemplar.png"),
        "out": str(tmp_path / "out" / "result.png"),
        "steps": 1,
        "grid": False,
        "progress": progress,
        "padding_mask_crop": setting,
    }
    run(parse_args(values))
    return calls, np.asarray(Image.open(tmp_path / "out" / "result.png"))


def test_sample_py_auto_crops_a_photo_larger_than_the_training_resolution(
    folder, tmp_path, monkeypatch, capsys
):
    calls, result = cli_run(folder, tmp_path, monkeypatch, (W, H), "auto", progress=True)
    assert calls[0] == 8  # the mask is 8 x 6: the least margin
    assert (
        "padding_mask_crop: editing the 24x24 region around the mask (8 px margin) at 32x32"
        in capsys.readouterr().err
    )
    inside = np.asarray(Image.open(tmp_path / "mask.png")) > 0
    np.testing.assert_array_equal(result[~inside], np.asarray(photo())[~inside])


def test_sample_py_auto_leaves_a_photo_at_the_training_resolution_whole(folder, tmp_path, monkeypatch):
    calls, _ = cli_run(folder, tmp_path, monkeypatch, (TRAIN_RESOLUTION, TRAIN_RESOLUTION - 8), "auto")
    assert calls == [None]


@pytest.mark.parametrize(
    "setting, size, expected", [(12, (32, 24), 12), ("none", (W, H), None), (None, (W, H), None)]
)
def test_sample_py_padding_mask_crop_overrides_auto(folder, tmp_path, monkeypatch, setting, size, expected):
    calls, _ = cli_run(folder, tmp_path, monkeypatch, size, setting)
    assert calls[0] == expected


@pytest.mark.parametrize("value", ["sometimes", -1, True, 2.5])
def test_sample_py_refuses_a_bad_padding_mask_crop_naming_it(folder, tmp_path, value):
    from pbe.sample_cli import parse_args

    photo().save(tmp_path / "photo.png")
    Image.fromarray(box_mask()).save(tmp_path / "mask.png")
    values = {
        "weights": str(folder),
        "image": str(tmp_path / "photo.png"),
        "mask": str(tmp_path / "mask.png"),
        "example": str(tmp_path / "photo.png"),
        "padding_mask_crop": value,
    }
    with pytest.raises(ValueError, match="padding_mask_crop must be auto"):
        parse_args(values)


def test_the_app_and_the_demo_refuse_a_bad_padding_mask_crop_naming_it(capsys):
    from pbe import app, demo

    assert app.parse_args(["padding_mask_crop=none"]).padding_mask_crop is None
    assert app.parse_args(["padding_mask_crop=16"]).padding_mask_crop == 16
    with pytest.raises(ValueError, match="padding_mask_crop must be auto"):
        app.parse_args(["padding_mask_crop=big"])
    with pytest.raises(SystemExit):
        demo.main(["--padding-mask-crop", "big"])
    assert "--padding-mask-crop must be auto" in capsys.readouterr().err


def test_the_app_edits_a_crop_of_a_photo_larger_than_the_training_resolution(pipe, tmp_path):
    from pbe import app

    seen = record_sizes(pipe)
    editor = app.Editor(pipe, max_pixels=W * H, workdir=tmp_path)
    source, mask = photo(), Image.fromarray(box_mask())
    result, _, _ = editor.edit(app.editor_value(source, mask), EXEMPLAR, "ddim", 2, 5.0, 1.0, 0, False, 0)
    assert set(seen["vae"]) == {(TRAIN_RESOLUTION, TRAIN_RESOLUTION)}
    inside = box_mask() > 0
    np.testing.assert_array_equal(np.asarray(result)[~inside], np.asarray(source)[~inside])
