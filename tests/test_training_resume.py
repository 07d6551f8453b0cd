"""A run killed after step k and resumed with ckpt_path=last reaches step 2k exactly as an uninterrupted run."""

import pytest
import torch
from training_helpers import compose, losses, run_python

from pbe.checkpoints.lightning_ckpt import read_lightning_checkpoint
from pbe.stages import train

K = 5
# 12 scenes at batch 2: 6 batches per epoch, so the resumed part crosses an epoch boundary; one loader worker
COMMON = [
    f"trainer.max_steps={2 * K}",
    f"callbacks.checkpoint.every_n_steps={K}",
    "data.source.num_scenes=12",
    "loader.num_workers=1",
    "objective.cfg_dropout_mode=sample",
]

KILLED_RUN = f"""
import os, signal, sys
import lightning as L
from training_helpers import compose
from pbe.stages import train


class KillAfterCheckpoint(L.Callback):
    def on_train_batch_start(self, trainer, *args):
        if trainer.global_step == {K}:  # step {K} and its checkpoint are done
            os.kill(os.getpid(), signal.SIGKILL)


train(compose(*sys.argv[1:]), callbacks=[KillAfterCheckpoint()])
"""


@pytest.fixture(scope="module", autouse=True)
def _one_thread(one_torch_thread):
    """Exact equality of float losses needs the same reduction order in both runs: one torch thread."""
    yield


def test_killed_and_resumed_run_matches_an_uninterrupted_one_exactly(tmp_path):
    straight = train(compose(*COMMON, f"output_root={tmp_path / 'straight'}"))

    root = tmp_path / "killed"
    out = run_python(["-c", KILLED_RUN, *COMMON, f"output_root={root}"])
    assert out.returncode == -9, out.stderr[-3000:]  # SIGKILL: no clean shutdown
    (killed,) = root.iterdir()
    assert (
        read_lightning_checkpoint(killed / "checkpoints" / "last.ckpt", with_state=False)["global_step"] == K
    )

    resumed = train(compose(*COMMON, f"output_root={root}", "ckpt_path=last"))
    assert resumed != killed
    expected = losses(straight)
    got = losses(resumed)
    assert sorted(got) == list(range(K, 2 * K))
    assert got == {step: expected[step] for step in got}  # same per-step loss, to the last digit

    a = read_lightning_checkpoint(straight / "checkpoints" / "last.ckpt")
    b = read_lightning_checkpoint(resumed / "checkpoints" / "last.ckpt")
    assert a["global_step"] == b["global_step"] == 2 * K
    assert all(torch.equal(a["state"][k], b["state"][k]) for k in a["state"])
