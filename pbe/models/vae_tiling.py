"""Tiled VAE encode / decode: large images in bounded memory.

The VAE's cost in memory grows with the image: full-resolution activations (128 channels at 2048x2048 is 2 GB per
tensor in fp32) and the middle block's self-attention over every latent pixel (65,536 tokens at 2048x2048). Tiling
runs the VAE on overlapping tiles and cross-fades the overlaps with linear ramps, so memory is that of one tile.

Not exact: each tile normalises (GroupNorm) and attends over itself only, so tiles see slightly different statistics
than the whole image; the ramps hide the seams. When the input fits in one tile, the plain (exact) call is made.

Interrupting: PyTorch's eager ops return to Python between layers, so Ctrl-C (KeyboardInterrupt) lands within the
longest single op (well under a second on CPU for the full-size VAE at 512-pixel tiles; tested by sending SIGINT
during a tile); after each tile the functions call `callback(done, total)`, which may raise to cancel.

    posterior = tiled_encode(vae, images, tile=512, overlap=64)      # a DiagonalGaussian, like vae.encode
    images = tiled_decode(vae, latents, tile_latent=64, overlap_latent=8)
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from tqdm.auto import tqdm

from pbe.models.vae import AutoencoderKL, DiagonalGaussian

TileCallback = Callable[[int, int], None]


def tile_starts(size: int, tile: int, overlap: int) -> list[int]:
    """Start offsets of tiles of length `tile` covering [0, size), neighbours overlapping by >= `overlap`."""
    if size <= tile:
        return [0]
    stride = tile - overlap
    starts = list(range(0, size - tile, stride))
    return starts + [size - tile]


def ramp(length: int, overlap: int, fade_in: bool, fade_out: bool) -> torch.Tensor:
    """1-D blending weight: linear ramps over `overlap` at the ends that meet a neighbour, 1 elsewhere.

    Two neighbours overlapping by exactly `overlap` get weights that sum to 1 across the overlap; wider overlaps
    (the last tile, aligned to the edge) are normalised by the weight sum."""
    w = torch.ones(length)
    n = min(overlap, length)
    if n > 0:
        up = torch.arange(1, n + 1, dtype=torch.float32) / (n + 1)
        if fade_in:
            w[:n] = torch.minimum(w[:n], up)
        if fade_out:
            w[length - n :] = torch.minimum(w[length - n :], up.flip(0))
    return w


def blend_tiles(
    fn: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    tile: int,
    overlap: int,
    out_channels: int,
    scale_num: int,
    scale_den: int,
    out_overlap: int,
    progress: bool = False,
    desc: str = "tiles",
    callback: TileCallback | None = None,
) -> torch.Tensor:
    """Apply `fn` to overlapping `tile`-sized windows of x (B, C, H, W) and cross-fade the results.

    `fn` maps a window of size (h, w) to (B, out_channels, h * num / den, w * num / den); `out_overlap` is the ramp
    width in output pixels. Accumulates in float32; returns fn's dtype."""
    b, _, height, width = x.shape
    rows, cols = tile_starts(height, tile, overlap), tile_starts(width, tile, overlap)
    out_h, out_w = height * scale_num // scale_den, width * scale_num // scale_den
    total = torch.zeros(b, out_channels, out_h, out_w, dtype=torch.float32, device=x.device)
    weight = torch.zeros(1, 1, out_h, out_w, dtype=torch.float32, device=x.device)
    out_dtype = None
    windows = [(r, c) for r in rows for c in cols]
    for done, (r, c) in enumerate(tqdm(windows, desc=desc, disable=not progress, leave=False), start=1):
        th, tw = min(tile, height - r), min(tile, width - c)
        y = fn(x[:, :, r : r + th, c : c + tw])
        out_dtype = y.dtype
        orow, ocol = r * scale_num // scale_den, c * scale_num // scale_den
        oh, ow = y.shape[-2:]
        wh = ramp(oh, out_overlap, r > 0, r + th < height)
        ww = ramp(ow, out_overlap, c > 0, c + tw < width)
        w = (wh[:, None] * ww[None, :]).to(x.device)
        total[:, :, orow : orow + oh, ocol : ocol + ow] += y.float() * w
        weight[:, :, orow : orow + oh, ocol : ocol + ow] += w
        del y
        if callback is not None:
            callback(done, len(windows))
    return (total / weight).to(out_dtype)


