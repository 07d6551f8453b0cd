"""The objects model's recipe, judge and report (pbe.recipes.objects) on the tiny fetched-like folder that
tests/test_data_objects.py draws, with a few steps per stage; and the committed objects model."""

from pathlib import Path

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir
from test_data_objects import write_folder

from pbe.recipes.objects.contrastive import info_nce

REPO = Path(__file__).resolve().parents[1]
TINY_RECIPE = [
    "experiment=objects",
    "objects.autoencoder.steps=2",
    "objects.autoencoder.batch_size=4",
    "objects.tower.steps=2",
    "objects.tower.batch_size=4",
    "trainer.max_steps=2",
    "trainer.log_every_n_steps=1",
    "callbacks.checkpoint.every_n_steps=1",
    "loader.batch_size=4",
    "loader.num_workers=0",
    "data.source.num_samples=16",
    "data.source.min_size=48",
    "data.source.max_size=64",
    "data.source.object_cache_size=32",
    "data.source.background_cache_size=64",
    "data.augment.image_size=32",
    "data.augment.exemplar_size=32",
]

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return write_folder(tmp_path_factory.mktemp("objects"))


def recipe_config(folder: Path, run_dir: Path, *extra: str):
    with initialize_config_dir(str(REPO / "configs"), version_base="1.3"):
        return compose(
            "train", overrides=[*TINY_RECIPE, f"data.source.root={folder}", f"run_dir={run_dir}", *extra]
        )


@pytest.fixture(scope="module")
def recipe_run(folder, tmp_path_factory):
    from pbe.stages import train

    run_dir = tmp_path_factory.mktemp("recipe") / "run"
    with pytest.warns(UserWarning):  # the folder's single-style code point
        train(recipe_config(folder, run_dir))
    return run_dir


def test_info_nce_does_not_count_the_same_code_point_as_a_negative():
    a = torch.nn.functional.normalize(torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]]), dim=-1)
    b = a.clone()
    # samples 0 and 2 are one code point: their identical embeddings are not a wrong match
    assert info_nce(a, b, ["x", "y", "x"], 0.1) < 0.01
    assert info_nce(a, b, ["x", "y", "z"], 0.1) > 0.3  # log(2) for each of the two confused rows


def test_the_recipe_writes_a_native_model_with_its_training_resolution(recipe_run):
    from pbe.checkpoints.formats import load_checkpoint

    ckpt = load_checkpoint(recipe_run / "model")
    assert ckpt.train_resolution == 32
    assert ckpt.config.unet.in_channels == 9
    for stage_file in ("autoencoder/vae.safetensors", "vision/vision.safetensors"):
        assert (recipe_run / stage_file).is_file()


def test_the_tower_stage_records_held_out_retrieval(recipe_run):
    import json

    from pbe.checkpoints.tensor_io import read_safetensors

    _, meta = read_safetensors(recipe_run / "vision" / "vision.safetensors")
    figures = json.loads(meta["retrieval"])
    assert set(figures) == {"training_styles", "reserved"}
    assert all(0 <= f["top1"] <= 1 and f["n"] > 0 for f in figures.values())


def test_the_recipe_resumes_without_running_finished_stages_again(recipe_run, folder, capsys):
    from pbe.stages import train

    vae = recipe_run / "autoencoder" / "vae.safetensors"
    before = vae.stat().st_mtime_ns
    with pytest.warns(UserWarning):
        train(recipe_config(folder, recipe_run, "trainer.max_steps=3"))
    out = capsys.readouterr().out
    assert "autoencoder: done in an earlier run" in out and "vision tower: done in an earlier run" in out
    assert "diffusion: resuming from" in out
    assert vae.stat().st_mtime_ns == before
    assert (recipe_run / "checkpoints" / "step_0000003.ckpt").is_file()


def test_the_judge_trains_and_picks_a_candidate(folder, tmp_path):
    from pbe.data.objects import heldout_scenes
    from pbe.recipes.objects.judge import load_judge, pick, train_judge

    path = train_judge(folder, tmp_path / "judge.safetensors", image_size=32, steps=2, batch_size=4, pairs=16)
    judge, meta = load_judge(path)
    assert meta["options"]["steps"] == 2 and "training_styles" in meta["retrieval"]
    scene = heldout_scenes(folder, 1, size=32)[0]
    candidates = [c.image for c in scene.candidates]
    choice = pick(
        judge, scene.image.float() / 127.5 - 1, torch.tensor(scene.box, dtype=torch.float32), candidates
    )
    assert 0 <= choice < len(candidates)


