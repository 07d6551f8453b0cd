"""python -m pbe.eval: the benchmark runner (options: configs/eval.yaml; the edit settings' defaults and checks:
pbe.eval.runner.EditSettings)."""

import sys
from pathlib import Path

import hydra

import pbe.eval.runner  # noqa: F401 (registers the edit settings, configs/eval.yaml's base, before Hydra composes)

CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs"  # shipped in the package
# FileNotFoundError, FileExistsError, a full disk: a message, not a traceback
BAD_INPUT = (ValueError, OSError)


def fail(message: str, code: int = 1):
    print(message, file=sys.stderr)
    sys.exit(code)


@hydra.main(config_path=str(CONFIG_DIR), config_name="eval", version_base="1.3")
def main(cfg) -> None:
    from pbe.eval.runner import run_eval

    try:
        results = run_eval(cfg)
    except BAD_INPUT as e:
        fail(f"error: {e}")
    except KeyboardInterrupt:
        fail("interrupted: finished results are kept; rerun the same command to resume", 130)
    if results is not None:
        out = Path(cfg.out)
        print((out / "table.md").read_text(), end="")
        print(f"wrote {out / 'results.json'}, {out / 'table.md'}, {out / 'contact_sheet.png'}")


if __name__ == "__main__":
    main()
