"""Exemplar-guided editing from the command line (options and defaults: configs/sample.yaml).

    python sample.py weights=PATH image=photo.png mask=mask.png example=object.png out=outputs/result.png
    python sample.py weights=PATH image=photo.png mask=auto example=object.png steps=30 sampler=ddim paste_back=true
    python sample.py -m weights=PATH image=photo.png mask=mask.png example=object.png seed=1,2,3

Writes the result and ``<out stem>_grid.png`` (source | mask | exemplar | result); refuses to replace existing files
unless ``overwrite=true``. In a ``-m`` sweep (``-m`` goes before or after all key=value arguments, not between them)
each run's files carry the swept values: ``result_seed1.png``, ... and Hydra's ``multirun.yaml`` lands beside them.
"""

import sys

import hydra

# Importing pbe.sample_cli also registers the ${pbe_parent:...} resolver that configs/sample.yaml uses.
from pbe.sample_cli import run_hydra_job


@hydra.main(config_path="configs", config_name="sample", version_base="1.3")
def main(cfg) -> None:
    try:
        run_hydra_job(cfg)
    except (ValueError, FileNotFoundError, FileExistsError) as e:  # bad input: a message, not a traceback
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
