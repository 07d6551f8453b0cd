"""Exemplar-guided editing from the command line (``python sample.py --help``; options and defaults:
configs/sample.yaml).

    python sample.py weights=PATH image=photo.png mask=mask.png example=object.png out=outputs/result.png
    python sample.py weights=PATH image=photo.png mask=auto example=object.png steps=30 sampler=ddim paste_back=true
    python sample.py -m weights=PATH image=photo.png mask=mask.png example=object.png seed=1,2,3

Writes the result and ``<out stem>_grid.png`` (source | mask | exemplar | result); refuses to replace existing files
unless ``overwrite=true``, and never replaces an input. In a ``-m`` sweep (``-m`` goes before or after all key=value
arguments, not between them) every job is checked before the first runs, each run's files carry the swept values
(``result_seed1.png``, ...) and Hydra's ``multirun.yaml`` lands beside them.
"""

import sys

try:  # Ctrl-C while the libraries load: one line, no traceback
    import warnings
    from pathlib import Path

    import hydra

    # Importing pbe.sample_cli also registers the ${pbe_parent:...} resolver that configs/sample.yaml uses.
    from pbe.sample_cli import check_command_line, quote_paths, run_hydra_job, usage
except KeyboardInterrupt:
    print("interrupted", file=sys.stderr)
    sys.exit(130)

CONFIG_DIR = Path(__file__).resolve().parent / "configs"
BAD_INPUT = (
    ValueError,
    OSError,
)  # FileNotFoundError, FileExistsError, a full disk: a message, not a traceback


def fail(message: str, code: int = 1):
    print(message, file=sys.stderr)
    sys.exit(code)


def one_line_warning(message, category, filename, lineno, line=None) -> str:
    return f"warning: {message}\n"


@hydra.main(config_path="configs", config_name="sample", version_base="1.3")
def main(cfg) -> None:
    try:
        run_hydra_job(cfg)
    except BAD_INPUT as e:
        fail(f"error: {e}")
    except KeyboardInterrupt:
        fail("interrupted: no output was written", 130)


if __name__ == "__main__":
    warnings.formatwarning = one_line_warning
    try:
        sys.argv[1:] = quote_paths(sys.argv[1:])  # image=chät.png, image=a=b.png: quoted for Hydra
        if "--help" in sys.argv or "-h" in sys.argv:
            print(usage(CONFIG_DIR / "sample.yaml"))
            sys.exit(0)
        check_command_line(
            sys.argv[1:], CONFIG_DIR
        )  # every job of a sweep, before Hydra writes or runs anything
        main()
    except BAD_INPUT as e:
        fail(f"error: {e}")
    except KeyboardInterrupt:
        fail("interrupted: no output was written", 130)
