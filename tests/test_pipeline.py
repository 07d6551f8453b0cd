"""The editing pipeline: parity with diffusers' PaintByExamplePipeline, and what goes beyond it."""

import sys
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from helpers import tiny_diffusers_pipeline
from PIL import Image

from pbe import PaintByExamplePipeline
from pbe.checkpoints.formats import load_checkpoint, save_checkpoint


def photo(h, w, seed=0, mode="RGB"):
    g = torch.Generator().manual_seed(seed)
    img = Image.fromarray((torch.rand(h, w, 3, generator=g) * 255).byte().numpy())
    return img.convert(mode)


def box_mask(h, w, box):
    mask = Image.new("L", (w, h), 0)
    mask.paste(255, box)
    return mask


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    path = tmp_path_factory.mktemp("pipe") / "tiny"
    tiny_diffusers_pipeline().save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def pipe(folder):
    return PaintByExamplePipeline.from_pretrained(folder)


def scheduler(name):
    from diffusers import DDIMScheduler, LMSDiscreteScheduler, PNDMScheduler

    common = dict(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear")
    return {
        "pndm": lambda: PNDMScheduler(**common, skip_prk_steps=True, steps_offset=1),
        "ddim": lambda: DDIMScheduler(**common, clip_sample=False, set_alpha_to_one=False, steps_offset=1),
        "lms": lambda: LMSDiscreteScheduler(**common),
    }[name]()


PARITY = {
    "pndm_non_square": dict(scheduler="pndm", size=(32, 48), call={}),
    "ddim_eta": dict(scheduler="ddim", size=(48, 32), call={"eta": 0.5}),
    "lms": dict(scheduler="lms", size=(32, 32), call={}),
    "no_guidance": dict(scheduler="pndm", size=(32, 48), call={"guidance_scale": 1.0}),
    "two_per_prompt": dict(scheduler="ddim", size=(32, 32), call={"num_images_per_prompt": 2}),
    "batch_of_two": dict(scheduler="pndm", size=(32, 48), call={}, batch=2),
}


@pytest.mark.parametrize("case", sorted(PARITY))
def test_matches_diffusers(case, tmp_path):
    spec = PARITY[case]
    ref = tiny_diffusers_pipeline(scheduler=scheduler(spec["scheduler"]))
    ref.save_pretrained(tmp_path / "m")
    ours = PaintByExamplePipeline.from_pretrained(tmp_path / "m")
    assert ours.default_sampler == {"pndm": "pndm", "ddim": "ddim", "lms": "lms"}[spec["scheduler"]]
    h, w = spec["size"]
    batch = spec.get("batch", 1)
    images = [photo(h, w, seed=i) for i in range(batch)]
    masks = [box_mask(h, w, (8, 8, w - 8, h - 16 + 8 * i)) for i in range(batch)]
    examples = [photo(40 + 8 * i, 56, seed=10 + i) for i in range(batch)]
    if batch == 1:
        images, masks, examples = images[0], masks[0], examples[0]
    kwargs = dict(
        image=images, mask_image=masks, example_image=examples, num_inference_steps=4, output_type="np"
    )
    kwargs.update(spec["call"])
    expected = ref(**kwargs, generator=torch.Generator().manual_seed(7)).images
    got = ours(**kwargs, generator=torch.Generator().manual_seed(7), progress=False).images
    assert got.shape == expected.shape
    assert np.abs(got - expected).max() <= 1e-3
    assert np.abs(expected - 0.5).max() > 0.1  # not a degenerate image


def test_same_seed_same_image_and_other_seed_differs(pipe):
    kwargs = dict(
        image=photo(32, 32), mask_image=box_mask(32, 32, (8, 8, 24, 24)), example_image=photo(32, 32, 1)
    )
    a = pipe(
        **kwargs,
        num_inference_steps=3,
        generator=torch.Generator().manual_seed(0),
        output_type="np",
        progress=False,
    )
    b = pipe(
        **kwargs,
        num_inference_steps=3,
        generator=torch.Generator().manual_seed(0),
        output_type="np",
        progress=False,
    )
    c = pipe(
        **kwargs,
        num_inference_steps=3,
        generator=torch.Generator().manual_seed(1),
        output_type="np",
        progress=False,
    )
    assert np.array_equal(a.images, b.images) and not np.array_equal(a.images, c.images)


@pytest.mark.parametrize("output_type", ["pil", "np"])
@pytest.mark.parametrize("feather", [0, 3])
def test_paste_back_keeps_every_unmasked_pixel(pipe, output_type, feather):
    source = photo(40, 48, seed=3)
    mask = box_mask(40, 48, (10, 6, 30, 26))
    out = pipe(
        source,
        mask,
        photo(30, 30, 4),
        num_inference_steps=3,
        paste_back=True,
        feather=feather,
        output_type=output_type,
        generator=torch.Generator().manual_seed(0),
        progress=False,
    ).images[0]
    result = np.array(out) if output_type == "pil" else (out * 255).round().astype(np.uint8)
    kept = np.array(mask) < 128
    assert np.array_equal(result[kept], np.array(source)[kept])
    assert not np.array_equal(result[~kept], np.array(source)[~kept])


def test_without_paste_back_the_background_passes_through_the_vae(pipe):
    source = photo(40, 48, seed=3)
    mask = box_mask(40, 48, (10, 6, 30, 26))
    out = pipe(source, mask, photo(30, 30, 4), num_inference_steps=2, progress=False).images[0]
    kept = np.array(mask) < 128
    assert not np.array_equal(np.array(out)[kept], np.array(source)[kept])


def test_strength_one_is_full_generation(pipe):
    kwargs = dict(
        image=photo(32, 32), mask_image=box_mask(32, 32, (4, 4, 28, 28)), example_image=photo(24, 24, 2)
    )
    full = pipe(
        **kwargs,
        num_inference_steps=4,
        generator=torch.Generator().manual_seed(5),
        output_type="np",
        progress=False,
    )
    one = pipe(
        **kwargs,
        num_inference_steps=4,
        strength=1.0,
        generator=torch.Generator().manual_seed(5),
        output_type="np",
        progress=False,
    )
    assert np.array_equal(full.images, one.images)


@pytest.mark.parametrize("sampler", ["ddim", "lms"])
def test_lower_strength_stays_closer_to_the_source(pipe, sampler):
    image, mask = photo(32, 32, seed=8), box_mask(32, 32, (4, 4, 28, 28))
    source = pipe._encode_images(pipe._prepare(image, mask, image).images, None, sample=False)

    def distance(strength):
        total = 0.0
        for seed in range(3):
            out = pipe(
                image,
                mask,
                photo(24, 24, 9),
                num_inference_steps=10,
                strength=strength,
                sampler=sampler,
                output_type="latent",
                generator=torch.Generator().manual_seed(seed),
                progress=False,
            ).images
            total += (out - source).square().mean().item()
        return total / 3

    near, mid, far = distance(0.2), distance(0.6), distance(1.0)
    assert near < mid < far


def test_strength_zero_runs_no_step(pipe):
    calls = []
    pipe(
        photo(32, 32),
        box_mask(32, 32, (4, 4, 28, 28)),
        photo(24, 24),
        num_inference_steps=5,
        strength=0.0,
        callback=lambda *a: calls.append(a),
        progress=False,
        generator=torch.Generator().manual_seed(0),
    )
    assert calls == []


@pytest.mark.parametrize("size", [(30, 45), (17, 9)])
def test_sizes_the_unet_cannot_take_are_padded_and_cropped_back(pipe, size):
    h, w = size
    out = pipe(
        photo(h, w),
        box_mask(h, w, (2, 2, w - 2, h - 2)),
        photo(20, 20),
        num_inference_steps=2,
        paste_back=True,
        progress=False,
        generator=torch.Generator().manual_seed(0),
    )
    assert out.images[0].size == (w, h)


@pytest.mark.parametrize("mode", ["L", "RGBA", "P"])
def test_grayscale_rgba_and_palette_inputs_are_converted(pipe, mode):
    out = pipe(
        photo(32, 32, mode=mode),
        box_mask(32, 32, (8, 8, 24, 24)),
        photo(32, 32, 1, mode=mode),
        num_inference_steps=2,
        progress=False,
        generator=torch.Generator().manual_seed(0),
    )
    assert out.images[0].mode == "RGB" and out.images[0].size == (32, 32)


def test_output_types(pipe):
    kwargs = dict(
        image=photo(32, 48),
        mask_image=box_mask(32, 48, (8, 8, 24, 24)),
        example_image=photo(32, 32),
        num_inference_steps=2,
        num_images_per_prompt=2,
        progress=False,
    )
    pil = pipe(**kwargs, generator=torch.Generator().manual_seed(0)).images
    np_ = pipe(**kwargs, generator=torch.Generator().manual_seed(0), output_type="np").images
    pt = pipe(**kwargs, generator=torch.Generator().manual_seed(0), output_type="pt").images
    latent = pipe(**kwargs, generator=torch.Generator().manual_seed(0), output_type="latent").images
    assert len(pil) == 2 and pil[0].size == (48, 32)
    assert (
        np_.shape == (2, 32, 48, 3) and pt.shape == (2, 3, 32, 48) and latent.shape == (2, 4, 16, 24)
    )  # the tiny VAE downsamples by 2
    assert np.array_equal(np.array(pil[1]), (np_[1] * 255).round().astype(np.uint8))
    assert torch.equal(pt.permute(0, 2, 3, 1), torch.from_numpy(np_))


def test_file_paths_are_accepted(pipe, tmp_path):
    photo(32, 32).save(tmp_path / "img.png")
    box_mask(32, 32, (8, 8, 24, 24)).save(tmp_path / "mask.png")
    photo(32, 32, 1).save(tmp_path / "ex.jpg")
    out = pipe(
        tmp_path / "img.png",
        str(tmp_path / "mask.png"),
        tmp_path / "ex.jpg",
        num_inference_steps=2,
        progress=False,
    )
    assert out.images[0].size == (32, 32)


def test_loads_original_layout_with_plms_default(folder, tmp_path):
    save_checkpoint(load_checkpoint(folder), tmp_path / "model.ckpt", "ldm", progress=False)
    pipe = PaintByExamplePipeline.from_pretrained(
        tmp_path / "model.ckpt", config={"encoder": {"vision": {"heads": 4}}}
    )
    assert pipe.default_sampler == "pndm" and pipe.sampler_options == {"skip_prk_steps": True}


# ------------------------------------------------------------------------------------------ DiffEdit


def test_generate_mask_is_deterministic_and_binary(pipe):
    image = photo(32, 48, seed=2)
    a = pipe.generate_mask(image, photo(32, 32, 5), generator=torch.Generator().manual_seed(0), num_maps=3)
    b = pipe.generate_mask(image, photo(32, 32, 5), generator=torch.Generator().manual_seed(0), num_maps=3)
    c = pipe.generate_mask(
        image,
        photo(32, 32, 5),
        reference_image=photo(32, 32, 6),
        num_maps=3,
        generator=torch.Generator().manual_seed(0),
        output_type="pt",
    )
    assert len(a) == 1 and a[0].mode == "L" and a[0].size == (48, 32)
    assert np.array_equal(np.array(a[0]), np.array(b[0]))
    assert set(np.unique(np.array(a[0]))) <= {0, 255} and 0 < np.array(a[0]).mean() < 255
    assert c.shape == (1, 1, 32, 48) and set(c.unique().tolist()) <= {0.0, 1.0}


def test_generate_mask_options_bilinear_outlines_and_one_region(pipe):
    image, exemplar = photo(32, 48, seed=2), photo(32, 32, 5)

    def mask(**options):
        g = torch.Generator().manual_seed(0)
        return pipe.generate_mask(image, exemplar, generator=g, num_maps=3, output_type="pt", **options)[0, 0]

    blocky, smooth = mask(), mask(upsample="bilinear")
    # nearest: constant over each latent pixel (f = 2 here); bilinear: not, but the same region overall
    f = pipe.vae_scale
    assert torch.equal(blocky, blocky[::f, ::f].repeat_interleave(f, 0).repeat_interleave(f, 1))
    assert not torch.equal(smooth, smooth[::f, ::f].repeat_interleave(f, 0).repeat_interleave(f, 1))
    assert ((blocky > 0) != (smooth > 0)).float().mean() < 0.25
    one = mask(upsample="bilinear", single_region=True)
    from scipy import ndimage

    assert ndimage.label(smooth.numpy())[1] > 1  # this map has several regions, so the option has work to do
    assert ndimage.label(one.numpy())[1] == 1 and bool((one <= smooth).all()) and one.sum() > 0
    with pytest.raises(ValueError, match="upsample"):
        mask(upsample="bicubic")
    with pytest.raises(TypeError, match="single_region must be True or False, got 'yes'"):
        mask(single_region="yes")


def test_guided_upsample_puts_the_edge_where_the_guide_has_it():
    from pbe.pipeline import guided_upsample

    # the coarse map steps at column 8 (between low-res columns 1 and 2); the guide's edge is at column 6
    values = torch.zeros(1, 1, 4, 4)
    values[..., :2] = 1.0
    guide = torch.ones(1, 3, 16, 16)
    guide[..., :6] = 0.0
    sharp = guided_upsample(values, guide, 4)[0, 0]
    assert sharp.shape == (16, 16)
    assert bool((sharp[:, :6] > 0.9).all()) and bool((sharp[:, 6:] < 0.1).all())
    blurred = F.interpolate(values, scale_factor=4, mode="bilinear")[0, 0]
    assert bool((blurred[:, 6:8] > 0.5).all())  # what guidance corrects: bilinear keeps the map's own edge
    # a flat map stays flat whatever the guide; an isolated bright pixel in a dark cell gives no 0 / 0
    flat = guided_upsample(torch.full((2, 1, 4, 4), 0.3), torch.rand(2, 3, 16, 16), 4)
    assert torch.allclose(flat, torch.full_like(flat, 0.3), atol=1e-6)
    speck = torch.zeros(1, 3, 16, 16)
    speck[..., 5, 5] = 1.0
    assert torch.isfinite(guided_upsample(torch.rand(1, 1, 4, 4), speck, 4, sigma_colour=0.01)).all()
    with pytest.raises(ValueError, match="guide must be"):
        guided_upsample(values, guide[..., :8], 4)
    for bad, match in (
        ({"scale": 0}, "scale"),
        ({"radius": -1}, "radius"),
        ({"sigma_space": 0.0}, "sigma_space"),
        ({"sigma_colour": float("nan")}, "sigma_colour"),
    ):
        with pytest.raises(ValueError, match=match):
            guided_upsample(values, guide, **{"scale": 4, **bad})


def test_generate_mask_guided_upsampling_gives_a_binary_mask_of_the_image_size(pipe):
    image, exemplar = photo(32, 48, seed=2), photo(32, 32, 5)
    g = torch.Generator().manual_seed(0)
    guided = pipe.generate_mask(image, exemplar, generator=g, num_maps=3, output_type="pt", upsample="guided")
    g = torch.Generator().manual_seed(0)
    blocky = pipe.generate_mask(image, exemplar, generator=g, num_maps=3, output_type="pt")
    assert guided.shape == (1, 1, 32, 48) and set(guided.unique().tolist()) <= {0.0, 1.0}
    assert not torch.equal(guided, blocky)
    with pytest.raises(ValueError, match="guided"):  # the error lists the valid choices
        pipe.generate_mask(image, exemplar, num_maps=1, upsample="bicubic")


def test_strongest_region_keeps_the_region_with_the_highest_score():
    from pbe.pipeline import strongest_region

    mask = torch.zeros(1, 6, 6)
    mask[0, :2, :2] = 1  # a big region with a low score
    mask[0, 4:, 4:] = 1
    score = torch.zeros(1, 6, 6)
    score[0, :2, :2], score[0, 5, 5] = 1.0, 3.0
    kept = strongest_region(mask, score)
    assert kept[0, 4:, 4:].all() and kept.sum() == 4
    assert torch.equal(strongest_region(torch.zeros(1, 6, 6), score), torch.zeros(1, 6, 6))


def test_generated_mask_feeds_the_pipeline(pipe):
    image = photo(32, 32, seed=2)
    mask = pipe.generate_mask(image, photo(32, 32, 5), generator=torch.Generator().manual_seed(0), num_maps=2)
    out = pipe(
        image,
        mask,
        photo(32, 32, 5),
        num_inference_steps=2,
        paste_back=True,
        progress=False,
        generator=torch.Generator().manual_seed(0),
    ).images[0]
    kept = np.array(mask[0]) < 128
    assert np.array_equal(np.array(out)[kept], np.array(image)[kept])


@pytest.mark.parametrize("strength", [1.0, 0.5])
def test_invert_shapes_and_determinism(pipe, strength):
    image = photo(32, 48, seed=4)
    a = pipe.invert(image, photo(32, 32, 5), num_inference_steps=6, strength=strength, progress=False)
    b = pipe.invert(image, photo(32, 32, 5), num_inference_steps=6, strength=strength, progress=False)
    n = 6 - a.start_step
    assert a.start_step == (0 if strength == 1.0 else 3)
    assert a.trajectory.shape == (1, n + 1, 4, 16, 24) and a.latents.shape == (1, 4, 16, 24)
    assert torch.equal(a.trajectory, b.trajectory)
    clean = pipe._encode_images(pipe._prepare(image, None, image).images, None, sample=False)
    assert torch.equal(a.trajectory[:, -1], clean)


def test_editing_from_inversion_keeps_the_inverted_trajectory_outside_the_mask(pipe):
    image, mask = photo(32, 48, seed=4), box_mask(32, 48, (16, 8, 32, 24))
    inversion = pipe.invert(image, num_inference_steps=5, strength=0.8, mask_image=mask, progress=False)
    seen = []
    out = pipe(
        image,
        mask,
        photo(32, 32, 5),
        num_inference_steps=5,
        image_latents=inversion,
        output_type="latent",
        callback=lambda i, t, x: seen.append(i),
        progress=False,
    ).images
    keep = torch.nn.functional.interpolate(pipe._prepare(image, mask, image).keep, size=(16, 24)) == 1
    clean = inversion.trajectory[:, -1]
    assert torch.equal(out[keep.expand_as(out)], clean[keep.expand_as(clean)])
    assert not torch.equal(out, clean)
    assert seen == list(range(inversion.start_step, 5))
    with pytest.raises(ValueError, match="num_inference_steps=7"):
        pipe(
            image,
            mask,
            photo(32, 32, 5),
            num_inference_steps=7,
            image_latents=inversion.trajectory[:, :1].repeat(1, 9, 1, 1, 1),
        )
    with pytest.raises(ValueError, match="cannot use them"):
        pipe(image, mask, photo(32, 32, 5), num_inference_steps=5, image_latents=inversion, sampler="lms")


# ------------------------------------------------------------------------------------------ bad input


@pytest.fixture
def guarded(pipe):
    """The pipeline with hooks that fail the test if any network runs."""

    def boom(*_):
        raise AssertionError("model work started before input validation")

    handles = [
        m.register_forward_pre_hook(boom)
        for m in (pipe.model.unet, pipe.model.vae.encoder, pipe.model.encoder)
    ]
    yield pipe
    for h in handles:
        h.remove()


GOOD = dict(image=photo(32, 32), mask_image=box_mask(32, 32, (8, 8, 24, 24)), example_image=photo(32, 32, 1))


@pytest.mark.parametrize(
    "change, error, match",
    [
        (
            dict(mask_image=box_mask(32, 40, (8, 8, 24, 24))),
            ValueError,
            "mask_image\\[0\\] is 40x32 but image is 32x32",
        ),
        (dict(example_image=None), ValueError, "example_image is required"),
        (dict(guidance_scale=-1.0), ValueError, "guidance_scale must be >= 0"),
        (dict(num_inference_steps=0), ValueError, "steps"),
        (dict(strength=1.5), ValueError, "strength must be in \\[0, 1\\]"),
        (dict(strength=-0.1), ValueError, "strength must be in \\[0, 1\\]"),
        (dict(image=photo(1, 32), mask_image=box_mask(1, 32, (0, 0, 8, 1))), ValueError, "at least 2x2"),
        (dict(output_type="jpeg"), ValueError, "output_type"),
        (dict(sampler="heun"), ValueError, "valid: ddim"),
        (dict(mask_image=None), ValueError, "mask_image is required"),
        (dict(guidance_scale=float("nan")), ValueError, "guidance_scale must be >= 0 and finite"),
        (dict(guidance_scale=float("inf")), ValueError, "guidance_scale must be >= 0 and finite"),
        (dict(image=np.full((32, 32, 3), np.nan)), ValueError, "image\\[0\\] contains NaN"),
        (
            dict(image=torch.full((3, 32, 32), float("inf"))),
            ValueError,
            "image\\[0\\] contains NaN or infinite",
        ),
        (
            dict(mask_image=np.full((32, 32), np.nan, np.float32)),
            ValueError,
            "mask_image\\[0\\] contains NaN",
        ),
        (dict(feather=1.5), ValueError, "feather \\(pixels\\) must be an integer >= 0"),
        (dict(feather=-1), ValueError, "feather \\(pixels\\) must be an integer >= 0"),
        (dict(example_image=np.zeros((0, 0, 3), np.uint8)), ValueError, "example_image\\[0\\]: empty image"),
        (dict(eta=float("nan")), ValueError, "eta must be >= 0 and finite"),
        (dict(num_inference_steps=np.float32(2)), ValueError, "num_inference_steps must be an integer"),
        (
            dict(image=[photo(32, 32), photo(32, 32)], example_image=[photo(8, 8)] * 3),
            ValueError,
            "3 exemplars for 2",
        ),
        # issue: non-finite arguments, booleans that are not bools, arguments of the wrong kind
        (
            dict(latents=torch.full((1, 4, 8, 8), float("nan"))),
            ValueError,
            "latents contains NaN or infinite",
        ),
        (
            dict(latents=torch.full((1, 4, 8, 8), float("inf"))),
            ValueError,
            "latents contains NaN or infinite",
        ),
        (dict(latents=np.zeros((1, 4, 8, 8))), TypeError, "latents must be a torch.Tensor"),
        (
            dict(image_latents=torch.full((1, 3, 4, 8, 8), float("nan"))),
            ValueError,
            "image_latents contains NaN or infinite",
        ),
        (
            dict(image_latents=torch.zeros(3)),
            ValueError,
            r"image_latents has shape \(3,\); expected \(B, n \+ 1",
        ),
        (dict(image_latents="trajectory"), TypeError, "image_latents must be the InversionOutput of invert"),
        (dict(paste_back="false"), TypeError, "paste_back must be True or False, got 'false'"),
        (dict(paste_back=1), TypeError, "paste_back must be True or False, got 1"),
        (dict(progress="no"), TypeError, "progress must be True or False"),
        (dict(generator="abc"), TypeError, "generator must be a torch.Generator or None, got 'abc'"),
    ],
)
def test_bad_input_raises_before_model_work(guarded, change, error, match):
    with pytest.raises(error, match=match):
        guarded(**{**GOOD, "num_inference_steps": 2, "progress": False, **change})


@pytest.mark.parametrize("sampler", [None, "pndm", "ddim"])
def test_1000_steps_on_the_released_schedule_is_refused_for_table_samplers(guarded, sampler):
    # leading spacing with steps_offset 1 would start at timestep 1000, past the table (diffusers IndexErrors)
    with pytest.raises(ValueError, match=r"steps=1000 .*Allowed steps here: 1\.\.999"):
        guarded(**GOOD, num_inference_steps=1000, sampler=sampler, progress=False)


def test_1000_steps_run_with_samplers_that_can_take_them(pipe):
    out = pipe(**GOOD, num_inference_steps=1000, sampler="euler_a", output_type="np", progress=False)
    assert np.isfinite(out.images).all()


def test_paths_that_are_missing_or_not_images(guarded, tmp_path):
    (tmp_path / "notes.txt").write_text("not an image")
    with pytest.raises(ValueError, match="is not an image"):
        guarded(**{**GOOD, "image": tmp_path / "notes.txt"}, num_inference_steps=2)
    with pytest.raises(FileNotFoundError, match="example_image: file not found"):
        guarded(**{**GOOD, "example_image": str(tmp_path / "nope.png")}, num_inference_steps=2)


def test_a_directory_as_image_says_it_is_a_directory(guarded, tmp_path):
    with pytest.raises(ValueError, match="image: .* is a directory"):
        guarded(**{**GOOD, "image": tmp_path}, num_inference_steps=2)


def test_integer_masks_and_numpy_step_counts_are_accepted(pipe):
    """diffusers takes 0/255 masks and numpy integers; so does pbe, with the same result as a PIL mask."""
    mask = box_mask(32, 32, (8, 8, 24, 24))
    kwargs = dict(
        image=GOOD["image"], example_image=GOOD["example_image"], output_type="latent", progress=False
    )
    expected = pipe(
        **kwargs, mask_image=mask, num_inference_steps=2, generator=torch.Generator().manual_seed(0)
    )
    for integer_mask in (np.array(mask).astype(np.int64), torch.from_numpy(np.array(mask).astype(np.int32))):
        got = pipe(
            **kwargs,
            mask_image=integer_mask,
            num_inference_steps=np.int64(2),
            num_images_per_prompt=np.int32(1),
            feather=np.int16(0),
            generator=torch.Generator().manual_seed(0),
        )
        assert torch.equal(got.images, expected.images)


def test_default_scheduler_is_the_paint_by_example_training_schedule(folder):
    """PaintByExamplePipeline(model) without a scheduler config samples like diffusers with the released
    model's scheduler (scaled_linear betas, steps_offset 1), not with the PNDM class defaults."""
    ref = tiny_diffusers_pipeline()  # built with the Paint-by-Example scheduler settings
    ours = PaintByExamplePipeline(load_checkpoint(folder).model())
    assert ours.default_sampler == "pndm" and ours.schedule.steps_offset == 1
    kwargs = dict(**GOOD, num_inference_steps=3, output_type="np")
    expected = ref(**kwargs, generator=torch.Generator().manual_seed(3)).images
    got = ours(**kwargs, generator=torch.Generator().manual_seed(3), progress=False).images
    assert np.abs(got - expected).max() <= 1e-3


# ------------------------------------------------------------------------------------------ empty masks


def test_a_mask_that_marks_nothing_runs_the_model_like_diffusers_and_warns_at_the_callers_line(folder):
    ref = tiny_diffusers_pipeline()
    ours = PaintByExamplePipeline.from_pretrained(folder)
    black = Image.new("L", (40, 32), 0)
    kwargs = dict(
        image=photo(32, 40, seed=9), mask_image=black, example_image=photo(32, 32), num_inference_steps=3
    )
    expected = ref(**kwargs, output_type="np", generator=torch.Generator().manual_seed(5)).images
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        line = sys._getframe().f_lineno + 1
        got = ours(**kwargs, output_type="np", generator=torch.Generator().manual_seed(5), progress=False)
    assert np.abs(got.images - expected).max() <= 1e-3
    assert np.abs(got.images - np.asarray(kwargs["image"]) / 255).max() > 0.05  # the model did run
    empty = [w for w in caught if "marks nothing to repaint" in str(w.message)]
    assert len(empty) == 1 and "white = repaint" in str(empty[0].message)
    assert (empty[0].filename, empty[0].lineno) == (__file__, line)


def rgba_mask_marked_only_by_alpha():
    mask = Image.new("RGBA", (32, 32), (0, 0, 0, 0))
    mask.paste((0, 0, 0, 255), (8, 8, 24, 24))
    return mask


@pytest.mark.parametrize(
    "mask, hint",
    [
        (rgba_mask_marked_only_by_alpha(), "alpha channel, which is ignored"),
        (box_mask(32, 32, (8, 8, 24, 24)).point(lambda v: v // 2), "brightest value is 127/255"),
    ],
    ids=["rgba_alpha_only", "soft_grey"],
)
def test_masks_that_binarise_to_nothing_warn_with_the_reason(pipe, mask, hint):
    with pytest.warns(UserWarning, match="mask_image marks nothing to repaint") as caught:
        pipe(
            GOOD["image"],
            mask,
            GOOD["example_image"],
            num_inference_steps=1,
            output_type="latent",
            progress=False,
        )
    empty = [w for w in caught if "nothing to repaint" in str(w.message)]
    assert len(empty) == 1 and hint in str(empty[0].message) and empty[0].filename == __file__


# ------------------------------------------------------------------------------------------ large images


def test_vae_runs_tiled_above_the_threshold_with_a_progress_bar(folder, capsys):
    pipe = PaintByExamplePipeline.from_pretrained(folder)
    pipe.vae_tile, pipe.vae_tile_overlap, pipe.vae_tiling_threshold = 16, 4, 40  # 32x48: tiled; 32x32: not
    kwargs = dict(example_image=GOOD["example_image"], num_inference_steps=1, output_type="np")
    image, mask = photo(32, 48), box_mask(32, 48, (8, 8, 40, 24))
    tiled = pipe(image, mask, **kwargs, generator=torch.Generator().manual_seed(0)).images
    bars = capsys.readouterr().err
    assert "VAE encode" in bars and "VAE decode" in bars
    pipe.disable_vae_tiling()
    plain = pipe(image, mask, **kwargs, generator=torch.Generator().manual_seed(0), progress=False).images
    assert "VAE" not in capsys.readouterr().err
    assert tiled.shape == plain.shape and not np.array_equal(tiled, plain)  # tiles: not bit-exact
    pipe.vae_tiling = None
    pipe(GOOD["image"], GOOD["mask_image"], **kwargs)  # 32x32: under the threshold
    assert "VAE" not in capsys.readouterr().err


def test_an_image_above_the_pixel_limit_warns_before_any_work(guarded):
    guarded.large_image_pixels = 32 * 32 - 1
    try:
        with pytest.warns(UserWarning, match="image is 32x32 = 1,024 pixels, more than"):
            with pytest.raises(AssertionError, match="model work started"):  # the warning came first
                guarded(**GOOD, num_inference_steps=1)
    finally:
        guarded.large_image_pixels = 2048 * 2048


def test_channels_last_option_changes_nothing_but_rounding(folder):
    nhwc = PaintByExamplePipeline.from_pretrained(folder, channels_last=True)
    nchw = PaintByExamplePipeline.from_pretrained(folder)
    assert nhwc.channels_last and not nchw.channels_last
    for pipe, layout in ((nhwc, True), (nchw, False)):
        for weight in (pipe.model.unet.conv_in.weight, pipe.model.vae.decoder.conv_in.weight):
            assert weight.is_contiguous(memory_format=torch.channels_last) is layout
            assert weight.is_contiguous() is not layout
    args = (photo(32, 48), box_mask(32, 48, (8, 8, 40, 24)), photo(40, 40, seed=1))
    kwargs = dict(num_inference_steps=3, output_type="np", progress=False)
    a = nhwc(*args, generator=torch.Generator().manual_seed(0), **kwargs).images
    b = nchw(*args, generator=torch.Generator().manual_seed(0), **kwargs).images
    assert np.abs(a - b).max() <= 1e-5


def test_autocast_option_runs_the_unet_in_bf16(folder, monkeypatch):
    fast = PaintByExamplePipeline.from_pretrained(folder, autocast=True)
    exact = PaintByExamplePipeline.from_pretrained(folder)
    assert fast.autocast and not exact.autocast and fast.dtype == torch.float32
    seen = []
    unet_forward = fast.model.unet.forward

    def spy(*args, **kwargs):
        seen.append(torch.get_autocast_dtype("cpu") if torch.is_autocast_enabled("cpu") else None)
        return unet_forward(*args, **kwargs)

    monkeypatch.setattr(fast.model.unet, "forward", spy)
    args = (photo(32, 48), box_mask(32, 48, (8, 8, 40, 24)), photo(40, 40, seed=1))
    kwargs = dict(num_inference_steps=3, output_type="np", progress=False)
    a = fast(*args, generator=torch.Generator().manual_seed(0), **kwargs).images
    b = exact(*args, generator=torch.Generator().manual_seed(0), **kwargs).images
    assert seen and set(seen) == {torch.bfloat16}
    assert a.dtype == b.dtype and 0 < np.abs(a - b).max() <= 0.05  # bf16 rounding: close, not equal


def test_autocast_option_refuses_bf16_weights(folder):
    with pytest.raises(ValueError, match=r"autocast=True expects float32 weights"):
        PaintByExamplePipeline.from_pretrained(folder, torch_dtype=torch.bfloat16, autocast=True)
