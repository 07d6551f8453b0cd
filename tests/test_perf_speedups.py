"""Exact speedups (pbe.models.attention.SPEEDUPS): each switch on vs off gives the same outputs up to float rounding.

Tolerance 1e-5 absolute on outputs of order 1 (tiny random models, fp32); gradients 1e-5.
"""

import pytest
import torch
from conftest import max_abs
from helpers import randomize_

from pbe.models import ExemplarEncoder, ExemplarEncoderConfig, UNet, UNetConfig
from pbe.models.attention import SPEEDUPS, speedups

ALL_OFF = dict(single_token_attention=False, precomputed_conditioning=False, shared_guidance_prefix=False)

CFG = UNetConfig(
    channels=(16, 32, 32),
    attention_levels=(True, True, True),
    num_res_blocks=1,
    num_heads=(2, 4, 4),
    transformer_depth=2,
    norm_groups=8,
    context_dim=24,
)
# no attention on the first level: the shared prefix then spans a whole level and a downsample
CFG_LATE_ATTENTION = UNetConfig(
    channels=(16, 32),
    attention_levels=(False, True),
    num_res_blocks=1,
    num_heads=4,
    norm_groups=8,
    context_dim=24,
)


def unet(cfg=CFG) -> UNet:
    return randomize_(UNet(cfg), std=0.1).eval()


def guided_inputs(b: int = 2, size: int = 8, tokens: int = 1):
    """A guidance batch as the pipeline builds it: [x; x], [cond; cond], [uncond; exemplar]."""
    g = torch.Generator().manual_seed(3)
    x = torch.randn(b, 4, size, size, generator=g)
    cond = torch.randn(b, 5, size, size, generator=g).repeat(2, 1, 1, 1)
    context = torch.randn(2 * b, tokens, 24, generator=g)
    return x, cond, context


def calls(module: torch.nn.Module) -> list[int]:
    """Batch sizes of the inputs of every call of `module`."""
    seen = []
    module.register_forward_hook(lambda m, args, out: seen.append(args[0].shape[0]))
    return seen


def test_defaults_are_on():
    assert SPEEDUPS.single_token_attention and SPEEDUPS.precomputed_conditioning
    assert SPEEDUPS.shared_guidance_prefix
    with speedups(single_token_attention=False):
        assert not SPEEDUPS.single_token_attention
    assert SPEEDUPS.single_token_attention
    with pytest.raises(ValueError, match="unknown speedups"):
        with speedups(fast=True):
            pass


def test_single_token_attention_same_output_and_skips_query():
    model = unet()
    x, cond, context = guided_inputs()
    inp = torch.cat([x.repeat(2, 1, 1, 1), cond], dim=1)
    q_calls = calls(model.down[0].attn[0].blocks[0].cross_attn.q)
    with torch.no_grad():
        fast = model(inp, torch.tensor([3, 3, 700, 700]), context)
        assert q_calls == []
        with speedups(single_token_attention=False):
            full = model(inp, torch.tensor([3, 3, 700, 700]), context)
        assert q_calls == [4]
    assert max_abs(fast, full) <= 1e-5


def test_single_token_attention_same_gradients_in_training():
    fast = unet().train()
    full = unet().train()
    x = torch.randn(2, 9, 8, 8)
    context = torch.randn(2, 1, 24, requires_grad=True)
    out_fast = fast(x, torch.tensor([3, 700]), context)
    out_fast.square().mean().backward()
    grad_context = context.grad.clone()
    context.grad = None
    with speedups(single_token_attention=False):
        full(x, torch.tensor([3, 700]), context).square().mean().backward()
    assert max_abs(grad_context, context.grad) <= 1e-5
    for (name, a), (_, b) in zip(fast.named_parameters(), full.named_parameters()):
        assert a.grad is not None and b.grad is not None, name  # q, k get zero gradients, not none
        assert max_abs(a.grad, b.grad) <= 1e-5, name
    assert fast.down[0].attn[0].blocks[0].cross_attn.q.weight.grad.abs().max() == 0


def test_single_token_attention_in_the_exemplar_mapper():
    from helpers import native_vision_config, tiny_clip_config

    cfg = ExemplarEncoderConfig(
        vision=native_vision_config(tiny_clip_config(layers=2)), mapper_depth=2, context_dim=24
    )
    encoder = randomize_(ExemplarEncoder(cfg), std=0.1).eval()
    pixels = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        fast = encoder(pixels)
        with speedups(single_token_attention=False):
            full = encoder(pixels)
    assert max_abs(fast, full) <= 1e-5


