import pytest
import torch
from conftest import max_abs
from helpers import native_vision_config, randomize_, tiny_clip_config

from pbe.checkpoints.diffusers_keys import (
    detect_vision_layout,
    exemplar_from_diffusers,
    exemplar_to_diffusers,
)
from pbe.models import ExemplarEncoder, ExemplarEncoderConfig


def make_pair(layers: int = 9):
    from diffusers.pipelines.deprecated.paint_by_example.image_encoder import PaintByExampleImageEncoder

    cfg = tiny_clip_config(layers)
    ref = randomize_(PaintByExampleImageEncoder(cfg, proj_size=24), std=0.1).eval()
    native_cfg = ExemplarEncoderConfig(
        vision=native_vision_config(cfg), mapper_depth=(layers + 1) // 5, context_dim=24
    )
    return ref, native_cfg


def to_transformers4(state):
    """Rewrite a transformers-5 state dict (model.*) into the transformers-4 layout (model.vision_model.*)."""
    return {
        ("model.vision_model." + k[len("model.") :] if k.startswith("model.") else k): v
        for k, v in state.items()
    }


@pytest.mark.parametrize("layout", ["transformers4", "transformers5"])
def test_exemplar_encoder_matches_diffusers(layout):
    ref, cfg = make_pair()
    state = ref.state_dict()
    if layout == "transformers4":
        state = to_transformers4(state)
    assert detect_vision_layout(state) == layout
    ours = ExemplarEncoder(cfg).eval()
    ours.load_state_dict(exemplar_from_diffusers(state), strict=True)
    pixels = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        expected, uncond = ref(pixels, return_uncond_vector=True)
        got = ours(pixels)
    assert got.shape == (3, 1, 24)
    assert max_abs(got, expected) <= 1e-5
    assert torch.equal(ours.uncond_vector, uncond)
    assert torch.equal(ours.unconditional(3), uncond.expand(3, 1, 24))


@pytest.mark.parametrize("layout", ["transformers4", "transformers5"])
def test_exemplar_key_mapping_roundtrip(layout):
    ref, cfg = make_pair()
    state = ExemplarEncoder(cfg).state_dict()
    written = exemplar_to_diffusers(state, layout=layout)
    expected_keys = set(ref.state_dict())
    if layout == "transformers4":
        expected_keys = set(to_transformers4(ref.state_dict()))
    assert set(written) == expected_keys
    back = exemplar_from_diffusers(written)
    assert sorted(back) == sorted(state)
    assert all(back[k] is v for k, v in state.items())


def test_mapper_depth_matches_diffusers_rule():
    ref, cfg = make_pair(layers=5)
    assert cfg.mapper_depth == len(ref.mapper.blocks) == 1


def test_patch_token_ablation_keeps_every_token():
    _, cfg = make_pair()
    cfg.use_patch_tokens = True
    out = ExemplarEncoder(cfg)(torch.randn(2, 3, 32, 32))
    assert out.shape == (2, 1 + 64, 24)


def test_unknown_layout_raises():
    with pytest.raises(ValueError, match="transformers4"):
        exemplar_to_diffusers({}, layout="transformers3")
    with pytest.raises(ValueError, match="no CLIP vision tower keys"):
        exemplar_from_diffusers({"proj_out.weight": torch.zeros(1)})
