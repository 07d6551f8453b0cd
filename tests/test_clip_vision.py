import pytest
import torch
from conftest import max_abs
from helpers import native_vision_config, randomize_, tiny_clip_config

from pbe.checkpoints.diffusers_keys import vision_from_transformers, vision_to_transformers
from pbe.checkpoints.open_clip_keys import vision_from_open_clip
from pbe.models import VisionConfig, VisionTower


def test_vision_tower_matches_transformers():
    from transformers import CLIPVisionModel

    cfg = tiny_clip_config()
    ref = randomize_(CLIPVisionModel(cfg), std=0.1).eval()
    ours = VisionTower(native_vision_config(cfg)).eval()
    ours.load_state_dict(vision_from_transformers(ref.state_dict()), strict=True)
    pixels = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        out = ref(pixel_values=pixels)
        tokens, pooled = ours(pixels)
    assert max_abs(pooled, out.pooler_output) <= 1e-5
    assert max_abs(tokens, out.last_hidden_state) <= 1e-5


def test_vision_tower_matches_open_clip_with_mapped_weights():
    from open_clip.transformer import QuickGELU
    from open_clip.transformer import VisionTransformer as OpenClipViT

    ref = OpenClipViT(
        image_size=32,
        patch_size=4,
        width=32,
        layers=3,
        heads=4,
        mlp_ratio=4.0,
        output_dim=16,
        act_layer=QuickGELU,
    )
    randomize_(ref, std=0.1).eval()
    state = {"visual." + k: v for k, v in ref.state_dict().items()}
    mapped, proj = vision_from_open_clip(state)
    ours = VisionTower(
        VisionConfig(image_size=32, patch_size=4, width=32, layers=3, heads=4, mlp_dim=128)
    ).eval()
    ours.load_state_dict(mapped, strict=True)
    pixels = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        expected = ref(pixels)
        _, pooled = ours(pixels)
    assert proj is not None and proj.shape == (32, 16)
    assert max_abs(pooled @ proj, expected) <= 1e-5


def test_open_clip_mapping_rejects_unknown_keys():
    with pytest.raises(ValueError, match="no open_clip vision keys"):
        vision_from_open_clip({"text.weight": torch.zeros(1)})
    with pytest.raises(ValueError, match="unexpected open_clip vision key 'visual.attnpool.q'"):
        vision_from_open_clip({"visual.attnpool.q": torch.zeros(1)})


def test_vision_key_roundtrip_is_identity():
    state = VisionTower(
        VisionConfig(image_size=32, patch_size=4, width=32, layers=2, heads=4, mlp_dim=64)
    ).state_dict()
    assert list(
        vision_from_transformers(vision_to_transformers(state, "vision_model."), "vision_model.")
    ) == list(state)


def test_wrong_image_size_raises():
    tower = VisionTower(VisionConfig(image_size=32, patch_size=4, width=32, layers=1, heads=4, mlp_dim=64))
    with pytest.raises(ValueError, match=r"expected \(B, 3, 32, 32\)"):
        tower(torch.zeros(1, 3, 224, 224))
