"""Train Paint by Example (options: configs/train.yaml; docs: README "Training").

python train.py experiment=tiny                       # a CPU smoke run
python train.py experiment=paper trainer=ddp          # the paper's run (8 GPUs x batch 4)
python train.py experiment=tiny ckpt_path=last        # resume the newest run of that experiment
"""

import sys

import hydra


@hydra.main(config_path="configs", config_name="train", version_base="1.3")
def main(cfg) -> None:
    from pbe.checkpoints.tensor_io import CheckpointError
    from pbe.training.run import train

    try:
        run_dir = train(cfg)
    except (ValueError, FileNotFoundError, FileExistsError, CheckpointError) as e:  # bad input: a message
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)
    print(f"run dir: {run_dir}")


if __name__ == "__main__":
    main()