def _check_tiles(tile: int, overlap: int, multiple: int, names: tuple[str, str]) -> None:
    if isinstance(tile, bool) or not isinstance(tile, int) or tile <= 0 or tile % multiple:
        raise ValueError(f"{names[0]}={tile!r}; expected a positive multiple of {multiple}")
    if (
        isinstance(overlap, bool)
        or not isinstance(overlap, int)
        or not 0 <= overlap < tile
        or overlap % multiple
    ):
        raise ValueError(
            f"{names[1]}={overlap!r}; expected a multiple of {multiple} in [0, {names[0]}={tile})"
        )


def tiled_encode(
    vae: AutoencoderKL,
    x: torch.Tensor,
    tile: int = 512,
    overlap: int = 64,
    progress: bool = False,
    callback: TileCallback | None = None,
) -> DiagonalGaussian:
    """vae.encode on overlapping `tile`x`tile` pixel windows; the posterior moments are cross-faded in latent space.

    x: images in [-1, 1], (B, 3, H, W), H and W multiples of the VAE's downsample factor f; tile and overlap are
    pixels, multiples of f. An image no larger than one tile is encoded in one (exact) call."""
    f = vae.config.downsample_factor
    _check_tiles(tile, overlap, f, ("tile", "overlap"))
    if x.ndim != 4 or x.shape[1] != vae.config.in_channels or x.shape[2] % f or x.shape[3] % f:
        raise ValueError(
            f"tiled_encode input has shape {tuple(x.shape)}; expected (B, {vae.config.in_channels}, H, W) "
            f"with H and W multiples of {f}"
        )
    if x.shape[2] <= tile and x.shape[3] <= tile:
        return vae.encode(x)

    def moments(window: torch.Tensor) -> torch.Tensor:
        posterior = vae.encode(window)
        return torch.cat([posterior.mean, posterior.logvar], dim=1)

    blended = blend_tiles(
        moments,
        x,
        tile,
        overlap,
        2 * vae.config.latent_channels,
        1,
        f,
        overlap // f,
        progress,
        "VAE encode",
        callback,
    )
    return DiagonalGaussian(blended)


def tiled_decode(
    vae: AutoencoderKL,
    z: torch.Tensor,
    tile_latent: int = 64,
    overlap_latent: int = 8,
    progress: bool = False,
    callback: TileCallback | None = None,
) -> torch.Tensor:
    """vae.decode on overlapping `tile_latent`x`tile_latent` latent windows, cross-faded in pixel space.

    z: unscaled latents (B, latent_channels, h, w), as vae.decode takes. A latent no larger than one tile is
    decoded in one (exact) call."""
    _check_tiles(tile_latent, overlap_latent, 1, ("tile_latent", "overlap_latent"))
    if z.ndim != 4 or z.shape[1] != vae.config.latent_channels:
        raise ValueError(
            f"tiled_decode input has shape {tuple(z.shape)}; expected (B, {vae.config.latent_channels}, h, w)"
        )
    if z.shape[2] <= tile_latent and z.shape[3] <= tile_latent:
        return vae.decode(z)
    f = vae.config.downsample_factor
    channels = vae.config.out_channels
    return blend_tiles(
        vae.decode,
        z,
        tile_latent,
        overlap_latent,
        channels,
        f,
        1,
        overlap_latent * f,
        progress,
        "VAE decode",
        callback,
    )


def needs_tiling(height: int, width: int, tile: int = 512) -> bool:
    """Whether an image of height x width pixels spans more than one `tile`-pixel tile."""
    return height > tile or width > tile