@pytest.mark.parametrize("cfg", [CFG, CFG_LATE_ATTENTION], ids=["attention_first", "attention_late"])
@pytest.mark.parametrize(
    "switches", [{}, ALL_OFF, dict(shared_guidance_prefix=False), dict(precomputed_conditioning=False)]
)
def test_prepared_matches_plain_call(cfg, switches):
    model = unet(cfg)
    x, cond, context = guided_inputs()
    with torch.no_grad():
        with speedups(**ALL_OFF):
            expected = model(torch.cat([x.repeat(2, 1, 1, 1), cond], dim=1), 500, context)
        with speedups(**switches):
            prepared = model.prepare(cond, context)
            one_copy = model(x, 500, prepared=prepared)
            both_copies = model(x.repeat(2, 1, 1, 1), 500, prepared=prepared)
    assert prepared.copies == 2
    assert max_abs(one_copy, expected) <= 1e-5
    assert max_abs(both_copies, expected) <= 1e-5


def test_prepared_skips_constant_work():
    model = unet()
    x, cond, context = guided_inputs(b=1)
    conv_in = calls(model.conv_in)
    first_res = calls(model.down[0].res[0])
    second_res = calls(model.down[1].res[0])
    cross_v = calls(model.down[0].attn[0].blocks[0].cross_attn.v)
    with torch.no_grad():
        prepared = model.prepare(cond, context)
        assert cross_v == [2]  # once per edit
        model(x, 500, prepared=prepared)
        model(x, 400, prepared=prepared)
    assert conv_in == []  # the latent part goes through F.conv2d with conv_in's weight slice
    assert first_res == [1, 1]  # before the first cross-attention: one copy for both guidance halves
    assert second_res == [2, 2]
    assert cross_v == [2]


@pytest.mark.parametrize("tokens", [1, 3])
def test_plain_call_shares_the_prefix_of_stacked_copies(tokens):
    model = unet()
    x, cond, context = guided_inputs(b=1, tokens=tokens)
    inp = torch.cat([x.repeat(2, 1, 1, 1), cond], dim=1)
    first_res = calls(model.down[0].res[0])
    with torch.no_grad():
        shared = model(inp, 500, context)
        with speedups(shared_guidance_prefix=False):
            full = model(inp, 500, context)
        different_t = model(inp, torch.tensor([500, 501]), context)
    assert first_res == [1, 2, 2]  # only identical halves with identical timesteps share
    assert max_abs(shared, full) <= 1e-5
    assert max_abs(different_t, full) > 0


def test_prepared_without_copies_and_with_patch_tokens():
    model = unet()
    g = torch.Generator().manual_seed(0)
    x, cond = torch.randn(3, 4, 8, 8, generator=g), torch.randn(3, 5, 8, 8, generator=g)
    for tokens in (1, 4):
        context = torch.randn(3, tokens, 24, generator=g)
        with torch.no_grad():
            expected = model(torch.cat([x, cond], dim=1), torch.tensor([1, 2, 3]), context)
            prepared = model.prepare(cond, context)
            got = model(x, torch.tensor([1, 2, 3]), prepared=prepared)
        assert prepared.copies == 1 and (prepared.cross is None) == (tokens > 1)
        assert max_abs(got, expected) <= 1e-5


def test_prepared_copies_with_different_timesteps_fall_back_to_the_full_batch():
    model = unet()
    x, cond, context = guided_inputs(b=1)
    t = torch.tensor([10, 900])
    with torch.no_grad():
        expected = model(torch.cat([x.repeat(2, 1, 1, 1), cond], dim=1), t, context)
        got = model(x, t, prepared=model.prepare(cond, context))
    assert max_abs(got, expected) <= 1e-5


def test_prepare_and_prepared_call_validate_shapes():
    model = unet()
    x, cond, context = guided_inputs(b=1)
    with pytest.raises(ValueError, match=r"prepare: cond has shape \(2, 9, 8, 8\)"):
        model.prepare(torch.randn(2, 9, 8, 8), context)
    with pytest.raises(ValueError, match=r"prepare: context has shape \(3, 1, 24\)"):
        model.prepare(cond, torch.randn(3, 1, 24))
    prepared = model.prepare(cond, context)
    with pytest.raises(ValueError, match=r"expected \(2 or 1 \(one copy\), 4, 8, 8\)"):
        model(torch.randn(1, 9, 8, 8), 1, prepared=prepared)
    with pytest.raises(ValueError, match="context has shape None"):
        model(torch.randn(1, 9, 8, 8), 1)


@pytest.fixture
def subpixel_everywhere(monkeypatch):
    """Upsample takes the subpixel path at any input size (tests use inputs below the speed threshold)."""
    monkeypatch.setattr("pbe.models.unet.SUBPIXEL_MIN_PIXELS", 0)


