"""Train Paint by Example (options: configs/train.yaml; docs: README "Training").

python train.py experiment=tiny                       # a CPU smoke run
python train.py experiment=paper trainer=ddp          # the paper's run (8 GPUs x batch 4)
python train.py experiment=tiny ckpt_path=last        # resume the newest run of that experiment
python train.py -m experiment=tiny seed=1,2           # a sweep: every job is checked before the first trains
"""

import sys
from pathlib import Path

import hydra

CONFIG_DIR = Path(__file__).resolve().parent / "configs"


def fail(message: str, code: int = 1):
    print(message, file=sys.stderr)
    sys.exit(code)


@hydra.main(config_path="configs", config_name="train", version_base="1.3")
def main(cfg) -> None:
    from pbe.checkpoints.tensor_io import CheckpointError
    from pbe.training.run import train

    try:
        run_dir = train(cfg)
    except (ValueError, FileNotFoundError, FileExistsError, CheckpointError) as e:  # bad input: a message
        fail(f"error: {e}")
    print(f"run dir: {run_dir}")


if __name__ == "__main__":
    argv = sys.argv[1:]
    flags = [a for a in argv if a.startswith("-")]
    if flags and all(f in ("-m", "--multirun") for f in flags):
        from pbe.training.run import check_sweep

        try:
            check_sweep([a for a in argv if not a.startswith("-")], CONFIG_DIR)
        except (ValueError, OSError) as e:
            fail(f"error: {e}")
    main()
