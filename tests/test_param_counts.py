"""Full-size parameter counts equal diffusers' for the same configs, counted on the meta device (no memory, fast)."""

import torch

from pbe.models import AutoencoderKL, ExemplarEncoder, UNet, count_parameters


def test_full_size_unet_parameter_count_matches_diffusers():
    from diffusers import UNet2DConditionModel

    with torch.device("meta"):
        ours = UNet()
        ref = UNet2DConditionModel(in_channels=9, out_channels=4, cross_attention_dim=768)
    assert count_parameters(ours) == count_parameters(ref)
    assert round(count_parameters(ours) / 1e6, 1) == 859.5


def test_full_size_vae_parameter_count_matches_diffusers():
    from diffusers import AutoencoderKL as DiffusersAutoencoderKL

    with torch.device("meta"):
        ours = AutoencoderKL()
        ref = DiffusersAutoencoderKL(
            block_out_channels=(128, 256, 512, 512),
            down_block_types=("DownEncoderBlock2D",) * 4,
            up_block_types=("UpDecoderBlock2D",) * 4,
            latent_channels=4,
            layers_per_block=2,
        )
    assert count_parameters(ours) == count_parameters(ref)


def test_full_size_exemplar_encoder_parameter_count_matches_diffusers():
    from diffusers.pipelines.deprecated.paint_by_example.image_encoder import PaintByExampleImageEncoder
    from transformers import CLIPVisionConfig

    vit_l14 = CLIPVisionConfig(
        hidden_size=1024, intermediate_size=4096, num_attention_heads=16, num_hidden_layers=24, patch_size=14
    )
    with torch.device("meta"):
        ours = ExemplarEncoder()
        ref = PaintByExampleImageEncoder(vit_l14, proj_size=768)
    assert count_parameters(ours) == count_parameters(ref)