@pytest.mark.parametrize("size", [(5, 7), (8, 8)])
def test_subpixel_upsample_same_output_and_gradients(size, subpixel_everywhere):
    from pbe.models.unet import Upsample

    up = randomize_(Upsample(8), std=0.2)
    x = torch.randn(2, 8, *size, requires_grad=True)
    fast = up(x)
    fast.square().sum().backward()
    grads = (x.grad.clone(), up.conv.weight.grad.clone(), up.conv.bias.grad.clone())
    x.grad = None
    up.zero_grad()
    with speedups(subpixel_upsample=False):
        full = up(x)
    full.square().sum().backward()
    assert fast.shape == (2, 8, 2 * size[0], 2 * size[1])
    assert max_abs(fast, full) <= 1e-5
    for got, expected in zip(grads, (x.grad, up.conv.weight.grad, up.conv.bias.grad)):
        assert max_abs(got, expected) <= 1e-4 * expected.abs().max().item()


def test_subpixel_upsample_follows_weight_updates(subpixel_everywhere):
    from pbe.models.unet import Upsample

    up = Upsample(4).eval()
    x = torch.randn(1, 4, 3, 3)
    with torch.no_grad():
        before = up(x)
        up.conv.weight.mul_(2)  # in place: the phase kernels must follow
        after = up(x)
        with speedups(subpixel_upsample=False):
            expected = up(x)
    assert max_abs(after, expected) <= 1e-5
    assert max_abs(after, before) > 0


def test_subpixel_upsample_only_from_the_pixel_threshold(monkeypatch):
    """Small inputs take the plain conv (the kernel rebuild would cost more than it saves); large ones the phases."""
    import pbe.models.unet as unet_module

    real = unet_module.phase_kernels
    calls = []
    monkeypatch.setattr(unet_module, "phase_kernels", lambda w: calls.append(w.shape) or real(w))
    monkeypatch.setattr(unet_module, "SUBPIXEL_MIN_PIXELS", 2 * 4 * 4)
    up = randomize_(unet_module.Upsample(4), std=0.2).eval()
    with torch.no_grad():
        small = torch.randn(2, 4, 3, 5)  # 30 pixels
        large = torch.randn(2, 4, 4, 4)  # 32 pixels
        assert up(small).shape == (2, 4, 6, 10) and calls == []
        out = up(large)
        assert calls == [(4, 4, 3, 3)]
        with speedups(subpixel_upsample=False):
            assert max_abs(out, up(large)) <= 1e-5


@pytest.mark.parametrize(
    "kernel, stride, padding, bias",
    [(3, 1, 1, True), (3, 2, 1, True), (3, 2, 0, False), (1, 1, 0, True)],
)
def test_small_conv_gemm_same_output_and_gradients(kernel, stride, padding, bias):
    from pbe.models.conv import Conv2d

    conv = Conv2d(6, 10, kernel, stride=stride, padding=padding, bias=bias)
    x = torch.randn(2, 6, 5, 7, requires_grad=True)
    fast = conv(x)
    fast.square().sum().backward()
    grads = (x.grad.clone(), conv.weight.grad.clone())
    x.grad = None
    conv.zero_grad()
    with speedups(small_conv_gemm=False):
        full = conv(x)
    full.square().sum().backward()
    assert fast.shape == full.shape
    assert max_abs(fast, full) <= 1e-5
    for got, expected in zip(grads, (x.grad, conv.weight.grad)):
        assert max_abs(got, expected) <= 1e-5 * max(1.0, expected.abs().max().item())


def test_small_conv_gemm_only_for_small_float32_outputs(monkeypatch):
    """The matrix-product path runs up to GEMM_CONV_MAX_PIXELS output pixels in float32; larger outputs and bf16
    go to oneDNN's conv."""
    import pbe.models.conv as conv_module

    conv = conv_module.Conv2d(4, 4, 3, padding=1)
    calls = []
    real = conv_module.F.unfold
    monkeypatch.setattr(conv_module.F, "unfold", lambda *a, **k: calls.append(a[0].shape) or real(*a, **k))
    monkeypatch.setattr(conv_module, "GEMM_CONV_MAX_PIXELS", 2 * 4 * 4)
    with torch.no_grad():
        conv(torch.randn(2, 4, 4, 4))
        assert calls == [(2, 4, 4, 4)]
        conv(torch.randn(2, 4, 4, 5))  # 40 output pixels
        conv.to(torch.bfloat16)(torch.randn(1, 4, 2, 2, dtype=torch.bfloat16))
    assert calls == [(2, 4, 4, 4)]


def test_small_conv_gemm_keeps_conv2d_state_dict():
    from pbe.models.conv import Conv2d

    torch.manual_seed(0)
    ours = Conv2d(3, 5, 3, padding=1)
    torch.manual_seed(0)
    theirs = torch.nn.Conv2d(3, 5, 3, padding=1)
    assert ours.state_dict().keys() == theirs.state_dict().keys()
    assert all(torch.equal(ours.state_dict()[k], theirs.state_dict()[k]) for k in ours.state_dict())
