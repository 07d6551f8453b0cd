"""Every training stage by name (`cfg.stage`, default "diffusion"): the paper's diffusion stage
(`pbe.training.run`) and the stages of the models trained here (`pbe.recipes`). `train.py` calls `train(cfg)`;
`check_sweep` checks every job of a `train.py -m` command line before the first trains."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from omegaconf import DictConfig

from pbe.recipes.autoencoder import train_autoencoder
from pbe.recipes.objects.recipe import train_objects
from pbe.recipes.objects.tower import train_object_tower
from pbe.recipes.small.recipe import train_small
from pbe.recipes.small.tower import train_vision
from pbe.training.run import (
    check_diffusion_config,
    check_run_dir,
    make_run_dir,
    one_log_line_per_message,
    plain,
    train_diffusion,
    under_hydra,
)


def check_config(cfg: DictConfig | Mapping) -> None:
    """What can be checked of a training config without building a model or taking a step (for sweeps: every
    job before the first trains): the stage, required values, and for the diffusion stage its keys and data."""
    stage = (cfg.get("stage") if hasattr(cfg, "get") else None) or "diffusion"
    if stage not in STAGES:
        raise ValueError(f"stage must be one of {sorted(STAGES)}, got {stage!r}")
    c = plain(cfg)
    if stage == "diffusion":
        check_diffusion_config(c)


def check_sweep(overrides: Sequence[str], config_dir: Path) -> int:
    """Compose and check every job of a ``train.py -m`` command line before any trains; returns the job count."""
    from hydra import compose, initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from pbe.sweeps import sweep_jobs

    ours = [o for o in overrides if not o.lstrip("+~").startswith(("hydra.", "hydra/"))]
    try:
        jobs = sweep_jobs(ours)
    except (HydraException, OmegaConfBaseException) as e:
        raise ValueError(f"cannot read the command line: {e}") from None
    with initialize_config_dir(config_dir=str(config_dir), version_base="1.3"):
        for number, job in enumerate(jobs):
            try:
                check_config(compose("train", overrides=job))
            except (HydraException, OmegaConfBaseException, ValueError, OSError) as e:
                message = str(e).splitlines()[0] if str(e) else type(e).__name__
                raise ValueError(f"sweep job {number} ({' '.join(job)}): {message}") from None
    return len(jobs)


STAGES = {
    "diffusion": train_diffusion,  # the paper's
    "autoencoder": train_autoencoder,  # the recipes' own autoencoder (no pretrained one here)
    "vision": train_vision,  # the small model's tower
    "small": train_small,  # the small model's whole recipe
    "objects_tower": train_object_tower,  # the objects model's tower
    "objects": train_objects,  # the objects model's whole recipe
}


def train(cfg: DictConfig | Mapping, callbacks: list | None = None) -> Path:
    """Train the stage `cfg.stage` names (default "diffusion"); returns the run dir."""
    stage = (cfg.get("stage") if hasattr(cfg, "get") else None) or "diffusion"
    if stage not in STAGES:
        raise ValueError(f"stage must be one of {sorted(STAGES)}, got {stage!r}")
    c = plain(cfg)
    run_dir = make_run_dir(c)
    check_run_dir(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    if under_hydra():
        one_log_line_per_message()
    return STAGES[stage](cfg, run_dir, callbacks)
