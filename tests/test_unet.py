import pytest
import torch
from conftest import max_abs
from helpers import randomize_

from pbe.checkpoints.diffusers_keys import unet_from_diffusers, unet_to_diffusers
from pbe.models import UNet, UNetConfig

# (diffusers UNet2DConditionModel kwargs, the same model as a pbe UNetConfig)
CONFIGS = {
    "attention_every_level": (
        dict(
            block_out_channels=(16, 32, 32),
            down_block_types=("CrossAttnDownBlock2D",) * 3,
            up_block_types=("CrossAttnUpBlock2D",) * 3,
            layers_per_block=1,
            attention_head_dim=(2, 4, 4),
            transformer_layers_per_block=2,
            norm_num_groups=8,
            cross_attention_dim=24,
        ),
        UNetConfig(
            channels=(16, 32, 32),
            attention_levels=(True, True, True),
            num_res_blocks=1,
            num_heads=(2, 4, 4),
            transformer_depth=2,
            norm_groups=8,
            context_dim=24,
        ),
    ),
    "diffusers_paint_by_example_test": (
        dict(
            block_out_channels=(32, 64),
            down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
            layers_per_block=2,
            cross_attention_dim=32,
        ),
        UNetConfig(channels=(32, 64), attention_levels=(False, True), num_heads=8, context_dim=32),
    ),
    "linear_projection": (
        dict(
            block_out_channels=(32, 64),
            down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
            up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
            layers_per_block=1,
            attention_head_dim=4,
            use_linear_projection=True,
            cross_attention_dim=16,
        ),
        UNetConfig(
            channels=(32, 64),
            attention_levels=(True, False),
            num_res_blocks=1,
            num_heads=4,
            linear_projection=True,
            context_dim=16,
        ),
    ),
}


def make_pair(name: str):
    from diffusers import UNet2DConditionModel

    kwargs, cfg = CONFIGS[name]
    ref = UNet2DConditionModel(in_channels=9, out_channels=4, sample_size=16, **kwargs).eval()
    randomize_(ref, std=0.1)
    ours = UNet(cfg).eval()
    ours.load_state_dict(unet_from_diffusers(ref.state_dict()), strict=True)
    return ref, ours


@pytest.mark.parametrize("tokens", [1, 3])  # 1: Paint by Example's context (the single-token shortcut)
@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_unet_matches_diffusers(name, tokens):
    ref, ours = make_pair(name)
    cfg = CONFIGS[name][1]
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 9, 8, 12, generator=g)
    t = torch.tensor([10, 999])
    context = torch.randn(2, tokens, cfg.context_dim, generator=g)
    with torch.no_grad():
        expected = ref(x, t, encoder_hidden_states=context).sample
        got = ours(x, t, context)
    assert got.shape == (2, 4, 8, 12)
    assert max_abs(got, expected) <= 1e-5


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_prepared_guidance_call_matches_diffusers(name):
    """The pipeline's call: UNet.prepare(cond, [uncond; exemplar]) once, then unet(x, t, prepared=...) with one copy
    of the latent (shared prefix, precomputed conv_in share and cross-attention outputs)."""
    ref, ours = make_pair(name)
    cfg = CONFIGS[name][1]
    g = torch.Generator().manual_seed(2)
    x = torch.randn(1, 4, 8, 12, generator=g)
    cond = torch.randn(1, 5, 8, 12, generator=g).repeat(2, 1, 1, 1)
    context = torch.randn(2, 1, cfg.context_dim, generator=g)
    with torch.no_grad():
        expected = ref(
            torch.cat([x.repeat(2, 1, 1, 1), cond], dim=1), 500, encoder_hidden_states=context
        ).sample
        got = ours(x, 500, prepared=ours.prepare(cond, context))
    assert max_abs(got, expected) <= 1e-5


def test_unet_scalar_and_fractional_timestep_broadcast():
    _, ours = make_pair("diffusers_paint_by_example_test")
    x = torch.randn(2, 9, 8, 8)
    c = torch.randn(2, 1, 32)
    with torch.no_grad():
        a = ours(x, 500, c)
        b = ours(x, torch.tensor([500.0, 500.0]), c)
        frac = ours(x, 500.5, c)
    assert max_abs(a, b) == 0
    assert max_abs(a, frac) > 0


def test_unet_key_mapping_roundtrip_is_identity():
    ours = UNet(CONFIGS["attention_every_level"][1])
    state = ours.state_dict()
    back = unet_from_diffusers(unet_to_diffusers(state))
    assert list(back) == list(state)


def test_gradient_checkpointing_same_outputs_and_grads():
    cfg = CONFIGS["attention_every_level"][1]
    a = randomize_(UNet(cfg), std=0.1).train()
    b = UNet(UNetConfig(**{**cfg.__dict__, "gradient_checkpointing": True})).train()
    b.load_state_dict(a.state_dict())
    x = torch.randn(2, 9, 8, 8)
    c = torch.randn(2, 1, cfg.context_dim)
    out_a, out_b = a(x, torch.tensor([3, 700]), c), b(x, torch.tensor([3, 700]), c)
    assert max_abs(out_a, out_b) <= 1e-6
    out_a.square().mean().backward()
    out_b.square().mean().backward()
    for (name, pa), (_, pb) in zip(a.named_parameters(), b.named_parameters()):
        assert pa.grad is not None and pb.grad is not None, name
        assert max_abs(pa.grad, pb.grad) <= 1e-6, name


def _saved_activation_bytes(model: UNet, x, c) -> int:
    total = 0

    def pack(t):
        nonlocal total
        total += t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        model(x, 5, c)
    return total


def test_gradient_checkpointing_saves_fewer_activations():
    cfg = CONFIGS["linear_projection"][1]
    plain = UNet(cfg).train()
    ckpt = UNet(UNetConfig(**{**cfg.__dict__, "gradient_checkpointing": True})).train()
    x, c = torch.randn(1, 9, 16, 16), torch.randn(1, 1, 16)
    assert _saved_activation_bytes(ckpt, x, c) < 0.5 * _saved_activation_bytes(plain, x, c)


def _never_called(model: UNet):
    def boom(*_):
        raise AssertionError("computation started before input validation")

    model.conv_in.register_forward_pre_hook(boom)
    model.time_embed.register_forward_pre_hook(boom)


@pytest.mark.parametrize(
    "shape, match",
    [
        ((1, 4, 8, 8), r"expected \(B, 9, H, W\)"),
        ((1, 9, 6, 8), "multiples of 4"),
        ((1, 9, 8, 10), "multiples of 4"),
        ((9, 8, 8), r"expected \(B, 9, H, W\)"),
    ],
)
def test_bad_input_shape_raises_before_compute(shape, match):
    model = UNet(CONFIGS["attention_every_level"][1])
    _never_called(model)
    with pytest.raises(ValueError, match=match):
        model(torch.randn(*shape), 1, torch.randn(1, 1, 24))


def test_bad_context_raises_before_compute():
    model = UNet(CONFIGS["attention_every_level"][1])
    _never_called(model)
    with pytest.raises(ValueError, match=r"context has shape \(1, 1, 7\); expected \(1, tokens, 24\)"):
        model(torch.randn(1, 9, 8, 8), 1, torch.randn(1, 1, 7))


def test_bad_config_raises():
    with pytest.raises(ValueError, match="attention_levels"):
        UNetConfig(channels=(32, 64), attention_levels=(True,))
    with pytest.raises(ValueError, match="num_heads"):
        UNet(UNetConfig(channels=(32, 64), attention_levels=(True, True), num_heads=3, norm_groups=8))
