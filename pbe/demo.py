"""`make demo`: the objects model trained here paints held-out objects into four photos (outputs/demo/grid.png).

    python -m pbe.demo [--steps 25] [--padding-mask-crop auto|N|none] [--small]
    python -m pbe.demo --params [--latent-size 32] [--batch 1] [--dtype fp32|bf16] [--tiny]

--padding-mask-crop (default auto): a photo larger than the model's training resolution (64 px for the small model) is
edited as a square around its mask at that resolution, pasted back (as sample.py and the app do); N: always crop with N
pixels of margin; none: edit each photo whole, at its own size. --small: the small model's demo instead (synthetic
scenes and the photos, pbe/assets/small).

With --params (or --tiny): build the full-size Paint-by-Example model, count its parameters, time one UNet forward.

Counts use the meta device (no memory). The timed forward builds a real UNet with random weights on the CPU
(or the GPU when one is present): random weights, so the output is noise; the point is shape and speed.
To edit a photo with trained weights, use `python sample.py --help` or `pbe.PaintByExamplePipeline`.
"""

from __future__ import annotations

import argparse
import time

import torch

from pbe.checkpoints.formats import DTYPES
from pbe.models import PaintByExample, PaintByExampleConfig, UNet, count_parameters
from pbe.models.clip_vision import VisionConfig
from pbe.models.exemplar_encoder import ExemplarEncoderConfig
from pbe.models.unet import UNetConfig
from pbe.models.vae import VAEConfig


def tiny_config() -> PaintByExampleConfig:
    """A few-MB model with the full architecture's structure, for tests and quick looks."""
    vision = VisionConfig(image_size=32, patch_size=4, width=32, layers=4, heads=4, mlp_dim=64)
    return PaintByExampleConfig(
        unet=UNetConfig(channels=(32, 64), attention_levels=(True, True), num_heads=4, context_dim=32),
        vae=VAEConfig(channels=(32, 64)),
        encoder=ExemplarEncoderConfig(vision=vision, mapper_depth=1, context_dim=32),
    )


def _crop_setting(value: str) -> int | str | None:
    """--padding-mask-crop, checked as sample.py checks padding_mask_crop (argparse reports the error)."""
    from pbe.pipeline import padding_mask_crop_setting

    try:
        return padding_mask_crop_setting(value, "--padding-mask-crop")
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(
        prog="python -m pbe.demo",
        description="Paint held-out objects into four photos with the objects model trained here (default; --small: "
        "the small model on synthetic scenes and the photos), or with "
        "--params build the full-size Paint-by-Example model (SD v1 UNet, KL autoencoder, CLIP ViT-L/14 exemplar "
        "encoder), print each part's parameter count and time one forward pass of a UNet with random weights.",
        epilog="To edit a photo with trained weights: python sample.py --help, or pbe.PaintByExamplePipeline.",
    )
    parser.add_argument(
        "--latent-size", type=int, default=32, help="latent height and width (image size / 8; default 32)"
    )
    parser.add_argument("--batch", type=int, default=1, help="batch size of the timed forward (default 1)")
    parser.add_argument(
        "--dtype", choices=sorted(DTYPES), default="fp32", help="weights and inputs (default fp32)"
    )
    parser.add_argument(
        "--tiny", action="store_true", help="use the tiny test configuration (implies --params)"
    )
    parser.add_argument(
        "--params",
        action="store_true",
        help="parameter counts and the timed forward only; without it (and without --tiny) the objects model "
        "edits four photos into outputs/demo/grid.png",
    )
    parser.add_argument(
        "--small", action="store_true", help="the small model's demo (synthetic scenes and the four photos)"
    )
    parser.add_argument(
        "--steps", type=int, default=25, help="sampling steps of the editing demo (default 25)"
    )
    parser.add_argument(
        "--padding-mask-crop",
        type=_crop_setting,
        default="auto",
        help="auto (default): edit a square around the mask at the model's training resolution when the photo is "
        "larger than it, pasted back; N: always, with N pixels of margin; none: edit the whole photo",
    )
    args = parser.parse_args(argv)
    if not (args.params or args.tiny):
        if args.small:
            from pbe.recipes.small.demo import run_demo  # the small model trained here (pbe/assets/small)

            return run_demo(steps=args.steps, padding_mask_crop=args.padding_mask_crop)
        from pbe.recipes.objects.demo import run_objects_demo  # the objects model (pbe/assets/objects)

        return run_objects_demo(steps=args.steps, padding_mask_crop=args.padding_mask_crop)
    if args.latent_size < 1 or args.batch < 1:
        parser.error("--latent-size and --batch must be positive")

    config = tiny_config() if args.tiny else PaintByExampleConfig()
    with torch.device("meta"):
        model = PaintByExample(config)
    counts = {
        "unet": count_parameters(model.unet),
        "vae": count_parameters(model.vae),
        "exemplar encoder (CLIP tower)": count_parameters(model.encoder.vision),
        "exemplar encoder (mapper, norm, projection, uncond vector)": count_parameters(model.encoder)
        - count_parameters(model.encoder.vision),
    }
    print(
        "Paint-by-Example model built from its config" + (" (tiny)" if args.tiny else " (SD v1 + ViT-L/14)")
    )
    for name, n in counts.items():
        print(f"  {name:<60s} {n / 1e6:10.2f} M")
    print(f"  {'total':<60s} {sum(counts.values()) / 1e6:10.2f} M")

    device = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = DTYPES[args.dtype]
    t0 = time.perf_counter()
    unet = UNet(config.unet).to(device=device, dtype=dtype).eval()
    built = time.perf_counter() - t0
    s = args.latent_size
    x = torch.randn(args.batch, config.unet.in_channels, s, s, device=device, dtype=dtype)
    context = torch.randn(args.batch, 1, config.unet.context_dim, device=device, dtype=dtype)
    unet.check_input(x)  # clear error for a latent size the UNet cannot downsample evenly
    with torch.inference_mode():
        t0 = time.perf_counter()
        out = unet(x, torch.tensor([500], device=device), context)
        if device == "cuda":
            torch.cuda.synchronize()
        elapsed = time.perf_counter() - t0
    print(f"UNet with random weights built on {device} in {built:.1f} s")
    print(
        f"One UNet forward, batch {args.batch}, {s}x{s} latents ({s * 8}x{s * 8} pixels), {args.dtype}: "
        f"{elapsed:.2f} s -> output {tuple(out.shape)}"
    )
    return {"forward_s": elapsed, **counts}


if __name__ == "__main__":
    main()
