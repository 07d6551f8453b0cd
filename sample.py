"""Exemplar-guided editing from the command line (``python sample.py --help``, or ``pbe-edit`` once installed;
options, defaults and checks: pbe/sample_args.py, or ``--help``).

    python sample.py weights=PATH image=photo.png mask=mask.png example=object.png out=outputs/result.png
    python sample.py weights=PATH image=photo.png mask=auto example=object.png steps=30 sampler=ddim paste_back=true
    python sample.py -m weights=PATH image=photo.png mask=mask.png example=object.png seed=1,2,3

Writes the result and ``<out stem>_grid.png`` (source | mask | exemplar | result); refuses to replace existing files
unless ``overwrite=true``, and never replaces an input. In a ``-m`` sweep (``-m`` goes before or after all key=value
arguments, not between them) every job is checked before the first runs, each run's files carry the swept values
(``result_seed1.png``, ...) and Hydra's ``multirun.yaml`` lands beside them. The command line lives in `pbe.cli`.
"""

import sys

try:  # Ctrl-C while the libraries load: one line, no traceback
    from pbe.cli import edit
except KeyboardInterrupt:
    print("interrupted", file=sys.stderr)
    sys.exit(130)

if __name__ == "__main__":
    edit()
