"""Every export pbe writes, pbe reads back: same tensors, same config, same scheduler, same edit.

The small and objects models (pbe/assets/small, pbe/assets/objects) have what the original layout's shapes cannot
tell (UNet norm groups 16 with a 112- or 160-wide level, 4 UNet heads, 4 CLIP heads); they cannot be diffusers
folders (diffusers derives the mapper depth from the CLIP depth), so a tiny diffusers-shaped model with non-default heads, norm groups, epsilon and latent scale
covers that layout.
"""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from pbe import PaintByExamplePipeline
from pbe.assets import objects_model_path, small_model_path
from pbe.checkpoints.formats import (
    DTYPES,
    LDM_CONFIG_KEY,
    LDM_SCHEDULER_KEY,
    Checkpoint,
    load_checkpoint,
)
from pbe.checkpoints.tensor_io import CheckpointError
from pbe.convert import main as convert
from pbe.diffusion.scheduler_config import PAINT_BY_EXAMPLE_SCHEDULER
from pbe.models import PaintByExample, PaintByExampleConfig, VisionConfig
from pbe.models.exemplar_encoder import ExemplarEncoderConfig
from pbe.models.unet import UNetConfig
from pbe.models.vae import VAEConfig

# every layout and file kind the converter writes; DST name per layout
EXPORTS = {"native": "out", "diffusers": "out", "ldm-ckpt": "out.ckpt", "ldm-safetensors": "out.safetensors"}
DTYPE_OPTIONS = [None, *sorted(DTYPES)]


def diffusers_shaped_checkpoint() -> Checkpoint:
    """A tiny model diffusers can describe, with config values that differ from every default."""
    config = PaintByExampleConfig(
        unet=UNetConfig(
            channels=(32, 48),
            attention_levels=(False, True),
            num_res_blocks=1,
            num_heads=(2, 4),
            context_dim=32,
            norm_groups=8,
        ),
        vae=VAEConfig(channels=(16, 32), num_res_blocks=1, norm_groups=4, scale_factor=0.13025),
        encoder=ExemplarEncoderConfig(
            vision=VisionConfig(
                image_size=32, patch_size=8, width=32, layers=4, heads=2, mlp_dim=37, layer_norm_eps=1e-6
            ),
            mapper_depth=1,
            context_dim=32,
        ),
    )
    torch.manual_seed(0)
    return Checkpoint(config, PaintByExample(config).state_dict())


@pytest.fixture(scope="module")
def sources(tmp_path_factory) -> dict[str, Path]:
    tiny = tmp_path_factory.mktemp("src") / "tiny"
    from pbe.checkpoints.formats import save_checkpoint

    save_checkpoint(diffusers_shaped_checkpoint(), tiny, "native", progress=False)
    return {"small": small_model_path(), "objects": objects_model_path(), "tiny": tiny}


def export(src: Path, dst: Path, layout: str, dtype: str | None) -> int:
    argv = [str(src), str(dst), "--to", layout.split("-")[0], "--no-progress"]
    return convert(argv + (["--dtype", dtype] if dtype else []))


def assert_same_checkpoint(got: Checkpoint, want: Checkpoint, dtype: torch.dtype | None):
    assert got.config == want.config
    assert got.scheduler == want.scheduler
    assert sorted(got.state) == sorted(want.state)
    for name, tensor in want.state.items():
        expected = tensor.to(dtype) if dtype is not None and tensor.is_floating_point() else tensor
        assert got.state[name].dtype == expected.dtype and torch.equal(got.state[name], expected), name


@pytest.mark.parametrize("dtype", DTYPE_OPTIONS)
@pytest.mark.parametrize("layout", sorted(EXPORTS))
@pytest.mark.parametrize("source", ["small", "objects", "tiny"])
def test_every_export_reads_back_identically(sources, tmp_path, capsys, source, layout, dtype):
    dst = tmp_path / EXPORTS[layout]
    if (source, layout) in (("small", "diffusers"), ("objects", "diffusers")):
        assert export(sources[source], dst, layout, dtype) == 1  # refused, nothing written
        assert "cannot be expressed as a diffusers folder" in capsys.readouterr().err
        assert not dst.exists() and list(tmp_path.iterdir()) == []
        return
    assert export(sources[source], dst, layout, dtype) == 0
    assert_same_checkpoint(load_checkpoint(dst), load_checkpoint(sources[source]), DTYPES.get(dtype))


def edit(pipe: PaintByExamplePipeline) -> np.ndarray:
    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8))
    mask = np.zeros((32, 32), np.uint8)
    mask[8:24, 8:24] = 255
    exemplar = Image.fromarray(rng.integers(0, 256, (24, 24, 3), dtype=np.uint8))
    generator = torch.Generator().manual_seed(3)
    out = pipe(
        image, mask, exemplar, num_inference_steps=3, generator=generator, output_type="np", progress=False
    )
    return out.images


def aligned_pipeline(path: Path) -> PaintByExamplePipeline:
    """The pipeline of `path` with every tensor in fresh memory: CPU kernels round differently (by ~1e-6) on
    memory-mapped tensors at unaligned file offsets, which would hide whether two files hold the same model."""
    ckpt = load_checkpoint(path)
    ckpt.state = {name: tensor.clone() for name, tensor in ckpt.state.items()}
    return PaintByExamplePipeline.from_checkpoint(ckpt)


