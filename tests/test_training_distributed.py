"""DDP and FSDP on 2 CPU processes (gloo): the same training as one process on the same global batch."""

import pytest
import torch
from training_helpers import compose, losses, run_python

from pbe.checkpoints.lightning_ckpt import read_lightning_checkpoint
from pbe.stages import train

STEPS = 3
COMMON = [f"trainer.max_steps={STEPS}", "trainer.precision=32", "callbacks.checkpoint.every_n_steps=1000"]
TWO_CPU_PROCESSES = ["trainer.accelerator=cpu", "trainer.devices=2", "trainer.process_group_backend=gloo"]

# Lightning's launcher re-runs this script once per extra rank, so it must be a file
SCRIPT = """
import sys
import lightning as L
import torch
from training_helpers import compose
from pbe.stages import train


class DumpWeights(L.Callback):
    def on_train_end(self, trainer, pl_module):
        state = {k: v.detach().clone() for k, v in pl_module.model.state_dict().items()}
        if not any(hasattr(v, "to_local") for v in state.values()):  # sharded (FSDP) ranks hold no full copy
            torch.save(state, f"{sys.argv[1]}/rank{trainer.global_rank}.pt")


train(compose(*sys.argv[2:]), callbacks=[DumpWeights()])
"""


@pytest.fixture(scope="module")
def single_process(tmp_path_factory):
    """The reference: one process, batch 4 = the 2 x 2 global batch of the distributed runs."""
    run_dir = train(compose(*COMMON, "loader.batch_size=4", f"run_dir={tmp_path_factory.mktemp('single')}"))
    return losses(run_dir), read_lightning_checkpoint(run_dir / "checkpoints" / "last.ckpt")["state"]


def run_two_processes(tmp_path, strategy: str):
    script = tmp_path / "run.py"
    script.write_text(SCRIPT)
    run_dir = tmp_path / "run"
    args = [
        str(script),
        str(tmp_path),
        *COMMON,
        f"trainer={strategy}",
        *TWO_CPU_PROCESSES,
        "loader.batch_size=2",
    ]
    out = run_python([*args, f"run_dir={run_dir}"], timeout=400)
    assert out.returncode == 0, out.stderr[-4000:]
    return run_dir


def assert_same_training(run_dir, single_process, atol):
    expected_losses, expected_state = single_process
    got = losses(run_dir)
    assert sorted(got) == sorted(expected_losses) == list(range(STEPS))
    for step, value in got.items():
        assert float(value) == pytest.approx(float(expected_losses[step]), rel=1e-5)
    state = read_lightning_checkpoint(run_dir / "checkpoints" / "last.ckpt")["state"]
    assert state.keys() == expected_state.keys()
    worst = max((state[k] - expected_state[k]).abs().max().item() for k in state)
    assert worst < atol


def test_ddp_two_cpu_processes_match_one_process_and_each_other(tmp_path, single_process):
    run_dir = run_two_processes(tmp_path, "ddp")
    rank0, rank1 = torch.load(tmp_path / "rank0.pt"), torch.load(tmp_path / "rank1.pt")
    assert all(torch.equal(rank0[k], rank1[k]) for k in rank0)  # identical weights on both ranks
    assert_same_training(run_dir, single_process, atol=1e-4)


def test_fsdp_two_cpu_processes_train_like_one_process(tmp_path, single_process):
    run_dir = run_two_processes(tmp_path, "fsdp")
    assert not list(tmp_path.glob("rank*.pt"))  # the ranks held shards, not full copies
    assert_same_training(run_dir, single_process, atol=1e-4)
