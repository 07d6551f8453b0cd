"""Results that are not numbers end in an error that says where they came from; arguments of the wrong kind are
refused (naming the argument) before any work; feather without paste-back warns."""

import copy
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

import pbe.pipeline.core
from pbe import PaintByExamplePipeline
from pbe.assets import small_model_path
from pbe.checkpoints.formats import load_checkpoint
from pbe.pipeline import NonFiniteResultError


@pytest.fixture(scope="module")
def pipe():
    return PaintByExamplePipeline.from_pretrained(small_model_path())


def inputs(size: int = 32) -> dict:
    rng = np.random.default_rng(0)
    mask = np.zeros((size, size), np.uint8)
    mask[8:24, 8:24] = 255
    return dict(
        image=Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)),
        mask_image=mask,
        example_image=Image.fromarray(rng.integers(0, 256, (24, 24, 3), dtype=np.uint8)),
    )


def edit(pipe, **options):
    return pipe(**inputs(), num_inference_steps=2, progress=False, **options).images


def with_nan_in(pipe, parameter: str) -> PaintByExamplePipeline:
    """A copy of `pipe` whose model parameter `parameter` holds a NaN (weights corrupted in memory)."""
    model = copy.deepcopy(pipe.model)
    with torch.no_grad():
        model.get_parameter(parameter).view(-1)[0] = float("nan")
    return PaintByExamplePipeline(model)


# ------------------------------------------------------------------------------------------ non-finite results


@pytest.mark.parametrize("output_type", ["np", "latent"])
def test_a_guidance_scale_that_overflows_is_an_error_naming_it(pipe, output_type):
    with pytest.raises(NonFiniteResultError, match=r"denoised latents hold NaN.*guidance_scale=1e\+30"):
        edit(pipe, guidance_scale=1e30, output_type=output_type)
    assert np.isfinite(edit(pipe, guidance_scale=7.5, output_type="np")).all()


@pytest.mark.parametrize(
    "parameter, where",
    [("unet.conv_out.weight", "the denoised latents"), ("vae.decoder.conv_out.bias", "the decoded image")],
)
def test_nan_weights_in_memory_end_in_an_error_not_a_black_image(pipe, parameter, where):
    with pytest.raises(
        NonFiniteResultError, match=rf"{where} hold NaN or infinite values.*the model's weights"
    ):
        edit(with_nan_in(pipe, parameter), output_type="pil")


def test_automatic_mask_and_inversion_refuse_non_finite_results(pipe):
    broken, args = with_nan_in(pipe, "unet.conv_out.weight"), inputs()
    with pytest.raises(NonFiniteResultError, match="automatic mask"):
        broken.generate_mask(args["image"], args["example_image"], num_maps=1, progress=False)
    with pytest.raises(NonFiniteResultError, match="inverted latents"):
        broken.invert(args["image"], num_inference_steps=2, progress=False)


# ------------------------------------------------------------------------------------------ booleans


def test_numpy_bools_are_accepted_like_bools(pipe):
    def run(paste_back, progress):
        generator = torch.Generator().manual_seed(0)
        options = dict(paste_back=paste_back, progress=progress, generator=generator, output_type="np")
        return pipe(**inputs(), num_inference_steps=2, **options).images

    assert np.array_equal(run(True, False), run(np.bool_(True), np.False_))


@pytest.mark.parametrize(
    "method, options, name",
    [
        ("generate_mask", dict(single_region="false"), "single_region"),
        ("generate_mask", dict(progress=0), "progress"),
        ("invert", dict(progress="no"), "progress"),
    ],
)
def test_other_methods_refuse_booleans_that_are_not_bools(pipe, method, options, name):
    args = inputs()
    with pytest.raises(TypeError, match=f"{name} must be True or False"):
        getattr(pipe, method)(args["image"], args["example_image"], **options)


def test_generate_mask_refuses_a_generator_that_is_not_one(pipe):
    args = inputs()
    with pytest.raises(TypeError, match="generator must be a torch.Generator or None, got 'abc'"):
        pipe.generate_mask(args["image"], args["example_image"], generator="abc", progress=False)


# ------------------------------------------------------------------------------------------ feather


def test_feather_without_paste_back_warns_at_the_callers_line(pipe):
    with pytest.warns(UserWarning, match=r"feather=4 has no effect without paste_back=True") as caught:
        edit(pipe, feather=4)
    assert caught[0].filename == __file__


@pytest.mark.parametrize("options", [dict(feather=4, paste_back=True), dict(feather=0), dict()])
def test_feather_with_paste_back_or_none_at_all_does_not_warn(pipe, options):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        edit(pipe, **options)


# ------------------------------------------------------------------------------------------ loading options


@pytest.fixture
def no_loading(monkeypatch):
    """Fail the test if from_pretrained reads the checkpoint (its options must be checked first)."""

    def boom(*_):
        raise AssertionError("weights loaded before the options were checked")

    monkeypatch.setattr(pbe.pipeline.core, "load_checkpoint", boom)


@pytest.mark.parametrize(
    "options, error, match",
    [
        (dict(path=None), TypeError, "path must be a checkpoint file or folder .*, got None"),
        (
            dict(torch_dtype="fp16"),
            TypeError,
            r"torch_dtype must be a torch.dtype: torch.float32, torch.float16 or torch.bfloat16.*got 'fp16'",
        ),
        (
            dict(torch_dtype=torch.int8),
            ValueError,
            r"torch_dtype must be torch.float32, torch.float16 or torch.bfloat16.*got torch.int8",
        ),
        (dict(device="gpu"), ValueError, "device='gpu' is not a torch device"),
        (dict(device=["cpu"]), TypeError, "device must be a str, int or torch.device"),
        (dict(channels_last="yes"), TypeError, "channels_last must be True or False"),
        (dict(autocast=1), TypeError, "autocast must be True or False"),
    ],
)
def test_from_pretrained_refuses_bad_options_before_loading(no_loading, options, error, match):
    with pytest.raises(error, match=match):
        PaintByExamplePipeline.from_pretrained(**{"path": small_model_path(), **options})


@pytest.mark.parametrize("device", ["cuda", "cuda:0", torch.device("cuda")])
def test_cuda_without_a_gpu_says_so_and_suggests_cpu(no_loading, monkeypatch, device):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(
        ValueError, match=r"device=.*cuda.*: CUDA is not available on this machine; use device='cpu'"
    ):
        PaintByExamplePipeline.from_pretrained(small_model_path(), device=device)


def test_from_checkpoint_and_the_constructor_check_the_same_options(pipe):
    ckpt = load_checkpoint(small_model_path())
    with pytest.raises(TypeError, match="torch_dtype must be a torch.dtype"):
        PaintByExamplePipeline.from_checkpoint(ckpt, torch_dtype="fp16")
    with pytest.raises(TypeError, match="ckpt must be a pbe.checkpoints.formats.Checkpoint"):
        PaintByExamplePipeline.from_checkpoint(str(small_model_path()))
    with pytest.raises(ValueError, match="torch_dtype must be .*got torch.float64"):
        PaintByExamplePipeline(pipe.model, dtype=torch.float64)
