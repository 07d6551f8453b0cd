"""Train Paint by Example (``pbe-train`` once installed; options: configs/train.yaml; docs: docs/training.md).

python train.py experiment=tiny                       # a CPU smoke run
python train.py experiment=paper trainer=ddp          # the paper's run (8 GPUs x batch 4)
python train.py experiment=tiny ckpt_path=last        # resume the newest run of that experiment
python train.py -m experiment=tiny seed=1,2           # a sweep: every job is checked before the first trains

The command line lives in `pbe.cli`; it composes the config and calls `pbe.stages.train`.
"""

from pbe.cli import train

if __name__ == "__main__":
    train()
