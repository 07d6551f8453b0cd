"""Exported training weights load in PaintByExamplePipeline and edit exactly as the model inside the module."""

import copy

import lightning as L
import numpy as np
import pytest
import torch
from PIL import Image
from training_helpers import compose

from pbe import PaintByExamplePipeline
from pbe.checkpoints.formats import detect_format, load_checkpoint
from pbe.convert import main as convert
from pbe.stages import train
from pbe.training.export import export_weights

HEADS = {
    "unet": {"num_heads": 2},
    "encoder": {"vision": {"heads": 2}},
}  # what the original layout cannot record


class KeepModule(L.Callback):
    def on_train_end(self, trainer, pl_module):
        self.module = pl_module


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    keep = KeepModule()
    run_dir = train(
        compose(f"run_dir={tmp_path_factory.mktemp('run')}", "trainer.max_steps=2", "ema.decay=0.5"), [keep]
    )
    return run_dir / "checkpoints" / "last.ckpt", keep.module


def edit(pipe):
    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8))
    mask = Image.fromarray(((np.arange(64)[None, :] > 30) * np.ones((64, 1)) * 255).astype(np.uint8))
    exemplar = Image.fromarray(rng.integers(0, 255, (48, 40, 3), dtype=np.uint8))
    out = pipe(
        image,
        mask,
        exemplar,
        num_inference_steps=3,
        generator=torch.Generator().manual_seed(1),
        output_type="np",
    )
    return out.images


def test_exported_weights_edit_exactly_like_the_module_model(tmp_path, trained):
    ckpt, module = trained
    assert detect_format(ckpt) == "lightning"
    export_weights(ckpt, tmp_path / "native", to="native")
    exported = PaintByExamplePipeline.from_pretrained(tmp_path / "native")
    reference = PaintByExamplePipeline(copy.deepcopy(module.model))
    assert np.array_equal(edit(exported), edit(reference))


def test_convert_cli_exports_a_training_checkpoint_to_every_layout(tmp_path, trained):
    ckpt, module = trained
    expected = {k: v for k, v in module.model.state_dict().items()}
    assert convert([str(ckpt), str(tmp_path / "hf"), "--to", "diffusers", "--no-progress"]) == 0
    assert convert([str(ckpt), str(tmp_path / "orig.ckpt"), "--to", "ldm", "--no-progress"]) == 0
    for path, overrides in ((tmp_path / "hf", None), (tmp_path / "orig.ckpt", HEADS)):
        state = load_checkpoint(path, overrides).state
        assert all(torch.equal(state[k], expected[k]) for k in expected), path


def test_ema_export_takes_the_runs_ema_weights(tmp_path, trained):
    ckpt, module = trained
    export_weights(ckpt, tmp_path / "ema", to="native", ema=True)
    state = load_checkpoint(tmp_path / "ema").state
    ema = module.ema_state()
    assert ema and all(torch.equal(state[k], ema[k]) for k in ema)
    assert not torch.equal(
        state["encoder.proj_out.weight"], module.model.state_dict()["encoder.proj_out.weight"]
    )
    assert torch.equal(
        state["vae.encoder.conv_in.weight"], module.model.state_dict()["vae.encoder.conv_in.weight"]
    )
