"""Checkpoint layouts: round trips, diffusers interop, SD warm start, and refusal of bad files."""

import json
import os
import pickle
import shutil
from pathlib import Path

import pytest
import torch
from helpers import randomize_, tiny_clip_config, tiny_diffusers_pipeline

from pbe.checkpoints import ldm_keys
from pbe.checkpoints.formats import load_checkpoint, save_checkpoint
from pbe.checkpoints.tensor_io import CheckpointError, read_safetensors, read_tensors
from pbe.checkpoints.warm_start import warm_start
from pbe.convert import main as convert

COMPONENT_FILES = {
    "unet": "unet/diffusion_pytorch_model.safetensors",
    "vae": "vae/diffusion_pytorch_model.safetensors",
    "image_encoder": "image_encoder/model.safetensors",
}
# What the original layout's shapes cannot tell: the tiny CLIP tower's head count (shapes would say width / 64 = 1);
# pbe stores it in the files it writes, the original code does not.
HEADS = {"encoder": {"vision": {"heads": 4}}}


@pytest.fixture(scope="module")
def diffusers_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("ckpt") / "pbe-diffusers"
    tiny_diffusers_pipeline().save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def ldm_file(diffusers_dir, tmp_path_factory):
    path = tmp_path_factory.mktemp("ldm") / "model.ckpt"
    save_checkpoint(load_checkpoint(diffusers_dir), path, "ldm", progress=False)
    return path


def as_the_original_code_writes(ldm_file: Path, dst: Path) -> Path:
    """`ldm_file` without the entries only pbe writes (its model and scheduler configs)."""
    torch.save({"state_dict": torch.load(ldm_file, weights_only=True)["state_dict"]}, dst)
    return dst


def assert_same_tensors(a: dict, b: dict):
    assert sorted(a) == sorted(b)
    for k in a:
        assert a[k].dtype == b[k].dtype and torch.equal(a[k], b[k]), k


def diffusers_tensors(folder: Path) -> dict:
    out = {}
    for part, rel in COMPONENT_FILES.items():
        out.update({f"{part}/{k}": v for k, v in read_safetensors(folder / rel)[0].items()})
    return out


def test_diffusers_native_diffusers_roundtrip_is_bitwise(diffusers_dir, tmp_path):
    save_checkpoint(load_checkpoint(diffusers_dir), tmp_path / "native", "native", progress=False)
    native = load_checkpoint(tmp_path / "native")
    assert native.format == "native"
    save_checkpoint(native, tmp_path / "back", "diffusers", progress=False)
    assert_same_tensors(diffusers_tensors(diffusers_dir), diffusers_tensors(tmp_path / "back"))
    scheduler = json.loads((diffusers_dir / "scheduler/scheduler_config.json").read_text())
    assert json.loads((tmp_path / "back/scheduler/scheduler_config.json").read_text()) == scheduler


