"""python -m pbe.eval: the benchmark runner (options and defaults: configs/eval.yaml)."""

import sys
from pathlib import Path

import hydra

CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs"


@hydra.main(config_path=str(CONFIG_DIR), config_name="eval", version_base="1.3")
def main(cfg) -> None:
    from pbe.eval.runner import run_eval

    try:
        results = run_eval(cfg)
    except (ValueError, FileNotFoundError, FileExistsError) as e:  # bad input: a message, not a traceback
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)
    if results is not None:
        out = Path(cfg.out)
        print((out / "table.md").read_text(), end="")
        print(f"wrote {out / 'results.json'}, {out / 'table.md'}, {out / 'contact_sheet.png'}")


if __name__ == "__main__":
    main()
