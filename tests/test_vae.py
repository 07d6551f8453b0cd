import pytest
import torch
from conftest import max_abs
from helpers import randomize_

from pbe.checkpoints.diffusers_keys import vae_from_diffusers, vae_to_diffusers
from pbe.models import AutoencoderKL, VAEConfig

CONFIGS = {
    "two_levels": (
        dict(block_out_channels=(32, 64), layers_per_block=1),
        VAEConfig(channels=(32, 64), num_res_blocks=1),
    ),
    "three_levels": (
        dict(block_out_channels=(32, 32, 64), layers_per_block=2),
        VAEConfig(channels=(32, 32, 64), num_res_blocks=2),
    ),
}


def make_pair(name: str):
    from diffusers import AutoencoderKL as DiffusersAutoencoderKL

    kwargs, cfg = CONFIGS[name]
    n = len(kwargs["block_out_channels"])
    ref = DiffusersAutoencoderKL(
        in_channels=3,
        out_channels=3,
        latent_channels=4,
        down_block_types=("DownEncoderBlock2D",) * n,
        up_block_types=("UpDecoderBlock2D",) * n,
        norm_num_groups=32,
        **kwargs,
    ).eval()
    randomize_(ref, std=0.1)
    ours = AutoencoderKL(cfg).eval()
    ours.load_state_dict(vae_from_diffusers(ref.state_dict()), strict=True)
    return ref, ours


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_encode_matches_diffusers(name):
    ref, ours = make_pair(name)
    x = torch.rand(2, 3, 16, 24, generator=torch.Generator().manual_seed(0)) * 2 - 1
    with torch.no_grad():
        expected = ref.encode(x).latent_dist
        got = ours.encode(x)
        sample_ref = expected.sample(torch.Generator().manual_seed(7))
        sample_ours = got.sample(torch.Generator().manual_seed(7))
    assert max_abs(got.mean, expected.mean) <= 1e-5
    assert max_abs(got.logvar, expected.logvar) <= 1e-5
    assert max_abs(got.mode(), expected.mode()) <= 1e-5
    assert max_abs(sample_ours, sample_ref) <= 1e-5


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_decode_matches_diffusers(name):
    ref, ours = make_pair(name)
    f = ours.config.downsample_factor
    z = torch.randn(2, 4, 16 // f, 24 // f, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        expected = ref.decode(z).sample
        got = ours.decode(z)
    assert got.shape == (2, 3, 16, 24)
    assert max_abs(got, expected) <= 1e-5


def test_posterior_sample_is_deterministic_per_generator_and_differs_across_seeds():
    _, ours = make_pair("two_levels")
    post = ours.encode(torch.zeros(1, 3, 8, 8))
    a = post.sample(torch.Generator().manual_seed(1))
    b = post.sample(torch.Generator().manual_seed(1))
    c = post.sample(torch.Generator().manual_seed(2))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    assert (post.kl() >= 0).all()


def test_legacy_attention_names_load():
    ref, ours = make_pair("two_levels")
    legacy = {}
    for k, v in ref.state_dict().items():
        for new, old in (("to_q", "query"), ("to_k", "key"), ("to_v", "value"), ("to_out.0", "proj_attn")):
            if ".attentions." in k and f".{new}." in k:
                k = k.replace(f".{new}.", f".{old}.")
                if k.endswith("weight"):
                    v = v[:, :, None, None]  # the oldest checkpoints stored these as 1x1 convs
        legacy[k] = v
    fresh = AutoencoderKL(CONFIGS["two_levels"][1])
    fresh.load_state_dict(vae_from_diffusers(legacy), strict=True)
    for (name, a), b in zip(ours.state_dict().items(), fresh.state_dict().values()):
        assert torch.equal(a, b), name


def test_vae_key_mapping_roundtrip_is_identity():
    state = AutoencoderKL(CONFIGS["three_levels"][1]).state_dict()
    assert list(vae_from_diffusers(vae_to_diffusers(state))) == list(state)


def test_bad_shapes_raise():
    ours = AutoencoderKL(CONFIGS["two_levels"][1])
    with pytest.raises(ValueError, match="multiples of 2"):
        ours.encode(torch.zeros(1, 3, 9, 8))
    with pytest.raises(ValueError, match=r"expected \(B, 3, H, W\)"):
        ours.encode(torch.zeros(1, 4, 8, 8))
    with pytest.raises(ValueError, match=r"expected \(B, 4, h, w\)"):
        ours.decode(torch.zeros(1, 3, 4, 4))
