"""train.py end to end on the tiny preset: files written, loggers, and bad input refused before any step."""

import time

import lightning as L
import pytest
import torch
from hydra.errors import MissingConfigException
from PIL import Image
from training_helpers import compose, losses, run_python

from pbe.checkpoints.tensor_io import CheckpointError
from pbe.stages import train


class CountSteps(L.Callback):
    def __init__(self):
        self.steps = 0

    def on_train_batch_start(self, *args):
        self.steps += 1


def test_tiny_cli_run_writes_checkpoint_csv_log_and_sample_grid(tmp_path):
    t0 = time.perf_counter()
    out = run_python(["train.py", "experiment=tiny", "trainer.max_steps=20", f"output_root={tmp_path}"])
    seconds = time.perf_counter() - t0
    assert out.returncode == 0, out.stderr[-3000:]
    assert seconds < 120
    (run_dir,) = [p for p in tmp_path.iterdir() if p.is_dir()]
    ckpts = sorted(p.name for p in (run_dir / "checkpoints").iterdir())
    assert ckpts == ["last.ckpt", "step_0000010.ckpt", "step_0000020.ckpt"]
    logged = losses(run_dir)
    assert sorted(logged) == list(range(20))
    assert all(torch.isfinite(torch.tensor(float(v))) for v in logged.values())
    grid = Image.open(run_dir / "samples" / "step_0000020.png")
    # 2 items x (source | mask | exemplar | result) of 64 px with 2 px padding
    assert grid.size == (4 * 64 + 5 * 2, 2 * 64 + 3 * 2)
    assert (run_dir / "config.yaml").is_file() and (run_dir / ".hydra" / "config.yaml").is_file()


def test_wandb_logger_writes_an_offline_run(tmp_path):
    out = run_python(
        [
            "train.py",
            "experiment=tiny",
            "logger=wandb",
            "trainer.max_steps=2",
            "callbacks.sample_grid.every_n_steps=2",
            f"output_root={tmp_path}",
        ]
    )
    assert out.returncode == 0, out.stderr[-3000:]
    (run_dir,) = [p for p in tmp_path.iterdir() if p.is_dir()]
    (offline,) = (run_dir / "wandb").glob("offline-run-*")
    assert list(offline.glob("run-*.wandb"))  # the run's event log, for `wandb sync`
    assert list(offline.glob("files/media/images/samples_*.png"))  # the sample grid went to the logger


def test_unknown_experiment_is_refused_by_name():
    with pytest.raises(MissingConfigException, match="experiment/no_such_experiment"):
        compose("experiment=no_such_experiment", fast=False)


def test_missing_data_path_fails_before_any_step(tmp_path):
    counter = CountSteps()
    cfg = compose(f"run_dir={tmp_path / 'run'}")
    cfg.data.source = {"kind": "jsonl", "manifest": str(tmp_path / "missing.jsonl")}
    with pytest.raises(ValueError, match="manifest: no such file .*missing.jsonl"):
        train(cfg, callbacks=[counter])
    assert counter.steps == 0 and not (tmp_path / "run" / "checkpoints").exists()


def test_global_batch_that_does_not_divide_fails_before_any_step(tmp_path):
    counter = CountSteps()
    cfg = compose(f"run_dir={tmp_path}", "loader.global_batch_size=3", "trainer.accumulate_grad_batches=2")
    with pytest.raises(ValueError, match="global_batch_size=3 does not divide"):
        train(cfg, callbacks=[counter])
    assert counter.steps == 0


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("tiny_run")
    train(compose(f"run_dir={run_dir}", "trainer.max_steps=1"))
    return run_dir / "checkpoints" / "last.ckpt"


def test_resuming_a_checkpoint_of_another_architecture_fails_before_any_step(tmp_path, tiny_checkpoint):
    counter = CountSteps()
    cfg = compose(f"run_dir={tmp_path}", f"ckpt_path={tiny_checkpoint}", "model.config.unet.channels=[32,32]")
    with pytest.raises(ValueError, match="another architecture.*unet.channels"):
        train(cfg, callbacks=[counter])
    assert counter.steps == 0


def test_fine_tuning_from_a_checkpoint_of_another_architecture_fails_before_any_step(
    tmp_path, tiny_checkpoint
):
    counter = CountSteps()
    cfg = compose(
        f"run_dir={tmp_path}",
        f"+model.init.checkpoint={tiny_checkpoint}",
        "model.config.unet.num_res_blocks=2",
    )
    with pytest.raises(ValueError, match="another architecture.*num_res_blocks"):
        train(cfg, callbacks=[counter])
    assert counter.steps == 0


def test_a_file_that_is_no_checkpoint_is_refused(tmp_path):
    bogus = tmp_path / "bogus.ckpt"
    torch.save({"hello": torch.zeros(1)}, bogus)
    cfg = compose(f"run_dir={tmp_path / 'run'}", f"ckpt_path={bogus}")
    with pytest.raises(CheckpointError, match="not a pbe Lightning training checkpoint"):
        train(cfg)


def test_ckpt_path_last_without_any_run_is_a_clear_error(tmp_path):
    cfg = compose(f"output_root={tmp_path}", "ckpt_path=last")
    with pytest.raises(FileNotFoundError, match="ckpt_path=last"):
        train(cfg)


def test_data_that_does_not_fit_the_model_fails_before_any_step(tmp_path):
    cfg = compose(f"run_dir={tmp_path}", "data.augment.exemplar_size=48")
    with pytest.raises(ValueError, match="exemplar_size=48 but the model's vision tower takes 32x32"):
        train(cfg)


def test_every_job_of_a_training_sweep_is_checked_before_the_first_trains(tmp_path):
    from pathlib import Path

    from pbe.stages import check_sweep

    configs = Path(__file__).resolve().parents[1] / "configs"
    overrides = ["experiment=tiny", f"output_root={tmp_path}", "loader.batch_size=2,0"]
    with pytest.raises(ValueError, match=r"sweep job 1 \(.*loader.batch_size=0\): loader.batch_size must be"):
        check_sweep(overrides, configs)
    with pytest.raises(ValueError, match="sweep job 0 .*data.source.manifest"):
        check_sweep(["experiment=tiny", "data=jsonl", "seed=1,2"], configs)
    assert check_sweep(["experiment=tiny", "seed=1,2,3"], configs) == 3
    assert list(tmp_path.iterdir()) == []  # nothing trained, nothing written


def test_a_run_dir_holding_the_users_files_is_refused_before_anything_is_written(tmp_path):
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "config.yaml").write_text("my settings\n")
    (folder / "thesis.tex").write_text("precious\n")
    with pytest.raises(
        ValueError, match=r"run_dir: .*mine holds files a training run did not write \(thesis.tex\)"
    ):
        train(compose("experiment=tiny", f"run_dir={folder}"))
    assert sorted(p.name for p in folder.iterdir()) == ["config.yaml", "thesis.tex"]
    assert (folder / "config.yaml").read_text() == "my settings\n"