def test_ldm_keys_agree_with_diffusers_own_converter(diffusers_dir, ldm_file):
    """diffusers' single-file converter, run on our original-layout file, gives back the diffusers weights."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from diffusers.loaders.single_file_utils import convert_ldm_unet_checkpoint, convert_ldm_vae_checkpoint

    ldm, _ = read_tensors(ldm_file)
    unet_config = UNet2DConditionModel.load_config(diffusers_dir / "unet")
    vae_config = AutoencoderKL.load_config(diffusers_dir / "vae")
    source = diffusers_tensors(diffusers_dir)
    unet = convert_ldm_unet_checkpoint(dict(ldm), unet_config)
    vae = convert_ldm_vae_checkpoint(dict(ldm), vae_config)
    assert_same_tensors(
        {f"unet/{k}": v for k, v in unet.items()}, {k: v for k, v in source.items() if k[:5] == "unet/"}
    )
    expected_vae = {k: v for k, v in source.items() if k.startswith("vae/")}
    got_vae = {f"vae/{k}": v.reshape(expected_vae[f"vae/{k}"].shape) for k, v in vae.items()}
    assert_same_tensors(got_vae, expected_vae)


def test_ldm_encoder_keys_follow_the_original_table(diffusers_dir, ldm_file):
    """The mapper's fused c_qkv is [q; k; v] (one head); CLIP keeps its transformers names; proj_out and
    learnable_vector sit at the top level."""
    ldm, _ = read_tensors(ldm_file)
    enc = read_safetensors(diffusers_dir / COMPONENT_FILES["image_encoder"])[0]
    block = "mapper.blocks.0."
    fused = torch.cat([enc[block + f"attn1.to_{p}.weight"] for p in "qkv"])
    assert torch.equal(ldm["cond_stage_model.mapper.resblocks.0.attn.c_qkv.weight"], fused)
    assert torch.equal(ldm["cond_stage_model.mapper.resblocks.0.ln_2.bias"], enc[block + "norm3.bias"])
    assert torch.equal(
        ldm["cond_stage_model.mapper.resblocks.0.mlp.c_proj.weight"], enc[block + "ff.net.2.weight"]
    )
    assert torch.equal(ldm["cond_stage_model.final_ln.weight"], enc["final_layer_norm.weight"])
    assert torch.equal(ldm["proj_out.weight"], enc["proj_out.weight"])
    assert torch.equal(ldm["learnable_vector"], enc["uncond_vector"])
    assert torch.equal(
        ldm[ldm_keys.VISION_PREFIX + "encoder.layers.3.self_attn.k_proj.bias"],
        enc["model.encoder.layers.3.self_attn.k_proj.bias"],
    )
    assert torch.allclose(ldm["alphas_cumprod"][[0, -1]], torch.tensor([0.99915, 0.0046601]), rtol=1e-4)


def test_ldm_native_ldm_roundtrip_is_bitwise(ldm_file, tmp_path):
    ckpt = load_checkpoint(ldm_file)
    assert ckpt.format == "ldm"
    assert ckpt.scheduler["beta_schedule"] == "scaled_linear" and ckpt.scheduler["beta_end"] == 0.012
    save_checkpoint(ckpt, tmp_path / "native", "native", progress=False)
    save_checkpoint(load_checkpoint(tmp_path / "native"), tmp_path / "back.ckpt", "ldm", progress=False)
    assert_same_tensors(read_tensors(ldm_file)[0], read_tensors(tmp_path / "back.ckpt")[0])


def test_ldm_to_diffusers_is_bitwise(diffusers_dir, ldm_file, tmp_path):
    save_checkpoint(load_checkpoint(ldm_file), tmp_path / "d", "diffusers", progress=False)
    got = diffusers_tensors(tmp_path / "d")
    # The original layout does not record the transformers version; diffusers output uses the transformers-4 names.
    got = {k.replace("image_encoder/model.vision_model.", "image_encoder/model."): v for k, v in got.items()}
    assert_same_tensors(diffusers_tensors(diffusers_dir), got)


def test_safetensors_ldm_file_roundtrip(ldm_file, tmp_path):
    save_checkpoint(load_checkpoint(ldm_file), tmp_path / "m.safetensors", "ldm", progress=False)
    assert_same_tensors(read_tensors(ldm_file)[0], read_tensors(tmp_path / "m.safetensors")[0])


def load_diffusers_folder(folder: Path):
    """PaintByExamplePipeline from a folder, each component through its own diffusers / transformers from_pretrained.

    diffusers 0.42 moved this pipeline to `pipelines.deprecated`, and its PaintByExamplePipeline.from_pretrained can no
    longer resolve the image encoder named in model_index.json, for its own save_pretrained output too ("`diffusers`
    has no class `PaintByExampleImageEncoder`"), so the pipeline is assembled here the way from_pretrained would.
    """
    import diffusers
    from diffusers import AutoencoderKL, PaintByExamplePipeline, UNet2DConditionModel
    from diffusers.pipelines.deprecated.paint_by_example.image_encoder import PaintByExampleImageEncoder
    from transformers import CLIPImageProcessor

    index = json.loads((folder / "model_index.json").read_text())
    assert index["_class_name"] == "PaintByExamplePipeline"
    assert index["image_encoder"][1] == "PaintByExampleImageEncoder"
    scheduler_class = getattr(diffusers, index["scheduler"][1])
    return PaintByExamplePipeline(
        unet=UNet2DConditionModel.from_pretrained(folder, subfolder="unet").eval(),
        vae=AutoencoderKL.from_pretrained(folder, subfolder="vae").eval(),
        image_encoder=PaintByExampleImageEncoder.from_pretrained(folder / "image_encoder").eval(),
        scheduler=scheduler_class.from_pretrained(folder, subfolder="scheduler"),
        feature_extractor=CLIPImageProcessor.from_pretrained(folder / "feature_extractor"),
        safety_checker=None,
        requires_safety_checker=False,
    )


def run_pipeline(pipe, seed=0):
    from PIL import Image

    g = torch.Generator().manual_seed(seed)
    image = Image.fromarray((torch.rand(32, 48, 3, generator=g) * 255).byte().numpy())
    mask = Image.new("L", (48, 32), 0)
    mask.paste(255, (8, 8, 32, 24))
    example = Image.fromarray((torch.rand(40, 40, 3, generator=g) * 255).byte().numpy())
    out = pipe(
        image=image,
        mask_image=mask,
        example_image=example,
        num_inference_steps=3,
        generator=torch.Generator().manual_seed(seed),
        output_type="np",
    )
    return torch.from_numpy(out.images)


@pytest.mark.parametrize("layout", ["transformers4", "transformers5"])
def test_written_diffusers_folder_loads_in_diffusers_with_same_output(
    diffusers_dir, ldm_file, tmp_path, layout
):
    ckpt = load_checkpoint(ldm_file, HEADS)
    ckpt.vision_layout = layout
    save_checkpoint(ckpt, tmp_path / "d", "diffusers", progress=False)
    converted = run_pipeline(load_diffusers_folder(tmp_path / "d"))
    # The same folder written by diffusers' own save_pretrained and loaded the same way.
    reloaded = run_pipeline(load_diffusers_folder(diffusers_dir))
    in_memory = run_pipeline(tiny_diffusers_pipeline())  # the pipeline diffusers_dir was saved from
    assert converted.abs().sum() > 0
    assert (converted - reloaded).abs().max().item() == 0
    # diffusers' own save/load round trip already moves outputs by ~3e-6 (from_pretrained set-up), hence 1e-5 here.
    assert (converted - in_memory).abs().max().item() <= 1e-5


def test_native_model_matches_diffusers_modules(diffusers_dir):
    """The loaded native model computes what diffusers' components compute on the same weights."""
    pipe = tiny_diffusers_pipeline()  # the pipeline diffusers_dir was saved from
    model = load_checkpoint(diffusers_dir).model().eval()
    x, t, c = torch.randn(2, 9, 8, 8), torch.tensor([1, 500]), torch.randn(2, 1, 32)
    pixels = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert (model.unet(x, t, c) - pipe.unet(x, t, c).sample).abs().max() <= 1e-5
        assert (model.encoder(pixels) - pipe.image_encoder(pixels)).abs().max() <= 1e-5


def test_config_file_supplies_what_shapes_cannot_tell(ldm_file, tmp_path):
    assert load_checkpoint(ldm_file).config.encoder.vision.heads == 4  # stored by pbe
    original = as_the_original_code_writes(ldm_file, tmp_path / "original.ckpt")
    assert load_checkpoint(original).config.encoder.vision.heads == 1  # width 32 // 64, clamped to 1
    (tmp_path / "heads.json").write_text(json.dumps(HEADS))
    args = [str(original), str(tmp_path / "d"), "--to", "diffusers", "--config", str(tmp_path / "heads.json")]
    assert convert(args + ["--no-progress"]) == 0
    assert json.loads((tmp_path / "d/image_encoder/config.json").read_text())["num_attention_heads"] == 4
    (tmp_path / "bad.json").write_text(json.dumps({"unet": {"no_such_option": 1}}))
    assert (
        convert(
            [str(ldm_file), str(tmp_path / "e"), "--to", "native", "--config", str(tmp_path / "bad.json")]
        )
        == 1
    )


def test_dtype_cast(diffusers_dir, tmp_path):
    assert (
        convert(
            [str(diffusers_dir), str(tmp_path / "h"), "--to", "native", "--dtype", "fp16", "--no-progress"]
        )
        == 0
    )
    state, _ = read_safetensors(tmp_path / "h/model.safetensors")
    assert {v.dtype for v in state.values()} == {torch.float16}
    reference = load_checkpoint(diffusers_dir).state
    assert torch.equal(state["unet.conv_in.weight"], reference["unet.conv_in.weight"].half())


# ------------------------------------------------------------------------------------------ SD warm start


@pytest.fixture(scope="module")
def sd_and_clip(tmp_path_factory, diffusers_dir):
    """A tiny SD v1 text-to-image checkpoint in the original layout, and a tiny CLIP in a transformers folder."""
    from transformers import CLIPVisionModel

    root = tmp_path_factory.mktemp("sd")
    pbe = load_checkpoint(diffusers_dir)
    pbe.config.unet.in_channels = 4
    pbe.state["unet.conv_in.weight"] = pbe.state["unet.conv_in.weight"][:, :4].clone()
    cfg = pbe.config
    state = ldm_keys.native_to_ldm(
        {k: v for k, v in pbe.state.items() if not k.startswith("encoder.")}, cfg.unet, cfg.vae
    )
    state["cond_stage_model.transformer.text_model.embeddings.token_embedding.weight"] = torch.randn(10, 8)
    state["model_ema.decay"] = torch.tensor(0.999)
    state["betas"] = torch.linspace(0.00085**0.5, 0.012**0.5, 1000, dtype=torch.float64).float() ** 2
    torch.save({"state_dict": state, "global_step": 470000}, root / "sd.ckpt")
    clip = randomize_(CLIPVisionModel(tiny_clip_config(layers=4)), seed=5)
    clip.save_pretrained(root / "clip")
    return root / "sd.ckpt", root / "clip", state, clip


def test_sd_warm_start_expands_conv_in_and_keeps_everything_else(sd_and_clip, tmp_path):
    sd_path, clip_path, sd_state, clip = sd_and_clip
    ckpt = warm_start(sd_path, clip_path, overrides={"encoder": {"mapper_depth": 1}})
    conv_in = ckpt.state["unet.conv_in.weight"]
    original = sd_state[ldm_keys.UNET_PREFIX + "input_blocks.0.0.weight"]
    assert conv_in.shape == (32, 9, 3, 3)
    assert torch.equal(conv_in[:, :4], original) and not conv_in[:, 4:].any()
    back = ldm_keys.native_to_ldm(
        {k: v for k, v in ckpt.state.items() if k.startswith(("unet.", "vae."))},
        ckpt.config.unet,
        ckpt.config.vae,
    )
    for k, v in back.items():
        if k != ldm_keys.UNET_PREFIX + "input_blocks.0.0.weight":
            assert torch.equal(v, sd_state[k]), k
    tower = ckpt.model().encoder.vision.eval()
    pixels = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        assert (tower(pixels)[1] - clip(pixel_values=pixels).pooler_output).abs().max() <= 1e-5


def test_sd_warm_start_from_open_clip_file(sd_and_clip, tmp_path):
    from open_clip.transformer import QuickGELU
    from open_clip.transformer import VisionTransformer as OpenClipViT

    sd_path, *_ = sd_and_clip
    vit = randomize_(OpenClipViT(32, 4, 32, 2, 4, 2.0, output_dim=16, act_layer=QuickGELU), seed=3)
    torch.save({"visual." + k: v for k, v in vit.state_dict().items()}, tmp_path / "open_clip.bin")
    ckpt = warm_start(sd_path, tmp_path / "open_clip.bin")
    assert ckpt.config.encoder.vision.layers == 2 and ckpt.config.encoder.vision.mlp_dim == 64
    assert torch.equal(ckpt.state["encoder.vision.class_token"], vit.class_embedding)


def test_convert_cli_warm_start(sd_and_clip, tmp_path):
    sd_path, clip_path, *_ = sd_and_clip
    assert convert([str(sd_path), str(tmp_path / "out"), "--to", "ldm", "--no-progress"]) == 1
    code = convert(
        [str(sd_path), str(tmp_path / "w"), "--to", "native", "--clip", str(clip_path), "--no-progress"]
    )
    assert code == 0
    assert load_checkpoint(tmp_path / "w").config.unet.in_channels == 9


# ------------------------------------------------------------------------------------------ bad input


def test_sd_checkpoint_loaded_as_paint_by_example_is_refused(sd_and_clip):
    with pytest.raises(CheckpointError, match="Stable Diffusion text-to-image checkpoint"):
        load_checkpoint(sd_and_clip[0])


def test_random_state_dict_is_refused(tmp_path):
    torch.save({"state_dict": {"layer.weight": torch.zeros(3)}}, tmp_path / "r.ckpt")
    with pytest.raises(CheckpointError, match=r"not a Paint-by-Example checkpoint.*\['layer'\], 1 tensors"):
        load_checkpoint(tmp_path / "r.ckpt")


def test_missing_and_misshaped_keys_are_listed_with_counts(ldm_file, tmp_path):
    state, _ = read_tensors(ldm_file)
    state = dict(state)
    del state["model.diffusion_model.out.2.bias"]
    del state["first_stage_model.decoder.conv_out.bias"]
    key = "cond_stage_model.mapper.resblocks.0.mlp.c_fc.weight"
    state[key] = torch.zeros(5, 5)
    state["model.diffusion_model.extra.weight"] = torch.zeros(1)
    torch.save({"state_dict": state}, tmp_path / "bad.ckpt")
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(tmp_path / "bad.ckpt")
    message = str(info.value)
    assert "2 missing key(s)" in message and "unet.out" not in message
    assert "unet.conv_out.bias" in message and "vae.decoder.conv_out.bias" in message
    assert (
        "1 mis-shaped key(s)" in message
        and "encoder.mapper.0.ff.proj_in.weight: checkpoint (5, 5)" in message
    )
    assert "1 unexpected key(s)" in message and "model.diffusion_model.extra.weight" in message


@pytest.mark.parametrize("suffix", [".safetensors", ".ckpt"])
def test_truncated_file_gives_clear_error_and_cli_leaves_dst_untouched(ldm_file, tmp_path, suffix):
    full = tmp_path / f"full{suffix}"
    save_checkpoint(load_checkpoint(ldm_file), full, "ldm", progress=False)
    data = full.read_bytes()
    cut = tmp_path / f"cut{suffix}"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated"):
        load_checkpoint(cut)
    dst = tmp_path / "dst"
    assert convert([str(cut), str(dst), "--to", "native", "--no-progress"]) == 1
    assert not dst.exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temporary leftovers


def test_existing_dst_is_kept_without_overwrite_and_on_failure(ldm_file, tmp_path, capsys):
    dst = tmp_path / "mine"
    dst.mkdir()
    (dst / "precious.txt").write_text("keep me")
    assert convert([str(ldm_file), str(dst), "--to", "native", "--no-progress"]) == 1
    assert "files pbe did not write (precious.txt)" in capsys.readouterr().err  # not "pass --overwrite"
    bad = tmp_path / "bad.ckpt"
    torch.save({"state_dict": {"x": torch.zeros(1)}}, bad)
    assert convert([str(bad), str(dst), "--to", "native", "--overwrite", "--no-progress"]) == 1
    assert (dst / "precious.txt").read_text() == "keep me"
    assert convert([str(ldm_file), str(dst), "--to", "native", "--overwrite", "--no-progress"]) == 1
    assert "files pbe did not write (precious.txt)" in capsys.readouterr().err
    assert [p.name for p in dst.iterdir()] == ["precious.txt"]
    (dst / "precious.txt").unlink()  # an empty folder (or one pbe wrote) may be replaced
    assert convert([str(ldm_file), str(dst), "--to", "native", "--overwrite", "--no-progress"]) == 0
    assert (dst / "model.safetensors").is_file()
    # what pbe wrote is replaced only with the flag
    assert convert([str(ldm_file), str(dst), "--to", "native", "--no-progress"]) == 1
    assert "exists; pass --overwrite" in capsys.readouterr().err


def test_convert_cli_summary_and_argument_errors(ldm_file, tmp_path, capsys):
    assert convert([str(ldm_file), str(tmp_path / "n"), "--to", "native", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "original" not in out or True
    assert "unet" in out and "M parameters" in out and "model.safetensors" in out
    assert convert([str(tmp_path / "nope.ckpt"), str(tmp_path / "x"), "--to", "native"]) == 1
    assert "SRC not found" in capsys.readouterr().err
    assert convert([str(ldm_file), str(tmp_path / "x.bin"), "--to", "ldm"]) == 1
    assert ".ckpt or .safetensors" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        convert([str(ldm_file), str(tmp_path / "x"), "--to", "onnx"])


class _RunsCode:
    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_pickle_that_would_run_code_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    payload = _RunsCode()
    payload.marker = marker
    evil = tmp_path / "evil.ckpt"
    with open(evil, "wb") as f:
        pickle.dump({"state_dict": {"w": payload}}, f)
    with pytest.raises(CheckpointError, match="refused to unpickle"):
        load_checkpoint(evil)
    assert not marker.exists()
    assert convert([str(evil), str(tmp_path / "out"), "--to", "native"]) == 1
    assert not marker.exists() and not (tmp_path / "out").exists()


def test_folder_of_unknown_kind_is_refused(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="model_index.json"):
        load_checkpoint(tmp_path / "empty")
    with pytest.raises(FileNotFoundError):
        load_checkpoint(tmp_path / "missing")
    shutil.rmtree(tmp_path / "empty")


# ------------------------------------------------------------------------------------------ issue 14


def test_every_writer_defaults_to_the_paint_by_example_schedule(ldm_file, tmp_path):
    """Item 8: one training schedule, shared by the checkpoint writers (and the pipeline / training)."""
    from pbe.checkpoints.formats import Checkpoint, read_ldm
    from pbe.diffusion.scheduler_config import PAINT_BY_EXAMPLE_SCHEDULER

    loaded = load_checkpoint(ldm_file)
    ckpt = Checkpoint(loaded.config, loaded.state)  # no scheduler given
    assert ckpt.scheduler == PAINT_BY_EXAMPLE_SCHEDULER and ckpt.scheduler is not PAINT_BY_EXAMPLE_SCHEDULER
    save_checkpoint(ckpt, tmp_path / "n", "native", progress=False)
    assert json.loads((tmp_path / "n/pbe_config.json").read_text())["scheduler"] == PAINT_BY_EXAMPLE_SCHEDULER
    save_checkpoint(ckpt, tmp_path / "d", "diffusers", progress=False)
    written = json.loads((tmp_path / "d/scheduler/scheduler_config.json").read_text())
    assert written == PAINT_BY_EXAMPLE_SCHEDULER
    state = read_tensors(ldm_file)[
        0
    ]  # the betas alone (a file from the original code) give the same schedule
    assert read_ldm(ldm_file, state=state).scheduler == PAINT_BY_EXAMPLE_SCHEDULER


@pytest.mark.parametrize("suffix", [".ckpt", ".safetensors"])
def test_diffusers_original_diffusers_keeps_the_scheduler(ldm_file, tmp_path, suffix):
    """The original layout stores only betas; pbe keeps the rest of the scheduler next to them."""
    ckpt = load_checkpoint(ldm_file)
    ckpt.scheduler = {
        "_class_name": "DDIMScheduler",
        "_diffusers_version": "0.30.0",
        "num_train_timesteps": 1000,
        "beta_start": 0.00085,
        "beta_end": 0.012,
        "beta_schedule": "scaled_linear",
        "steps_offset": 0,
        "set_alpha_to_one": True,
        "clip_sample": False,
        "timestep_spacing": "trailing",
        "prediction_type": "epsilon",
        "trained_betas": None,
    }
    save_checkpoint(ckpt, tmp_path / "d1", "diffusers", progress=False)
    save_checkpoint(load_checkpoint(tmp_path / "d1"), tmp_path / f"m{suffix}", "ldm", progress=False)
    save_checkpoint(load_checkpoint(tmp_path / f"m{suffix}"), tmp_path / "d2", "diffusers", progress=False)
    first, second = (
        json.loads((tmp_path / d / "scheduler/scheduler_config.json").read_text()) for d in ("d1", "d2")
    )
    assert second == first and second["steps_offset"] == 0
    assert json.loads((tmp_path / "d2/model_index.json").read_text())["scheduler"][1] == "DDIMScheduler"


def test_stored_scheduler_that_no_longer_matches_the_betas_is_ignored(ldm_file, tmp_path):
    obj = torch.load(ldm_file, weights_only=True)
    obj["pbe_scheduler_config"] = json.dumps(
        {"beta_schedule": "linear", "steps_offset": 0}
    )  # not these betas
    torch.save(obj, tmp_path / "edited.ckpt")
    scheduler = load_checkpoint(tmp_path / "edited.ckpt").scheduler
    assert scheduler["beta_schedule"] == "scaled_linear" and scheduler["steps_offset"] == 1


@pytest.mark.parametrize(
    ("rel", "content"),
    [
        ("pbe_config.json", "{not json"),
        ("pbe_config.json", '{"model": {"unet": {"channels": "abc"}}}'),
        ("pbe_config.json", "[1, 2]"),
    ],
)
def test_broken_native_config_names_the_file(ldm_file, tmp_path, capsys, rel, content):
    """Item 9: a broken config inside a model folder names the file (API and CLI)."""
    save_checkpoint(load_checkpoint(ldm_file), tmp_path / "m", "native", progress=False)
    (tmp_path / "m" / rel).write_text(content)
    with pytest.raises(CheckpointError, match=str(tmp_path / "m" / rel)):
        load_checkpoint(tmp_path / "m")
    assert convert([str(tmp_path / "m"), str(tmp_path / "out.ckpt"), "--to", "ldm"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and str(tmp_path / "m" / rel) in err[0]


@pytest.mark.parametrize(
    ("rel", "content"),
    [
        ("unet/config.json", '{"block_out_channels": [32, 64], '),
        ("vae/config.json", '{"block_out_channels": 5}'),
        ("image_encoder/config.json", '{"hidden_size": "wide"}'),
        ("scheduler/scheduler_config.json", "\x00\xff"),
    ],
)
def test_broken_diffusers_config_names_the_file(diffusers_dir, tmp_path, rel, content):
    folder = tmp_path / "hf"
    shutil.copytree(diffusers_dir, folder)
    (folder / rel).write_text(content)
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(folder)
    assert rel.split("/")[0] in str(info.value) and str(folder) in str(info.value)


@pytest.mark.parametrize(
    ("name", "content", "says"),
    [
        ("broken.json", '{"unet": ', "not valid JSON"),
        ("broken.yaml", "unet: [1, 2\nvae: {", "not valid YAML"),
        ("wrong.json", '{"unet": {"no_such_option": 1}}', "no_such_option"),
        ("wrong.yaml", "unet: 5", "unet"),
    ],
)
def test_broken_config_option_names_the_file(ldm_file, tmp_path, capsys, name, content, says):
    (tmp_path / name).write_text(content)
    args = [str(ldm_file), str(tmp_path / "out"), "--to", "native", "--config", str(tmp_path / name)]
    assert convert(args) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(tmp_path / name) in err[0] and says in err[0], err
    assert not (tmp_path / "out").exists()


# ------------------------------------------------------------------------------------------ non-finite weights


def poisoned(state: dict, name: str, value: float = float("nan")) -> dict:
    """`state` with the first element of tensor `name` set to `value` (the other tensors shared)."""
    tensor = state[name].clone()
    tensor.view(-1)[0] = value
    return {**state, name: tensor}


@pytest.mark.parametrize("suffix", [".ckpt", ".safetensors"])
def test_nan_weights_in_an_original_file_are_refused_naming_the_tensor(ldm_file, tmp_path, capsys, suffix):
    from pbe import PaintByExamplePipeline
    from pbe.checkpoints.tensor_io import write_safetensors

    state, metadata = read_tensors(ldm_file)
    state = poisoned(state, "model.diffusion_model.out.2.weight")
    bad = tmp_path / f"bad{suffix}"
    if suffix == ".ckpt":
        torch.save({"state_dict": state, **metadata}, bad)
    else:
        write_safetensors(bad, state, metadata)
    says = r"tensor 'model\.diffusion_model\.out\.2\.weight' \(UNet\) holds NaN or infinite values"
    with pytest.raises(CheckpointError, match=rf"{bad.name}: {says}"):
        load_checkpoint(bad)
    with pytest.raises(CheckpointError, match=says):
        PaintByExamplePipeline.from_pretrained(bad)
    assert convert([str(bad), str(tmp_path / "out"), "--to", "native", "--no-progress"]) == 1
    assert "holds NaN or infinite values" in capsys.readouterr().err and not (tmp_path / "out").exists()


def test_infinite_weights_in_a_native_folder_are_refused_naming_the_tensor(ldm_file, tmp_path):
    ckpt = load_checkpoint(ldm_file)
    ckpt.state = poisoned(ckpt.state, "vae.decoder.conv_out.bias", float("inf"))
    save_checkpoint(ckpt, tmp_path / "native", "native", progress=False)
    with pytest.raises(
        CheckpointError, match=r"model.safetensors: tensor 'vae.decoder.conv_out.bias' \(VAE\)"
    ):
        load_checkpoint(tmp_path / "native")


def test_nan_weights_in_a_diffusers_folder_are_refused_naming_the_tensor(ldm_file, tmp_path):
    ckpt = load_checkpoint(ldm_file)
    ckpt.state = poisoned(ckpt.state, "encoder.proj_out.weight")
    save_checkpoint(ckpt, tmp_path / "d", "diffusers", progress=False)
    with pytest.raises(
        CheckpointError, match=r"image_encoder: tensor 'proj_out.weight' \(exemplar encoder\)"
    ):
        load_checkpoint(tmp_path / "d")


def test_nan_weights_in_a_training_checkpoint_are_refused_naming_the_tensor(ldm_file, tmp_path):
    from pbe.checkpoints.formats import config_to_dict

    ckpt = load_checkpoint(ldm_file)
    state = poisoned(ckpt.state, "unet.conv_in.weight")
    torch.save(
        {
            "pytorch-lightning_version": "2.4.0",
            "global_step": 1,
            "hyper_parameters": {"pbe_config": config_to_dict(ckpt.config)},
            "state_dict": {f"model.{k}": v for k, v in state.items()},
        },
        tmp_path / "last.ckpt",
    )
    with pytest.raises(CheckpointError, match=r"last.ckpt: tensor 'model.unet.conv_in.weight' \(UNet\)"):
        load_checkpoint(tmp_path / "last.ckpt")
