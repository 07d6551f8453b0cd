"""The Hydra command lines `pbe-edit` (= `python sample.py`) and `pbe-train` (= `python train.py`), with the
configs shipped in the package (`pbe/configs/`; the checkout's top-level `configs/` links there). They only compose
the config and call into the package: `pbe.sample_cli.run_hydra_job`, `pbe.stages.train`.
The other console scripts are `pbe-convert` (`pbe.convert`), `pbe-eval` (`pbe.eval`) and `pbe-app` (`pbe.app`)."""

import sys
import warnings
from pathlib import Path

CONFIG_DIR = Path(__file__).resolve().parent / "configs"
# FileNotFoundError, FileExistsError, a full disk: a message, not a traceback
BAD_INPUT = (ValueError, OSError)


def fail(message: str, code: int = 1):
    print(message, file=sys.stderr)
    sys.exit(code)


def one_line_warning(message, category, filename, lineno, line=None) -> str:
    return f"warning: {message}\n"


# ----------------------------------------------------------------------------------------------- pbe-edit


def hydra_main(config_name: str, job):
    """``job`` as a Hydra main over the packaged configs (Hydra imported here: Ctrl-C while it loads is one line)."""
    try:
        import hydra
    except KeyboardInterrupt:
        fail("interrupted", 130)
    return hydra.main(config_path=str(CONFIG_DIR), config_name=config_name, version_base="1.3")(job)


def _edit_job(cfg) -> None:
    from pbe.sample_cli import run_hydra_job

    try:
        run_hydra_job(cfg)
    except BAD_INPUT as e:
        fail(f"error: {e}")
    except KeyboardInterrupt:
        fail("interrupted: no output was written", 130)


def edit() -> None:
    """`pbe-edit` / `python sample.py`: options and defaults in pbe.sample_args.SampleArgs (`--help`)."""
    warnings.formatwarning = one_line_warning
    try:  # Ctrl-C while the libraries load: one line, no traceback
        # Importing pbe.sample_cli also registers the options (sample_options) and the ${pbe_parent:...} resolver
        # that configs/sample.yaml uses.
        from pbe.sample_cli import check_command_line, quote_paths, usage
    except KeyboardInterrupt:
        fail("interrupted", 130)
    try:
        sys.argv[1:] = quote_paths(sys.argv[1:])  # image=chät.png, image=a=b.png: quoted for Hydra
        if "--help" in sys.argv or "-h" in sys.argv:
            print(usage())
            sys.exit(0)
        check_command_line(
            sys.argv[1:], CONFIG_DIR
        )  # every job of a sweep, before Hydra writes or runs anything
        hydra_main("sample", _edit_job)()
    except BAD_INPUT as e:
        fail(f"error: {e}")
    except KeyboardInterrupt:
        fail("interrupted: no output was written", 130)


# ----------------------------------------------------------------------------------------------- pbe-train


def _train_job(cfg) -> None:
    from pbe.checkpoints.tensor_io import CheckpointError
    from pbe.stages import train as train_stage

    try:
        run_dir = train_stage(cfg)
    except (ValueError, FileNotFoundError, FileExistsError, CheckpointError) as e:  # bad input: a message
        fail(f"error: {e}")
    print(f"run dir: {run_dir}")


def train() -> None:
    """`pbe-train` / `python train.py`: options in configs/train.yaml; a `-m` sweep is checked job by job first."""
    argv = sys.argv[1:]
    flags = [a for a in argv if a.startswith("-")]
    if flags and all(f in ("-m", "--multirun") for f in flags):
        from pbe.stages import check_sweep

        try:
            check_sweep([a for a in argv if not a.startswith("-")], CONFIG_DIR)
        except (ValueError, OSError) as e:
            fail(f"error: {e}")
    hydra_main("train", _train_job)()