@pytest.mark.parametrize("name", ["m.ckpt", "m.safetensors"])
@pytest.mark.parametrize("source", ["small", "objects"])
def test_trained_models_edit_identically_after_an_export(sources, tmp_path, source, name):
    """The original-layout file used to lose the norm groups (112 channels in 32 groups: not loadable) and the
    heads (loadable, but a different model)."""
    layout = "ldm" if "." in name else "native"
    assert export(sources[source], tmp_path / name, layout, None) == 0
    assert np.array_equal(edit(aligned_pipeline(tmp_path / name)), edit(aligned_pipeline(sources[source])))


@pytest.mark.parametrize("name, layout", [("out", "native"), ("m.ckpt", "ldm"), ("m.safetensors", "ldm")])
def test_an_export_keeps_the_training_resolution(sources, tmp_path, name, layout):
    """Native folders record it in pbe_config.json, original-layout files in an entry the authors' loader ignores."""
    assert export(sources["objects"], tmp_path / name, layout, "fp16") == 0
    want = load_checkpoint(sources["objects"]).train_resolution
    assert want is not None and load_checkpoint(tmp_path / name).train_resolution == want


def test_a_bad_stored_training_resolution_is_refused(sources, tmp_path):
    from pbe.checkpoints.ldm_layout import LDM_RESOLUTION_KEY

    assert export(sources["objects"], tmp_path / "m.ckpt", "ldm", None) == 0
    obj = torch.load(tmp_path / "m.ckpt", weights_only=True)
    obj[LDM_RESOLUTION_KEY] = "4"
    torch.save(obj, tmp_path / "bad.ckpt")
    with pytest.raises(CheckpointError, match="train_resolution"):
        load_checkpoint(tmp_path / "bad.ckpt")


def without_pbe_config(src: Path, dst: Path) -> Path:
    """`src` (a pbe-written .ckpt) as the original code would write it: no pbe model config entry."""
    obj = torch.load(src, weights_only=True)
    del obj[LDM_CONFIG_KEY]
    torch.save(obj, dst)
    return dst


def test_original_file_without_the_stored_config_says_what_to_pass(sources, tmp_path, capsys):
    assert export(sources["small"], tmp_path / "m.ckpt", "ldm", None) == 0
    bare = without_pbe_config(tmp_path / "m.ckpt", tmp_path / "bare.ckpt")
    with pytest.raises(CheckpointError, match=r"does not record head counts or norm groups.*--config.*112"):
        load_checkpoint(bare)
    config = json.loads(torch.load(tmp_path / "m.ckpt", weights_only=True)[LDM_CONFIG_KEY])
    overrides = {
        "unet": config["unet"],
        "vae": config["vae"],
        "encoder": {"vision": config["encoder"]["vision"]},
    }
    assert load_checkpoint(bare, overrides).config == load_checkpoint(sources["small"]).config


@pytest.mark.parametrize(
    "stored, says",
    [
        ("{not json", "not valid JSON|JSONDecodeError"),
        (json.dumps({"unet": {"no_such_field": 1}}), "no_such_field"),
    ],
)
def test_a_broken_stored_config_names_the_entry(sources, tmp_path, stored, says):
    assert export(sources["small"], tmp_path / "m.ckpt", "ldm", None) == 0
    obj = torch.load(tmp_path / "m.ckpt", weights_only=True)
    obj[LDM_CONFIG_KEY] = stored
    torch.save(obj, tmp_path / "edited.ckpt")
    with pytest.raises(CheckpointError, match=rf"edited.ckpt: entry '{LDM_CONFIG_KEY}'.*({says})"):
        load_checkpoint(tmp_path / "edited.ckpt")


def test_schedule_stays_float32_in_a_half_precision_export(sources, tmp_path):
    assert export(sources["small"], tmp_path / "m.ckpt", "ldm", "fp16") == 0
    state = torch.load(tmp_path / "m.ckpt", weights_only=True)["state_dict"]
    assert state["betas"].dtype == torch.float32 and state["alphas_cumprod"].dtype == torch.float32
    assert state["model.diffusion_model.out.2.weight"].dtype == torch.float16


def test_half_precision_original_file_is_recognised_as_the_released_schedule(sources, tmp_path):
    """A file halved by other tools (betas in float16, no pbe scheduler entry) keeps the released schedule."""
    assert export(sources["small"], tmp_path / "m.ckpt", "ldm", None) == 0
    obj = torch.load(tmp_path / "m.ckpt", weights_only=True)
    del obj[LDM_SCHEDULER_KEY]
    obj["state_dict"] = {k: v.half() if v.is_floating_point() else v for k, v in obj["state_dict"].items()}
    torch.save(obj, tmp_path / "half.ckpt")
    assert load_checkpoint(tmp_path / "half.ckpt").scheduler == PAINT_BY_EXAMPLE_SCHEDULER


@pytest.mark.parametrize("name", ["native", "m.ckpt", "m.safetensors"])
def test_a_cast_that_would_overflow_is_refused_naming_the_tensor(tmp_path, capsys, name):
    """pbe refuses to load infinite weights, so it does not write them: 1e5 does not fit float16."""
    from pbe.checkpoints.formats import save_checkpoint

    ckpt = diffusers_shaped_checkpoint()
    ckpt.state["unet.conv_in.bias"] = ckpt.state["unet.conv_in.bias"].clone().fill_(1e5)
    save_checkpoint(ckpt, tmp_path / "src", "native", progress=False)
    layout = "ldm" if "." in name else "native"
    assert export(tmp_path / "src", tmp_path / name, layout, "fp16") == 1
    tensor = "model.diffusion_model.input_blocks.0.0.bias" if layout == "ldm" else "unet.conv_in.bias"
    says = f"tensor '{tensor}' holds values up to 100000, beyond torch.float16's largest (65504)"
    assert says in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["src"]  # nothing written
    assert export(tmp_path / "src", tmp_path / name, layout, "bf16") == 0
