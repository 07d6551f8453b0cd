"""Tiled VAE encode / decode (pbe/models/vae_tiling.py).

Tiling is not bit-exact (each tile normalises and attends over itself); the blending itself is, which is checked with
a pointwise map. Closeness to the untiled VAE is checked on a periodic image, where every tile has the global
statistics and only tile-border effects remain (relative L2 error <= 0.1 on a tiny random VAE).
"""

import os
import signal
import threading
import time

import pytest
import torch
from conftest import max_abs

from pbe.models import AutoencoderKL, VAEConfig
from pbe.models.vae_tiling import blend_tiles, tile_starts, tiled_decode, tiled_encode


@pytest.fixture(scope="module")
def vae():
    torch.manual_seed(0)
    return AutoencoderKL(VAEConfig(channels=(32, 64), num_res_blocks=1)).eval()  # f = 2


def relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).norm() / b.norm()).item()


def count_calls(module: torch.nn.Module) -> list:
    calls = []
    module.register_forward_hook(lambda *_: calls.append(1))
    return calls


def test_tile_starts_cover_with_overlap():
    assert tile_starts(100, 40, 10) == [0, 30, 60]
    assert tile_starts(40, 40, 10) == [0]
    starts = tile_starts(97, 32, 8)
    assert starts[-1] + 32 == 97 and all(b - a <= 24 for a, b in zip(starts, starts[1:]))


def test_blending_is_exact_for_a_pointwise_map():
    conv = torch.nn.Conv2d(4, 3, 1)
    z = torch.randn(2, 4, 37, 53)
    with torch.no_grad():
        expected = conv(z)
        got = blend_tiles(
            conv, z, tile=16, overlap=4, out_channels=3, scale_num=1, scale_den=1, out_overlap=4
        )
    assert max_abs(got, expected) <= 1e-6


def test_tiled_decode_close_to_untiled_and_multi_tile(vae):
    z = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(1)).repeat(
        1, 1, 6, 8
    )  # 48x64 latents
    calls = count_calls(vae.decoder)
    with torch.no_grad():
        full = vae.decode(z)
        tiled = tiled_decode(vae, z, tile_latent=32, overlap_latent=16)
    assert len(calls) == 1 + 2 * 3  # untiled, then 2 rows x 3 columns of tiles
    assert tiled.shape == full.shape
    assert relative_error(tiled, full) <= 0.1


def test_tiled_encode_close_to_untiled_and_multi_tile(vae):
    x = (torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(2)) * 2 - 1).repeat(1, 1, 6, 8)
    calls = count_calls(vae.encoder)
    with torch.no_grad():
        full = vae.encode(x)
        tiled = tiled_encode(vae, x, tile=64, overlap=32)
    assert len(calls) == 1 + 2 * 3
    assert tiled.mean.shape == full.mean.shape
    assert relative_error(tiled.mean, full.mean) <= 0.1
    assert relative_error(tiled.logvar, full.logvar) <= 0.1
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    assert (
        max_abs(tiled.sample(g1) - tiled.mean, (full.sample(g2) - full.mean) * tiled.std / full.std) <= 1e-5
    )


def test_one_tile_is_the_plain_call(vae):
    x = torch.rand(1, 3, 24, 32) * 2 - 1
    z = torch.randn(1, 4, 12, 16)
    with torch.no_grad():
        assert torch.equal(tiled_encode(vae, x, tile=32, overlap=8).mean, vae.encode(x).mean)
        assert torch.equal(tiled_decode(vae, z, tile_latent=16, overlap_latent=4), vae.decode(z))


def test_callback_sees_every_tile_and_can_cancel(vae):
    z = torch.randn(1, 4, 20, 20)
    seen = []
    with torch.no_grad():
        tiled_decode(vae, z, tile_latent=8, overlap_latent=2, callback=lambda d, n: seen.append((d, n)))
    assert seen == [(i, 9) for i in range(1, 10)]

    def stop(done, total):
        raise RuntimeError("cancelled")

    calls = count_calls(vae.decoder)
    with pytest.raises(RuntimeError, match="cancelled"), torch.no_grad():
        tiled_decode(vae, z, tile_latent=8, overlap_latent=2, callback=stop)
    assert len(calls) == 1


def test_ctrl_c_interrupts_within_two_seconds(vae):
    z = torch.randn(1, 4, 96, 96)
    sent = []

    def interrupt():
        sent.append(time.perf_counter())
        os.kill(os.getpid(), signal.SIGINT)

    timer = threading.Timer(0.3, interrupt)
    calls = count_calls(vae.decoder)
    timer.start()
    try:
        with pytest.raises(KeyboardInterrupt), torch.no_grad():
            for _ in range(100):  # far longer than the test: the interrupt must end it
                tiled_decode(vae, z, tile_latent=32, overlap_latent=8)
    finally:
        timer.cancel()
    assert sent and time.perf_counter() - sent[0] < 2.0  # generous: the machine may be busy
    assert len(calls) < 100 * 16


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(tile_latent=0), "tile_latent=0"),
        (dict(tile_latent=16, overlap_latent=16), "overlap_latent=16"),
        (dict(tile_latent=16, overlap_latent=-1), "overlap_latent=-1"),
    ],
)
def test_bad_tile_arguments_raise(vae, kwargs, match):
    with pytest.raises(ValueError, match=match):
        tiled_decode(vae, torch.randn(1, 4, 8, 8), **kwargs)


def test_bad_encode_arguments_raise(vae):
    with pytest.raises(ValueError, match="tile=33; expected a positive multiple of 2"):
        tiled_encode(vae, torch.randn(1, 3, 8, 8), tile=33)
    with pytest.raises(ValueError, match=r"expected \(B, 3, H, W\)"):
        tiled_encode(vae, torch.randn(1, 4, 8, 8))