def test_the_report_scores_identity_colour_and_background(recipe_run, folder, tmp_path):
    from pbe.recipes.objects.evaluate import Settings
    from pbe.recipes.objects.judge import train_judge
    from pbe.recipes.objects.scorecard import objects_table, run_objects_report

    judge = train_judge(folder, tmp_path / "judge.safetensors", image_size=32, steps=1, batch_size=4, pairs=8)
    settings = Settings(steps=2, batch=4)
    report = run_objects_report(
        recipe_run / "model", folder, tmp_path / "out", judge, 4, settings, 1, recipe_run, 2
    )
    # the tiny folder's reserved style draws everything in one colour: no other-colour candidate, not scored
    assert list(report["sets"]) == ["training styles"]
    for s in report["sets"].values():
        assert (
            0 <= s["identity"]["same_colour"]["mean"] <= 1
            and s["identity"]["same_colour"]["n"] == 2 * s["edits"]
        )
        assert s["colour"]["ratio"] > 0 and np.isfinite(s["background_psnr"]["mean"])
    steps = [r["step"] for r in report["curve"]]  # one per step_*.ckpt (the resume test may add a third)
    assert steps[:2] == [1, 2] and steps == sorted(steps)
    assert (tmp_path / "out" / "heldout_edits_0.png").is_file()
    assert "identity, same-colour candidates" in objects_table(report)


def test_an_ablation_reuses_the_frozen_parts_of_a_trained_model(recipe_run, folder, tmp_path):
    from pbe.checkpoints.formats import load_checkpoint
    from pbe.stages import train

    extra = [f"objects.frozen_from={recipe_run / 'model'}", "data.source.exemplar_style=same"]
    run_dir = train(recipe_config(folder, tmp_path / "ablation", *extra))
    assert not (run_dir / "autoencoder").exists() and not (run_dir / "vision").exists()
    trained, ablation = load_checkpoint(recipe_run / "model").state, load_checkpoint(run_dir / "model").state
    frozen = [k for k in trained if k.startswith(("vae.", "encoder.vision."))]
    assert frozen and all(torch.equal(trained[k], ablation[k]) for k in frozen)


def test_the_ablation_report_pairs_trials_across_models(recipe_run, folder, tmp_path, capsys):
    from pbe.recipes.objects.ablation import run_objects_ablation
    from pbe.recipes.objects.evaluate import Settings
    from pbe.recipes.objects.judge import train_judge

    judge = train_judge(folder, tmp_path / "judge.safetensors", image_size=32, steps=1, batch_size=4, pairs=8)
    models = {
        "checkpoint": str(recipe_run / "checkpoints" / "last.ckpt"),  # exported with the run's frozen parts
        "model": str(recipe_run / "model"),  # the same weights: every paired difference is exactly 0
    }
    settings = Settings(steps=2, batch=4)
    report = run_objects_ablation(models, folder, judge, tmp_path / "out", 3, settings, tmp_path / "cache")
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == ["checkpoint.npz", "model.npz"]
    capsys.readouterr()
    again = run_objects_ablation(models, folder, judge, tmp_path / "out2", 3, settings, tmp_path / "cache")
    assert capsys.readouterr().out.count("figures from") == 2  # nothing generated again
    assert again["sets"] == report["sets"]
    rows = report["sets"]["training styles"]
    assert rows["checkpoint"]["same_colour"]["n"] == rows["model"]["same_colour"]["n"] == 6
    for k in ("same_colour", "other_colour", "copy_paste"):
        assert rows["model"]["vs_reference"][k]["mean"] == 0.0
    assert (tmp_path / "out" / "objects_ablation_edits.png").is_file()
    with pytest.raises(ValueError, match="at least two"):
        run_objects_ablation({"one": str(recipe_run / "model")}, folder, judge, tmp_path, 3, Settings())
    with pytest.raises(FileNotFoundError, match="--model gone"):
        run_objects_ablation(
            {**models, "gone": str(tmp_path / "nope")}, folder, judge, tmp_path, 3, Settings()
        )


def test_the_committed_objects_model_is_the_default_and_records_its_resolution():
    from pbe.assets import default_model_path, objects_model_path
    from pbe.checkpoints.formats import load_checkpoint

    assert default_model_path() == objects_model_path()
    ckpt = load_checkpoint(objects_model_path())
    assert ckpt.train_resolution == 64 and ckpt.config.unet.in_channels == 9
    assert (objects_model_path() / "model.safetensors").stat().st_size <= 40e6


def test_the_demo_paints_held_out_objects_into_the_four_photos(tmp_path):
    from PIL import Image

    from pbe.recipes.objects.demo import PHOTO_EXEMPLARS, demo_items, run_objects_demo

    result = run_objects_demo(out=tmp_path / "grid.png", steps=2)
    items = demo_items()
    assert result["edits"] == len(items) == sum(len(v) for v in PHOTO_EXEMPLARS.values())
    assert any("(noto)" in item["name"] for item in items)  # the unseen style is shown
    grid = Image.open(tmp_path / "grid.png")
    assert grid.height > 256 * len(items)  # one 256-px row per edit
